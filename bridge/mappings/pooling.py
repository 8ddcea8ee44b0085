"""MaxPool2d, AvgPool2d, AdaptiveAvgPool2d and their functional forms (NHWC in TF)."""

from __future__ import annotations

import torch
from torch import nn

from .. import layout as lay
from ..registry import LayerPlan, NotSupported, module_mapping, op_mapping
from ._util import pair

A = torch.ops.aten


def _max_config(kernel_size, stride, padding, dilation, ceil_mode, return_indices=False):
    if return_indices:
        raise NotSupported("return_indices=True")
    if pair(dilation) != (1, 1):
        raise NotSupported("max pooling with dilation > 1")
    k = pair(kernel_size)
    return {"kernel_size": k, "stride": pair(stride) if stride else k, "padding": pair(padding),
            "ceil_mode": bool(ceil_mode)}


def _avg_config(kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    k = pair(kernel_size)
    return {"kernel_size": k, "stride": pair(stride) if stride else k, "padding": pair(padding),
            "ceil_mode": bool(ceil_mode), "count_include_pad": bool(count_include_pad),
            "divisor_override": divisor_override}


def _check_rank(x):
    if x.rank != 4:
        raise NotSupported(f"2d pooling of an unbatched (rank {x.rank}) input")


@module_mapping(nn.MaxPool2d)
def max_pool(m, call):
    _check_rank(call.inputs[0])
    cfg = _max_config(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)
    return LayerPlan("MaxPool2d", cfg, {}, (lay.channels_last(4),), lay.channels_last(4))


@module_mapping(nn.AvgPool2d)
def avg_pool(m, call):
    _check_rank(call.inputs[0])
    cfg = _avg_config(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)
    return LayerPlan("AvgPool2d", cfg, {}, (lay.channels_last(4),), lay.channels_last(4))


@module_mapping(nn.AdaptiveAvgPool2d)
def adaptive_avg_pool(m, call):
    _check_rank(call.inputs[0])
    return LayerPlan("AdaptiveAvgPool2d", {"output_size": pair(m.output_size)}, {},
                     (lay.channels_last(4),), lay.channels_last(4))


def _args(c, names_defaults):
    return [c.arg(i, n, d) for i, (n, d) in enumerate(names_defaults, start=1)]


@op_mapping(A.max_pool2d.default)
def max_pool_op(c):
    x = c.arg(0, "self")
    _check_rank(x)
    k, s, p, d, ceil, ri = _args(c, [("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1),
                                     ("ceil_mode", False), ("return_indices", False)])
    cfg = _max_config(k, s, p, d, ceil, ri)
    cl = lay.channels_last(4)
    return c.out(f"L.max_pool2d({c.tensor(x, cl)}, {cfg['kernel_size']}, {cfg['stride']}, {cfg['padding']}, "
                 f"{cfg['ceil_mode']})", cl)


@op_mapping(A.avg_pool2d.default)
def avg_pool_op(c):
    x = c.arg(0, "self")
    _check_rank(x)
    k, s, p, ceil, cip, div = _args(c, [("kernel_size", None), ("stride", None), ("padding", 0),
                                        ("ceil_mode", False), ("count_include_pad", True), ("divisor_override", None)])
    cfg = _avg_config(k, s, p, ceil, cip, div)
    cl = lay.channels_last(4)
    args = ", ".join(repr(v) for v in cfg.values())
    return c.out(f"L.avg_pool2d({c.tensor(x, cl)}, {args})", cl)


@op_mapping(A.adaptive_avg_pool2d.default)
def adaptive_avg_pool_op(c):
    x = c.arg(0, "self")
    _check_rank(x)
    cl = lay.channels_last(4)
    return c.out(f"L.adaptive_avg_pool2d({c.tensor(x, cl)}, {pair(c.arg(1, 'output_size'))})", cl)


MAPPINGS = (max_pool, avg_pool, adaptive_avg_pool, max_pool_op, avg_pool_op, adaptive_avg_pool_op)


# classes of this family not mapped yet, each with its reason (tests/test_verdicts.py keeps every class in one list)
NOT_SUPPORTED = {
    nn.FractionalMaxPool2d: "random pooling regions: no deterministic TF equivalent",
    nn.FractionalMaxPool3d: "random pooling regions: no deterministic TF equivalent",
    **{cls: "no TF mapping yet" for cls in (
        nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.AvgPool1d, nn.AvgPool3d, nn.LPPool1d, nn.LPPool2d, nn.LPPool3d, nn.MaxPool1d, nn.MaxPool3d, nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d)},
}
