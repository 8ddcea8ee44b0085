"""Flatten as a module (the mapping decides whether the stored order can be kept,
folded into a following Linear, or must be brought back to torch's order first),
and torch's indexing ops that have no one-op TF twin: integer-tensor indexing
(``take``, ``take_nd``), ``torch.gather`` (``take_along``) and tril/triu
(``triangle``)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .base import Layer


class Flatten(Layer):
    """Reshape the TF tensor to ``(batch, *tail)``; the batch dim stays dynamic."""

    def __init__(self, *, path, tail):
        super().__init__(path=path)
        self.tail = list(tail)

    def call(self, x):
        return tf.reshape(x, [-1, *self.tail])


def _wrapped(index, size):
    """Indices as torch reads them: a negative one counts from the end of the axis."""
    index = tf.convert_to_tensor(index)
    size = tf.cast(size, index.dtype)
    return tf.where(index < 0, index + size, index)


def take(x, index, axis: int):
    """``x`` indexed by one integer tensor on ``axis`` (torch's ``x[:, index]``): index's dims replace it."""
    x = tf.convert_to_tensor(x)
    return tf.gather(x, _wrapped(index, tf.shape(x)[axis]), axis=axis)


def take_nd(x, indices):
    """``x[i0, i1, ...]`` for integer tensors on the leading dims: they broadcast together, as in torch."""
    x = tf.convert_to_tensor(x)
    indices = [tf.cast(i, tf.int64) for i in indices]
    shape = tf.shape(indices[0])
    for i in indices[1:]:
        shape = tf.broadcast_dynamic_shape(shape, tf.shape(i))
    sizes = tf.shape(x, out_type=tf.int64)
    coords = [tf.broadcast_to(_wrapped(i, sizes[k]), shape) for k, i in enumerate(indices)]
    return tf.gather_nd(x, tf.stack(coords, axis=-1))


def take_along(x, index, axis: int):
    """torch.gather: ``out[..., i, ...] = x[..., index[..., i, ...], ...]`` with i on ``axis``.

    Written as one gather_nd on full coordinates (a broadcast range per other axis):
    tf.gather with batch_dims gives wrong results in tfjs wasm. Index may be smaller than
    x on the other axes, as torch allows.
    """
    x, index = tf.convert_to_tensor(x), tf.convert_to_tensor(index)
    rank = x.shape.rank
    shape = tf.shape(index)
    index = tf.cast(_wrapped(index, tf.shape(x, out_type=index.dtype)[axis]), tf.int32)
    coords = [index if d == axis else
              tf.broadcast_to(tf.reshape(tf.range(shape[d]), [-1 if k == d else 1 for k in range(rank)]), shape)
              for d in range(rank)]
    return tf.gather_nd(x, tf.stack(coords, axis=-1))


def triangle(x, diagonal: int = 0, upper: bool = False):
    """torch.tril / triu over the last two axes, from a row/column comparison.

    tf.linalg.band_part would do it in TF but gives wrong results in tfjs.
    """
    x = tf.convert_to_tensor(x)
    rows = tf.range(tf.shape(x)[-2])[:, None]
    cols = tf.range(tf.shape(x)[-1])[None, :]
    keep = cols - rows >= diagonal if upper else cols - rows <= diagonal
    return tf.where(keep, x, tf.zeros_like(x))


# ---------------------------------------------------------------- sorting, rolling, ranges
def top_k(x, k, axis: int, largest: bool = True):
    """torch.topk / sort on TF axis ``axis``: (values, int64 indices); ``k=None`` sorts the whole axis.

    tf.math.top_k works on the last axis, so another axis is swapped there and back. The
    smallest entries are the largest of ``-x``. Equal values keep their order (torch's stable sort).
    """
    x = tf.convert_to_tensor(x)
    rank = x.shape.rank
    swap = list(range(rank))
    swap[axis], swap[-1] = swap[-1], swap[axis]
    moved = x if axis in (-1, rank - 1) else tf.transpose(x, swap)
    if k is None:
        k = moved.shape[-1] if moved.shape[-1] is not None else tf.shape(moved)[-1]
    values, index = tf.math.top_k(moved if largest else -moved, k)
    if not largest:
        values = -values
    if moved is not x:
        values, index = tf.transpose(values, swap), tf.transpose(index, swap)
    return values, tf.cast(index, tf.int64)


def roll(x, shifts, axes):
    """torch.roll on TF axes: each axis is two slices joined in the other order (tfjs has no Roll op).

    ``out[i] = x[(i - shift) mod n]``; an axis size TF does not know is read at run time.
    """
    x = tf.convert_to_tensor(x)
    for shift, axis in zip(shifts, axes):
        n = x.shape[axis]
        if n is None:
            n = tf.shape(x)[axis]
            cut = n - tf.math.floormod(shift, n)
        else:
            cut = n - shift % n if n else 0
            if cut in (0, n):
                continue
        x = tf.concat([_axis_slice(x, axis, cut, None), _axis_slice(x, axis, 0, cut)], axis=axis)
    return x


def _axis_slice(x, axis: int, start, stop):
    index = [slice(None)] * x.shape.rank
    index[axis] = slice(start, stop)
    return x[tuple(index)]


def linspace(start, end, steps: int, dtype=tf.float32):
    """torch.linspace by torch's formula: the first half counts up from ``start``, the rest down from ``end``."""
    steps = int(steps)
    if steps <= 1:
        return tf.constant([start][:steps], dtype)
    step = (tf.constant(end, tf.float32) - tf.constant(start, tf.float32)) / float(steps - 1)
    i = tf.range(steps, dtype=tf.float32)
    up = tf.constant(start, tf.float32) + step * i
    down = tf.constant(end, tf.float32) - step * (float(steps - 1) - i)
    return tf.cast(tf.where(i < steps // 2, up, down), dtype)


def einsum(equation: str, *operands):
    """torch.einsum as transposes, sums and batched matmuls, two operands at a time (left to right).

    tfjs's wasm backend has no Einsum kernel (and its cpu one rejects ``...``), so the
    equation is planned here: labels only one operand has are summed out unless the output
    keeps them; shared labels the output keeps are batch dims, the others are contracted.
    """
    xs = [tf.convert_to_tensor(x) for x in operands]
    inputs, out = _einsum_labels(equation, [x.shape.rank for x in xs])
    x, labels = xs[0], inputs[0]
    for k in range(1, len(xs)):
        later = set(out).union(*inputs[k + 1:])
        x, labels = _einsum2(x, labels, xs[k], inputs[k], later)
    x, labels = _sum_out(x, labels, set(out))
    return tf.transpose(x, [labels.index(ch) for ch in out]) if labels != list(out) else x


def _einsum2(a, la: list[str], b, lb: list[str], later: set):
    """a (labels la) times b (labels lb), keeping the labels in ``later``: (result, its labels)."""
    (a, la), (b, lb) = _sum_out(a, la, later | set(lb)), _sum_out(b, lb, later | set(la))
    batch = [ch for ch in la if ch in lb and ch in later]
    summed = [ch for ch in la if ch in lb and ch not in later]
    free_a, free_b = [ch for ch in la if ch not in lb], [ch for ch in lb if ch not in la]
    sizes = {**_sizes(a, la), **_sizes(b, lb)}
    a = _grouped(a, la, [batch, free_a, summed], sizes)
    b = _grouped(b, lb, [batch, summed, free_b], sizes)
    labels = batch + free_a + free_b
    return tf.reshape(tf.matmul(a, b), _stacked([sizes[ch] for ch in labels])), labels


def _einsum_labels(equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """Per-operand label lists and the output's; ``...`` becomes upper-case labels aligned on the right."""
    lhs, _, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    n_ellipsis = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    spare = [ch for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if ch not in equation][:n_ellipsis]

    def expand(term: str, rank: int) -> list[str]:
        k = rank - len(term.replace("...", "")) if "..." in term else 0
        return list(term.replace("...", "".join(spare[n_ellipsis - k:])))

    inputs = [expand(t, r) for t, r in zip(terms, ranks)]
    if not _:  # implicit output: the labels seen once, in alphabetical order, after the ellipsis dims
        counts = [ch for term in inputs for ch in term]
        out = spare + sorted(ch for ch in set(counts) if counts.count(ch) == 1 and ch.islower())
    else:
        out = list(rhs.replace("...", "".join(spare)))
    for term in inputs:
        if len(set(term)) != len(term):
            raise ValueError(f"einsum {equation!r}: a label repeated within one operand (a diagonal)")
    return inputs, out


def _sizes(x, labels):
    shape = tf.shape(x)
    return {ch: (x.shape[i] if x.shape[i] is not None else shape[i]) for i, ch in enumerate(labels)}


def _sum_out(x, labels: list[str], keep: set):
    """Sum away the labels no other operand and not the output has."""
    gone = [i for i, ch in enumerate(labels) if ch not in keep]
    if gone:
        x = tf.reduce_sum(x, gone)
    return x, [ch for ch in labels if ch in keep]


def _grouped(x, labels: list[str], groups: list[list[str]], sizes: dict):
    """x transposed to the groups' label order and reshaped to one axis per group (size 1 when empty)."""
    order = [ch for g in groups for ch in g]
    if order != labels:
        x = tf.transpose(x, [labels.index(ch) for ch in order])
    return tf.reshape(x, _stacked([tf.reduce_prod(_stacked([sizes[ch] for ch in g])) for g in groups]))


def _stacked(sizes: list):
    """A shape vector from static ints and run-time sizes (int32; empty for a scalar)."""
    return tf.stack([tf.cast(n, tf.int32) for n in sizes]) if sizes else tf.constant([], tf.int32)


# ---------------------------------------------------------------- pixel/channel shuffles (reshape + transpose)
def _lead(x, trailing: int):
    """The run-time sizes of every axis but the last ``trailing`` ones (the batch may be dynamic)."""
    return tf.shape(x)[:x.shape.rank - trailing]


def _last3(x):
    """The sizes of the last three axes: static where TF knows them, else read at run time."""
    return [x.shape[a] if x.shape[a] is not None else tf.shape(x)[a] for a in range(x.shape.rank - 3, x.shape.rank)]


def _shape(lead, sizes):
    return tf.concat([lead, tf.stack([tf.cast(n, tf.int32) for n in sizes])], 0)


def pixel_shuffle(x, r: int, channels_last: bool = False):
    """torch.pixel_shuffle: (*, C*r*r, H, W) -> (*, C, H*r, W*r); channel c*r*r + i*r + j goes to (h*r+i, w*r+j).

    tf.nn.depth_to_space orders the channels (i, j, c) and tfjs lacks SpaceToDepth, so both
    directions are one reshape, one transpose and one reshape. ``channels_last``: x is (N, H, W, C*r*r).
    """
    x = tf.convert_to_tensor(x)
    if channels_last:
        h, w, c = _last3(x)
        y = tf.reshape(x, _shape(_lead(x, 3), [h, w, c // (r * r), r, r]))
        y = tf.transpose(y, [0, 1, 4, 2, 5, 3])
        return tf.reshape(y, _shape(_lead(x, 3), [h * r, w * r, c // (r * r)]))
    c, h, w = _last3(x)
    k = x.shape.rank - 3
    y = tf.reshape(x, _shape(_lead(x, 3), [c // (r * r), r, r, h, w]))
    y = tf.transpose(y, [*range(k), k, k + 3, k + 1, k + 4, k + 2])
    return tf.reshape(y, _shape(_lead(x, 3), [c // (r * r), h * r, w * r]))


def pixel_unshuffle(x, r: int, channels_last: bool = False):
    """torch.pixel_unshuffle: (*, C, H*r, W*r) -> (*, C*r*r, H, W), the inverse of ``pixel_shuffle``."""
    x = tf.convert_to_tensor(x)
    if channels_last:
        h, w, c = _last3(x)
        y = tf.reshape(x, _shape(_lead(x, 3), [h // r, r, w // r, r, c]))
        y = tf.transpose(y, [0, 1, 3, 5, 2, 4])
        return tf.reshape(y, _shape(_lead(x, 3), [h // r, w // r, c * r * r]))
    c, h, w = _last3(x)
    k = x.shape.rank - 3
    y = tf.reshape(x, _shape(_lead(x, 3), [c, h // r, r, w // r, r]))
    y = tf.transpose(y, [*range(k), k, k + 2, k + 4, k + 1, k + 3])
    return tf.reshape(y, _shape(_lead(x, 3), [c * r * r, h // r, w // r]))


def channel_shuffle(x, groups: int, axis: int):
    """torch.channel_shuffle on TF axis ``axis``: output channel j*groups + i is input i*(C/groups) + j.

    A permutation of one axis, so one gather with constant indices (any layout).
    """
    x = tf.convert_to_tensor(x)
    n = x.shape[axis]
    order = np.arange(n).reshape(groups, n // groups).T.reshape(-1)
    return tf.gather(x, tf.constant(order, tf.int32), axis=axis)


# ---------------------------------------------------------------- interpolation (F.interpolate / nn.Upsample)
_CUBIC_A = -0.75  # torch's bicubic convolution constant


def _source(out: int, n: int, scale, align_corners: bool, cubic: bool) -> np.ndarray:
    """torch's area_pixel_compute_source_index for every output position, in float32 as torch computes it."""
    dst = np.arange(out, dtype=np.float32)
    if align_corners:
        ratio = np.float32(n - 1) / np.float32(out - 1) if out > 1 else np.float32(0)
        return ratio * dst
    ratio = _ratio(out, n, scale)
    src = ratio * (dst + np.float32(0.5)) - np.float32(0.5)
    return src if cubic else np.maximum(src, np.float32(0))


def _ratio(out: int, n: int, scale) -> np.float32:
    """Input units per output unit: 1/scale_factor when torch was given one, else in/out (float32, as torch)."""
    return np.float32(1.0 / scale) if scale else np.float32(n) / np.float32(out)


def _nearest_taps(out: int, n: int, scale, exact: bool, shortcuts: bool = False):
    if shortcuts and out in (n, 2 * n):  # torch's 2-D nearest kernel: a copy or i >> 1, whatever the scale factor
        return (np.arange(out) // (out // n))[:, None], None
    ratio = _ratio(out, n, scale)
    dst = np.arange(out, dtype=np.float32) + (np.float32(0.5) if exact else np.float32(0))
    index = np.minimum(np.floor(dst * ratio).astype(np.int64), n - 1)
    return index[:, None], None


def _linear_taps(out: int, n: int, scale, align_corners: bool):
    if out == n:  # torch's linear kernels copy an axis whose size is kept, whatever the scale factor
        return np.arange(n)[:, None], np.ones((n, 1), np.float32)
    src = _source(out, n, scale, align_corners, cubic=False)
    i0 = src.astype(np.int64)
    lam = np.clip(src - i0.astype(np.float32), 0, 1)
    i1 = np.where(i0 < n - 1, i0 + 1, i0)
    return np.stack([i0, i1], 1), np.stack([1 - lam, lam], 1)


def _cubic_taps(out: int, n: int, scale, align_corners: bool):
    src = _source(out, n, scale, align_corners, cubic=True)
    base = np.floor(src)
    t = (src - base).astype(np.float64)
    a = _CUBIC_A

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], 1)
    index = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3), 0, n - 1)
    return index, weights


def resample_taps(mode: str, out: int, n: int, scale=None, align_corners: bool = False):
    """(index[out, taps], weights[out, taps] or None) of one axis: output i = sum_t w[i, t] * x[index[i, t]].

    ``nearest2d`` is torch's upsample_nearest2d, which special-cases out == n and out == 2n.
    """
    if mode in ("nearest", "nearest2d", "nearest-exact"):
        return _nearest_taps(out, n, scale, exact=mode == "nearest-exact", shortcuts=mode == "nearest2d")
    if mode == "linear":
        return _linear_taps(out, n, scale, align_corners)
    if mode == "cubic":
        return _cubic_taps(out, n, scale, align_corners)
    raise ValueError(f"unknown interpolation mode {mode!r}")


def resample(x, axes: dict, mode: str, align_corners: bool = False):
    """Interpolate TF axes one at a time: ``axes`` maps axis -> (output size, torch scale factor or None).

    Each axis is gathers with constant indices and a weighted sum with constant weights
    (torch's separable formula), so TF and tfjs run the same ops: no ResizeBicubic (missing
    in tfjs) and no resize-kernel coordinate conventions to match.
    """
    x = tf.convert_to_tensor(x)
    for axis, (out, scale) in sorted(axes.items()):
        index, weights = resample_taps(mode, int(out), int(x.shape[axis]), scale, align_corners)
        if weights is None:
            x = tf.gather(x, tf.constant(index[:, 0], tf.int32), axis=axis)
            continue
        shape = [-1 if a == axis else 1 for a in range(x.shape.rank)]
        parts = [tf.gather(x, tf.constant(index[:, t], tf.int32), axis=axis)
                 * tf.constant(weights[:, t].reshape(shape), x.dtype) for t in range(index.shape[1])]
        x = tf.add_n(parts)
    return x
