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


def load_torch_weights(target, weights, **kwargs):
    """Load a torch state_dict (or checkpoint path) into a TF port; see ``bridge.build.load_torch_weights``."""
    from .build import load_torch_weights as _load

    return _load(target, weights, **kwargs)


def assert_parity(torch_module, tf_model, inputs=None, **kwargs):
    """Raise AssertionError unless ``tf_model`` matches ``torch_module``; see ``bridge.testing.assert_parity``."""
    from .testing import assert_parity as _assert

    return _assert(torch_module, tf_model, inputs, **kwargs)


__all__ = ["__version__", "assert_parity", "convert", "load_checkpoint", "load_torch_weights"]
