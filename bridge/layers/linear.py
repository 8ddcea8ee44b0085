"""Linear and Embedding. Linear acts on the last TF axis, which the mapping
guarantees is torch's last dim (or a folded flatten)."""

from __future__ import annotations

import tensorflow as tf

from .base import Layer


class Linear(Layer):
    def __init__(self, *, path, in_features: int, out_features: int, bias: bool = True):
        super().__init__(path=path)
        self.in_features, self.out_features = in_features, out_features
        self.kernel = self.variable("kernel", [in_features, out_features])
        self.bias = self.variable("bias", [out_features]) if bias else None

    def call(self, x):
        if x.shape.rank == 2:
            y = tf.matmul(x, self.kernel)
        else:  # (..., in) -> (-1, in) @ kernel -> (..., out): plain MatMul runs everywhere
            lead = tf.shape(x)[:-1]
            y = tf.matmul(tf.reshape(x, [-1, self.in_features]), self.kernel)
            y = tf.reshape(y, tf.concat([lead, [self.out_features]], 0))
        return y + self.bias if self.bias is not None else y


class Embedding(Layer):
    def __init__(self, *, path, num_embeddings: int, embedding_dim: int):
        super().__init__(path=path)
        self.embeddings = self.variable("embeddings", [num_embeddings, embedding_dim])

    def call(self, ids):
        return tf.gather(self.embeddings, tf.cast(ids, tf.int32))


def matmul(a, b):
    """torch.matmul for rank >= 2. A rank-2 right side is applied as one plain MatMul."""
    if b.shape.rank == 2 and a.shape.rank > 2:
        lead = tf.shape(a)[:-1]
        y = tf.matmul(tf.reshape(a, [-1, a.shape[-1]]), b)
        return tf.reshape(y, tf.concat([lead, tf.shape(b)[-1:]], 0))
    return tf.matmul(a, b)
