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
        return lookup(self.embeddings, ids)


def lookup(table, ids):
    """Rows of ``table`` for integer ``ids`` (int32 indices: what tfjs runs)."""
    return tf.gather(table, tf.cast(ids, tf.int32))


def matmul(a, b, transpose_a: bool = False, transpose_b: bool = False):
    """torch.matmul for rank >= 2 on operands stored as given or with their last two axes swapped.

    A rank-2 right side is applied as one plain MatMul over the flattened leading dims (which
    every runtime runs); the mapping passes ``transpose_a`` only when the ranks are equal.
    """
    a, b = tf.convert_to_tensor(a), tf.convert_to_tensor(b)  # model inputs arrive as numpy in eager runs
    if b.shape.rank == 2 and a.shape.rank > 2 and not transpose_a:
        lead = tf.shape(a)[:-1]
        y = tf.matmul(tf.reshape(a, [-1, a.shape[-1]]), b, transpose_b=transpose_b)
        return tf.reshape(y, tf.concat([lead, tf.shape(y)[-1:]], 0))
    return tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
