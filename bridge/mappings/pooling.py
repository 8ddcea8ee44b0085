"""Max, average, adaptive (average and max), LP pooling and max unpooling over 1, 2 or 3
spatial axes, and the functional forms (ATen ops) of all but LP pooling (channels-last in TF).

One rank-generic mapping per kind: the class says how many spatial axes it
pools (``_SPATIAL``); an input with one axis fewer is torch's unbatched form.
"""

from __future__ import annotations

import torch
from torch import nn

from .. import layout as lay
from ..plan import TensorValue
from ..registry import LayerPlan, NotSupported, module_mapping, op_mapping
from ._util import pair

A = torch.ops.aten

_SPATIAL = {
    nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3,
    nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3,
    nn.LPPool1d: 1, nn.LPPool2d: 2, nn.LPPool3d: 3,
    nn.AdaptiveAvgPool1d: 1, nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3,
    nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3,
    nn.MaxUnpool1d: 1, nn.MaxUnpool2d: 2, nn.MaxUnpool3d: 3,
}


def pool_layout(x, nd: int) -> lay.Perm:
    """Channels-last for N C *spatial, and *spatial C for the unbatched C *spatial."""
    if x.rank == nd + 2:
        return lay.channels_last(x.rank)
    if x.rank == nd + 1:
        return lay.Perm((*range(1, x.rank), 0))
    raise NotSupported(f"{nd}d pooling of a rank-{x.rank} input (torch takes rank {nd + 1} or {nd + 2})")


def _max_config(nd, kernel_size, stride, padding, dilation, ceil_mode):
    k = pair(kernel_size, nd)
    d = pair(dilation, nd)
    return {"kernel_size": k, "stride": pair(stride, nd) if stride else k, "padding": pair(padding, nd),
            "ceil_mode": bool(ceil_mode), "dilation": d if any(v != 1 for v in d) else None}


def _avg_config(nd, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override=None):
    k = pair(kernel_size, nd)
    return {"kernel_size": k, "stride": pair(stride, nd) if stride else k, "padding": pair(padding, nd),
            "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad),
            "divisor_override": divisor_override}


def _plan(m, call, config) -> LayerPlan:
    """The layer named after the torch class; with return_indices its output is (values, indices)."""
    x = call.inputs[0]
    want = pool_layout(x, _SPATIAL[type(m)])
    if getattr(m, "return_indices", False):
        return LayerPlan(type(m).__name__, {**config, "return_indices": True}, {}, (want,), (want, want))
    return LayerPlan(type(m).__name__, config, {}, (want,), want)


@module_mapping(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
def max_pool(m, call):
    return _plan(m, call, _max_config(_SPATIAL[type(m)], m.kernel_size, m.stride, m.padding, m.dilation,
                                      m.ceil_mode))


@module_mapping(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
def avg_pool(m, call):
    return _plan(m, call, _avg_config(_SPATIAL[type(m)], m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                      m.count_include_pad, getattr(m, "divisor_override", None)))


@module_mapping(nn.LPPool1d, nn.LPPool2d, nn.LPPool3d)
def lp_pool(m, call):
    nd = _SPATIAL[type(m)]
    k = pair(m.kernel_size, nd)
    return _plan(m, call, {"kernel_size": k, "stride": pair(m.stride, nd) if m.stride else k,
                           "norm_type": _norm_type(m.norm_type), "ceil_mode": bool(m.ceil_mode)})


def _norm_type(p) -> float | str:
    """A finite p as a float; +-inf as "inf"/"-inf" (generated source cannot spell float infinity)."""
    p = float(p)
    return p if abs(p) != float("inf") else str(p)


@module_mapping(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
def adaptive_avg_pool(m, call):
    return _plan(m, call, {"output_size": pair(m.output_size, _SPATIAL[type(m)])})


@module_mapping(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
def adaptive_max_pool(m, call):
    return _plan(m, call, {"output_size": pair(m.output_size, _SPATIAL[type(m)])})


@module_mapping(nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d)
def max_unpool(m, call):
    """forward(input, indices, output_size=None): both tensors in the same channels-last layout."""
    nd = _SPATIAL[type(m)]
    want = pool_layout(call.inputs[0], nd)
    config = {"kernel_size": pair(m.kernel_size, nd), "stride": pair(m.stride, nd), "padding": pair(m.padding, nd)}
    return LayerPlan(type(m).__name__, config, {}, (want, want), want)


def _args(c, names_defaults):
    return [c.arg(i, n, d) for i, (n, d) in enumerate(names_defaults, start=1)]


def _op_rank(c, targets) -> int:
    return next(nd for nd, t in enumerate(targets, start=1) if c.node.target == t)


_MAX_OPS = (A.max_pool1d.default, A.max_pool2d.default, A.max_pool3d.default)
_AVG_OPS = (A.avg_pool1d.default, A.avg_pool2d.default, A.avg_pool3d.default)
_ADAPTIVE_AVG_OPS = (A.adaptive_avg_pool1d.default, A.adaptive_avg_pool2d.default, A.adaptive_avg_pool3d.default)


def _emit(c, fn: str, nd: int, args) -> object:
    x = c.arg(0, "self")
    want = pool_layout(x, nd)
    return c.out(f"L.{fn}({c.tensor(x, want)}, {', '.join(repr(v) for v in args)})", want)


@op_mapping(*_MAX_OPS)
def max_pool_op(c):
    nd = _op_rank(c, _MAX_OPS)
    k, s, p, d, ceil = _args(c, [("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1),
                                 ("ceil_mode", False)])
    return _emit(c, "max_pool", nd, _max_config(nd, k, s, p, d, ceil).values())


@op_mapping(*_AVG_OPS)
def avg_pool_op(c):
    nd = _op_rank(c, _AVG_OPS)
    names = [("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
             ("count_include_pad", True)] + ([("divisor_override", None)] if nd > 1 else [])
    return _emit(c, "avg_pool", nd, _avg_config(nd, *_args(c, names)).values())


@op_mapping(*_ADAPTIVE_AVG_OPS)
def adaptive_avg_pool_op(c):
    nd = _op_rank(c, _ADAPTIVE_AVG_OPS)
    return _emit(c, "adaptive_avg_pool", nd, [pair(c.arg(1, "output_size"), nd)])


_MAX_INDICES_OPS = (A.max_pool1d_with_indices.default, A.max_pool2d_with_indices.default,
                    A.max_pool3d_with_indices.default)
_ADAPTIVE_MAX_OPS = (A.adaptive_max_pool1d.default, A.adaptive_max_pool2d.default, A.adaptive_max_pool3d.default)


def _emit_pair(c, fn: str, nd: int, args) -> list[TensorValue]:
    """A (values, indices) pooling: one TF call assigned to one variable per torch output."""
    x = c.arg(0, "self")
    want = pool_layout(x, nd)
    names = [c.em.fresh(f"{c.node.name}_{i}") for i in range(2)]
    c.em.lines.append(f"{names[0]}, {names[1]} = L.{fn}({c.tensor(x, want)}, {', '.join(repr(v) for v in args)})")
    return [TensorValue(n, want, m.shape, m.dtype) for n, m in zip(names, c.out_meta)]


@op_mapping(*_MAX_INDICES_OPS)
def max_pool_with_indices_op(c):
    nd = _op_rank(c, _MAX_INDICES_OPS)
    k, s, p, d, ceil = _args(c, [("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1),
                                 ("ceil_mode", False)])
    return _emit_pair(c, "max_pool_with_indices", nd, _max_config(nd, k, s, p, d, ceil).values())


@op_mapping(*_ADAPTIVE_MAX_OPS)
def adaptive_max_pool_op(c):
    nd = _op_rank(c, _ADAPTIVE_MAX_OPS)
    return _emit_pair(c, "adaptive_max_pool_with_indices", nd, [pair(c.arg(1, "output_size"), nd)])


@op_mapping(A.max_unpool2d.default, A.max_unpool3d.default)
def max_unpool_op(c):
    """max_unpool{2,3}d(self, indices, output_size, ...): the output size is explicit at ATen level."""
    x, indices, sizes = c.arg(0, "self"), c.arg(1, "indices"), list(c.arg(2, "output_size"))
    want = pool_layout(x, len(sizes))
    sizes = ", ".join(c.render(n) for n in sizes)  # sizes torch computed from a shape arrive as PyValues
    return c.out(f"L.unpool_to({c.tensor(x, want)}, {c.tensor(indices, want)}, ({sizes},))", want)


MAPPINGS = (max_pool, avg_pool, lp_pool, adaptive_avg_pool, adaptive_max_pool, max_unpool, max_pool_op,
            avg_pool_op, adaptive_avg_pool_op, max_pool_with_indices_op, adaptive_max_pool_op, max_unpool_op)


# classes of this family not mapped yet, each with its reason (tests/test_verdicts.py keeps every class in one list)
NOT_SUPPORTED = {
    nn.FractionalMaxPool2d: "random pooling regions: no deterministic TF equivalent",
    nn.FractionalMaxPool3d: "random pooling regions: no deterministic TF equivalent",
}
