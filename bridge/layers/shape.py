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

    The gathered axis is moved last so one batched tf.gather does it; x is first cut to
    index's size on the other axes (torch allows index to be smaller there).
    """
    x, index = tf.convert_to_tensor(x), tf.convert_to_tensor(index)
    rank = x.shape.rank
    keep = tf.where(tf.equal(tf.range(rank), axis), -1, tf.shape(index))
    x = tf.slice(x, tf.zeros([rank], tf.int32), keep)
    order = [d for d in range(rank) if d != axis] + [axis]
    back = [order.index(d) for d in range(rank)]
    index = _wrapped(index, tf.shape(x)[axis])
    out = tf.gather(tf.transpose(x, order), tf.transpose(index, order), batch_dims=rank - 1, axis=rank - 1)
    return tf.transpose(out, back)


def triangle(x, diagonal: int = 0, upper: bool = False):
    """torch.tril / triu over the last two axes, from a row/column comparison.

    tf.linalg.band_part would do it in TF but gives wrong results in tfjs.
    """
    x = tf.convert_to_tensor(x)
    rows = tf.range(tf.shape(x)[-2])[:, None]
    cols = tf.range(tf.shape(x)[-1])[None, :]
    keep = cols - rows >= diagonal if upper else cols - rows <= diagonal
    return tf.where(keep, x, tf.zeros_like(x))
