"""Conv1d/2d/3d and ConvTranspose1d/2d/3d: channels-last in TF, with every torch padding mode and group count."""

from __future__ import annotations

import torch
from torch import nn

from .. import layout as lay
from .. import transforms as T
from ..plan import TensorValue
from ..registry import LayerPlan, NotSupported, Weight, module_mapping, op_mapping

A = torch.ops.aten


def explicit_padding(m) -> tuple[tuple[int, int], ...]:
    """torch's padding (int/tuple/'same'/'valid') as (before, after) per spatial dim."""
    if m.padding == "valid":
        return tuple((0, 0) for _ in m.kernel_size)
    if m.padding == "same":  # stride is 1 here (torch refuses 'same' otherwise)
        out = []
        for k, d in zip(m.kernel_size, m.dilation):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))
        return tuple(out)
    return tuple((p, p) for p in m.padding)


def _layout(x, rank: int) -> lay.Perm:
    """Channels last: (N, C, *s) -> (N, *s, C), torch's unbatched (C, *s) -> (*s, C)."""
    if x.rank == rank + 2:
        return lay.channels_last(rank + 2)
    if x.rank == rank + 1:
        return lay.Perm((*range(1, x.rank), 0))
    raise NotSupported(f"input of rank {x.rank} for a {rank}-d conv")


@module_mapping(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def conv(m, call):
    rank = len(m.kernel_size)
    x = call.inputs[0]
    cl = _layout(x, rank)
    depthwise = rank < 3 and m.groups > 1 and m.groups == m.in_channels  # 3-D has no depthwise op: groups split
    if depthwise:
        kernel = T.depthwise_kernel(m.in_channels, rank)
    else:
        kernel = {1: T.CONV1D_KERNEL, 2: T.CONV2D_KERNEL, 3: T.CONV3D_KERNEL}[rank]
    weights = {"kernel": Weight("weight", kernel)}
    if m.bias is not None:
        weights["bias"] = Weight("bias", T.IDENTITY)
    config = {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": tuple(m.kernel_size),
        "stride": tuple(m.stride), "dilation": tuple(m.dilation), "groups": m.groups,
        "padding": explicit_padding(m), "padding_mode": m.padding_mode, "bias": m.bias is not None,
        "batched": x.rank == rank + 2,
    }
    return LayerPlan(type(m).__name__, config, weights, (cl,), cl)


def _output_padding(m, call, x, rank: int) -> tuple[int, ...]:
    """The module's output_padding, or the one forward(x, output_size) implies (a static size only)."""
    size = call.argument("output_size")
    if size is None:
        return tuple(m.output_padding)
    if not all(isinstance(n, int) for n in size):
        raise NotSupported("forward(x, output_size=...) with a size computed at run time")
    spatial = tuple(x.shape[-rank:])
    smallest = [(n - 1) * s - 2 * p + d * (k - 1) + 1
                for n, s, p, d, k in zip(spatial, m.stride, m.padding, m.dilation, m.kernel_size)]
    return tuple(int(want) - low for want, low in zip(list(size)[-rank:], smallest))


@module_mapping(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def conv_transpose(m, call):
    rank = len(m.kernel_size)
    x = call.inputs[0]
    cl = _layout(x, rank)
    if rank == 3:  # runs as a Conv3D (layers/conv.py: tfjs has no Conv3DBackpropInputV2)
        kernel = T.conv_transpose_as_conv_kernel(tuple(m.dilation), m.groups)
    else:
        kernel = T.conv_transpose_kernel(tuple(m.dilation))
    weights = {"kernel": Weight("weight", kernel)}
    if m.bias is not None:
        weights["bias"] = Weight("bias", T.IDENTITY)
    dilated = tuple(d * (k - 1) + 1 for k, d in zip(m.kernel_size, m.dilation))
    config = {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": dilated,
        "stride": tuple(m.stride), "padding": tuple(m.padding), "output_padding": _output_padding(m, call, x, rank),
        "groups": m.groups, "bias": m.bias is not None, "batched": x.rank == rank + 2,
    }
    return LayerPlan(type(m).__name__, config, weights, (cl,), cl)


def _conv_op(c):
    """convNd(input, weight, bias, stride, padding, dilation, groups): padding ints or 'same'/'valid' (.padding)."""
    x, weight, bias = c.arg(0, "input"), c.arg(1, "weight"), c.arg(2, "bias", None)
    rank = x.rank - 2
    if not isinstance(weight, TensorValue):
        raise NotSupported("a conv whose weight is not a tensor")

    def per_axis(v, default):
        v = default if v is None else v
        return tuple(v) * (rank if len(tuple(v)) == 1 else 1) if isinstance(v, (list, tuple)) else (v,) * rank

    stride, padding = per_axis(c.arg(3, "stride", 1), 1), c.arg(4, "padding", 0)
    dilation, groups = per_axis(c.arg(5, "dilation", 1), 1), int(c.arg(6, "groups", 1))
    if isinstance(padding, str):  # torch allows 'same' only at stride 1
        pads = [(0, 0)] * rank if padding == "valid" else [
            (d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(weight.shape[2:], dilation)]
    else:
        pads = [(p, p) for p in per_axis(padding, 0)]
    cl = lay.channels_last(x.rank)
    b = c.tensor(bias, lay.identity(1)) if isinstance(bias, TensorValue) else "None"
    args = f"{c.tensor(x, cl)}, {c.tensor(weight, lay.identity(weight.rank))}, {b}, {stride}, {tuple(pads)}, {dilation}"
    return c.out(f"L.conv({args}, {groups})", cl)


conv_op = op_mapping(A.conv1d.default, A.conv2d.default, A.conv3d.default,
                     A.conv1d.padding, A.conv2d.padding, A.conv3d.padding)(_conv_op)

@op_mapping(A.conv_transpose1d.default, A.conv_transpose2d.input)
def conv_transpose_op(c):
    """conv_transposeNd(input, weight, bias, stride, padding, output_padding, groups, dilation), dilation 1."""
    x, weight, bias = c.arg(0, "input"), c.arg(1, "weight"), c.arg(2, "bias", None)
    rank = x.rank - 2

    def per_axis(v):
        return tuple(v) * (rank if len(tuple(v)) == 1 else 1) if isinstance(v, (list, tuple)) else (v,) * rank

    stride, padding = per_axis(c.arg(3, "stride", 1)), per_axis(c.arg(4, "padding", 0))
    output_padding, groups = per_axis(c.arg(5, "output_padding", 0)), int(c.arg(6, "groups", 1))
    if not isinstance(weight, TensorValue) or per_axis(c.arg(7, "dilation", 1)) != (1,) * rank:
        raise NotSupported("functional conv_transpose with dilation > 1 (nn.ConvTranspose* supports it)")
    cl = lay.channels_last(x.rank)
    b = c.tensor(bias, lay.identity(1)) if isinstance(bias, TensorValue) else "None"
    args = f"{c.tensor(x, cl)}, {c.tensor(weight, lay.identity(weight.rank))}, {b}, {stride}, {padding}"
    return c.out(f"L.conv_transpose({args}, {output_padding}, {groups})", cl)


MAPPINGS = (conv, conv_transpose, conv_op, conv_transpose_op)


# classes of this family not mapped yet, each with its reason (tests/test_verdicts.py keeps every class in one list)
NOT_SUPPORTED = {}
