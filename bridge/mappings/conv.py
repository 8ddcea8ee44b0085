"""Conv1d and Conv2d: channels-last in TF, with every torch padding mode and group count."""

from __future__ import annotations

from torch import nn

from .. import layout as lay
from .. import transforms as T
from ..registry import LayerPlan, NotSupported, Weight, module_mapping


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


@module_mapping(nn.Conv1d, nn.Conv2d)
def conv(m, call):
    rank = len(m.kernel_size)
    x = call.inputs[0]
    if x.rank != rank + 2:
        raise NotSupported(f"unbatched input of rank {x.rank}")
    depthwise = m.groups > 1 and m.groups == m.in_channels
    if depthwise:
        kernel = T.depthwise_kernel(m.in_channels, rank)
    else:
        kernel = T.CONV2D_KERNEL if rank == 2 else T.CONV1D_KERNEL
    weights = {"kernel": Weight("weight", kernel)}
    if m.bias is not None:
        weights["bias"] = Weight("bias", T.IDENTITY)
    config = {
        "in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": tuple(m.kernel_size),
        "stride": tuple(m.stride), "dilation": tuple(m.dilation), "groups": m.groups,
        "padding": explicit_padding(m), "padding_mode": m.padding_mode, "bias": m.bias is not None,
    }
    cl = lay.channels_last(rank + 2)
    return LayerPlan(type(m).__name__, config, weights, (cl,), cl)


MAPPINGS = (conv,)


# classes of this family not mapped yet, each with its reason (tests/test_verdicts.py keeps every class in one list)
NOT_SUPPORTED = {
    **{cls: "no TF mapping yet" for cls in (
        nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.LazyConv3d, nn.LazyConvTranspose1d, nn.LazyConvTranspose2d, nn.LazyConvTranspose3d)},
}
