"""Shape ops, as torch.export records them: flatten, reshape/view, permute/
transpose, squeeze/unsqueeze, cat, stack, split/unbind, expand, slice/select and
tensor indexing (index, gather), sizes, pad.

permute/transpose cost nothing: they change the value's layout, not the
tensor. flatten(1) of a channels-last value keeps TF's order (a ``Flat``
layout) so a following Linear can absorb it; any other consumer gets torch's
order back through one transpose.
"""

from __future__ import annotations

import math
import operator

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from .. import layout as lay
from ..plan import PyValue, TensorValue
from ..registry import LayerPlan, NotSupported, module_mapping, op_mapping
from ._util import drop_dims, insert_dim, keep_layout
from .arith import broadcast_operand

A = torch.ops.aten


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


def torch_sizes(c, index: int, var: str, layout: lay.Perm) -> list | None:
    """Each torch dim's size of argument ``index`` (stored as ``var`` in ``layout``).

    A literal where export kept the size static, else read at run time with ``tf.shape``;
    None when the argument has no traced shape.
    """
    arg = c.node.args[index]
    val = arg.meta.get("val") if isinstance(arg, fx.Node) else None
    if not isinstance(val, torch.Tensor):
        return None
    return [int(n) if isinstance(n, int) else f"tf.shape({var})[{layout.tf_axis(d)}]" for d, n in enumerate(val.shape)]


def _is_static(c, index: int, dim: int) -> bool:
    val = c.node.args[index].meta.get("val") if isinstance(c.node.args[index], fx.Node) else None
    return isinstance(val, torch.Tensor) and isinstance(val.shape[dim], int)


def _emit_flatten(c, x: TensorValue, start: int, end: int, sizes: list | None = None) -> TensorValue:
    """Flatten torch dims start..end. ``sizes`` is torch's target size list (rendered), when the op has one."""
    src, shape, out = _plan_flatten(x, start % x.rank, end % x.rank)
    var = c.tensor(x, src)
    if isinstance(out, lay.Perm):
        if sizes is None:  # flatten(): the merged size is -1, the others as traced (dynamic ones read at run time)
            dims = torch_sizes(c, 0, var, src)
            if dims is not None:
                start, end = start % x.rank, end % x.rank
                merged = math.prod(dims[start:end + 1]) if all(isinstance(n, int) for n in dims[start:end + 1]) else -1
                sizes = [*dims[:start], merged, *dims[end + 1:]]
        if sizes is not None:
            shape = [sizes[q] for q in out.perm]
    return c.out(f"tf.reshape({var}, {_shape_source(shape)})", out)


def _shape_source(shape) -> str:
    return "[" + ", ".join(str(n) for n in shape) + "]"


@module_mapping(nn.Flatten)
def flatten(m, call):
    x = call.inputs[0]
    if m.start_dim % x.rank == 0:
        raise NotSupported("Flatten(start_dim=0) merges the batch dim")
    src, shape, out = _plan_flatten(x, m.start_dim, m.end_dim)
    return LayerPlan("Flatten", {"tail": shape[1:]}, {}, (src,), out)


@op_mapping(A.flatten.using_ints)
def flatten_op(c):
    x = c.arg(0, "self")
    start, end = c.arg(1, "start_dim", 0) % max(x.rank, 1), c.arg(2, "end_dim", -1) % max(x.rank, 1)
    if start >= end:  # nothing merged (rank 1, or start == end): torch returns the input's view
        return c.alias(x, x.layout)
    return _emit_flatten(c, x, start, end)


@op_mapping(A.view.default, A.reshape.default, A._unsafe_view.default)
def reshape(c):
    """A reshape that merges one run of dims is a flatten (layout kept); any other runs in torch order."""
    x = c.arg(0, "self")
    shape = list(c.arg(1, "size"))
    if tuple(c.out_shape) == tuple(x.shape):
        return c.alias(x, x.layout)
    run = _flatten_run(x.shape, c.out_shape)
    if run is not None:
        return _emit_flatten(c, x, *run, sizes=[c.render(n) for n in shape])
    out_rank = len(c.out_shape)
    return c.out(f"tf.reshape({c.tensor(x, lay.identity(x.rank))}, {c.render(shape)})", lay.identity(out_rank))


def _permuted(c, x: TensorValue, dims) -> TensorValue:
    """Same TF tensor, new layout: a torch permute costs nothing at run time."""
    src = keep_layout(x)
    return c.alias(TensorValue(c.tensor(x, src), src, x.shape, x.dtype), lay.permuted(src, tuple(dims)))


@op_mapping(A.permute.default)
def permute(c):
    x = c.arg(0, "self")
    return _permuted(c, x, [d % x.rank for d in c.arg(1, "dims")])


@op_mapping(A.transpose.int)
def transpose(c):
    x = c.arg(0, "self")
    d0, d1 = c.arg(1, "dim0") % x.rank, c.arg(2, "dim1") % x.rank
    dims = list(range(x.rank))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return _permuted(c, x, dims)


@op_mapping(A.t.default)
def t(c):
    """``x.t()``: a 2-D transpose (a 0-D or 1-D tensor is returned as is)."""
    x = c.arg(0, "self")
    return c.alias(x, x.layout) if x.rank < 2 else _permuted(c, x, (1, 0))


@op_mapping(A.numpy_T.default, A.mT.default, A.mH.default, A.adjoint.default)
def matrix_t(c):
    """``x.T`` (all dims reversed) and ``x.mT`` / ``x.mH`` (last two swapped; real tensors): a layout change."""
    x = c.arg(0, "self")
    if x.rank < 2:
        return c.alias(x, x.layout)
    if c.node.target == A.numpy_T.default:
        return _permuted(c, x, tuple(reversed(range(x.rank))))
    return _permuted(c, x, (*range(x.rank - 2), x.rank - 1, x.rank - 2))


@op_mapping(A.squeeze.default, A.squeeze.dim, A.squeeze.dims)
def squeeze(c):
    """Drop size-1 dims in whatever layout the value has: the remaining axes keep their TF order."""
    x = c.arg(0, "self")
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


@op_mapping(A.unsqueeze.default)
def unsqueeze(c):
    x = c.arg(0, "self")
    src = keep_layout(x)
    at, out = insert_dim(src, c.arg(1, "dim") % (x.rank + 1))
    return c.out(f"tf.expand_dims({c.tensor(x, src)}, {at})", out)


@op_mapping(A.cat.default)
def cat(c):
    xs = list(c.arg(0, "tensors"))
    dim = c.arg(1, "dim", 0)
    if len({v.rank for v in xs}) != 1:
        raise NotSupported("cat of tensors with different ranks")
    want = keep_layout(xs[0])
    if any(keep_layout(v) != want for v in xs):
        want = lay.identity(xs[0].rank)
    return c.out(f"tf.concat([{', '.join(c.tensor(v, want) for v in xs)}], {want.tf_axis(dim)})", want)


@op_mapping(A.stack.default)
def stack(c):
    """Stack in the inputs' shared layout (torch order if they differ); the new axis sits beside its neighbour."""
    xs = list(c.arg(0, "tensors"))
    layouts = {keep_layout(v) for v in xs}
    src = layouts.pop() if len(layouts) == 1 else lay.identity(xs[0].rank)
    at, out = insert_dim(src, c.arg(1, "dim", 0) % (xs[0].rank + 1))
    parts = ", ".join(c.tensor(v, src) for v in xs)
    return c.out(f"tf.stack([{parts}], {at})", out)


_END = 2**63 - 1  # what export records for an open slice end


@op_mapping(A.slice.Tensor)
def slice_op(c):
    """x[..., a:b:s] along one torch dim, done on that dim's TF axis: the layout is kept."""
    x = c.arg(0, "self")
    dim = c.arg(1, "dim", 0) % x.rank
    start, end, step = c.arg(2, "start", None), c.arg(3, "end", None), c.arg(4, "step", 1)
    if isinstance(step, int) and step < 1:
        raise NotSupported("slice steps below 1")
    if start in (None, 0) and (end is None or (isinstance(end, int) and end >= x.shape[dim])) and step == 1:
        return c.alias(x, x.layout)
    src = keep_layout(x)
    bounds = ["" if v is None or (v == 0 and i == 0) or (isinstance(v, int) and v >= _END) else c.render(v)
              for i, v in enumerate((start, end))]
    item = ":".join(bounds) + (f":{c.render(step)}" if step != 1 else "")
    return c.out(f"{c.tensor(x, src)}[{_index_at(src.tf_axis(dim), item)}]", src)


@op_mapping(A.select.int)
def select(c):
    """x[..., i] along one torch dim: that dim disappears, the other axes keep their TF order."""
    x = c.arg(0, "self")
    dim, index = c.arg(1, "dim") % x.rank, c.arg(2, "index")
    src = keep_layout(x)
    return c.out(f"{c.tensor(x, src)}[{_index_at(src.tf_axis(dim), c.render(index))}]", drop_dims(src, [dim]))


def _index_at(axis: int, item: str) -> str:
    return ", ".join([":"] * axis + [item])


@op_mapping(A.sym_size.int)
def sym_size(c):
    """A size export kept symbolic (the batch dim): read at run time from the TF tensor."""
    x, dim = c.arg(0, "self"), c.arg(1, "dim") % c.arg(0, "self").rank
    axis = x.layout.tf_axis(dim) if isinstance(x.layout, lay.Perm) else 0
    return PyValue(f"tf.shape({x.var})[{axis}]", c.em.results[c.node])


@op_mapping(operator.getitem)
def getitem(c):
    """An item of a module's tuple output."""
    obj, item = c.arg(0), c.arg(1)
    if isinstance(obj, (list, tuple)):
        return obj[item]
    raise NotSupported(f"indexing a {type(obj).__name__}")


@op_mapping(A.pad.default, A.constant_pad_nd.default)
def pad(c):
    """pad.default(self, pad, mode='constant', value=None); constant_pad_nd(self, pad, value=0)."""
    x = c.arg(0, "self")
    pads = list(c.arg(1, "pad"))
    if c.node.target == A.constant_pad_nd.default:
        mode, value = "constant", c.arg(2, "value", 0)
    else:
        mode, value = c.arg(2, "mode", "constant"), c.arg(3, "value", None)
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise NotSupported(f"padding mode {mode!r}")
    if mode != "constant" and min(pads) < 0:
        raise NotSupported(f"negative {mode} padding")
    want = keep_layout(x)
    by_axis = {want.tf_axis(x.rank - 1 - k): (pads[2 * k], pads[2 * k + 1]) for k in range(len(pads) // 2)}
    return c.out(f"L.pad_axes({c.tensor(x, want)}, {by_axis}, {mode!r}, {float(value or 0.0)})", want)


def _same_size(c, size_arg, x_index: int, dim: int) -> bool:
    """True when an expand size argument is -1 or provably x's own size of torch dim ``dim``."""
    if size_arg == -1:
        return True
    val = c.node.args[x_index].meta.get("val") if isinstance(c.node.args[x_index], fx.Node) else None
    if not isinstance(val, torch.Tensor):
        return False
    own = val.shape[dim]
    if isinstance(size_arg, int):
        return isinstance(own, int) and own == size_arg
    traced = size_arg.meta.get("val") if isinstance(size_arg, fx.Node) else None
    return isinstance(traced, torch.SymInt) and isinstance(own, torch.SymInt) and traced.node.expr == own.node.expr


@op_mapping(A.expand.default)
def expand(c):
    """x.expand(*sizes): a broadcast_to in x's layout (new leading dims lead in TF too); -1 keeps a size."""
    x = c.arg(0, "self")
    raw = list(c.node.args[1])
    k = len(raw) - x.rank
    if k == 0 and all(_same_size(c, raw[d], 0, d) for d in range(x.rank)):
        return c.alias(x, x.layout)
    src = keep_layout(x)
    var = c.tensor(x, src)
    own = torch_sizes(c, 0, var, src) or list(x.shape)
    sizes = [own[q - k] if q >= k and raw[q] == -1 else c.render(c.em.value(raw[q])) for q in range(len(raw))]
    out = lay.Perm((*range(k), *(p + k for p in src.perm)))
    return c.out(f"tf.broadcast_to({var}, {_shape_source([sizes[q] for q in out.perm])})", out)


@op_mapping(A.index.Tensor)
def index(c):
    """x[i] / x[:, i] / x[i, j] with integer index tensors (negative ones count from the end).

    One index tensor at any dim is a gather on that axis; several must start at dim 0 and be
    adjacent (a gather_nd on their broadcast). A boolean mask has a data-dependent size.
    """
    x = c.arg(0, "self")
    indices = list(c.arg(1, "indices"))
    used = [i for i, v in enumerate(indices) if v is not None]
    if any(indices[i].dtype == torch.bool for i in used):
        raise NotSupported("indexing with a boolean mask (its result size depends on the data)")
    if len(used) == 1 and indices[used[0]].rank == 1:  # like index_select: on its TF axis, layout kept
        src = keep_layout(x)
        idx = c.tensor(indices[used[0]], lay.identity(1))
        return c.out(f"L.take({c.tensor(x, src)}, {idx}, axis={src.tf_axis(used[0])})", src)
    var = c.tensor(x, lay.identity(x.rank))
    out = lay.identity(len(c.out_shape))
    if len(used) == 1:
        idx = c.tensor(indices[used[0]], lay.identity(indices[used[0]].rank))
        return c.out(f"L.take({var}, {idx}, axis={used[0]})", out)
    parts = ", ".join(c.tensor(indices[i], lay.identity(indices[i].rank)) for i in used)
    if used == list(range(len(used))):
        return c.out(f"L.take_nd({var}, [{parts}])", out)
    return _take_nd_moved(c, x, used, parts)


def _take_nd_moved(c, x: TensorValue, used: list[int], parts: str) -> TensorValue:
    """Index tensors on non-leading dims: x is read with those dims first, and the result's layout says
    where torch puts the broadcast index dims (in place if the indexed dims are adjacent, else in front)."""
    others = [d for d in range(x.rank) if d not in used]
    var = c.tensor(x, lay.Perm((*used, *others)))
    n_index = len(c.out_shape) - len(others)
    at = used[0] if used == list(range(used[0], used[0] + len(used))) else 0
    perm = (*range(at, at + n_index), *range(at), *range(at + n_index, len(c.out_shape)))
    return c.out(f"L.take_nd({var}, [{parts}])", lay.Perm(perm))


@op_mapping(A.index_select.default)
def index_select(c):
    """x.index_select(dim, index): a gather on that dim's TF axis, so the layout is kept."""
    x, dim, idx = c.arg(0, "self"), c.arg(1, "dim") % c.arg(0, "self").rank, c.arg(2, "index")
    src = keep_layout(x)
    return c.out(f"L.take({c.tensor(x, src)}, {c.tensor(idx, lay.identity(idx.rank))}, axis={src.tf_axis(dim)})",
                 src)


@op_mapping(A.gather.default)
def gather(c):
    """torch.gather(x, dim, index): out[..., i, ...] = x[..., index[..., i, ...], ...] along ``dim``."""
    x, dim, idx = c.arg(0, "self"), c.arg(1, "dim"), c.arg(2, "index")
    if c.arg(3, "sparse_grad", False):
        raise NotSupported("gather with sparse_grad=True")
    ident = lay.identity(x.rank)
    return c.out(f"L.take_along({c.tensor(x, ident)}, {c.tensor(idx, ident)}, axis={dim % x.rank})", ident)


def _several(c, expr: str, layout: lay.Layout) -> list[TensorValue]:
    """Assign a list-valued TF expression (tf.split, tf.unstack) to one variable per torch output."""
    metas = c.out_meta
    names = [c.em.fresh(f"{c.node.name}_{i}") for i in range(len(metas))]
    c.em.lines.append(f"{', '.join(names)}{',' if len(names) == 1 else ''} = {expr}")
    return [TensorValue(n, layout, m.shape, m.dtype) for n, m in zip(names, metas)]


@op_mapping(A.split.Tensor, A.split_with_sizes.default, A.chunk.default)
def split(c):
    """split/chunk along one torch dim, on its TF axis, into as many pieces as torch made.

    Explicit sizes are used as given; equal pieces (split_size, chunk) get their size from the
    dim's size when that is dynamic, and the last piece takes the rest (-1).
    """
    x = c.arg(0, "self")
    dim = c.arg(2, "dim", 0) % x.rank
    src = keep_layout(x)
    var = c.tensor(x, src)
    axis = src.tf_axis(dim)
    count = len(c.out_meta)
    if c.node.target == A.split_with_sizes.default:
        sizes = [c.render(n) for n in c.arg(1, "split_sizes")]
    elif _is_static(c, 0, dim):
        sizes = [m.shape[dim] for m in c.out_meta]
    else:
        piece = c.render(c.arg(1, "split_size")) if c.node.target == A.split.Tensor else \
            f"(tf.shape({var})[{axis}] + {c.arg(1, 'chunks') - 1}) // {c.arg(1, 'chunks')}"
        sizes = [piece] * (count - 1) + [-1]
    return _several(c, f"tf.split({var}, {_shape_source(sizes)}, axis={axis})", src)


@op_mapping(A.unbind.int)
def unbind(c):
    """x.unbind(dim): one tensor per index of ``dim`` (as many as torch made), which disappears from each."""
    x = c.arg(0, "self")
    dim = c.arg(1, "dim", 0) % x.rank
    src = keep_layout(x)
    return _several(c, f"tf.unstack({c.tensor(x, src)}, num={len(c.out_meta)}, axis={src.tf_axis(dim)})",
                    drop_dims(src, [dim]))


@op_mapping(A.expand_as.default)
def expand_as(c):
    """x.expand_as(other): x broadcast, as torch aligns it, to other's run-time shape in other's layout."""
    x, other = c.arg(0, "self"), c.arg(1, "other")
    want = keep_layout(other)
    return c.out(f"tf.broadcast_to({broadcast_operand(c, x, want)}, tf.shape({c.tensor(other, want)}))", want)


@op_mapping(A.unflatten.int)
def unflatten(c):
    """x.unflatten(dim, sizes): the dim's TF axis splits in place (torch order of the new dims), layout kept."""
    x = c.arg(0, "self")
    dim, sizes = c.arg(1, "dim") % x.rank, list(c.arg(2, "sizes"))
    src = keep_layout(x)
    var = c.tensor(x, src)
    k = len(sizes)
    perm = []
    for q in src.perm:
        perm.extend(range(dim, dim + k) if q == dim else [q if q < dim else q + k - 1])
    out = lay.Perm(tuple(perm))
    own = torch_sizes(c, 0, var, src) or list(x.shape)
    torch_out = [*own[:dim], *[c.render(n) for n in sizes], *own[dim + 1:]]
    return c.out(f"tf.reshape({var}, {_shape_source([torch_out[q] for q in out.perm])})", out)


def _channels_last_4d(x: TensorValue) -> bool:
    return x.rank == 4 and isinstance(x.layout, lay.Perm) and x.layout == lay.channels_last(4)


@op_mapping(A.pixel_shuffle.default, A.pixel_unshuffle.default)
def pixel_shuffle(c):
    """pixel_(un)shuffle as reshape/transpose/reshape, NHWC kept when x is a channels-last feature map."""
    x = c.arg(0, "self")
    r = c.arg(1, "upscale_factor" if c.node.target == A.pixel_shuffle.default else "downscale_factor")
    fn = "pixel_shuffle" if c.node.target == A.pixel_shuffle.default else "pixel_unshuffle"
    if _channels_last_4d(x):
        return c.out(f"L.{fn}({c.tensor(x, x.layout)}, {r}, channels_last=True)", x.layout)
    ident = lay.identity(x.rank)
    return c.out(f"L.{fn}({c.tensor(x, ident)}, {r})", ident)


@op_mapping(A.channel_shuffle.default, A.native_channel_shuffle.default)
def channel_shuffle(c):
    """channel_shuffle(x, groups): a constant gather on the channel dim's TF axis, layout kept."""
    x, groups = c.arg(0, "self"), c.arg(1, "groups")
    src = keep_layout(x)
    return c.out(f"L.channel_shuffle({c.tensor(x, src)}, {groups}, axis={src.tf_axis(1)})", src)


_NEAREST = {A.upsample_nearest1d.vec: "nearest", A.upsample_nearest2d.vec: "nearest2d",
            A.upsample_nearest3d.vec: "nearest", A._upsample_nearest_exact1d.vec: "nearest-exact",
            A._upsample_nearest_exact2d.vec: "nearest-exact", A._upsample_nearest_exact3d.vec: "nearest-exact"}
_INTERPOLATING = {A.upsample_linear1d.vec: "linear", A.upsample_bilinear2d.vec: "linear",
                  A.upsample_trilinear3d.vec: "linear", A.upsample_bicubic2d.vec: "cubic"}


@op_mapping(*_NEAREST, *_INTERPOLATING)
def upsample(c):
    """F.interpolate's ATen ops: each spatial dim resampled on its TF axis with constant taps (layout kept).

    ``.vec(input, output_size, [align_corners,] scale_factors)``: the output size comes from the
    traced shape; a given scale factor changes torch's coordinate map (1/scale, not in/out).
    """
    x = c.arg(0, "input")
    nearest = c.node.target in _NEAREST
    mode = _NEAREST.get(c.node.target) or _INTERPOLATING[c.node.target]
    align = False if nearest else bool(c.arg(2, "align_corners", False))
    scales = c.arg(2 if nearest else 3, "scale_factors", None)
    spatial = range(2, x.rank)
    if scales is None:
        scales = [None] * len(spatial)
    src = keep_layout(x)
    axes = {src.tf_axis(d): (int(c.out_shape[d]), None if s is None else float(s)) for d, s in zip(spatial, scales)}
    return c.out(f"L.resample({c.tensor(x, src)}, {axes}, {mode!r}, align_corners={align})", src)


@op_mapping(A.flip.default)
def flip(c):
    """x.flip(dims): tf.reverse on the dims' TF axes, layout kept (torch forbids negative slice steps)."""
    x = c.arg(0, "self")
    src = keep_layout(x)
    axes = sorted({src.tf_axis(d % x.rank) for d in c.arg(1, "dims")})
    if not axes:
        return c.alias(x, x.layout)
    return c.out(f"tf.reverse({c.tensor(x, src)}, {axes})", src)


def _torch_order_flat(c, x: TensorValue) -> tuple[str, list]:
    """(x flattened in torch's element order, x's torch sizes for reshaping back)."""
    ident = lay.identity(x.rank)
    var = c.tensor(x, ident)
    return f"tf.reshape({var}, [-1])", torch_sizes(c, 0, var, ident) or list(x.shape)


@op_mapping(A.roll.default)
def roll(c):
    """torch.roll(x, shifts, dims): slices + concat per dim on its TF axis (tfjs has no Roll op).

    Without dims torch rolls the flattened tensor: flattened in torch's order, rolled, shaped back.
    """
    x = c.arg(0, "self")
    shifts, dims = list(c.arg(1, "shifts")), list(c.arg(2, "dims", []))
    if not dims:
        flat, sizes = _torch_order_flat(c, x)
        rolled = f"L.roll({flat}, [{c.render(shifts[0])}], [0])"
        return c.out(f"tf.reshape({rolled}, {_shape_source(sizes)})", lay.identity(x.rank))
    src = keep_layout(x)
    axes = [src.tf_axis(d % x.rank) for d in dims]
    return c.out(f"L.roll({c.tensor(x, src)}, {c.render(shifts)}, {axes})", src)


def _tiled(c, x: TensorValue, reps: list) -> TensorValue:
    """x.repeat(*reps) (len(reps) >= rank): new leading dims lead in TF too, then one tf.tile in x's layout."""
    k = len(reps) - x.rank
    src = keep_layout(x)
    var = c.tensor(x, src)
    for _ in range(k):
        var = f"tf.expand_dims({var}, 0)"
    out = lay.Perm((*range(k), *(p + k for p in src.perm)))
    return c.out(f"tf.tile({var}, {_shape_source([c.render(reps[q]) for q in out.perm])})", out)


@op_mapping(A.repeat.default)
def repeat(c):
    x, reps = c.arg(0, "self"), list(c.arg(1, "repeats"))
    if len(reps) < x.rank:
        raise NotSupported("repeat with fewer sizes than dims")
    return _tiled(c, x, reps)


@op_mapping(A.tile.default)
def tile(c):
    """torch.tile(x, dims): like repeat, with missing leading dims counted as 1."""
    x, reps = c.arg(0, "self"), list(c.arg(1, "dims"))
    return _tiled(c, x, [1] * (x.rank - len(reps)) + reps)


@op_mapping(A.repeat_interleave.self_int)
def repeat_interleave(c):
    """x.repeat_interleave(r, dim): a gather of range(n * r) // r on the dim's TF axis (layout kept).

    Without dim torch repeats the flattened tensor (in torch's element order).
    """
    x, repeats, dim = c.arg(0, "self"), c.arg(1, "repeats"), c.arg(2, "dim", None)
    r = c.render(repeats)
    if dim is None:
        flat, _ = _torch_order_flat(c, x)
        return c.out(f"tf.gather({flat}, tf.range(tf.size({flat}) * {r}) // {r})", lay.identity(1))
    src = keep_layout(x)
    var = c.tensor(x, src)
    axis = src.tf_axis(dim % x.rank)
    size = x.shape[dim % x.rank] if _is_static(c, 0, dim % x.rank) else f"tf.shape({var})[{axis}]"
    return c.out(f"tf.gather({var}, tf.range({size} * {r}) // {r}, axis={axis})", src)


@op_mapping(A.repeat_interleave.self_Tensor, A.repeat_interleave.Tensor)
def repeat_interleave_tensor(c):
    raise NotSupported("repeat_interleave with a tensor of repeats: the output size depends on the tensor's values "
                       "(give the repeats as a Python int, or index with a constant list)")


@op_mapping(A.nonzero.default, A.masked_select.default, A.argwhere.default, A.unique_dim.default,
            A._unique2.default)
def data_dependent(c):
    """Ops whose result size depends on the values (export gives it an unbacked size): refused with the reason."""
    raise NotSupported("its result size depends on the tensor's values, which a static TF/tfjs graph cannot "
                       "express here (keep a fixed-size form: a mask with torch.where/masked_fill, or topk)")


@op_mapping(A.narrow.default)
def narrow(c):
    """x.narrow(dim, start, length) = x[..., start:start + length] on the dim's TF axis (layout kept)."""
    x = c.arg(0, "self")
    dim, start, length = c.arg(1, "dim") % x.rank, c.arg(2, "start"), c.arg(3, "length")
    if isinstance(start, TensorValue):
        raise NotSupported("narrow with a tensor start")
    if isinstance(start, int) and start < 0:
        if not _is_static(c, 0, dim):
            raise NotSupported("narrow with a negative start on a dynamic dim")
        start += x.shape[dim]
    src = keep_layout(x)
    stop = start + length if isinstance(start, int) and isinstance(length, int) else \
        f"{c.render(start)} + {c.render(length)}"
    item = f"{c.render(start)}:{stop if isinstance(stop, str) else stop}"
    return c.out(f"{c.tensor(x, src)}[{_index_at(src.tf_axis(dim), item)}]", src)


MAPPINGS = (flatten, flatten_op, reshape, permute, transpose, t, squeeze, unsqueeze, cat, stack, slice_op, select,
            sym_size, getitem, pad, expand, index, index_select, gather, split, unbind,
            expand_as, unflatten, pixel_shuffle, channel_shuffle, upsample, flip, roll, repeat, tile,
            repeat_interleave, repeat_interleave_tensor, narrow, matrix_t, data_dependent)


DECOMPOSE = {
    **{cls: "F.pad: the aten pad op is mapped (layout kept)" for cls in (
        nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
        nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d,
        nn.ReplicationPad3d, nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d)},
    nn.Unflatten: "aten.unflatten: a reshape that splits one dim in place (layout kept)",
    nn.PixelShuffle: "aten.pixel_shuffle: reshape/transpose/reshape (NHWC kept after a conv)",
    nn.PixelUnshuffle: "aten.pixel_unshuffle: reshape/transpose/reshape (tfjs lacks SpaceToDepth)",
    nn.ChannelShuffle: "aten.channel_shuffle: one constant gather on the channel axis",
    nn.Upsample: "aten.upsample_*: nearest, nearest-exact, (bi/tri)linear, bicubic as constant gathers and weights;"
                 " 'area' is adaptive_avg_pool (with a scale_factor the export keeps the traced size);"
                 " antialias is not supported yet",
    nn.UpsamplingNearest2d: "aten.upsample_nearest2d (see Upsample)",
    nn.UpsamplingBilinear2d: "aten.upsample_bilinear2d with align_corners=True (see Upsample)",
}


# classes of this family not mapped yet, each with its reason (tests/test_verdicts.py keeps every class in one list)
NOT_SUPPORTED = {}
