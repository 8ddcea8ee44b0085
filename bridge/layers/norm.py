"""BatchNorm (over the last TF axis: channels-last) and LayerNorm (over the last
``len(normalized_shape)`` axes), and the functions layer_norm / rms_norm for the
functional forms. All are written as plain arithmetic so no fused op reaches tfjs."""

from __future__ import annotations

import tensorflow as tf

from .base import Layer


class BatchNorm(Layer):
    def __init__(self, *, path, num_features: int, eps: float, affine: bool = True, running_stats: bool = True):
        super().__init__(path=path)
        self.eps, self.running_stats = eps, running_stats
        self.gamma = self.variable("gamma", [num_features]) if affine else None
        self.beta = self.variable("beta", [num_features]) if affine else None
        self.moving_mean = self.variable("moving_mean", [num_features]) if running_stats else None
        self.moving_variance = self.variable("moving_variance", [num_features]) if running_stats else None

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
