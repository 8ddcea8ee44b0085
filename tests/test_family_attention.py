"""Attention: F.scaled_dot_product_attention (op mapping -> L.sdpa) and nn.MultiheadAttention
(L.MultiheadAttention, first directly against torch with weights copied by the mapping's own
bindings, then through convert()). Every row asserts max abs error <= 1e-5 * max(1, max|torch|);
NaN positions (torch's fully masked rows on its softmax paths) must match exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from torch import nn

import bridge
import bridge.layers as L
from bridge.errors import UnsupportedError
from bridge.mappings.attention import mha_config, mha_fast_path, mha_weights
from _parity import ATOL, Fn, Fn2, assert_port_matches, randn, seeded

H, E = 2, 4  # heads and head dim of the SDPA rows; sequences: L = 5 queries, S = 7 keys


class Fn3(Fn):
    """Three-input variant of ``Fn``."""

    def forward(self, x, y, z):
        return self.fn(self, x, y, z)


class Masked(nn.Module):
    """SDPA with a fixed mask buffer ``m``: fn(self, q, kv)."""

    def __init__(self, fn, mask: torch.Tensor):
        super().__init__()
        self.fn = fn
        self.register_buffer("m", mask)

    def forward(self, q, kv):
        return self.fn(self, q, kv)


def _bool_mask(*shape, seed=3, dead_row: int | None = None) -> torch.Tensor:
    m = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.4
    if dead_row is not None:
        m[..., dead_row, :] = False  # no key may be attended: torch gives zeros there
    return m


def _float_mask(*shape, seed=4, dead_row: int | None = None) -> torch.Tensor:
    m = randn(*shape, seed=seed)
    if dead_row is not None:
        m[..., dead_row, :] = float("-inf")
    return m


sdpa = F.scaled_dot_product_attention
Q, KV = randn(2, H, 5, E), randn(2, H, 7, E, seed=1)

SDPA_CASES = [
    pytest.param(Fn(lambda s, x: sdpa(x, x, x)), (Q,), id="self"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv)), (Q, KV), id="cross-L5-S7"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv[..., :3])), (Q, KV), id="value-dim-3"),
    pytest.param(Fn(lambda s, x: sdpa(x, x, x, is_causal=True)), (Q,), id="causal"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv, is_causal=True)), (Q, KV), id="causal-L5-S7"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(kv, q, q, is_causal=True)), (Q, KV), id="causal-L7-S5"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv, scale=0.25)), (Q, KV), id="scale"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv, is_causal=True, scale=1.5)), (Q, KV), id="causal-scale"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _bool_mask(5, 7, dead_row=2)),
                 (Q, KV), id="bool-2d-dead-row"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _bool_mask(1, H, 5, 7)),
                 (Q, KV), id="bool-4d"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _bool_mask(H, 1, 7)),
                 (Q, KV), id="bool-3d-broadcast-rows"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _float_mask(5, 7)),
                 (Q, KV), id="float-2d"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _float_mask(1, H, 5, 7, dead_row=4)),
                 (Q, KV), id="float-4d-inf-row"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m, scale=0.5), _float_mask(1, 7)),
                 (Q, KV), id="float-row-broadcast-scale"),
    pytest.param(Fn2(lambda s, q, pad: sdpa(q, q, q, attn_mask=pad[:, None, None, :])),
                 (Q, torch.tensor([[True, False, True, True, False], [False] * 5])), id="bool-input-padding"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q.flatten(0, 1), kv.flatten(0, 1), kv.flatten(0, 1))), (Q, KV),
                 id="rank3"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv[:, :1], kv[:, :1], enable_gqa=True)), (randn(2, 4, 5, E), KV),
                 id="gqa-4-over-1"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv, is_causal=True, enable_gqa=True)), (randn(2, 4, 5, E), KV),
                 id="gqa-4-over-2-causal"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m, enable_gqa=True), _bool_mask(5, 7, dead_row=0)),
                 (randn(2, 4, 5, E), KV), id="gqa-bool-mask"),
]


@pytest.mark.parametrize("module, inputs", SDPA_CASES)
def test_sdpa_matches_torch(module, inputs):
    assert_port_matches(seeded(lambda: module), inputs)


def test_sdpa_dead_rows_are_zero_like_torch():
    """torch's safe softmax: a row no key may attend is 0 (not NaN); TF must give the same."""
    mask = _bool_mask(5, 7, dead_row=2)
    ref = sdpa(Q, KV, KV, attn_mask=mask)
    got = L.sdpa(Q.numpy(), KV.numpy(), KV.numpy(), attn_mask=mask.numpy()).numpy()
    assert np.all(ref[:, :, 2].numpy() == 0) and np.all(got[:, :, 2] == 0)
    assert np.max(np.abs(got - ref.numpy())) <= ATOL * max(1.0, float(ref.abs().max()))


def test_sdpa_refuses_dropout():
    """F.scaled_dot_product_attention drops out even in eval mode: refused, with the value named."""
    with pytest.raises(UnsupportedError, match="dropout_p=0.1"):
        bridge.convert(Fn2(lambda s, q, kv: sdpa(q, kv, kv, dropout_p=0.1)), (Q, KV))


def test_sdpa_two_sequence_lengths_one_graph():
    """One traced TF function with unknown L and S runs lengths 5 and 9 (and the causal mask follows)."""
    port = assert_port_matches(Fn2(lambda s, q, kv: sdpa(q, kv, kv, is_causal=True)), (Q, KV))
    spec = tf.TensorSpec([None, H, None, E], tf.float32)
    fn = tf.function(port.tf_model.__call__, input_signature=[spec, spec])
    for length in (5, 9):
        q, kv = randn(2, H, length, E, seed=length), randn(2, H, length + 2, E, seed=length + 1)
        ref = sdpa(q, kv, kv, is_causal=True).numpy()
        got = fn(q.numpy(), kv.numpy()).numpy()
        assert np.max(np.abs(got - ref)) <= ATOL * max(1.0, float(np.max(np.abs(ref))))


# ---------------------------------------------------------------- nn.MultiheadAttention, the TF layer itself
N, LQ, S = 3, 5, 6  # batch, query length, key length of the MHA rows


def mha_module(embed_dim=8, num_heads=2, **kwargs) -> nn.MultiheadAttention:
    """torch's init, but biases (zero at init) and bias_k/bias_v random so a dropped one shows."""
    torch.manual_seed(0)
    m = nn.MultiheadAttention(embed_dim, num_heads, **kwargs).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "bias" in name:
                p.normal_(0.0, 0.5)
    return m


def tf_twin(m: nn.MultiheadAttention, fast_path: bool) -> L.MultiheadAttention:
    """L.MultiheadAttention filled through the mapping's bindings; every state_dict key is used exactly once."""
    layer = L.MultiheadAttention(path="att", **mha_config(m, fast_path))
    state = m.state_dict()
    weights = mha_weights(m)
    assert sorted(w.source for w in weights.values()) == sorted(state)
    for attr, w in weights.items():
        getattr(layer, attr).assign(w.transform(state[w.source].numpy()))
    return layer


def _seq(length, dim, cfg, unbatched, seed):
    shape = (length, dim) if unbatched else (N, length, dim) if cfg.get("batch_first") else (length, N, dim)
    return randn(*shape, seed=seed)


def _padding(length=S, dead=False, unbatched=False, float_mask=False, seed=5):
    """(N, S) or (S,) key padding, True = ignore; key 0 is kept unless ``dead`` pads all of batch element 1."""
    shape = (length,) if unbatched else (N, length)
    if float_mask:
        return _float_mask(*shape, seed=seed)
    m = ~_bool_mask(*shape, seed=seed)
    m[..., 0] = False
    if dead:
        m[1] = True
    return m


def _attn(rows, cols, heads=0, dead_row=None, float_mask=False, seed=6):
    """attn_mask (L, S) or (heads, L, S); True = may not attend; ``dead_row`` is masked everywhere."""
    shape = (heads, rows, cols) if heads else (rows, cols)
    if float_mask:
        return _float_mask(*shape, seed=seed, dead_row=dead_row)
    m = ~_bool_mask(*shape, seed=seed) & ~torch.eye(rows, cols, dtype=torch.bool)
    if dead_row is not None:
        m[..., dead_row, :] = True
    return m


CAUSAL = torch.ones(LQ, LQ, dtype=torch.bool).triu(1)  # nn.Transformer.generate_square_subsequent_mask as bool
BF, SELF, UNB = {"batch_first": True}, "self", "unbatched"

# (module config, call kwargs, input kinds); "self": query is key is value (torch's fast path may apply)
MHA_CASES = [
    pytest.param({}, {}, (), id="seq-first-cross"),
    pytest.param(BF, {}, (), id="batch-first-cross"),
    pytest.param(BF, {}, (SELF,), id="batch-first-self-fast-path"),
    pytest.param(BF, {"key_padding_mask": _padding(LQ, dead=True), "need_weights": False},
                 (SELF,), id="fast-path-dead-batch-nan"),
    pytest.param(BF, {"attn_mask": _attn(LQ, LQ, dead_row=3)}, (SELF,), id="fast-path-attn-mask-dead-row"),
    pytest.param({"embed_dim": 6, "num_heads": 3, **BF}, {"key_padding_mask": _padding(LQ, dead=True),
                                                    "need_weights": False}, (SELF,), id="odd-heads-sdpa-dead-batch-zero"),
    pytest.param({}, {"key_padding_mask": _padding(LQ, dead=True)}, (SELF,), id="seq-first-self-weights-nan"),
    pytest.param({"kdim": 5, "vdim": 3}, {"key_padding_mask": _padding()}, (), id="kdim-vdim"),
    pytest.param({"kdim": 5, "vdim": 3, **BF}, {"need_weights": False, "attn_mask": _attn(LQ, S)}, (),
                 id="kdim-vdim-batch-first-sdpa"),
    pytest.param({"add_bias_kv": True, "add_zero_attn": True},
                 {"key_padding_mask": _padding(), "attn_mask": _attn(LQ, S, heads=N * 2, float_mask=True)}, (),
                 id="bias-kv-zero-attn-3d-float-mask"),
    pytest.param({"add_bias_kv": True}, {"need_weights": False, "attn_mask": _attn(LQ, S, dead_row=1)}, (),
                 id="bias-kv-sdpa"),
    pytest.param({}, {}, (UNB,), id="unbatched"),
    pytest.param({"add_zero_attn": True}, {"key_padding_mask": _padding(unbatched=True),
                                           "attn_mask": _attn(LQ, S, heads=2)}, (UNB,),
                 id="unbatched-3d-mask-padding"),
    pytest.param(BF, {"average_attn_weights": False, "attn_mask": _attn(LQ, S, float_mask=True)}, (),
                 id="per-head-weights"),
    pytest.param({}, {"attn_mask": CAUSAL, "is_causal": True, "need_weights": False}, (SELF,), id="is-causal-sdpa"),
    pytest.param({"add_bias_kv": True, "add_zero_attn": True},
                 {"attn_mask": _attn(LQ, LQ), "is_causal": True, "need_weights": False}, (SELF,),
                 id="is-causal-replaces-mask-top-left"),
    pytest.param(BF, {"attn_mask": _attn(LQ, LQ), "is_causal": True, "need_weights": False}, (SELF,),
                 id="fast-path-ignores-is-causal"),
    pytest.param({}, {"attn_mask": CAUSAL, "is_causal": True, "key_padding_mask": _padding(LQ),
                      "need_weights": False}, (SELF,), id="is-causal-with-padding-uses-mask"),
    pytest.param({"bias": False}, {"key_padding_mask": _padding(float_mask=True)}, (), id="no-bias-float-padding"),
]


def _mha_inputs(m, cfg, kinds):
    unbatched, self_attention = UNB in kinds, SELF in kinds
    query = _seq(LQ, m.embed_dim, cfg, unbatched, seed=10)
    if self_attention:
        return query, query, query
    return query, _seq(S, m.kdim, cfg, unbatched, seed=11), _seq(S, m.vdim, cfg, unbatched, seed=12)


def _assert_close(got, ref):
    got, ref = np.asarray(got), ref.numpy()
    assert got.shape == ref.shape
    assert np.array_equal(np.isnan(got), np.isnan(ref)), "NaN positions differ"
    finite = ~np.isnan(ref)
    bound = ATOL * max(1.0, float(np.max(np.abs(ref[finite]), initial=0.0)))
    assert np.max(np.abs(got[finite] - ref[finite]), initial=0.0) <= bound


def _run_mha(cfg, call, kinds):
    m = mha_module(**cfg)
    query, key, value = _mha_inputs(m, cfg, kinds)
    masks = [v for v in call.values() if isinstance(v, torch.Tensor)]
    fast = mha_fast_path(m, query.dim() == 3, SELF in kinds, any(v.is_floating_point() for v in masks))
    with torch.no_grad():
        ref_out, ref_w = m(query, key, value, **call)
    layer = tf_twin(m, fast)
    tf_call = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in call.items()}
    out, weights = layer(query.numpy(), key.numpy(), value.numpy(), **tf_call)
    return (out, weights), (ref_out, ref_w), fast


@pytest.mark.parametrize("cfg, call, kinds", MHA_CASES)
def test_mha_layer_matches_torch(cfg, call, kinds):
    (out, weights), (ref_out, ref_w), _ = _run_mha(cfg, call, kinds)
    _assert_close(out, ref_out)
    assert (weights is None) == (ref_w is None)
    if ref_w is not None:
        _assert_close(weights, ref_w)


@pytest.mark.parametrize("row, fast, nan_rows", [("fast-path-dead-batch-nan", True, True),
                                                 ("odd-heads-sdpa-dead-batch-zero", False, False),
                                                 ("seq-first-self-weights-nan", False, True)])
def test_mha_dead_rows_follow_torch_path(row, fast, nan_rows):
    """The table's fully padded batch element: NaN on torch's softmax paths, finite on its SDPA path."""
    case = next(p for p in MHA_CASES if p.id == row)
    (out, _), (ref_out, _), took_fast = _run_mha(*case.values)
    assert took_fast == fast
    dead = ref_out[1] if case.values[0].get("batch_first") else ref_out[:, 1]
    assert bool(torch.isnan(dead).all()) == nan_rows and not (nan_rows is False and torch.isnan(ref_out).any())


def test_mha_layer_two_sequence_lengths_one_graph():
    """One tf.function with unknown batch and lengths serves L=5 and L=9 (self-attention with padding)."""
    m = mha_module(add_bias_kv=True)
    layer = tf_twin(m, fast_path=False)
    spec = tf.TensorSpec([None, None, 8], tf.float32)
    fn = tf.function(lambda x, pad: layer(x, x, x, key_padding_mask=pad)[0],
                     input_signature=[spec, tf.TensorSpec([None, None], tf.bool)])
    for length in (5, 9):
        x, pad = randn(length, N, 8, seed=length), _bool_mask(N, length, seed=length) & (torch.arange(length) > 0)
        with torch.no_grad():
            ref, _ = m(x, x, x, key_padding_mask=pad)
        _assert_close(fn(x.numpy(), pad.numpy()), ref)
