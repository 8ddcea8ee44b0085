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

import torch
import torch.nn.functional as F
from torch import nn

from .. import layout as lay
from ..plan import PyValue, ShapeValue, TensorValue
from ..registry import LayerPlan, NotSupported, module_mapping, op_mapping
from ._util import keep_layout


def _flat_layout(x: TensorValue, start: int, end: int) -> lay.Layout | None:
    """The Flat layout when flatten(1..-1) can keep TF's order; None if torch order is needed."""
    start, end = start % x.rank, end % x.rank
    if start != 1 or end != x.rank - 1 or not isinstance(x.layout, lay.Perm) or x.layout.is_identity:
        return None
    if x.layout.perm[0] != 0:
        return None
    return lay.flattened(x.layout, x.shape)


def _flatten_shape(x: TensorValue, start: int, end: int) -> list[int]:
    """Target shape of a torch-order flatten, the batch dim left to -1 so it stays dynamic."""
    start, end = start % x.rank, end % x.rank
    shape = [*x.shape[:start], math.prod(x.shape[start:end + 1]), *x.shape[end + 1:]]
    if start == 0:
        return [-1, *shape[1:]] if len(shape) > 1 else [-1]
    return [-1, *shape[1:]]


@module_mapping(nn.Flatten)
def flatten(m, call):
    x = call.inputs[0]
    if m.start_dim % x.rank == 0:
        raise NotSupported("Flatten(start_dim=0) merges the batch dim")
    flat = _flat_layout(x, m.start_dim, m.end_dim)
    if flat is not None:
        return LayerPlan("Flatten", {"tail": [math.prod(x.shape[1:])]}, {}, (x.layout,), flat)
    tail = _flatten_shape(x, m.start_dim, m.end_dim)[1:]
    return LayerPlan("Flatten", {"tail": tail}, {}, (lay.identity(x.rank),), lay.identity(len(tail) + 1))


@op_mapping(torch.flatten, "method:flatten")
def flatten_op(c):
    x = c.arg(0, "input")
    start, end = c.arg(1, "start_dim", 0), c.arg(2, "end_dim", -1)
    flat = _flat_layout(x, start, end)
    if flat is not None:
        return c.out(f"tf.reshape({c.tensor(x, x.layout)}, [-1, {math.prod(x.shape[1:])}])", flat)
    shape = _flatten_shape(x, start, end)
    return c.out(f"tf.reshape({c.tensor(x, lay.identity(x.rank))}, {shape})", lay.identity(len(shape)))


def _is_batch(v, x: TensorValue) -> bool:
    return (isinstance(v, PyValue) and v.expr.startswith(f"tf.shape({x.var})[")) or v == x.shape[0]


@op_mapping(torch.reshape, "method:reshape", "method:view")
def reshape(c):
    x = c.arg(0, "input")
    shape = c.rest(1) if c.node.op == "call_method" else list(c.arg(1, "shape"))
    rest = math.prod(x.shape[1:])
    if len(shape) == 2 and _is_batch(shape[0], x) and shape[1] in (-1, rest) and _flat_layout(x, 1, -1):
        return c.out(f"tf.reshape({x.var}, [-1, {rest}])", _flat_layout(x, 1, -1))
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


@op_mapping(torch.squeeze, "method:squeeze")
def squeeze(c):
    x = c.arg(0, "input")
    dim = c.arg(1, "dim", None)
    xs = c.tensor(x, lay.identity(x.rank))
    if dim is None:
        axes = [i for i, n in enumerate(x.shape) if n == 1 and i != 0]
        if 0 in [i for i, n in enumerate(x.shape) if n == 1]:
            raise NotSupported("squeeze() without dim would drop a batch dim of size 1")
    else:
        dims = dim if isinstance(dim, (list, tuple)) else [dim]
        axes = [d % x.rank for d in dims if x.shape[d % x.rank] == 1]
    if not axes:
        return c.alias(TensorValue(xs, lay.identity(x.rank), x.shape, x.dtype), lay.identity(x.rank))
    return c.out(f"tf.squeeze({xs}, {axes})", lay.identity(len(c.out_shape)))


@op_mapping(torch.unsqueeze, "method:unsqueeze")
def unsqueeze(c):
    x = c.arg(0, "input")
    dim = c.arg(1, "dim") % (x.rank + 1)
    return c.out(f"tf.expand_dims({c.tensor(x, lay.identity(x.rank))}, {dim})", lay.identity(x.rank + 1))


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
    xs = list(c.arg(0, "tensors"))
    dim = c.arg(1, "dim", 0) % (xs[0].rank + 1)
    parts = ", ".join(c.tensor(v, lay.identity(v.rank)) for v in xs)
    return c.out(f"tf.stack([{parts}], {dim})", lay.identity(xs[0].rank + 1))


def _index_expr(c, item) -> str:
    if item is None:
        return "tf.newaxis"
    if item is Ellipsis:
        return "..."
    if isinstance(item, slice):
        parts = ["" if v is None else c.render(v) for v in (item.start, item.stop, item.step)]
        return ":".join(parts).rstrip(":") if parts[2] == "" else ":".join(parts)
    if isinstance(item, (int, PyValue)):
        return c.render(item)
    raise NotSupported(f"indexing with {type(item).__name__} (only ints, slices, None and ...)")


@op_mapping(operator.getitem)
def getitem(c):
    obj, item = c.arg(0), c.arg(1)
    if isinstance(obj, ShapeValue):
        return _size(c, obj.tensor, item)
    if isinstance(obj, (list, tuple)):
        return obj[item]
    if not isinstance(obj, TensorValue):
        raise NotSupported(f"indexing a {type(obj).__name__}")
    items = item if isinstance(item, tuple) else (item,)
    if any(isinstance(i, slice) and (i.step or 1) < 0 for i in items):
        raise NotSupported("negative slice steps")
    index = ", ".join(_index_expr(c, i) for i in items)
    return c.out(f"{c.tensor(obj, lay.identity(obj.rank))}[{index}]", lay.identity(len(c.out_shape)))


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
    want = keep_layout(x)
    by_axis = {want.tf_axis(x.rank - 1 - k): (pads[2 * k], pads[2 * k + 1]) for k in range(len(pads) // 2)}
    return c.out(f"L.pad_axes({c.tensor(x, want)}, {by_axis}, {mode!r}, {float(value or 0.0)})", want)


MAPPINGS = (flatten, flatten_op, reshape, permute, transpose, squeeze, unsqueeze, cat, stack, getitem, size,
            getattr_op, dim_op, pad)
