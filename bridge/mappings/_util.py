"""Small helpers shared by the family files."""

from __future__ import annotations

from .. import layout as lay
from ..registry import LayerPlan


def keep_layout(value) -> lay.Layout:
    """Elementwise work runs in whatever Perm layout the value has; a Flat is unflattened first."""
    return value.layout if isinstance(value.layout, lay.Perm) else lay.identity(value.rank)


def stateless(layer: str, call, **config) -> LayerPlan:
    """A weightless elementwise layer: it runs in any layout, a folded flatten included."""
    want = call.inputs[0].layout
    return LayerPlan(layer, config, {}, (want,), want)


def pair(v, n: int = 2) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n
