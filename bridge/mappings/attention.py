"""Attention: F.scaled_dot_product_attention (an op) and nn.MultiheadAttention (a module).

Both run on torch-layout tensors (identity layouts); the TF side is
bridge/layers/attention.py (``L.sdpa``, ``L.MultiheadAttention``).
"""

from __future__ import annotations

import torch

from .. import layout as lay
from .. import transforms as T
from ..plan import TensorValue
from ..registry import LayerPlan, NotSupported, Weight, module_mapping, op_mapping

A = torch.ops.aten


@op_mapping(A.scaled_dot_product_attention.default)
def scaled_dot_product_attention(c):
    """(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None, enable_gqa=False)."""
    q, k, v = c.arg(0, "query"), c.arg(1, "key"), c.arg(2, "value")
    mask = c.arg(3, "attn_mask", None)
    dropout_p = c.arg(4, "dropout_p", 0.0)
    if dropout_p:
        raise NotSupported(f"dropout_p={dropout_p}: SDPA dropout is random even in eval mode; pass dropout_p=0.0 "
                           "(e.g. dropout_p=self.p if self.training else 0.0)")
    is_causal, scale = bool(c.arg(5, "is_causal", False)), c.arg(6, "scale", None)
    gqa = bool(c.arg(7, "enable_gqa", False))
    if gqa and q.rank < 3:
        raise NotSupported("enable_gqa needs a heads dim (query of rank >= 3)")
    args = [c.tensor(t, lay.identity(t.rank)) for t in (q, k, v)]
    if isinstance(mask, TensorValue):
        args.append(f"attn_mask={c.tensor(mask, lay.identity(mask.rank))}")
    if is_causal:
        args.append("is_causal=True")
    if scale is not None:
        args.append(f"scale={float(scale)!r}")
    if gqa:
        args.append("enable_gqa=True")
    return c.out(f"L.sdpa({', '.join(args)})", lay.identity(len(c.out_shape)))


# ---------------------------------------------------------------- nn.MultiheadAttention helpers


def mha_weights(m: torch.nn.MultiheadAttention) -> dict[str, Weight]:
    """TF variable of L.MultiheadAttention -> its state_dict entry (each entry feeds exactly one variable)."""
    if m._qkv_same_embed_dim:
        weights = {"in_kernel": Weight("in_proj_weight", T.MHA_IN_KERNEL)}
    else:
        weights = {f"{x}_kernel": Weight(f"{x}_proj_weight", T.MHA_PROJ_KERNEL) for x in "qkv"}
    weights["out_kernel"] = Weight("out_proj.weight", T.LINEAR_KERNEL)
    if m.in_proj_bias is not None:
        weights["in_bias"] = Weight("in_proj_bias", T.IDENTITY)
    if m.out_proj.bias is not None:
        weights["out_bias"] = Weight("out_proj.bias", T.IDENTITY)
    if m.bias_k is not None:
        weights["bias_k"] = Weight("bias_k", T.MHA_BIAS_KV)
        weights["bias_v"] = Weight("bias_v", T.MHA_BIAS_KV)
    return weights


def mha_config(m: torch.nn.MultiheadAttention, fast_path: bool = False) -> dict:
    return {"embed_dim": m.embed_dim, "num_heads": m.num_heads, "kdim": m.kdim, "vdim": m.vdim,
            "bias": m.in_proj_bias is not None, "add_bias_kv": m.bias_k is not None,
            "add_zero_attn": m.add_zero_attn, "batch_first": m.batch_first, "fast_path": fast_path}


def mha_fast_path(m: torch.nn.MultiheadAttention, batched: bool, self_attention: bool, float_mask: bool) -> bool:
    """Whether torch (eval, no grad: how parity runs it) takes its fused path for this call.

    That path ignores is_causal and gives NaN for fully masked rows where the SDPA path gives 0,
    so the TF layer must know. Mirrors the checks in nn.MultiheadAttention.forward.
    """
    return (torch.backends.mha.get_fastpath_enabled() and batched and self_attention and not float_mask
            and not m.training and m.num_heads % 2 == 0 and m.batch_first and m.bias_k is None
            and not m.add_zero_attn and m._qkv_same_embed_dim and m.in_proj_bias is not None)


@module_mapping(torch.nn.MultiheadAttention)
def multihead_attention(m, call):
    """nn.MultiheadAttention in eval mode: L.MultiheadAttention, returning (attn_output, attn_weights or None)."""
    if m.training and m.dropout:
        raise NotSupported("dropout during training")
    query, key, value = (call.argument(n) for n in ("query", "key", "value"))
    masks = [call.argument(n) for n in ("key_padding_mask", "attn_mask")]
    float_mask = any(isinstance(t, TensorValue) and t.dtype.is_floating_point for t in masks)
    self_attention = isinstance(query, TensorValue) and all(
        isinstance(t, TensorValue) and t.var == query.var for t in (key, value))
    fast = mha_fast_path(m, query.rank == 3, self_attention, float_mask)
    inputs = tuple(lay.identity(t.rank) for t in call.inputs)
    return LayerPlan("MultiheadAttention", mha_config(m, fast), mha_weights(m), inputs, _output_layouts(call.out_meta))


def _output_layouts(meta):
    """torch's (attn_output, attn_weights or None), each in torch's layout."""
    if meta is None:
        return None
    if isinstance(meta, (tuple, list)):
        return type(meta)(_output_layouts(x) for x in meta)
    return lay.identity(len(meta.shape))


MAPPINGS = (scaled_dot_product_attention, multihead_attention)
