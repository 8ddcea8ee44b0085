"""Flatten as a module: the mapping decides whether the stored order can be kept
(folded into a following Linear) or must be brought back to torch's order first."""

from __future__ import annotations

import tensorflow as tf

from .base import Layer


class Flatten(Layer):
    """Reshape the TF tensor to ``(batch, *tail)``; the batch dim stays dynamic."""

    def __init__(self, *, path, tail):
        super().__init__(path=path)
        self.tail = list(tail)

    def call(self, x):
        return tf.reshape(x, [-1, *self.tail])
