"""Mapping records and the registry that finds them.

Each family file in ``bridge/mappings/`` defines its mappings with the
``module_mapping`` / ``op_mapping`` decorators (which only build a record, they
register nothing) and lists them in ``MAPPINGS``. ``default_registry()``
collects those lists explicitly. A ``Registry`` can be queried
(``find_module``, ``find_op``, ``supported()``) and extended or overridden by
users (``add``), without touching global state.
"""

from __future__ import annotations

import importlib
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .layout import Layout
from .tolerances import Tolerance
from .transforms import Transform

FAMILIES = ("activation", "linear", "conv", "norm", "pooling", "shape", "arith", "misc", "recurrent", "attention")


class NotSupported(Exception):
    """Raised by a mapping for a configuration it cannot express; collected, never shown raw."""


@dataclass(frozen=True)
class Weight:
    """One TF variable filled from one torch state_dict entry of the module."""

    source: str  # parameter/buffer name inside the torch module, e.g. "weight"
    transform: Transform


@dataclass(frozen=True)
class LayerPlan:
    """What a module mapping decided for one torch module: the TF layer and its weights."""

    layer: str  # class name in bridge.layers
    config: dict[str, Any]  # constructor keyword arguments (plain Python values)
    weights: dict[str, Weight]  # TF attribute -> torch source
    inputs: tuple[Layout, ...]  # layouts the layer wants for its tensor inputs
    output: Layout
    ignored: tuple[tuple[str, str], ...] = ()  # (state_dict entry, why it is not needed at inference)


@dataclass(frozen=True)
class ModuleMapping:
    torch_types: tuple[type, ...]
    plan: Callable  # (module, ModuleCall) -> LayerPlan
    family: str
    tolerance: Tolerance | None = None


@dataclass(frozen=True)
class OpMapping:
    targets: tuple[Any, ...]  # ATen overloads (torch.ops.aten.add.Tensor) or Python operators on sizes
    emit: Callable  # (OpCall) -> Value
    family: str
    tolerance: Tolerance | None = None


def module_mapping(*torch_types: type, tolerance: Tolerance | None = None):
    def wrap(fn) -> ModuleMapping:
        return ModuleMapping(tuple(torch_types), fn, fn.__module__.rsplit(".", 1)[-1], tolerance)

    return wrap


def op_mapping(*targets, tolerance: Tolerance | None = None):
    def wrap(fn) -> OpMapping:
        return OpMapping(tuple(targets), fn, fn.__module__.rsplit(".", 1)[-1], tolerance)

    return wrap


@dataclass
class Registry:
    modules: dict[type, ModuleMapping] = field(default_factory=dict)
    ops: dict[Any, OpMapping] = field(default_factory=dict)

    def add(self, mapping: ModuleMapping | OpMapping) -> None:
        """Add or override a mapping (later additions win)."""
        if isinstance(mapping, ModuleMapping):
            for t in mapping.torch_types:
                self.modules[t] = mapping
        else:
            for t in mapping.targets:
                self.ops[t] = mapping

    def find_module(self, module: torch.nn.Module) -> ModuleMapping | None:
        for klass in type(module).__mro__:  # exact type first, then a registered base class
            if klass in self.modules:
                return self.modules[klass]
            if klass is torch.nn.Module:
                break
        return None

    def find_op(self, op: str, target: Any) -> OpMapping | None:
        return self.ops.get(target) if op == "call_function" else None

    def supported(self) -> dict[str, list[str]]:
        """Human-readable lists of what is mapped, by family (for docs and `bridge ops`)."""
        out: dict[str, list[str]] = {}
        for t, m in self.modules.items():
            out.setdefault(m.family, []).append(f"nn.{t.__name__}")
        for t, m in self.ops.items():
            out.setdefault(m.family, []).append(op_name(t))
        return {k: sorted(set(v)) for k, v in sorted(out.items())}


def op_name(target: Any) -> str:
    if isinstance(target, (str, torch._ops.OpOverload)):
        return str(target)
    if getattr(target, "__module__", None) == "_operator" or target in vars(operator).values():
        return f"operator.{target.__name__}"
    mod = getattr(target, "__module__", "") or ""
    return f"{mod}.{getattr(target, '__name__', repr(target))}".lstrip(".")


def default_registry() -> Registry:
    reg = Registry()
    for family in FAMILIES:
        module = importlib.import_module(f"bridge.mappings.{family}")
        for mapping in module.MAPPINGS:
            reg.add(mapping)
    return reg
