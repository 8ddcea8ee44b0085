"""Mapping records, per-class verdicts, and the registry that finds them.

Each family file in ``bridge/mappings/`` defines its mappings with the
``module_mapping`` / ``op_mapping`` decorators (which only build a record, they
register nothing) and lists them in ``MAPPINGS``. A family file may also list
``DECOMPOSE`` (torch.nn classes the tracer traces through, with a note) and
``NOT_SUPPORTED`` (classes refused, with the reason). ``default_registry()``
collects those lists explicitly.

Every ``torch.nn`` module class gets exactly one verdict (``Registry.verdict``):

* **mapped**: a leaf with its own TF layer (a ``ModuleMapping``);
* **decompose**: traced through; its ATen ops are translated by the op
  mappings, and per-module parity is still reported at its path;
* **not supported**: refused up front, with a reason.

A user-defined module (not from ``torch.nn``) is decomposed unless a mapping
is registered for it. A ``Registry`` can be queried and extended or
overridden by users (``add``, ``decompose``, ``refuse``), without touching
global state.
"""

from __future__ import annotations

import importlib
import operator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

import torch

from .layout import Layout
from .tolerances import Tolerance
from .transforms import Transform

FAMILIES = ("activation", "linear", "conv", "norm", "pooling", "shape", "arith", "misc", "recurrent", "attention",
            "composite", "not_supported")


class NotSupported(Exception):
    """Raised by a mapping for a configuration it cannot express; collected, never shown raw."""


@dataclass(frozen=True)
class Weight:
    """One TF variable filled from one or more torch state_dict entries of the module.

    ``source`` names the entries inside the module (``"weight"``, or a tuple such as
    ``("bias_ih_l0", "bias_hh_l0")``); ``transform`` is a pure function of those arrays,
    in that order, and its arity must match. Each entry may feed only one variable.
    """

    source: str | tuple[str, ...]
    transform: Transform

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,) if isinstance(self.source, str) else tuple(self.source)

    def __post_init__(self):
        if len(self.sources) != self.transform.arity:
            raise ValueError(f"transform {self.transform.name} combines {self.transform.arity} arrays, "
                             f"but the weight names {len(self.sources)} sources {self.sources}")


@dataclass(frozen=True)
class LayerPlan:
    """What a module mapping decided for one torch module: the TF layer and its weights.

    The TF layer is called with the torch call's own arguments, by position and keyword as
    torch got them (its ``call`` mirrors the module's ``forward`` signature); ``inputs`` gives
    the layout each tensor argument is fed in, in the order of ``ModuleCall.inputs`` (tensors
    of the positional arguments first, then of the keyword arguments, depth first). ``output``
    is one layout, or a structure of layouts (and None) shaped exactly like torch's return
    value, e.g. ``(Perm, (Perm, Perm))`` for ``output, (h_n, c_n)``.
    """

    layer: str  # class name in bridge.layers
    config: dict[str, Any]  # constructor keyword arguments (plain Python values)
    weights: dict[str, Weight]  # TF attribute -> torch source(s)
    inputs: tuple[Layout, ...]  # layouts the layer wants for its tensor inputs
    output: Any  # Layout, or a tuple/list structure of Layouts and None
    ignored: tuple[tuple[str, str], ...] = ()  # (state_dict entry, why it is not needed at inference)


class Verdict(str, Enum):
    MAPPED = "mapped"
    DECOMPOSE = "decompose"
    NOT_SUPPORTED = "not supported"


@dataclass(frozen=True)
class ClassVerdict:
    """The registry's decision for one module class."""

    torch_type: type
    verdict: Verdict
    family: str
    note: str = ""  # the mapping's doc line, what decomposing relies on, or why it is refused
    mapping: "ModuleMapping | None" = None


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
    decomposed: dict[type, tuple[str, str]] = field(default_factory=dict)  # class -> (family, note)
    refused: dict[type, tuple[str, str]] = field(default_factory=dict)  # class -> (family, reason)

    def add(self, mapping: ModuleMapping | OpMapping) -> None:
        """Add or override a mapping (later additions win); a mapped class loses any other verdict."""
        if isinstance(mapping, ModuleMapping):
            for t in mapping.torch_types:
                self.modules[t] = mapping
                self.decomposed.pop(t, None)
                self.refused.pop(t, None)
        else:
            for t in mapping.targets:
                self.ops[t] = mapping

    def decompose(self, torch_type: type, note: str, family: str = "user") -> None:
        """Trace through ``torch_type`` instead of mapping it as one layer."""
        self.modules.pop(torch_type, None)
        self.refused.pop(torch_type, None)
        self.decomposed[torch_type] = (family, note)

    def refuse(self, torch_type: type, reason: str, family: str = "user") -> None:
        """Report ``torch_type`` as not supported, with ``reason``, before anything is traced."""
        if not reason.strip():
            raise ValueError(f"refusing {torch_type.__name__} needs a reason")
        self.modules.pop(torch_type, None)
        self.decomposed.pop(torch_type, None)
        self.refused[torch_type] = (family, reason)

    def verdict(self, module_or_type) -> ClassVerdict:
        """The one verdict for a module (or class): its own entry first, then a registered base class.

        Classes outside ``torch.nn`` with no entry are user code: decomposed. A ``torch.nn``
        class with no entry is refused (tests/test_verdicts.py keeps that list empty).
        """
        cls = module_or_type if isinstance(module_or_type, type) else type(module_or_type)
        for klass in cls.__mro__:
            if klass is not cls and _overrides_forward(cls, klass) and (klass in self.modules or klass in self.refused):
                return ClassVerdict(cls, Verdict.DECOMPOSE, "user",
                                    f"subclass of {klass.__name__} with its own forward: traced through")
            if klass in self.modules:
                m = self.modules[klass]
                return ClassVerdict(cls, Verdict.MAPPED, m.family, _doc_line(m.plan), m)
            if klass in self.decomposed:
                return ClassVerdict(cls, Verdict.DECOMPOSE, *self.decomposed[klass])
            if klass in self.refused:
                return ClassVerdict(cls, Verdict.NOT_SUPPORTED, *self.refused[klass])
            if klass is torch.nn.Module:
                break
        if _is_torch_nn(cls):
            return ClassVerdict(cls, Verdict.NOT_SUPPORTED, "unknown", "bridge has no verdict for this torch class")
        return ClassVerdict(cls, Verdict.DECOMPOSE, "user", "user code: traced through")

    def find_module(self, module: torch.nn.Module) -> ModuleMapping | None:
        return self.verdict(module).mapping

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


def _overrides_forward(cls: type, base: type) -> bool:
    """A user class that redefines ``forward`` above ``base`` (e.g. a LayerNorm that permutes first)."""
    return not _is_torch_nn(cls) and getattr(cls, "forward", None) is not getattr(base, "forward", None)


def _is_torch_nn(cls: type) -> bool:
    """Defined by torch itself (torch.nn, torch.ao.nn, ...), not by the user or a library."""
    return (cls.__module__ or "").startswith("torch.")


def _doc_line(fn) -> str:
    doc = (getattr(fn, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def op_name(target: Any) -> str:
    if isinstance(target, (str, torch._ops.OpOverload)):
        return str(target)
    if getattr(target, "__module__", None) == "_operator" or target in vars(operator).values():
        return f"operator.{target.__name__}"
    mod = getattr(target, "__module__", "") or ""
    return f"{mod}.{getattr(target, '__name__', repr(target))}".lstrip(".")


def default_registry() -> Registry:
    """Every family's mappings and verdicts; a class given two verdicts is a bug in bridge itself."""
    reg = Registry()
    seen: dict[type, str] = {}

    def once(torch_type: type, where: str) -> None:
        if torch_type in seen:
            raise ValueError(f"{torch_type.__name__} has two verdicts: {seen[torch_type]} and {where}")
        seen[torch_type] = where

    for family in FAMILIES:
        module = importlib.import_module(f"bridge.mappings.{family}")
        for mapping in getattr(module, "MAPPINGS", ()):
            for t in getattr(mapping, "torch_types", ()):
                once(t, f"mapped in {family}")
            reg.add(mapping)
        for torch_type, note in getattr(module, "DECOMPOSE", {}).items():
            once(torch_type, f"decompose in {family}")
            reg.decompose(torch_type, note, family)
        for torch_type, reason in getattr(module, "NOT_SUPPORTED", {}).items():
            once(torch_type, f"not supported in {family}")
            reg.refuse(torch_type, reason, family)
    return reg
