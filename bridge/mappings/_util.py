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


def drop_dims(layout: lay.Perm, dims) -> lay.Perm:
    """Layout after torch ``dims`` are removed (their TF axes too): the other axes keep their TF order."""
    kept = [d for d in range(layout.rank) if d not in dims]
    renumber = {d: i for i, d in enumerate(kept)}
    return lay.Perm(tuple(renumber[p] for p in layout.perm if p in renumber))


def insert_dim(layout: lay.Perm, dim: int) -> tuple[int, lay.Perm]:
    """(TF axis, layout) for a new torch dim ``dim``, stored just after its torch predecessor.

    Identity stays identity, and ``unsqueeze(1)`` of NHWC gives N1HWC, channels-last again.
    """
    at = 0 if dim == 0 else layout.perm.index(dim - 1) + 1
    shifted = [p + (p >= dim) for p in layout.perm]
    return at, lay.Perm((*shifted[:at], dim, *shifted[at:]))
