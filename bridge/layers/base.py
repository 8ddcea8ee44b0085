"""The base of every generated TF layer: a ``tf.Module`` that knows its torch path.

Why ``tf.Module`` rather than a Keras ``Model``: TF 2.19 ships Keras 3, whose
layers, weight naming and SavedModel export differ from tf-keras; a
``tf.Module`` holds plain ``tf.Variable``s, exports a ``tf.function`` signature
directly with ``tf.saved_model.save``, and nests in lists and attributes
exactly like torch's module tree. Nothing Keras-specific is needed.

Parity taps: while ``record_outputs`` is active, each layer call reports
``(torch_path, index, tensor)`` for every tensor of its output (``index`` is the
position in the output structure, ``()`` for a single tensor), and ``tap`` lines
in the generated code report the outputs of decomposed modules the same way, so
parity can compare every torch module with its TF twin. Outside the block they
do nothing and add no ops to a graph.
"""

from __future__ import annotations

import contextlib
import re
from contextvars import ContextVar
from typing import Callable

import tensorflow as tf

_TAP: ContextVar[Callable | None] = ContextVar("bridge_layer_tap", default=None)


def identifier(path: str) -> str:
    """A valid tf.Module name for a torch module path ('features.0' -> 'features_0')."""
    name = re.sub(r"\W", "_", path) or "root"
    return name if name[0].isalpha() else "m_" + name


class Layer(tf.Module):
    """A TF layer standing for the torch module at ``path``."""

    def __init__(self, *, path: str):
        super().__init__(name=identifier(path))
        self.torch_path = path

    def variable(self, name: str, shape, dtype=tf.float32, trainable: bool | None = None) -> tf.Variable:
        """A zero variable; real values are assigned later by the weight step.

        ``trainable``: False for state that is not learned by gradient (running statistics);
        None means trainable when float. ``bridge.build.load_weights`` then sets each bound
        variable's flag (and name) from torch's ``requires_grad`` and buffers.
        """
        flag = dtype.is_floating if trainable is None else bool(trainable and dtype.is_floating)
        return tf.Variable(tf.zeros(shape, dtype=dtype), name=name, trainable=flag)

    def __call__(self, *args, **kwargs):
        # eager callers (parity) pass numpy arrays straight from the model inputs; layers read .shape.rank.
        # Optional inputs (an initial state, a mask) may be None, and flags plain Python values.
        out = self.call(*[_tensor(a) for a in args], **{k: _tensor(v) for k, v in kwargs.items()})
        if _TAP.get() is not None:
            for index, leaf in _leaves(out):
                tap(self.torch_path, index, leaf)
        return out

    def call(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError


def _tensor(value):
    """Arrays become tensors (recursively through tuples, e.g. LSTM's (h0, c0)); None and Python values stay."""
    if isinstance(value, (tuple, list)):
        return type(value)(_tensor(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return tf.convert_to_tensor(value)


class Namespace(tf.Module):
    """A plain container mirroring a torch module that has children but no mapping itself."""

    def __init__(self, path: str, /, **children):  # positional-only: a child may be called "self" or "path"
        super().__init__(name=identifier(path))
        self.torch_path = path
        for key, child in children.items():
            setattr(self, key, child)


class Module(tf.Module):
    """The base of each class ``model_tf.py`` generates for a decomposed torch module class: it holds
    the module's children under their torch names, and its ``__call__`` is that module's forward."""

    def __init__(self, path: str):
        super().__init__(name=identifier(path))
        self.torch_path = path


def parameter(path: str, shape, dtype=tf.float32) -> tf.Variable:
    """A raw torch parameter or buffer used directly in forward()."""
    return tf.Variable(tf.zeros(shape, dtype=dtype), name=identifier(path), trainable=dtype.is_floating)


def _leaves(out, prefix: tuple = ()):
    if isinstance(out, (tuple, list)):
        for i, v in enumerate(out):
            yield from _leaves(v, (*prefix, i))
    elif out is not None:
        yield prefix, out


def tap(path: str, index: tuple, value) -> None:
    """Report ``value`` as output ``index`` of the torch module at ``path`` (inside ``record_outputs``)."""
    callback = _TAP.get()
    if callback is not None:
        callback(path, tuple(index), value)


@contextlib.contextmanager
def record_outputs(callback: Callable[[str, tuple, tf.Tensor], None]):
    """Call ``callback(torch_path, output_index, tensor)`` for every layer output inside the block."""
    token = _TAP.set(callback)
    try:
        yield
    finally:
        _TAP.reset(token)


def keep_batch_reshape(x, tail) -> tf.Tensor:
    """Reshape to ``(batch, *tail)`` keeping the batch dim dynamic."""
    return tf.reshape(x, tf.concat([tf.shape(x)[:1], tf.constant(list(tail), tf.int32)], 0))
