"""build: generated source -> a live TF model, then weights into it.

Two separate steps, as the style guide asks: ``instantiate`` reads only the
source (configs, no weights); ``load_weights`` only assigns values through the
plan's bindings and builds nothing. Key accounting lives here too: every
state_dict key is used exactly once, knowingly ignored, or reported.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import BridgeError, KeyMismatchError, KeyProblems


def instantiate(source: str, class_name: str, module_name: str = "bridge_generated"):
    """Execute model_tf.py text and return an instance of its model class."""
    mod = types.ModuleType(module_name)
    mod.__file__ = "model_tf.py"
    exec(compile(source, "model_tf.py", "exec"), mod.__dict__)
    return getattr(mod, class_name)()


def resolve(model, steps):
    obj = model
    for kind, part in steps:
        obj = getattr(obj, part) if kind == "attr" else obj[part]
    return obj


def load_weights(model, bindings, state_dict: dict[str, np.ndarray]) -> None:
    """Assign ``transform(*state_dict[keys])`` to each bound TF variable; shapes must agree exactly."""
    for b in bindings:
        var = resolve(model, b.access)
        value = b.transform(*(state_dict[k] for k in b.keys))
        if tuple(var.shape) != value.shape:
            raise BridgeError(
                f"weight {b.key}: transform {b.transform.name} ({b.transform.shape_change}) gave shape "
                f"{list(value.shape)}, but the TF variable has shape {var.shape.as_list()}"
            )
        var.assign(value.astype(var.dtype.as_numpy_dtype))


@dataclass
class KeyReport:
    """How each state_dict key was used."""

    used: dict[str, str] = field(default_factory=dict)  # key -> transform name (keys combined by one share it)
    ignored: dict[str, str] = field(default_factory=dict)  # key -> reason
    unused: list[str] = field(default_factory=list)  # keys nothing in forward() reads
    shared: dict[str, int] = field(default_factory=dict)  # key -> times bound (> 1)

    def to_dict(self) -> dict:
        return {"used": self.used, "ignored": self.ignored, "unused": self.unused, "shared": self.shared}


def account_keys(bindings, ignored_by_layer: list[tuple[str, str]], keys: list[str]) -> KeyReport:
    report = KeyReport()
    counts: dict[str, int] = {}
    for b in bindings:
        for key in b.keys:
            counts[key] = counts.get(key, 0) + 1
            report.used[key] = b.transform.name
    report.shared = {k: n for k, n in counts.items() if n > 1}
    for key, why in ignored_by_layer:
        if key in keys and key not in report.used:
            report.ignored[key] = why
    report.unused = [k for k in keys if k not in report.used and k not in report.ignored]
    return report


def check_fits(module: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise KeyMismatchError listing all missing, unexpected and mis-shaped keys at once."""
    expected = module.state_dict()
    problems = KeyProblems()
    for key, tensor in expected.items():
        if key not in state_dict:
            problems.missing.append((key, tuple(tensor.shape)))
        elif tuple(state_dict[key].shape) != tuple(tensor.shape):
            problems.mismatched.append((key, tuple(tensor.shape), tuple(state_dict[key].shape)))
    for key, tensor in state_dict.items():
        if key not in expected:
            problems.unexpected.append((key, tuple(tensor.shape)))
    if problems:
        raise KeyMismatchError(problems)
