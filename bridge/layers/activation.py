"""Stateless elementwise and softmax layers. Each works in any layout except
Softmax/LogSoftmax, whose ``axis`` is the TF axis chosen by the mapping."""

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
        return tf.nn.softmax(x, axis=self.axis)


class LogSoftmax(Softmax):
    def call(self, x):
        return tf.nn.log_softmax(x, axis=self.axis)
