"""bridge: port trained PyTorch models to TensorFlow SavedModel and tfjs, with measured parity.

Importing bridge changes nothing in torch or TensorFlow; heavy imports happen
when a function that needs them is called. The names the README uses are here:
``convert``, ``load_checkpoint``, ``load_torch_weights`` and ``assert_parity``.
"""

__version__ = "0.1.0"


def convert(module, example_inputs, **kwargs):
    """Trace, plan and build a TF port of ``module``; see ``bridge.api.convert``."""
    from .api import convert as _convert

    return _convert(module, example_inputs, **kwargs)


def load_checkpoint(path, **kwargs):
    """Read a torch checkpoint file without running code from it; see ``bridge.checkpoint.load_checkpoint``."""
    from .checkpoint import load_checkpoint as _load

    return _load(path, **kwargs)


def load_torch_weights(tf_model, weights, mapping=None, **kwargs):
    """Fill a TF model's variables from torch weights: a state_dict, a ``Checkpoint`` or a checkpoint path.

    Two kinds of TF model:

    - a converted port: the ``Port`` from ``bridge.convert``, or an instance of its ``model_tf.py``
      class with ``bindings=port.bindings``. The weights go through the port's bindings and weight
      transforms (``bridge.build.load_torch_weights``; ``trainable=`` keys optional); returns the TF model.
    - a hand-written port (a Keras model or a ``tf.Module``): matched by path and Keras layer kind,
      with ``mapping``, ``ignore`` and ``input_shape`` (``bridge.porting.load_torch_weights``);
      returns its ``LoadReport``.

    Either way every key problem is raised together as one ``KeyMismatchError`` before anything is written.
    """
    import os

    if hasattr(tf_model, "bindings") or "bindings" in kwargs:
        from .build import load_torch_weights as _generated

        if mapping is not None:
            raise TypeError("mapping= is for hand-written ports; a converted port maps keys by its bindings")
        return _generated(tf_model, weights, **kwargs)
    from .porting import load_torch_weights as _hand_written

    if isinstance(weights, (str, os.PathLike)):
        weights = load_checkpoint(weights)
    return _hand_written(tf_model, weights, mapping, **kwargs)


def assert_parity(torch_module, tf_model, inputs=None, **kwargs):
    """Raise AssertionError unless ``tf_model`` matches ``torch_module``; see ``bridge.testing.assert_parity``."""
    from .testing import assert_parity as _assert

    return _assert(torch_module, tf_model, inputs, **kwargs)


__all__ = ["__version__", "assert_parity", "convert", "load_checkpoint", "load_torch_weights"]
