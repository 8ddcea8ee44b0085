"""Identities at inference (Dropout in eval mode, Identity, copies and detaches), dtype casts,
tensor factories (arange, zeros/ones/full and their ``new_``/``_like`` forms, scalar_tensor),
and the "other" layers, decomposed into their ATen ops: Bilinear, CosineSimilarity,
PairwiseDistance, vector norms (F.normalize, torch.norm), Unfold/Fold and EmbeddingBag.

Factories take their sizes from the op's arguments, so a size torch.export kept symbolic
(a PyValue read with ``tf.shape``) stays dynamic in TF; the ``_like`` forms read the whole
shape of their input at run time and keep its layout.
"""

from __future__ import annotations

import torch
from torch import fx, nn

from .. import layout as lay
from ..plan import PyValue, TensorValue
from ..registry import NotSupported, module_mapping, op_mapping
from ._util import drop_dims, keep_layout, stateless
from .arith import cast_expr, scalar, tf_dtype

A = torch.ops.aten


@module_mapping(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
                nn.Identity)
def identity(m, call):
    return stateless("Identity", call)


@op_mapping(A.contiguous.default, A.clone.default, A.alias.default, A.detach.default, A.detach_.default,
            A.lift_fresh_copy.default)
def identity_op(c):
    x = c.arg(0, "self")
    return c.alias(x, x.layout)


@op_mapping(A.dropout.default, A.feature_dropout.default, A.alpha_dropout.default)
def dropout_op(c):
    x = c.arg(0, "input")
    if c.arg(2, "train", False):
        raise NotSupported("dropout in training mode (call model.eval() first)")
    return c.alias(x, x.layout)


@op_mapping(A.to.dtype, A._to_copy.default, A.to.dtype_layout, A.to.device, A.type_as.default)
def cast(c):
    """x.float(), x.to(dtype), x.to(device, dtype), x.type_as(y): a tf.cast when the dtype changes, else nothing."""
    x = c.arg(0, "self")
    if c.out_meta.dtype == x.dtype:
        return c.alias(x, x.layout)
    return c.out(cast_expr(c.tensor(x, x.layout), x.dtype, c.out_meta.dtype), x.layout)  # to bool: != 0


def _identity_layout(c) -> lay.Perm:
    return lay.identity(len(c.out_shape))


@op_mapping(A.arange.default, A.arange.start, A.arange.start_step)
def arange(c):
    """arange(end) / arange(start, end[, step]); bounds may be sizes read at run time."""
    bounds = [c.em.value(a) for a in c.node.args]
    if len(bounds) == 3 and bounds[2] == 1:
        bounds = bounds[:2]
    if len(bounds) == 2 and bounds[0] == 0:
        bounds = bounds[1:]
    text = ", ".join(scalar(v) if isinstance(v, (int, float)) else c.render(v) for v in bounds)
    return c.out(f"tf.range({text}, dtype={tf_dtype(c.out_meta.dtype)})", _identity_layout(c))


def _fill_value(c, value) -> str:
    """A Python number or a 0-d tensor as a scalar of the op's dtype."""
    if isinstance(value, (int, float, bool)):
        return scalar(value, c.out_meta.dtype)
    return f"tf.cast({c.render(value)}, {tf_dtype(c.out_meta.dtype)})"


def _filled(c, size, value) -> str:
    """TF source for a tensor of torch shape ``size`` (ints or run-time sizes) filled with ``value``."""
    shape = c.render(list(size))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return f"tf.{'zeros' if value == 0 else 'ones'}({shape}, {tf_dtype(c.out_meta.dtype)})"
    return f"tf.fill({shape}, {_fill_value(c, value)})" if len(size) else _fill_value(c, value)


@op_mapping(A.zeros.default, A.ones.default, A.full.default, A.scalar_tensor.default, A.empty.memory_format)
def factory(c):
    """zeros/ones/full(size, value) and scalar_tensor(value). ``empty`` is given zeros: torch leaves it unset."""
    target = c.node.target
    if target == A.scalar_tensor.default:
        return c.out(_filled(c, [], c.arg(0, "s")), _identity_layout(c))
    value = c.arg(1, "fill_value") if target == A.full.default else 1 if target == A.ones.default else 0
    return c.out(_filled(c, c.arg(0, "size"), value), _identity_layout(c))


@op_mapping(A.new_zeros.default, A.new_ones.default, A.new_full.default, A.new_empty.default)
def new_factory(c):
    """x.new_zeros(size) and friends: x gives only dtype/device defaults, which the traced dtype already has."""
    target = c.node.target
    value = c.arg(2, "fill_value") if target == A.new_full.default else 1 if target == A.new_ones.default else 0
    return c.out(_filled(c, c.arg(1, "size"), value), _identity_layout(c))


@op_mapping(A.zeros_like.default, A.ones_like.default, A.full_like.default, A.empty_like.default)
def like_factory(c):
    """zeros_like(x) and friends: x's shape read at run time, in x's layout."""
    x = c.arg(0, "self")
    target = c.node.target
    value = c.arg(1, "fill_value") if target == A.full_like.default else 1 if target == A.ones_like.default else 0
    shape = f"tf.shape({c.tensor(x, x.layout)})"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return c.out(f"tf.{'zeros' if value == 0 else 'ones'}({shape}, {tf_dtype(c.out_meta.dtype)})", x.layout)
    return c.out(f"tf.fill({shape}, {_fill_value(c, value)})", x.layout)


# ---------------------------------------------------------------- the "other" layers, through their ATen ops
def _shared_layout(a, b, rank: int) -> lay.Perm:
    """The layout two operands can be combined in: their common Perm when they agree, else torch's."""
    if a.layout == b.layout and isinstance(a.layout, lay.Perm) and a.rank == b.rank == rank:
        return a.layout
    return lay.identity(rank)


@op_mapping(A.bilinear.default)
def bilinear_op(c):
    """nn.Bilinear / F.bilinear(x1, x2, weight, bias): one MatMul over the flattened leading dims and a sum."""
    x1, x2, weight, bias = c.arg(0, "input1"), c.arg(1, "input2"), c.arg(2, "weight"), c.arg(3, "bias", None)
    args = [c.tensor(x1, lay.identity(x1.rank)), c.tensor(x2, lay.identity(x2.rank)), c.tensor(weight, lay.identity(3))]
    if bias is not None:
        args.append(c.tensor(bias, lay.identity(1)))
    return c.out(f"L.bilinear({', '.join(args)})", lay.identity(len(c.out_shape)))


@op_mapping(A.cosine_similarity.default)
def cosine_similarity_op(c):
    """nn.CosineSimilarity / F.cosine_similarity(x1, x2, dim, eps), in the operands' own layout when they share one."""
    x1, x2 = c.arg(0, "x1"), c.arg(1, "x2")
    rank = len(c.out_shape) + 1
    dim, eps = c.arg(2, "dim", 1) % rank, c.arg(3, "eps", 1e-8)
    want = _shared_layout(x1, x2, rank)
    a, b = (c.tensor(x, want if x.rank == rank else lay.identity(x.rank)) for x in (x1, x2))
    expr = f"L.cosine_similarity({a}, {b}, {want.tf_axis(dim)}, {scalar(float(eps))})"
    return c.out(expr, drop_dims(want, [dim]))


@op_mapping(A.pairwise_distance.default)
def pairwise_distance_op(c):
    """nn.PairwiseDistance / F.pairwise_distance(x1, x2, p, eps, keepdim): p-norm of x1 - x2 + eps on the last dim."""
    x1, x2 = c.arg(0, "x1"), c.arg(1, "x2")
    p, eps, keepdim = float(c.arg(2, "p", 2.0)), float(c.arg(3, "eps", 1e-6)), bool(c.arg(4, "keepdim", False))
    rank = max(x1.rank, x2.rank)
    want = _shared_layout(x1, x2, rank)
    a, b = (c.tensor(x, want if x.rank == rank else lay.identity(x.rank)) for x in (x1, x2))
    expr = f"L.pairwise_distance({a}, {b}, {scalar(p)}, {scalar(eps)}, {want.tf_axis(rank - 1)}, {keepdim})"
    return c.out(expr, want if keepdim else drop_dims(want, [rank - 1]))


@op_mapping(A.linalg_vector_norm.default)
def vector_norm_op(c):
    """torch.linalg.vector_norm (x.norm(p, dim), F.normalize): reduced on the dims' TF axes, layout kept."""
    x = c.arg(0, "self")
    ord_, dim, keepdim = float(c.arg(1, "ord", 2)), c.arg(2, "dim", None), bool(c.arg(3, "keepdim", False))
    if c.node.kwargs.get("dtype") is not None:
        raise NotSupported("vector_norm with dtype=")
    want = keep_layout(x)
    dims = list(range(x.rank)) if dim is None or dim == [] else sorted({d % x.rank for d in (
        dim if isinstance(dim, (list, tuple)) else [dim])})
    axes = [want.tf_axis(d) for d in dims]
    expr = f"L.vector_norm({c.tensor(x, want)}, {scalar(ord_)}, {axes}, {keepdim})"
    return c.out(expr, want if keepdim else drop_dims(want, dims))


def _ints(c, index: int, name: str) -> list[int]:
    values = list(c.arg(index, name))
    if not all(isinstance(v, int) for v in values):
        raise NotSupported(f"{name} known only at run time")
    return values


def _window(c, first: int) -> str:
    """kernel_size, dilation, padding, stride as Python tuples, from argument ``first`` on."""
    names = ("kernel_size", "dilation", "padding", "stride")
    return ", ".join(repr(tuple(_ints(c, first + i, n))) for i, n in enumerate(names))


_COLUMNS_T = lay.Perm((0, 2, 1))  # torch (N, C*kh*kw, L) stored as (N, L, C*kh*kw)


@op_mapping(A.im2col.default)
def im2col_op(c):
    """nn.Unfold / F.unfold: strided slices of the padded map; a channels-last map gives columns stored (N, L, C*K)."""
    x = c.arg(0, "self")
    window = _window(c, 1)
    if x.rank == 3:  # unbatched (C, H, W) -> (C*K, L)
        return c.out(f"L.im2col({c.tensor(x, lay.identity(3))}[None], {window})[0]", lay.identity(2))
    if x.layout == lay.channels_last(4):
        return c.out(f"L.im2col({c.tensor(x, x.layout)}, {window}, channels_last=True)", _COLUMNS_T)
    return c.out(f"L.im2col({c.tensor(x, lay.identity(4))}, {window})", lay.identity(3))


@op_mapping(A.col2im.default)
def col2im_op(c):
    """nn.Fold / F.fold: each kernel position's block spread by the stride, padded into place and summed."""
    x = c.arg(0, "self")
    args = f"{tuple(_ints(c, 1, 'output_size'))!r}, {_window(c, 2)}"
    if x.rank == 2:  # unbatched (C*K, L) -> (C, H, W)
        return c.out(f"L.col2im({c.tensor(x, lay.identity(2))}[None], {args})[0]", lay.identity(3))
    if x.layout == _COLUMNS_T:
        return c.out(f"L.col2im({c.tensor(x, x.layout)}, {args}, channels_last=True)", lay.channels_last(4))
    return c.out(f"L.col2im({c.tensor(x, lay.identity(3))}, {args})", lay.identity(4))


@op_mapping(A.sym_numel.default)
def sym_numel(c):
    """x.numel() that export kept symbolic (a dynamic batch): read at run time (F.embedding_bag of a 2-D input)."""
    x = c.arg(0, "self")
    return PyValue(f"tf.size({c.tensor(x)})", c.em.results[c.node])


class NotComputedBagOutput:
    """embedding_bag's helper outputs (offset2bag, bag_size, max_indices): only the bags are computed."""

    def __repr__(self) -> str:
        return "<embedding_bag's offset2bag/bag_size/max_indices outputs, which bridge does not compute>"


def _regular_bag_size(c):
    """The bag size (an int, or a run-time size) when the offsets are F.embedding_bag's arange(0, numel, n)
    over a flattened (B, n) input; None for any other offsets."""
    ids, offsets = c.node.args[1], c.node.args[2]
    if not (isinstance(ids, fx.Node) and isinstance(offsets, fx.Node)):
        return None
    if offsets.target != A.arange.start_step or ids.target not in (A.reshape.default, A.view.default):
        return None
    start, end, step = offsets.args[:3]
    source = ids.args[0]
    value = source.meta.get("val") if isinstance(source, fx.Node) else None
    if start != 0 or value is None or value.dim() != 2:
        return None
    if isinstance(step, fx.Node):  # x.size(1) kept symbolic (a free sequence length)
        same = step.target == A.sym_size.int and step.args[0] is source and step.args[1] == 1
        return c.render(c.em.value(step)) if same else None
    if not isinstance(step, int) or value.shape[1] != step:
        return None
    if isinstance(end, int) and isinstance(value.shape[0], int) and end != value.shape[0] * step:
        return None
    return step


@op_mapping(A.embedding_bag.padding_idx, A.embedding_bag.default)
def embedding_bag_op(c):
    """nn.EmbeddingBag / F.embedding_bag (sum, mean, max): a bag-membership mask from the offsets, no segment ops."""
    weight, ids, offsets = c.arg(0, "weight"), c.arg(1, "indices"), c.arg(2, "offsets")
    mode, last = c.arg(4, "mode", 0), bool(c.arg(7, "include_last_offset", False))
    per_sample = c.arg(6, "per_sample_weights", None)
    pad = c.arg(8, "padding_idx", None) if c.node.target == A.embedding_bag.padding_idx else None
    pad = pad if pad is not None and pad >= 0 else None  # F.embedding_bag makes a negative index positive
    if ids.rank != 1:
        raise NotSupported("embedding_bag of indices that are not 1-D")
    table = c.tensor(weight, lay.identity(2))
    weights = c.tensor(per_sample, lay.identity(1)) if per_sample is not None else None
    size = None if last else _regular_bag_size(c)
    ids_text = c.tensor(ids, lay.identity(1))
    if size is not None:
        expr = f"L.embedding_bag_regular({table}, {ids_text}, {size}, {mode}, {weights}, {pad})"
    else:
        expr = (f"L.embedding_bag({table}, {ids_text}, {c.tensor(offsets, lay.identity(1))}, {mode}, {weights}, "
                f"{last}, {pad})")
    meta = c.out_meta[0]
    bags = TensorValue(c.em.assign(c.node.name, expr), lay.identity(2), meta.shape, meta.dtype)
    return [bags, NotComputedBagOutput(), NotComputedBagOutput(), NotComputedBagOutput()]


@op_mapping(A.embedding_renorm_.default, A.embedding_renorm.default)
def embedding_renorm_op(c):
    """Refused: Embedding/EmbeddingBag max_norm (the weight rescaled in place while the model runs)."""
    raise NotSupported("max_norm= rescales rows of the embedding weight in place on every call; build the module "
                       "with max_norm=None (renormalize the weight once before converting if needed)")


MAPPINGS = (identity, identity_op, dropout_op, cast, arange, factory, new_factory, like_factory, sym_numel, bilinear_op,
            cosine_similarity_op, pairwise_distance_op, vector_norm_op, im2col_op, col2im_op, embedding_bag_op,
            embedding_renorm_op)

_OPS = "traced through; its ATen op maps to"
DECOMPOSE = {
    nn.Bilinear: f"{_OPS} L.bilinear (one MatMul and a sum)",
    nn.CosineSimilarity: f"{_OPS} L.cosine_similarity (torch's eps-clamped norms)",
    nn.PairwiseDistance: f"{_OPS} L.pairwise_distance (p-norm of x1 - x2 + eps)",
    nn.EmbeddingBag: f"{_OPS} L.embedding_bag (sum/mean/max, offsets, per_sample_weights, padding_idx, "
                     "include_last_offset; max_norm is refused)",
    nn.Unfold: f"{_OPS} L.im2col (strided slices)",
    nn.Fold: f"{_OPS} L.col2im (spread, pad and add)",
}
