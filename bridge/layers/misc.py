"""torch's "other" layers as plain TF functions built only from ops every tfjs backend runs:
Bilinear, vector norms (F.normalize, torch.norm), cosine similarity, pairwise distance,
Unfold/Fold (im2col/col2im) and EmbeddingBag.

* ``im2col`` / ``col2im`` use strided slices, pads and adds (no ExtractImagePatches, no
  scatter); they work on channels-first maps (N, C, H, W) or channels-last ones (N, H, W, C),
  whose columns are then stored transposed, (N, L, C*kh*kw).
* ``embedding_bag`` builds a (bags, positions) membership mask from comparisons against the
  offsets and reduces with a matmul (sum, mean) or a masked max: no segment ops, which the
  tfjs wasm backend lacks. ``embedding_bag_regular`` is the 2-D input form (bags of equal size).
"""

from __future__ import annotations

import itertools
import math

import tensorflow as tf

__all__ = ["bilinear", "col2im", "cosine_similarity", "embedding_bag", "embedding_bag_regular", "im2col",
           "pairwise_distance", "vector_norm"]


def bilinear(x1, x2, weight, bias=None):
    """``y[..., o] = sum_ij x1[..., i] * weight[o, i, j] * x2[..., j] + bias[o]`` as one MatMul and a sum."""
    x1, x2 = tf.convert_to_tensor(x1), tf.convert_to_tensor(x2)
    out_f, in1, in2 = weight.shape
    lead = tf.shape(x1)[:-1]
    w = tf.reshape(tf.transpose(weight, [1, 0, 2]), [in1, out_f * in2])  # constant-folded when frozen
    t = tf.reshape(tf.matmul(tf.reshape(x1, [-1, in1]), w), [-1, out_f, in2])
    y = tf.reduce_sum(t * tf.reshape(x2, [-1, 1, in2]), -1)
    if bias is not None:
        y = y + bias
    return tf.reshape(y, tf.concat([lead, [out_f]], 0))


def vector_norm(x, ord=2, axis=None, keepdims=False):
    """torch.linalg.vector_norm: ``ord`` 2, 1, inf, -inf, 0 or any other p, over ``axis`` (None: all)."""
    x = tf.convert_to_tensor(x)
    if ord == 2:
        return tf.sqrt(tf.reduce_sum(x * x, axis, keepdims=keepdims))
    if ord == 0:
        return tf.reduce_sum(tf.cast(tf.not_equal(x, 0), x.dtype), axis, keepdims=keepdims)
    a = tf.abs(x)
    if ord == 1:
        return tf.reduce_sum(a, axis, keepdims=keepdims)
    if ord == math.inf:
        return tf.reduce_max(a, axis, keepdims=keepdims)
    if ord == -math.inf:
        return tf.reduce_min(a, axis, keepdims=keepdims)
    return tf.pow(tf.reduce_sum(tf.pow(a, ord), axis, keepdims=keepdims), 1.0 / ord)


def _broadcast(x1, x2):
    """Both operands at their common shape (adding zeros broadcasts exactly; no BroadcastArgs needed)."""
    x1, x2 = tf.convert_to_tensor(x1), tf.convert_to_tensor(x2)
    if x1.shape.as_list() == x2.shape.as_list():
        return x1, x2
    return x1 + tf.zeros_like(x2), x2 + tf.zeros_like(x1)


def cosine_similarity(x1, x2, axis: int, eps: float):
    """torch's formula: each operand divided by its norm clamped to ``eps``, then the dot product on ``axis``."""
    x1, x2 = _broadcast(x1, x2)
    n1 = tf.maximum(vector_norm(x1, 2, axis, keepdims=True), eps)
    n2 = tf.maximum(vector_norm(x2, 2, axis, keepdims=True), eps)
    return tf.reduce_sum((x1 / n1) * (x2 / n2), axis)


def pairwise_distance(x1, x2, p: float, eps: float, axis: int, keepdims: bool):
    """torch's ``norm(x1 - x2 + eps, p)`` on the innermost torch dim (TF ``axis``)."""
    return vector_norm(tf.convert_to_tensor(x1) - x2 + eps, p, axis, keepdims)


def _out_size(n: int, k: int, d: int, p: int, s: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _offsets(kernel) -> list[tuple[int, int]]:
    """Kernel positions in torch's column order (row-major over the kernel)."""
    return list(itertools.product(range(kernel[0]), range(kernel[1])))


def im2col(x, kernel, dilation, padding, stride, channels_last: bool = False):
    """F.unfold of (N, C, H, W) -> (N, C*kh*kw, L); channels-last (N, H, W, C) -> (N, L, C*kh*kw).

    Column ``c*kh*kw + i*kw + j`` holds input channel c at kernel position (i, j), as in torch;
    each kernel position is one strided slice of the zero-padded map.
    """
    x = tf.convert_to_tensor(x)
    ax = (1, 2) if channels_last else (2, 3)
    pads = [[0, 0]] * 4
    for a, p in zip(ax, padding):
        pads[a] = [p, p]
    if any(padding):
        x = tf.pad(x, pads)
    sizes = [x.shape[a] - 2 * p for a, p in zip(ax, padding)]
    outs = [_out_size(n, k, d, p, s) for n, k, d, p, s in zip(sizes, kernel, dilation, padding, stride)]
    slices = []
    for pos in _offsets(kernel):
        index = [slice(None)] * 4
        for a, q, d, o, s in zip(ax, pos, dilation, outs, stride):
            index[a] = slice(q * d, q * d + (o - 1) * s + 1, s)
        slices.append(x[tuple(index)])
    channels, columns = x.shape[3 if channels_last else 1], outs[0] * outs[1]
    k = len(slices)
    if channels_last:  # (N, oh, ow, C, K) -> (N, L, C*K)
        return tf.reshape(tf.stack(slices, -1), [-1, columns, channels * k])
    return tf.reshape(tf.stack(slices, 2), [-1, channels * k, columns])  # (N, C, K, oh, ow) -> (N, C*K, L)


def _spread(block, axis: int, stride: int):
    """Zeros inserted after each element along ``axis`` so that element i lands at i*stride (the tail trimmed)."""
    if stride == 1:
        return block
    n = block.shape[axis]
    grown = tf.expand_dims(block, axis + 1)
    pads = [[0, 0]] * grown.shape.rank
    pads[axis + 1] = [0, stride - 1]
    shape = [-1 if i == 0 else s for i, s in enumerate(block.shape.as_list())]
    shape[axis] = n * stride
    spread = tf.reshape(tf.pad(grown, pads), shape)
    index = [slice(None)] * block.shape.rank
    index[axis] = slice(0, (n - 1) * stride + 1)
    return spread[tuple(index)]


def col2im(cols, output_size, kernel, dilation, padding, stride, channels_last: bool = False):
    """F.fold: (N, C*kh*kw, L) -> (N, C, H, W), overlapping columns summed; the inverse arrangement of im2col.

    With ``channels_last`` the columns come as (N, L, C*kh*kw) and the map goes out as (N, H, W, C).
    All blocks are spread by the stride at once; then each kernel position's block is padded into
    place and added.
    """
    cols = tf.convert_to_tensor(cols)
    outs = [_out_size(n, k, d, p, s) for n, k, d, p, s in zip(output_size, kernel, dilation, padding, stride)]
    k = kernel[0] * kernel[1]
    channels = cols.shape[2 if channels_last else 1] // k
    if channels_last:  # (N, oh, ow, C, K); each block (N, oh, ow, C)
        blocks, spread_axes, ax = tf.reshape(cols, [-1, outs[0], outs[1], channels, k]), (1, 2), (1, 2)
    else:  # (N, C, K, oh, ow); each block (N, C, oh, ow)
        blocks, spread_axes, ax = tf.reshape(cols, [-1, channels, k, outs[0], outs[1]]), (3, 4), (2, 3)
    for a, s in zip(spread_axes, stride):
        blocks = _spread(blocks, a, s)
    spans = [(o - 1) * s + 1 for o, s in zip(outs, stride)]
    full = [n + 2 * p for n, p in zip(output_size, padding)]
    total = None
    for i, pos in enumerate(_offsets(kernel)):
        pads = [[0, 0]] * 4
        for a, q, d, span, n in zip(ax, pos, dilation, spans, full):
            pads[a] = [q * d, n - q * d - span]
        placed = tf.pad(blocks[..., i] if channels_last else blocks[:, :, i], pads)
        total = placed if total is None else total + placed
    index = [slice(None)] * 4
    for a, p, n in zip(ax, padding, output_size):
        index[a] = slice(p, p + n)
    return total[tuple(index)] if any(padding) else total


def _reduce_bags(mask, rows, mode: int, weights=None):
    """Bags from a (bags, positions) bool ``mask`` over (positions, D) ``rows``: 0 sum, 1 mean, 2 max."""
    if mode == 2:
        picked = tf.where(mask[:, :, None], rows[None], tf.constant(-math.inf, rows.dtype))
        count = tf.reduce_sum(tf.cast(mask, rows.dtype), 1, keepdims=True)
        return tf.where(count > 0, tf.reduce_max(picked, 1), tf.zeros_like(picked[:, 0]))
    share = tf.cast(mask, rows.dtype)
    summed = tf.matmul(share * weights[None] if weights is not None else share, rows)
    if mode == 0:
        return summed
    return summed / tf.maximum(tf.reduce_sum(share, 1, keepdims=True), 1.0)  # an empty bag stays 0


def embedding_bag(table, ids, offsets, mode: int, weights=None, include_last_offset: bool = False,
                  padding_idx=None):
    """F.embedding_bag of 1-D ``ids`` cut into bags at ``offsets``; ``padding_idx`` entries are left out."""
    ids = tf.cast(ids, tf.int32)
    offsets = tf.cast(offsets, tf.int32)
    length = tf.shape(ids)[0]
    if include_last_offset:
        starts, ends = offsets[:-1], offsets[1:]
    else:
        starts, ends = offsets, tf.concat([offsets[1:], [length]], 0)
    pos = tf.range(length)[None, :]
    mask = tf.logical_and(pos >= starts[:, None], pos < ends[:, None])
    if padding_idx is not None:
        mask = tf.logical_and(mask, tf.not_equal(ids, padding_idx)[None, :])
    return _reduce_bags(mask, tf.gather(table, ids), mode, weights)


def embedding_bag_regular(table, ids, size: int, mode: int, weights=None, padding_idx=None):
    """F.embedding_bag of a 2-D input, seen flattened: consecutive bags of ``size`` ids each."""
    ids = tf.reshape(tf.cast(ids, tf.int32), [-1, size])
    rows = tf.gather(table, ids)  # (B, size, D)
    keep = tf.ones_like(ids, rows.dtype) if padding_idx is None else tf.cast(tf.not_equal(ids, padding_idx), rows.dtype)
    if mode == 2:
        picked = tf.where(keep[:, :, None] > 0, rows, tf.constant(-math.inf, rows.dtype))
        count = tf.reduce_sum(keep, 1, keepdims=True)
        return tf.where(count > 0, tf.reduce_max(picked, 1), tf.zeros_like(rows[:, 0]))
    share = keep * tf.reshape(weights, [-1, size]) if weights is not None else keep
    summed = tf.reduce_sum(rows * share[:, :, None], 1)
    if mode == 0:
        return summed
    return summed / tf.maximum(tf.reduce_sum(keep, 1, keepdims=True), 1.0)
