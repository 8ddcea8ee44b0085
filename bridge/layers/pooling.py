"""Max, average, adaptive and power-average (LP) pooling over 1, 2 or 3 spatial
axes of channels-last tensors (NLC, NHWC, NDHWC), with torch's padding,
dilation, ceil_mode, count_include_pad and divisor rules.

Every function takes the per-axis sizes as tuples; their length is the number
of spatial axes, so a tensor of rank ``len(kernel_size) + 1`` is torch's
unbatched form (no batch axis: a batch of one is added and removed again).
Shapes are static here: the spatial size is known when the graph is traced.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import tensorflow as tf

from .base import Layer
from .padding import spatial_pad

_LOWEST = float(np.finfo(np.float32).min)  # max pooling's padding: never wins


def pool_output_size(n: int, k: int, s: int, p: int, ceil_mode: bool, d: int = 1) -> int:
    """torch's pooling output length along one axis."""
    span = n + 2 * p - (d * (k - 1) + 1)
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:  # the last window must start inside input or left pad
        out -= 1
    return out


def _batched(fn):
    """Run ``fn(x, sizes, ...)`` on a batch of one when x is unbatched (rank len(sizes) + 1)."""
    def run(x, sizes, *args, **kwargs):
        x = tf.convert_to_tensor(x)
        if x.shape.rank == len(sizes) + 1:
            y = fn(x[None], sizes, *args, **kwargs)
            return tuple(tf.squeeze(t, 0) for t in y) if isinstance(y, tuple) else tf.squeeze(y, 0)
        return fn(x, sizes, *args, **kwargs)
    run.__name__, run.__doc__ = fn.__name__, fn.__doc__
    return run


def _pads(x, kernel, stride, padding, ceil_mode, dilation=None):
    """(before, after) per spatial axis, with extra right padding for ceil_mode windows."""
    dilation = dilation or (1,) * len(kernel)
    if not ceil_mode:  # floor mode never reads past the padding: no size needed, so any size runs
        return [(p, p) for p in padding]
    pads = []
    for a, (k, s, p, d) in enumerate(zip(kernel, stride, padding, dilation)):
        n = x.shape[1 + a]
        out = pool_output_size(n, k, s, p, ceil_mode, d)
        extra = max(0, (out - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
        pads.append((p, p + extra))
    return pads


@_batched
def max_pool(x, kernel_size, stride, padding, ceil_mode=False, dilation=None):
    """torch max pooling (any dilation) on a channels-last tensor."""
    pads = _pads(x, kernel_size, stride, padding, ceil_mode, dilation)
    x = spatial_pad(x, pads, "constant", value=_LOWEST)
    return _max_valid(x, kernel_size, stride, dilation or (1,) * len(kernel_size))


def _max_valid(x, kernel, stride, dilation):
    """Unpadded max pooling. tfjs wasm's MaxPool3D gives wrong values (seen with padding, ceil_mode and odd
    sizes), so 3-D windows take the depth axis by slices and pool H, W per depth slice with 2-D MaxPool."""
    if len(kernel) == 3:
        x = _max_taps(x, 1, kernel[0], stride[0], dilation[0])
        depth = x.shape[1]
        y = _max_valid(tf.reshape(x, [-1, *_dims(x)[2:]]), kernel[1:], stride[1:], dilation[1:])
        return tf.reshape(y, [-1, depth, *_dims(y)[1:]])
    if all(d == 1 for d in dilation):
        return tf.nn.max_pool(x, kernel, stride, "VALID")
    # no TF pooling op has both stride and dilation; the max over a box is separable
    for a, (k, s, d) in enumerate(zip(kernel, stride, dilation)):
        x = _max_taps(x, 1 + a, k, s, d)
    return x


def _dims(x) -> list:
    """Static sizes where known, dynamic ones (an unbatched input's channels in a SavedModel) as tensors."""
    return [n if n is not None else tf.shape(x)[i] for i, n in enumerate(x.shape)]


def _max_taps(x, axis, k, s, d):
    """Max pooling along one axis as the elementwise max of k strided slices (one per kernel tap)."""
    if (k, s) == (1, 1):
        return x
    out = (x.shape[axis] - d * (k - 1) - 1) // s + 1
    index = [slice(None)] * x.shape.rank
    y = None
    for j in range(k):
        index[axis] = slice(j * d, j * d + (out - 1) * s + 1, s)
        tap = x[tuple(index)]
        y = tap if y is None else tf.maximum(y, tap)
    return y


@_batched
def max_pool_with_indices(x, kernel_size, stride, padding, ceil_mode=False, dilation=None):
    """torch max pooling with return_indices=True: (values, int64 flat index of each max in its input plane)."""
    dilation = dilation or (1,) * len(kernel_size)
    pads = _pads(x, kernel_size, stride, padding, ceil_mode, dilation)
    sizes = x.shape[1:-1]
    x = spatial_pad(x, pads, "constant", value=_LOWEST)
    taps = []
    for a, (k, s, d) in enumerate(zip(kernel_size, stride, dilation)):
        out = (x.shape[1 + a] - d * (k - 1) - 1) // s + 1
        taps.append([np.arange(out) * s + j * d for j in range(k)])
    return _argmax_pool(x, taps, [b for b, _ in pads], sizes)


@_batched
def adaptive_max_pool_with_indices(x, output_size):
    """torch adaptive max pooling with return_indices=True; a bin shorter than the longest repeats its
    last element, which changes neither the max nor (first max wins) its index."""
    taps = []
    for a, out in enumerate(output_size):
        n = x.shape[1 + a]
        bins = adaptive_bins(n, n if out is None else out)
        width = max(hi - lo for lo, hi in bins)
        taps.append([np.array([min(lo + j, hi - 1) for lo, hi in bins]) for j in range(width)])
    return _argmax_pool(x, taps, [0] * len(output_size), x.shape[1:-1])


def _argmax_pool(x, taps, before, sizes):
    """Max and first argmax over windows. ``taps[a][j]``: for each output position along spatial axis a,
    the (padded) input position of kernel tap j. Taps run in torch's scan order (last axis fastest) and a
    later tap wins only if strictly greater, as in torch. Indices count in the unpadded input plane."""
    best = index = None
    for combo in itertools.product(*[range(len(t)) for t in taps]):
        v, flat = x, np.zeros(())
        for a, j in enumerate(combo):
            v = tf.gather(v, taps[a][j].astype(np.int32), axis=1 + a)
            flat = np.add.outer(flat * sizes[a], taps[a][j] - before[a])
        here = tf.constant(flat[None, ..., None].astype(np.int64))
        if best is None:
            best, index = v, tf.broadcast_to(here, tf.shape(v, out_type=tf.int64))
            continue
        wins = v > best
        best, index = tf.where(wins, v, best), tf.where(wins, here, index)
    return best, index


@_batched
def avg_pool(x, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True, divisor_override=None):
    """torch average pooling, with its divisor rules at padded and ceil_mode edges."""
    pads = _pads(x, kernel_size, stride, padding, ceil_mode)
    y = tf.nn.avg_pool(spatial_pad(x, pads), kernel_size, stride, "VALID")  # divides by the kernel volume
    volume = float(np.prod(kernel_size))
    if divisor_override:
        return y * (volume / divisor_override)
    # torch divides by the window clipped to the (left+right) padded input, or to the input alone
    counts = [_window_counts(x.shape[1 + a], kernel_size[a], stride[a], pads[a], padding[a], count_include_pad)
              for a in range(len(kernel_size))]
    divisor = counts[0]
    for c in counts[1:]:
        divisor = np.multiply.outer(divisor, c)
    if np.all(divisor == volume):
        return y
    return y * tf.constant((volume / divisor)[None, ..., None].astype(np.float32))


def _window_counts(n, k, s, pads, padding, count_include_pad) -> np.ndarray:
    """Per window along one axis: how many elements torch divides by.

    With count_include_pad the user's padding counts but ceil_mode's extra right
    padding does not; without it only real input elements count.
    """
    before, after = pads
    if count_include_pad:
        real = np.concatenate([np.ones(before), np.ones(n), np.ones(padding), np.zeros(after - padding)])
    else:
        real = np.concatenate([np.zeros(before), np.ones(n), np.zeros(after)])
    out = (len(real) - k) // s + 1
    return np.array([real[i * s:i * s + k].sum() for i in range(out)])


@_batched
def lp_pool(x, kernel_size, stride, norm_type, ceil_mode=False):
    """torch LPPool: (sum of x**p over each window) ** (1/p); p = +-inf is the max/min of |x|."""
    zero, norm_type = (0,) * len(kernel_size), float(norm_type)  # "inf" arrives as a string
    if norm_type == float("inf"):
        return max_pool(tf.abs(x), kernel_size, stride, zero, ceil_mode)
    if norm_type == -float("inf"):
        return -max_pool(-tf.abs(x), kernel_size, stride, zero, ceil_mode)
    # torch scales the *average* by the full kernel volume, also at clipped ceil_mode windows
    y = avg_pool(tf.pow(x, float(norm_type)), kernel_size, stride, zero, ceil_mode) * float(np.prod(kernel_size))
    return tf.pow(y, 1.0 / norm_type)


def adaptive_bins(n: int, out: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling bins: [floor(i*n/out), ceil((i+1)*n/out))."""
    return [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]


def _adaptive(x, output_size, reduce, pool):
    """Adaptive pooling: uneven axes bin by bin (bins may overlap and differ in size), then the
    evenly divisible rest as one pooling op. Both reductions are separable over the axes."""
    if all(o == 1 for o in output_size):  # global pooling: any spatial size, so the export keeps it free
        return reduce(x, list(range(1, 1 + len(output_size))), keepdims=True)
    sizes = [x.shape[1 + a] if o is None else o for a, o in enumerate(output_size)]
    for a, out in enumerate(sizes):
        axis, n = 1 + a, x.shape[1 + a]
        if n % out == 0:  # equal bins: handled by one pooling op below
            continue
        slices = [reduce(tf.gather(x, list(range(lo, hi)), axis=axis), axis, keepdims=True)
                  for lo, hi in adaptive_bins(n, out)]
        x = tf.concat(slices, axis)
    kernel = [x.shape[1 + a] // out for a, out in enumerate(sizes)]
    if all(k == 1 for k in kernel):
        return x
    if all(out == 1 for out in sizes):
        return reduce(x, list(range(1, 1 + len(sizes))), keepdims=True)
    return pool(x, kernel, kernel, "VALID")


@_batched
def adaptive_avg_pool(x, output_size):
    """torch adaptive average pooling (None keeps an axis' size)."""
    return _adaptive(x, output_size, tf.reduce_mean, tf.nn.avg_pool)


@_batched
def adaptive_max_pool(x, output_size):
    """torch adaptive max pooling (values only)."""
    return _adaptive(x, output_size, tf.reduce_max, lambda v, k, s, _: _max_valid(v, k, s, (1,) * len(k)))


def max_unpool(x, indices, kernel_size, stride, padding, output_size=None):
    """torch MaxUnpool: the output size is torch's default unless ``output_size`` (last entries) is given."""
    nd = len(kernel_size)
    if output_size:
        sizes = [int(v) for v in list(output_size)[-nd:]]
    else:
        spatial = x.shape[-1 - nd:-1]
        sizes = [(n - 1) * s - 2 * p + k for n, k, s, p in zip(spatial, kernel_size, stride, padding)]
    return unpool_to(x, indices, sizes)


def unpool_to(x, indices, sizes):
    """Zeros of spatial size ``sizes`` with each value put back at its flat index in the output plane.

    One ScatterNd over the flattened (N, plane, C) output. Overlapping pooling windows can
    repeat an index with the same value; ScatterNd sums repeats, so the sum is divided by
    the repeat count (torch writes the value once)."""
    x, indices = tf.convert_to_tensor(x), tf.convert_to_tensor(indices)
    if x.shape.rank == len(sizes) + 1:  # unbatched
        return tf.squeeze(unpool_to(x[None], indices[None], sizes), 0)
    sizes = [_static_or_tensor(v) for v in sizes]  # F.max_unpool computes them from shapes at run time
    plane = sizes[0]
    for v in sizes[1:]:
        plane = plane * v
    shape = tf.shape(x)
    batch, channels = shape[0], shape[-1]
    # (-1, plane_in, C), not (batch, -1, C): tfjs cannot infer a -1 next to an explicit batch of 0
    inner = indices.shape[1:-1]
    plane_in = math.prod(inner.as_list()) if inner.is_fully_defined() else tf.reduce_prod(tf.shape(indices)[1:-1])
    where = tf.cast(tf.reshape(indices, [-1, plane_in, channels]), tf.int32)
    flat = (tf.range(batch)[:, None, None] * plane + where) * channels + tf.range(channels)[None, None, :]
    flat = tf.reshape(flat, [-1, 1])
    total = tf.reshape(batch * plane * channels, [1])
    values = tf.reshape(x, [-1])
    summed = tf.scatter_nd(flat, values, total)
    repeats = tf.scatter_nd(flat, tf.ones_like(values), total)
    return tf.reshape(summed / tf.maximum(repeats, 1.0), [-1, *sizes, channels])


def _static_or_tensor(v):
    """A size as a Python int when it is known while tracing, else an int32 scalar tensor."""
    known = tf.get_static_value(v)
    return int(known) if known is not None else tf.cast(v, tf.int32)


class MaxUnpool(Layer):
    def __init__(self, *, path, kernel_size, stride, padding):
        super().__init__(path=path)
        self.args = (tuple(kernel_size), tuple(stride), tuple(padding))

    def call(self, x, indices, output_size=None):
        return max_unpool(x, indices, *self.args, output_size)


# the 2-D names generated code used before the functions became rank-generic
max_pool2d, avg_pool2d, adaptive_avg_pool2d = max_pool, avg_pool, adaptive_avg_pool


class MaxPool(Layer):
    def __init__(self, *, path, kernel_size, stride, padding, ceil_mode=False, dilation=None, return_indices=False):
        super().__init__(path=path)
        self.args = (tuple(kernel_size), tuple(stride), tuple(padding), ceil_mode,
                     tuple(dilation) if dilation else None)
        self.pool = max_pool_with_indices if return_indices else max_pool

    def call(self, x):
        return self.pool(x, *self.args)


class AvgPool(Layer):
    def __init__(self, *, path, kernel_size, stride, padding, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__(path=path)
        self.args = (tuple(kernel_size), tuple(stride), tuple(padding), ceil_mode, count_include_pad,
                     divisor_override)

    def call(self, x):
        return avg_pool(x, *self.args)


class LPPool(Layer):
    def __init__(self, *, path, kernel_size, stride, norm_type, ceil_mode=False):
        super().__init__(path=path)
        self.args = (tuple(kernel_size), tuple(stride), norm_type, ceil_mode)

    def call(self, x):
        return lp_pool(x, *self.args)


class AdaptiveAvgPool(Layer):
    def __init__(self, *, path, output_size):
        super().__init__(path=path)
        self.output_size = tuple(output_size)

    def call(self, x):
        return adaptive_avg_pool(x, self.output_size)


class AdaptiveMaxPool(Layer):
    def __init__(self, *, path, output_size, return_indices=False):
        super().__init__(path=path)
        self.output_size = tuple(output_size)
        self.pool = adaptive_max_pool_with_indices if return_indices else adaptive_max_pool

    def call(self, x):
        return self.pool(x, self.output_size)


# one rank-generic class per kind; the torch names keep generated code readable
MaxPool1d = MaxPool2d = MaxPool3d = MaxPool
AvgPool1d = AvgPool2d = AvgPool3d = AvgPool
LPPool1d = LPPool2d = LPPool3d = LPPool
AdaptiveAvgPool1d = AdaptiveAvgPool2d = AdaptiveAvgPool3d = AdaptiveAvgPool
AdaptiveMaxPool1d = AdaptiveMaxPool2d = AdaptiveMaxPool3d = AdaptiveMaxPool
MaxUnpool1d = MaxUnpool2d = MaxUnpool3d = MaxUnpool

__all__ = [
    "pool_output_size", "adaptive_bins", "max_pool", "avg_pool", "lp_pool", "adaptive_avg_pool", "adaptive_max_pool",
    "max_pool_with_indices", "adaptive_max_pool_with_indices", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d",
    "MaxPool", "AvgPool", "LPPool", "AdaptiveAvgPool", "AdaptiveMaxPool",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "LPPool1d", "LPPool2d", "LPPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "max_unpool", "unpool_to", "MaxUnpool", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d",
]
