"""bridge: port trained PyTorch models to TensorFlow SavedModel and tfjs, with measured parity.

Importing bridge changes nothing in torch or TensorFlow; heavy imports happen
when a function that needs them is called.
"""

__version__ = "0.1.0"


def convert(module, example_inputs, **kwargs):
    """Trace, plan and build a TF port of ``module``; see ``bridge.api.convert``."""
    from .api import convert as _convert

    return _convert(module, example_inputs, **kwargs)


def load_checkpoint(path, **kwargs):
    from .checkpoint import load_checkpoint as _load

    return _load(path, **kwargs)


__all__ = ["__version__", "convert", "load_checkpoint"]
