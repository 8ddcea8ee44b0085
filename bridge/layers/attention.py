"""Attention in eval mode: ``sdpa`` (F.scaled_dot_product_attention) and ``MultiheadAttention``.

Both follow torch exactly, including its edge cases:

- SDPA bool masks are True = attend; float masks are added to the scores. Masks
  broadcast against the (..., L, S) scores. ``is_causal`` is torch's top-left
  aligned mask (query i sees keys j <= i, also when L != S). A row that no key
  may attend gives zeros (torch's safe softmax), not NaN.
- nn.MultiheadAttention bool masks are True = *masked*. Its need_weights path and
  its fused eval fast path use a plain softmax, so a fully masked row is NaN
  there; its SDPA path gives zeros. Which path torch takes is decided by the
  mapping (``fast_path``), since it depends on the call, not on the weights.

Graph form for tfjs: causal masks come from range comparisons (never
``tf.linalg.band_part``), scores are plain ``tf.matmul(..., transpose_b=True)``
(no Einsum), projections are one 2-D MatMul over flattened rows, and all
sequence lengths are read with ``tf.shape`` so one graph serves any length.
"""

from __future__ import annotations

import math

import tensorflow as tf

from .base import Layer
from .linear import matmul

__all__ = ["MultiheadAttention", "causal_mask", "sdpa"]

_NEG_INF = float("-inf")


# ---------------------------------------------------------------- scaled dot-product attention


def causal_mask(query_len, key_len) -> tf.Tensor:
    """(L, S) bool, True where query i may see key j (j <= i): torch's top-left aligned causal mask."""
    rows = tf.range(query_len)[:, None]
    cols = tf.range(key_len)[None, :]
    return tf.greater_equal(rows, cols)


def additive_mask(mask, attend_value: bool, dtype=tf.float32) -> tf.Tensor:
    """A bool or float mask as a float mask to add to the scores.

    ``attend_value`` is what True means to attend: True for SDPA, False for nn.MultiheadAttention.
    """
    mask = tf.convert_to_tensor(mask)
    if mask.dtype != tf.bool:
        return tf.cast(mask, dtype)
    keep = mask if attend_value else tf.logical_not(mask)
    return tf.where(keep, tf.zeros([], dtype), tf.constant(_NEG_INF, dtype))


def repeat_heads(x, groups: int) -> tf.Tensor:
    """(..., H, S, E) -> (..., H*groups, S, E), each head repeated ``groups`` times in a row (repeat_interleave)."""
    if groups == 1:
        return x
    shape = tf.shape(x)
    rank = x.shape.rank
    tiled = tf.tile(tf.expand_dims(x, -3), [1] * (rank - 2) + [groups, 1, 1])
    heads = tf.constant([x.shape[-3] * groups], tf.int32)
    return tf.reshape(tiled, tf.concat([shape[:-3], heads, shape[-2:]], 0))


def attend(q, k, v, bias=None, scale: float = 1.0, safe: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
    """(softmax(q k^T * scale + bias) v, the weights). ``safe``: rows with no finite score give 0, not NaN."""
    scores = tf.matmul(q, k, transpose_b=True) * scale
    if bias is not None:
        scores = scores + bias
    weights = tf.nn.softmax(scores, axis=-1)
    if safe and bias is not None:
        fully_masked = tf.equal(tf.reduce_max(scores, axis=-1, keepdims=True), _NEG_INF)
        weights = tf.where(fully_masked, tf.zeros([], weights.dtype), weights)
    return tf.matmul(weights, v), weights


def sdpa(query, key, value, attn_mask=None, is_causal: bool = False, scale: float | None = None,
         enable_gqa: bool = False) -> tf.Tensor:
    """torch.nn.functional.scaled_dot_product_attention at inference (dropout_p == 0).

    query (..., Hq, L, E), key (..., Hkv, S, E), value (..., Hkv, S, Ev) -> (..., Hq, L, Ev).
    """
    q, k, v = (tf.convert_to_tensor(t) for t in (query, key, value))
    if enable_gqa and q.shape.rank >= 3:
        groups = q.shape[-3] // k.shape[-3]
        k, v = repeat_heads(k, groups), repeat_heads(v, groups)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    bias = None
    if is_causal:
        bias = additive_mask(causal_mask(tf.shape(q)[-2], tf.shape(k)[-2]), True, q.dtype)
    if attn_mask is not None:
        extra = additive_mask(attn_mask, True, q.dtype)
        bias = extra if bias is None else bias + extra
    return attend(q, k, v, bias, scale, safe=True)[0]


# ---------------------------------------------------------------- nn.MultiheadAttention


class MultiheadAttention(Layer):
    """torch.nn.MultiheadAttention in eval mode; ``call`` returns (attn_output, attn_weights or None).

    Variables (named after the torch keys they come from):
    ``in_kernel`` (E, 3E) from in_proj_weight, columns q|k|v (when kdim == vdim == embed_dim), else
    ``q_kernel`` (E, E), ``k_kernel`` (kdim, E), ``v_kernel`` (vdim, E) from q/k/v_proj_weight;
    ``in_bias`` (3E,) from in_proj_bias; ``out_kernel`` (E, E), ``out_bias`` (E,) from out_proj;
    ``bias_k``, ``bias_v`` (E,) from bias_k / bias_v (add_bias_kv).

    ``fast_path``: torch runs its fused kernel for this call (eval, no grad, batch_first self-attention
    ...); it ignores ``is_causal`` and gives NaN for fully masked rows even without need_weights.
    """

    def __init__(self, *, path, embed_dim: int, num_heads: int, kdim: int | None = None, vdim: int | None = None,
                 bias: bool = True, add_bias_kv: bool = False, add_zero_attn: bool = False,
                 batch_first: bool = False, fast_path: bool = False):
        super().__init__(path=path)
        kdim, vdim = kdim or embed_dim, vdim or embed_dim
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.batch_first, self.add_zero_attn, self.fast_path = batch_first, add_zero_attn, fast_path
        self.packed = kdim == embed_dim and vdim == embed_dim
        if self.packed:
            self.in_kernel = self.variable("in_kernel", [embed_dim, 3 * embed_dim])
        else:
            self.q_kernel = self.variable("q_kernel", [embed_dim, embed_dim])
            self.k_kernel = self.variable("k_kernel", [kdim, embed_dim])
            self.v_kernel = self.variable("v_kernel", [vdim, embed_dim])
        self.in_bias = self.variable("in_bias", [3 * embed_dim]) if bias else None
        self.out_kernel = self.variable("out_kernel", [embed_dim, embed_dim])
        self.out_bias = self.variable("out_bias", [embed_dim]) if bias else None
        self.bias_k = self.variable("bias_k", [embed_dim]) if add_bias_kv else None
        self.bias_v = self.variable("bias_v", [embed_dim]) if add_bias_kv else None

    def call(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
             average_attn_weights=True, is_causal=False):
        if is_causal and attn_mask is None:
            raise ValueError("MultiheadAttention: is_causal needs attn_mask, as in torch")
        batched = query.shape.rank == 3
        query, key, value = (self._batch_major(t, batched) for t in (query, key, value))
        if key_padding_mask is not None and not batched:
            key_padding_mask = key_padding_mask[None]
        q, k, v = self._project(query, key, value)
        if self.bias_k is not None:  # one extra key/value per head, at the end of the sequence
            k = self._append_key(k, self._heads(tf.reshape(self.bias_k, [1, 1, -1])))
            v = self._append_key(v, self._heads(tf.reshape(self.bias_v, [1, 1, -1])))
        if self.add_zero_attn:
            k, v = self._append_key(k, tf.zeros_like(k[:, :, :1])), self._append_key(v, tf.zeros_like(v[:, :, :1]))
        bias = self._mask_bias(attn_mask, key_padding_mask, batched)
        out, weights = self._attend(q, k, v, bias, need_weights, is_causal, key_padding_mask)
        out = self._output(out, batched)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = tf.reduce_mean(weights, axis=1)
        return out, (weights if batched else weights[0])

    # -- steps of call
    def _batch_major(self, x, batched: bool):
        """Any input layout -> (N, L, E)."""
        if not batched:
            return x[None]
        return x if self.batch_first else tf.transpose(x, [1, 0, 2])

    def _project(self, query, key, value):
        """q, k, v as (N, H, L, D), straight from (N, L, E) inputs: see ``_head_kernel``."""
        e = self.embed_dim
        bq, bk, bv = (None, None, None) if self.in_bias is None else (
            self.in_bias[:e], self.in_bias[e:2 * e], self.in_bias[2 * e:])
        if self.packed:
            kernels = self.in_kernel[:, :e], self.in_kernel[:, e:2 * e], self.in_kernel[:, 2 * e:]
        else:
            kernels = self.q_kernel, self.k_kernel, self.v_kernel
        out = []
        for x, w, b in zip((query, key, value), kernels, (bq, bk, bv)):
            # (N, H, L, E) @ (1, H, E, D) -> (N, H, L, D). x is broadcast over the heads first: tfjs's
            # BatchMatMul gets the output shape wrong when the *first* operand's batch dim is the 1
            shape = tf.shape(x)
            x = tf.broadcast_to(x[:, None], tf.stack([shape[0], self.num_heads, shape[1], shape[2]]))
            y = tf.matmul(x, self._head_kernel(w))
            out.append(y + tf.reshape(b, [1, self.num_heads, 1, self.head_dim]) if b is not None else y)
        return out

    def _head_kernel(self, w):
        """An (E_in, E) projection kernel as (1, H, E_in, D): one matmul per head, batched.

        Projecting straight into heads replaces the reshape + transpose of every activation by a
        transpose of the weights, which the tfjs converter folds into a constant: the exported graph
        has no Transpose for the heads.
        """
        w = tf.reshape(w, [-1, self.num_heads, self.head_dim])
        return tf.transpose(w, [1, 0, 2])[None]

    def _heads(self, x):
        """(N, L, E) -> (N, H, L, D)."""
        shape = tf.shape(x)
        x = tf.reshape(x, tf.stack([shape[0], shape[1], self.num_heads, self.head_dim]))
        return tf.transpose(x, [0, 2, 1, 3])

    @staticmethod
    def _append_key(x, extra):
        """Append one key (N or 1, H, 1, D) at the end of (N, H, S, D)."""
        n = tf.shape(x)[0]
        return tf.concat([x, tf.tile(extra, tf.stack([n // tf.shape(extra)[0], 1, 1, 1]))], axis=2)

    def _extra_keys(self) -> int:
        return int(self.bias_k is not None) + int(self.add_zero_attn)

    def _mask_bias(self, attn_mask, key_padding_mask, batched: bool):
        """attn_mask (L, S) or (N*H, L, S) and key_padding_mask (N, S) -> one additive (N or 1, H or 1, L, S)."""
        bias = None
        if attn_mask is not None:
            bias = additive_mask(attn_mask, False)
            if bias.shape.rank == 2:
                bias = bias[None, None]
            else:
                shape = tf.shape(bias)
                bias = tf.reshape(bias, tf.stack([-1, self.num_heads, shape[1], shape[2]]))
        if key_padding_mask is not None:
            pad = additive_mask(key_padding_mask, False)[:, None, None, :]
            bias = pad if bias is None else bias + pad
        if bias is not None and self._extra_keys():
            bias = tf.pad(bias, [[0, 0], [0, 0], [0, 0], [0, self._extra_keys()]])
        return bias

    def _attend(self, q, k, v, bias, need_weights: bool, is_causal: bool, key_padding_mask):
        scale = 1.0 / math.sqrt(self.head_dim)
        if need_weights or self.fast_path:  # torch's plain softmax path: fully masked rows are NaN
            return attend(q, k, v, bias, scale, safe=False)
        if is_causal and key_padding_mask is None:  # torch drops attn_mask and uses SDPA's causal mask
            return sdpa(q, k, v, is_causal=True, scale=scale), None
        return attend(q, k, v, bias, scale, safe=True)

    def _output(self, out, batched: bool):
        """(N, H, L, D) -> out_proj -> the input's layout.

        out_proj's kernel rows are grouped by head, (H, D, E): each head's product is summed over
        the heads, which is the concatenation followed by one matmul, without a transpose.
        """
        kernel = tf.reshape(self.out_kernel, [1, self.num_heads, self.head_dim, self.embed_dim])
        out = tf.reduce_sum(tf.matmul(out, kernel), axis=1)
        if self.out_bias is not None:
            out = out + self.out_bias
        if not batched:
            return out[0]
        return out if self.batch_first else tf.transpose(out, [1, 0, 2])
