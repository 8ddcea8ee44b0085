"""Elementwise and softmax layers and functions. Each works in any layout except
Softmax/LogSoftmax, GLU and a per-channel PReLU, whose ``axis`` is the TF axis
chosen by the mapping. Helpers avoid ops tfjs lacks (Erfc, Softsign)."""

from __future__ import annotations

import math

import tensorflow as tf

from .base import Layer


def gelu(x, approximate: str = "none"):
    """torch's GELU. Written out because TF's exact ``tf.nn.gelu`` emits Erfc, which tfjs rejects."""
    if approximate == "tanh":
        return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))
    return 0.5 * x * (1.0 + tf.math.erf(x * (1.0 / math.sqrt(2.0))))


def silu(x):
    return x * tf.sigmoid(x)


def softplus(x, beta: float = 1.0, threshold: float = 20.0):
    """torch's softplus: log(1 + exp(beta x)) / beta, and x itself where beta x > threshold."""
    scaled = beta * x
    soft = tf.math.log1p(tf.exp(tf.minimum(scaled, threshold))) / beta  # the min keeps exp finite
    return tf.where(scaled > threshold, x, soft)


def mish(x):
    return x * tf.tanh(softplus(x))


def hardsigmoid(x):
    return tf.clip_by_value(x / 6.0 + 0.5, 0.0, 1.0)


def hardswish(x):
    return x * hardsigmoid(x)


def elu(x, alpha: float = 1.0, scale: float = 1.0, input_scale: float = 1.0):
    """torch's elu: scale*x above 0, else scale*alpha*(exp(input_scale*x) - 1); also SELU and CELU."""
    negative = scale * alpha * (tf.exp(input_scale * tf.minimum(x, 0.0)) - 1.0)  # the min keeps exp finite
    return tf.where(x > 0, scale * x, negative)


def celu(x, alpha: float = 1.0):
    return elu(x, alpha, 1.0, 1.0 / alpha)


def glu(x, axis: int):
    """First half of ``axis`` gated by the sigmoid of the second half."""
    a, b = tf.split(x, 2, axis=axis)
    return a * tf.sigmoid(b)


def softshrink(x, lambd: float = 0.5):
    """x - lambd above lambd, x + lambd below -lambd, 0 between: x minus x clipped to [-lambd, lambd]."""
    return x - tf.clip_by_value(x, -lambd, lambd)


def hardshrink(x, lambd: float = 0.5):
    return tf.where(tf.abs(x) > lambd, x, tf.zeros_like(x))


def threshold(x, threshold: float, value: float):
    """x where x > threshold, else ``value``."""
    return tf.where(x > threshold, x, tf.zeros_like(x) + value)


def log_sigmoid(x):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), stable for large |x|."""
    return tf.minimum(x, 0.0) - tf.math.log1p(tf.exp(-tf.abs(x)))


def prelu(x, weight, axis):
    """max(x, 0) + weight * min(x, 0); ``weight`` is one value, or per channel along TF ``axis``."""
    if axis is None:
        w = tf.reshape(weight, [])
    else:
        w = tf.reshape(weight, [-1 if a == axis else 1 for a in range(x.shape.rank)])
    return tf.maximum(x, 0.0) + w * tf.minimum(x, 0.0)


def softmax(x, axis: int, log: bool = False):
    """tf.nn.(log_)softmax; a 0-d tensor (torch allows dim 0 or -1) is treated as one element."""
    fn = tf.nn.log_softmax if log else tf.nn.softmax
    if x.shape.rank == 0:
        return tf.reshape(fn(tf.reshape(x, [1]), axis=0), [])
    return fn(x, axis=axis)


class Identity(Layer):
    def call(self, x):
        return x


class ReLU(Layer):
    def call(self, x):
        return tf.nn.relu(x)


class LeakyReLU(Layer):
    def __init__(self, *, path, negative_slope: float):
        super().__init__(path=path)
        self.negative_slope = negative_slope

    def call(self, x):
        return tf.nn.leaky_relu(x, alpha=self.negative_slope)


class GELU(Layer):
    def __init__(self, *, path, approximate: str = "none"):
        super().__init__(path=path)
        self.approximate = approximate

    def call(self, x):
        return gelu(x, self.approximate)


class SiLU(Layer):
    def call(self, x):
        return silu(x)


class Sigmoid(Layer):
    def call(self, x):
        return tf.sigmoid(x)


class Tanh(Layer):
    def call(self, x):
        return tf.tanh(x)


class Softmax(Layer):
    def __init__(self, *, path, axis: int):
        super().__init__(path=path)
        self.axis = axis

    def call(self, x):
        return softmax(x, self.axis)


class LogSoftmax(Softmax):
    def call(self, x):
        return softmax(x, self.axis, log=True)


class PReLU(Layer):
    """torch's PReLU: one learned slope, or one per channel (torch dim 1) at TF ``axis``."""

    def __init__(self, *, path, num_parameters: int, axis: int | None):
        super().__init__(path=path)
        self.axis = axis
        self.weight = self.variable("weight", [num_parameters])

    def call(self, x):
        return prelu(x, self.weight, self.axis)
