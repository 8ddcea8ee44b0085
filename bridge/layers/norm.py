"""BatchNorm (over the last TF axis: channels-last), InstanceNorm, GroupNorm,
LocalResponseNorm and CrossMapLRN2d (channels-last), LayerNorm (over the last
``len(normalized_shape)`` axes), and the functions layer_norm / rms_norm for the
functional forms. All are written as plain arithmetic so no fused op reaches tfjs."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .base import Layer


class BatchNorm(Layer):
    def __init__(self, *, path, num_features: int, eps: float, affine: bool = True, running_stats: bool = True):
        super().__init__(path=path)
        self.eps, self.running_stats = eps, running_stats
        self.gamma = self.variable("gamma", [num_features]) if affine else None
        self.beta = self.variable("beta", [num_features]) if affine else None
        self.moving_mean = self.variable("moving_mean", [num_features], trainable=False) if running_stats else None
        self.moving_variance = self.variable("moving_variance", [num_features], trainable=False) if running_stats else None

    def call(self, x):
        if self.running_stats:
            mean, var = self.moving_mean, self.moving_variance
        else:  # torch uses batch statistics in eval when running stats are off
            axes = list(range(x.shape.rank - 1))
            mean = tf.reduce_mean(x, axes)
            var = tf.reduce_mean(tf.square(x - mean), axes)
        scale = tf.math.rsqrt(var + self.eps)
        if self.gamma is not None:
            scale = scale * self.gamma
        shift = -mean * scale
        if self.beta is not None:
            shift = shift + self.beta
        return x * scale + shift


def layer_norm(x, ndim: int, eps: float, gamma=None, beta=None):
    """Normalize over the last ``ndim`` axes: (x - mean) / sqrt(var + eps), then scale and shift."""
    x = tf.convert_to_tensor(x)
    axes = list(range(x.shape.rank - ndim, x.shape.rank))
    mean = tf.reduce_mean(x, axes, keepdims=True)
    centered = x - mean
    var = tf.reduce_mean(tf.square(centered), axes, keepdims=True)
    y = centered * tf.math.rsqrt(var + eps)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y


def rms_norm(x, ndim: int, eps: float, gamma=None):
    """x / sqrt(mean(x^2) + eps) over the last ``ndim`` axes, then scaled (torch.nn.RMSNorm)."""
    x = tf.convert_to_tensor(x)
    axes = list(range(x.shape.rank - ndim, x.shape.rank))
    y = x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axes, keepdims=True) + eps)
    return y * gamma if gamma is not None else y


class RMSNorm(Layer):
    """torch.nn.RMSNorm over the trailing ``normalized_shape`` axes."""

    def __init__(self, *, path, normalized_shape: tuple, eps: float, elementwise_affine: bool = True):
        super().__init__(path=path)
        self.eps, self.ndim = eps, len(normalized_shape)
        self.gamma = self.variable("gamma", list(normalized_shape)) if elementwise_affine else None

    def call(self, x):
        return rms_norm(x, self.ndim, self.eps, self.gamma)


class LayerNorm(Layer):
    def __init__(self, *, path, normalized_shape: tuple, eps: float, elementwise_affine: bool = True, bias: bool = True):
        super().__init__(path=path)
        self.eps, self.ndim = eps, len(normalized_shape)
        self.gamma = self.variable("gamma", list(normalized_shape)) if elementwise_affine else None
        self.beta = self.variable("beta", list(normalized_shape)) if elementwise_affine and bias else None

    def call(self, x):
        return layer_norm(x, self.ndim, self.eps, self.gamma, self.beta)


def _affine(y, gamma, beta):
    if gamma is not None:
        y = y * gamma
    return y + beta if beta is not None else y


class InstanceNorm(Layer):
    """torch.nn.InstanceNorm1d/2d/3d on channels-last input (batched N...C or unbatched ...C).

    Without running stats (torch's default) each sample and channel is normalized over its
    spatial axes; with track_running_stats=True eval mode uses the running stats like BatchNorm.
    """

    def __init__(self, *, path, num_features: int, eps: float, affine: bool = False, running_stats: bool = False,
                 batched: bool = True):
        super().__init__(path=path)
        self.eps, self.running_stats, self.batched = eps, running_stats, batched
        self.gamma = self.variable("gamma", [num_features]) if affine else None
        self.beta = self.variable("beta", [num_features]) if affine else None
        self.moving_mean = self.variable("moving_mean", [num_features], trainable=False) if running_stats else None
        self.moving_variance = self.variable("moving_variance", [num_features], trainable=False) if running_stats else None

    def call(self, x):
        x = tf.convert_to_tensor(x)
        if self.running_stats:
            mean, var = self.moving_mean, self.moving_variance
        else:
            axes = list(range(1 if self.batched else 0, x.shape.rank - 1))
            mean = tf.reduce_mean(x, axes, keepdims=True)
            var = tf.reduce_mean(tf.square(x - mean), axes, keepdims=True)
        return _affine((x - mean) * tf.math.rsqrt(var + self.eps), self.gamma, self.beta)


def group_norm(x, groups: int, eps: float, gamma=None, beta=None):
    """torch's group norm on channels-last input (N, *, C): statistics per sample over each group of channels.

    Per-channel means over the spatial axes are averaged within each group with a constant
    (C, G) 0/1 matrix, so no reshape of the (dynamic-batch) feature map is needed.
    """
    x = tf.convert_to_tensor(x)
    if x.shape.rank == 2:  # (N, C): as (N, 1, C), else tfjs fuses matmul + subtract into a wasm-failing op
        return tf.squeeze(group_norm(tf.expand_dims(x, 1), groups, eps, gamma, beta), 1)
    channels, axes = x.shape[-1], list(range(1, x.shape.rank - 1))
    member = np.zeros((channels, groups), np.float32)
    member[np.arange(channels), np.arange(channels) // (channels // groups)] = 1.0
    to_group, to_channel = tf.constant(member / (channels // groups)), tf.constant(member.T)

    def group_mean(v):
        spread = tf.matmul(tf.matmul(tf.reduce_mean(v, axes), to_group), to_channel)  # (N, C): its group's mean
        return tf.reshape(spread, [-1, *[1] * len(axes), channels])

    centered = x - group_mean(x)
    return _affine(centered * tf.math.rsqrt(group_mean(tf.square(centered)) + eps), gamma, beta)


class GroupNorm(Layer):
    """torch.nn.GroupNorm on channels-last input (N, *, C); see group_norm."""

    def __init__(self, *, path, num_groups: int, num_channels: int, eps: float, affine: bool = True):
        super().__init__(path=path)
        self.groups, self.eps = num_groups, eps
        self.gamma = self.variable("gamma", [num_channels]) if affine else None
        self.beta = self.variable("beta", [num_channels]) if affine else None

    def call(self, x):
        return group_norm(x, self.groups, self.eps, self.gamma, self.beta)


class LocalResponseNorm(Layer):
    """torch.nn.LocalResponseNorm over the channel axis (last in TF):
    x / (k + alpha/n * sum of x^2 over a window of n channels, zero-padded n//2 before, (n-1)//2 after)^beta."""

    def __init__(self, *, path, size: int, alpha: float, beta: float, k: float):
        super().__init__(path=path)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, x):
        x = tf.convert_to_tensor(x)
        channels = x.shape[-1]
        rank = x.shape.rank
        pads = [[0, 0]] * (rank - 1) + [[self.size // 2, (self.size - 1) // 2]]
        sq = tf.pad(tf.square(x), pads)
        total = tf.add_n([sq[..., i:i + channels] for i in range(self.size)])
        return x * tf.pow(self.k + (self.alpha / self.size) * total, -self.beta)


def cross_map_window(size: int, channels: int) -> np.ndarray:
    """(C, C) 0/1 matrix: column c marks the channels whose squares torch's legacy CrossMapLRN2d sums for c.

    Its running-sum loop covers [c - p + 1, c + p - 1] with p = (size-1)//2 + 1, clipped to the
    channels, and never subtracts channel 0 (it removes only when c > p): channel 0 is in every window.
    """
    pre = int((size - 1) / 2 + 1)
    window = np.zeros((channels, channels), np.float32)
    for c in range(channels):
        low = 0 if c <= pre else c - pre + 1
        window[low:min(channels - 1, c + pre - 1) + 1, c] = 1.0
        window[0, c] = 1.0
    return window


class CrossMapLRN2d(Layer):
    """torch.nn.CrossMapLRN2d on NHWC: x * (k + alpha/size * (x^2 summed over each channel's window))^-beta."""

    def __init__(self, *, path, size: int, alpha: float, beta: float, k: float, channels: int):
        super().__init__(path=path)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.window = tf.constant(cross_map_window(size, channels))

    def call(self, x):
        x = tf.convert_to_tensor(x)
        total = tf.tensordot(tf.square(x), self.window, 1)
        return x * tf.pow(self.k + (self.alpha / self.size) * total, -self.beta)


def channel_norm(x, axes: int, eps: float, gamma=None, beta=None, mean=None, var=None):
    """F.batch_norm / F.instance_norm on channels-last x: with ``mean``/``var`` (running stats) use them,
    else the statistics over the first ``axes`` axes (all but channels: batch norm; the spatial ones: instance)."""
    x = tf.convert_to_tensor(x)
    if mean is None:
        over = list(range(x.shape.rank - 1 - axes, x.shape.rank - 1))
        mean = tf.reduce_mean(x, over, keepdims=True)
        var = tf.reduce_mean(tf.square(x - mean), over, keepdims=True)
    return _affine((x - mean) * tf.math.rsqrt(var + eps), gamma, beta)
