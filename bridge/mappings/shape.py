"""Shape ops: flatten, reshape/view, permute/transpose, squeeze/unsqueeze, cat,
stack, indexing, sizes and F.pad.

permute/transpose cost nothing: they change the value's layout, not the
tensor. flatten(1) of a channels-last value keeps TF's order (a ``Flat``
layout) so a following Linear can absorb it; any other consumer gets torch's
order back through one transpose.
"""

from __future__ import annotations

import builtins
import math
import operator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import layout as lay
from ..plan import PyValue, ShapeValue, TensorValue
from ..registry import LayerPlan, NotSupported, module_mapping, op_mapping
from ._util import drop_dims, insert_dim, keep_layout


def _flat_layout(x: TensorValue, start: int, end: int) -> lay.Layout | None:
    """The Flat layout when flatten(1..-1) can keep TF's order; None if torch order is needed."""
    start, end = start % x.rank, end % x.rank
    if start != 1 or end != x.rank - 1 or not isinstance(x.layout, lay.Perm) or x.layout.is_identity:
        return None
    if x.layout.perm[0] != 0:
        return None
    flat = lay.flattened(x.layout, x.shape)
    columns = flat.columns()
    if np.array_equal(columns, np.arange(len(columns))):
        return lay.identity(2)  # only size-1 dims were out of order (e.g. after global pooling)
    return flat


def _merged_layout(layout: lay.Perm, start: int, end: int) -> lay.Perm | None:
    """Layout after merging torch dims start..end when TF holds them side by side, in order.

    Then a plain reshape of the TF tensor is the torch flatten: NHWC.flatten(2) is (N, H*W, C).
    """
    run = tuple(range(start, end + 1))
    at = layout.perm.index(start)
    if layout.perm[at:at + len(run)] != run:
        return None
    kept = (*layout.perm[:at], start, *layout.perm[at + len(run):])
    return lay.Perm(tuple(q if q <= start else q - (end - start) for q in kept))


def _tf_shape(layout: lay.Perm, torch_shape) -> list[int]:
    """The TF shape of a torch shape in ``layout``, with -1 on the axis holding the (dynamic) batch dim."""
    return [-1 if q == 0 else int(torch_shape[q]) for q in layout.perm]


def _plan_flatten(x: TensorValue, start: int, end: int) -> tuple[lay.Layout, list[int], lay.Layout]:
    """How to flatten torch dims start..end: (layout to reshape from, TF target shape, resulting layout).

    In order of preference: reshape as stored when the merged dims are adjacent in TF; keep TF's
    order as a Flat (a following Linear folds it); else transpose to torch's order first.
    """
    start, end = start % x.rank, end % x.rank
    out_shape = (*x.shape[:start], math.prod(x.shape[start:end + 1]), *x.shape[end + 1:])
    src = keep_layout(x)
    merged = _merged_layout(src, start, end)
    if merged is not None:
        return src, _tf_shape(merged, out_shape), merged
    flat = _flat_layout(x, start, end)
    if flat is not None:
        return x.layout, [-1, out_shape[1]], flat
    ident = lay.identity(len(out_shape))
    return lay.identity(x.rank), _tf_shape(ident, out_shape), ident


def _flatten_run(in_shape: tuple, out_shape: tuple) -> tuple[int, int] | None:
    """(start, end) when reshaping ``in_shape`` to ``out_shape`` merges one run of dims, else None."""
    for start in range(len(in_shape)):
        for end in range(start + 1, len(in_shape)):
            merged = (*in_shape[:start], math.prod(in_shape[start:end + 1]), *in_shape[end + 1:])
            if merged == tuple(out_shape):
                return start, end
    return None


def _emit_flatten(c, x: TensorValue, start: int, end: int) -> TensorValue:
    src, shape, out = _plan_flatten(x, start, end)
    return c.out(f"tf.reshape({c.tensor(x, src)}, {shape})", out)


@module_mapping(nn.Flatten)
def flatten(m, call):
    x = call.inputs[0]
    if m.start_dim % x.rank == 0:
        raise NotSupported("Flatten(start_dim=0) merges the batch dim")
    src, shape, out = _plan_flatten(x, m.start_dim, m.end_dim)
    return LayerPlan("Flatten", {"tail": shape[1:]}, {}, (src,), out)


@op_mapping(torch.flatten, "method:flatten")
def flatten_op(c):
    x = c.arg(0, "input")
    start, end = c.arg(1, "start_dim", 0) % max(x.rank, 1), c.arg(2, "end_dim", -1) % max(x.rank, 1)
    if start >= end:  # nothing merged (rank 1, or start == end): torch returns the input's view
        return c.alias(x, x.layout)
    return _emit_flatten(c, x, start, end)


@op_mapping(torch.reshape, "method:reshape", "method:view")
def reshape(c):
    """A reshape that merges one run of dims is a flatten (layout kept); any other runs in torch order."""
    x = c.arg(0, "input")
    shape = c.rest(1) if c.node.op == "call_method" else list(c.arg(1, "shape"))
    if tuple(c.out_shape) == tuple(x.shape):
        return c.alias(x, x.layout)
    run = _flatten_run(x.shape, c.out_shape)
    if run is not None:
        return _emit_flatten(c, x, *run)
    out_rank = len(c.out_shape)
    return c.out(f"tf.reshape({c.tensor(x, lay.identity(x.rank))}, {c.render(shape)})", lay.identity(out_rank))


@op_mapping(torch.permute, "method:permute")
def permute(c):
    x = c.arg(0, "input")
    dims = c.rest(1) if c.node.op == "call_method" else list(c.arg(1, "dims"))
    dims = tuple(d % x.rank for d in dims)
    src = keep_layout(x)
    return c.alias(TensorValue(c.tensor(x, src), src, x.shape, x.dtype), lay.permuted(src, dims))


@op_mapping(torch.transpose, "method:transpose")
def transpose(c):
    x = c.arg(0, "input")
    d0, d1 = c.arg(1, "dim0") % x.rank, c.arg(2, "dim1") % x.rank
    dims = list(range(x.rank))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    src = keep_layout(x)
    return c.alias(TensorValue(c.tensor(x, src), src, x.shape, x.dtype), lay.permuted(src, tuple(dims)))


@op_mapping(torch.t, "method:t")
def t(c):
    """``x.t()``: a 2-D transpose (a 0-D or 1-D tensor is returned as is), a layout change only."""
    x = c.arg(0, "input")
    if x.rank < 2:
        return c.alias(x, x.layout)
    src = keep_layout(x)
    return c.alias(TensorValue(c.tensor(x, src), src, x.shape, x.dtype), lay.permuted(src, (1, 0)))


@op_mapping(torch.squeeze, "method:squeeze")
def squeeze(c):
    """Drop size-1 dims in whatever layout the value has: the remaining axes keep their TF order."""
    x = c.arg(0, "input")
    dim = c.arg(1, "dim", None)
    if dim is None:
        if x.shape and x.shape[0] == 1:
            raise NotSupported("squeeze() without dim would drop a batch dim of size 1")
        dims = [d for d, n in enumerate(x.shape) if n == 1]
    else:
        asked = [d % x.rank for d in (dim if isinstance(dim, (list, tuple)) else [dim])]
        dims = [d for d in asked if x.shape[d] == 1]  # torch ignores dims that are not size 1
    src = keep_layout(x)
    if not dims:
        return c.alias(x, x.layout)
    axes = sorted(src.tf_axis(d) for d in dims)
    return c.out(f"tf.squeeze({c.tensor(x, src)}, {axes})", drop_dims(src, dims))


@op_mapping(torch.unsqueeze, "method:unsqueeze")
def unsqueeze(c):
    x = c.arg(0, "input")
    src = keep_layout(x)
    at, out = insert_dim(src, c.arg(1, "dim") % (x.rank + 1))
    return c.out(f"tf.expand_dims({c.tensor(x, src)}, {at})", out)


@op_mapping(torch.cat, torch.concat, torch.concatenate)
def cat(c):
    xs = [v for v in c.arg(0, "tensors")]
    dim = c.arg(1, "dim", 0)
    ranks = {v.rank for v in xs}
    want = keep_layout(xs[0]) if len(ranks) == 1 else None
    if want is None:
        raise NotSupported("cat of tensors with different ranks")
    if any(keep_layout(v) != want for v in xs):
        want = lay.identity(xs[0].rank)
    return c.out(f"tf.concat([{', '.join(c.tensor(v, want) for v in xs)}], {want.tf_axis(dim)})", want)


@op_mapping(torch.stack)
def stack(c):
    """Stack in the inputs' shared layout (torch order if they differ); the new axis sits beside its neighbour."""
    xs = list(c.arg(0, "tensors"))
    layouts = {keep_layout(v) for v in xs}
    src = layouts.pop() if len(layouts) == 1 else lay.identity(xs[0].rank)
    at, out = insert_dim(src, c.arg(1, "dim", 0) % (xs[0].rank + 1))
    parts = ", ".join(c.tensor(v, src) for v in xs)
    return c.out(f"tf.stack([{parts}], {at})", out)


def _index_expr(c, item) -> str:
    if item is None:
        return "tf.newaxis"
    if item is Ellipsis:
        return "..."
    if isinstance(item, slice):
        start, stop, step = ("" if v is None else c.render(v) for v in (item.start, item.stop, item.step))
        return f"{start}:{stop}:{step}" if step else f"{start}:{stop}"
    if isinstance(item, (int, PyValue)):
        return c.render(item)
    raise NotSupported(f"indexing with {type(item).__name__} (only ints, slices, None and ...)")


def _expand_items(items: tuple, rank: int) -> list:
    """Index items with ``...`` (or the implicit trailing ``...``) replaced by full slices."""
    used = sum(1 for i in items if i is not None and i is not Ellipsis)
    fill = [slice(None)] * (rank - used)
    if not any(i is Ellipsis for i in items):
        return [*items, *fill]
    at = next(k for k, i in enumerate(items) if i is Ellipsis)
    return [*items[:at], *fill, *items[at + 1:]]


def _index_permuted(items: list, layout: lay.Perm) -> tuple[list, lay.Perm]:
    """Index a permuted value as stored: TF-order items (new axes last) and the resulting layout."""
    per_dim, out_dim, new_dims, o = [], {}, [], 0
    for item in items:  # torch order: None adds an output dim, an int drops an input dim
        if item is None:
            new_dims.append(o)
        else:
            if isinstance(item, slice):
                out_dim[len(per_dim)] = o
            per_dim.append(item)
        o += item is None or isinstance(item, slice)
    tf_items = [per_dim[d] for d in layout.perm] + [None] * len(new_dims)
    kept = [out_dim[d] for d in layout.perm if d in out_dim]
    return tf_items, lay.Perm((*kept, *new_dims))


@op_mapping(operator.getitem)
def getitem(c):
    obj, item = c.arg(0), c.arg(1)
    if isinstance(obj, ShapeValue):
        return _size(c, obj.tensor, item)
    if isinstance(obj, (list, tuple)):
        return obj[item]
    if not isinstance(obj, TensorValue):
        raise NotSupported(f"indexing a {type(obj).__name__}")
    items = _expand_items(item if isinstance(item, tuple) else (item,), obj.rank)
    if any(isinstance(i, slice) and (i.step or 1) < 0 for i in items):
        raise NotSupported("negative slice steps")
    src = keep_layout(obj)
    tf_items, out = (items, lay.identity(len(c.out_shape))) if src.is_identity else _index_permuted(items, src)
    index = ", ".join(_index_expr(c, i) for i in tf_items)
    return c.out(f"{c.tensor(obj, src)}[{index}]", out)


def _size(c, x: TensorValue, dim):
    if isinstance(dim, slice):
        raise NotSupported("slicing x.shape")
    d = dim % x.rank
    if d != 0:  # only the batch dim is dynamic; other sizes are fixed by the traced shapes
        return PyValue(repr(x.shape[d]), x.shape[d])
    axis = x.layout.tf_axis(0) if isinstance(x.layout, lay.Perm) else 0
    return PyValue(f"tf.shape({x.var})[{axis}]", x.shape[0])


@op_mapping("method:size")
def size(c):
    x = c.arg(0, "input")
    dim = c.arg(1, "dim", None)
    return ShapeValue(x) if dim is None else _size(c, x, dim)


@op_mapping(builtins.getattr)
def getattr_op(c):
    obj, name = c.arg(0), c.arg(1)
    if isinstance(obj, TensorValue) and name == "shape":
        return ShapeValue(obj)
    if isinstance(obj, TensorValue) and name == "ndim":
        return obj.rank
    raise NotSupported(f"attribute .{name}")


@op_mapping("method:dim")
def dim_op(c):
    return c.arg(0).rank


@op_mapping(F.pad)
def pad(c):
    x = c.arg(0, "input")
    pads = list(c.arg(1, "pad"))
    mode, value = c.arg(2, "mode", "constant"), c.arg(3, "value", None)
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise NotSupported(f"padding mode {mode!r}")
    if mode != "constant" and min(pads) < 0:
        raise NotSupported(f"negative {mode} padding")
    want = keep_layout(x)
    by_axis = {want.tf_axis(x.rank - 1 - k): (pads[2 * k], pads[2 * k + 1]) for k in range(len(pads) // 2)}
    return c.out(f"L.pad_axes({c.tensor(x, want)}, {by_axis}, {mode!r}, {float(value or 0.0)})", want)


MAPPINGS = (flatten, flatten_op, reshape, permute, transpose, t, squeeze, unsqueeze, cat, stack, getitem, size,
            getattr_op, dim_op, pad)
