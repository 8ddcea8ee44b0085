"""MaxPool2d, AvgPool2d and AdaptiveAvgPool2d on NHWC tensors with torch's
padding, ceil_mode and count_include_pad rules. Shapes are static here: the
spatial size is known when the graph is traced."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .base import Layer
from .padding import spatial_pad


def pool_output_size(n: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """torch's pooling output length (dilation 1)."""
    span = n + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:  # the last window must start inside input or left pad
        out -= 1
    return out


def _pads(x, kernel, stride, padding, ceil_mode):
    """(before, after) per spatial axis, with extra right padding for ceil_mode windows."""
    pads = []
    for k in range(2):
        n = x.shape[1 + k]
        out = pool_output_size(n, kernel[k], stride[k], padding[k], ceil_mode)
        extra = max(0, (out - 1) * stride[k] + kernel[k] - (n + 2 * padding[k]))
        pads.append((padding[k], padding[k] + extra))
    return pads


def max_pool2d(x, kernel_size, stride, padding=(0, 0), ceil_mode=False):
    """torch max pooling on NHWC (padding never wins: it is the float32 minimum)."""
    pads = _pads(x, kernel_size, stride, padding, ceil_mode)
    x = spatial_pad(x, pads, "constant", value=float(np.finfo(np.float32).min))
    return tf.nn.max_pool2d(x, kernel_size, stride, "VALID")


def avg_pool2d(x, kernel_size, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """torch average pooling on NHWC, with its divisor rules at padded and ceil_mode edges."""
    pads = _pads(x, kernel_size, stride, padding, ceil_mode)
    y = tf.nn.avg_pool2d(spatial_pad(x, pads), kernel_size, stride, "VALID")  # divides by kh*kw
    area = kernel_size[0] * kernel_size[1]
    if divisor_override:
        return y * (area / divisor_override)
    # torch divides by the window clipped to the (left+right) padded input, or to the input alone
    counts = [_window_counts(x.shape[1 + k], kernel_size[k], stride[k], pads[k], padding[k], count_include_pad)
              for k in range(2)]
    divisor = np.outer(counts[0], counts[1]).astype(np.float32)
    if np.all(divisor == area):
        return y
    return y * tf.constant((area / divisor)[None, :, :, None].astype(np.float32))


class MaxPool2d(Layer):
    def __init__(self, *, path, kernel_size, stride, padding=(0, 0), ceil_mode=False):
        super().__init__(path=path)
        self.args = (tuple(kernel_size), tuple(stride), tuple(padding), ceil_mode)

    def call(self, x):
        return max_pool2d(x, *self.args)


class AvgPool2d(Layer):
    def __init__(self, *, path, kernel_size, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__(path=path)
        self.args = (tuple(kernel_size), tuple(stride), tuple(padding), ceil_mode, count_include_pad,
                     divisor_override)

    def call(self, x):
        return avg_pool2d(x, *self.args)


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


def adaptive_bins(n: int, out: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling bins: [floor(i*n/out), ceil((i+1)*n/out))."""
    return [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]


def adaptive_avg_pool2d(x, output_size):
    """torch adaptive average pooling on NHWC: bins may overlap and differ in size."""
    for k, out in enumerate(output_size):
        axis, n = 1 + k, x.shape[1 + k]
        out = n if out is None else out
        if n % out == 0:  # equal bins: handled by one pooling op below
            continue
        slices = [tf.reduce_mean(tf.gather(x, list(range(a, b)), axis=axis), axis, keepdims=True)
                  for a, b in adaptive_bins(n, out)]
        x = tf.concat(slices, axis)
    oh, ow = (x.shape[1 + k] if o is None else o for k, o in enumerate(output_size))
    kh, kw = x.shape[1] // oh, x.shape[2] // ow
    if (kh, kw) == (1, 1):
        return x
    if (oh, ow) == (1, 1):
        return tf.reduce_mean(x, [1, 2], keepdims=True)
    return tf.nn.avg_pool2d(x, (kh, kw), (kh, kw), "VALID")


class AdaptiveAvgPool2d(Layer):
    def __init__(self, *, path, output_size):
        super().__init__(path=path)
        self.output_size = tuple(output_size)

    def call(self, x):
        return adaptive_avg_pool2d(x, self.output_size)
