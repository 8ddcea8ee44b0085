"""Flatten as a module (the mapping decides whether the stored order can be kept,
folded into a following Linear, or must be brought back to torch's order first),
and torch's indexing ops that have no one-op TF twin: integer-tensor indexing
(``take``, ``take_nd``), ``torch.gather`` (``take_along``) and tril/triu
(``triangle``)."""

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
