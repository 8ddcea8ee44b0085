"""BatchNorm1d/2d (over channels, last in TF) and LayerNorm (over the trailing dims)."""

from __future__ import annotations

from torch import nn

from .. import layout as lay
from .. import transforms as T
from ..registry import LayerPlan, Weight, module_mapping


@module_mapping(nn.BatchNorm1d, nn.BatchNorm2d)
def batch_norm(m, call):
    x = call.inputs[0]
    want = lay.channels_last(x.rank)  # (N, C) stays, (N, C, L) -> NLC, (N, C, H, W) -> NHWC
    weights, ignored = {}, []
    if m.affine:
        weights.update(gamma=Weight("weight", T.IDENTITY), beta=Weight("bias", T.IDENTITY))
    if m.track_running_stats and m.running_mean is not None:
        weights.update(moving_mean=Weight("running_mean", T.IDENTITY),
                       moving_variance=Weight("running_var", T.IDENTITY))
        ignored.append(("num_batches_tracked", "training counter, unused at inference"))
    config = {"num_features": m.num_features, "eps": float(m.eps), "affine": m.affine,
              "running_stats": m.track_running_stats and m.running_mean is not None}
    return LayerPlan("BatchNorm", config, weights, (want,), want, tuple(ignored))


@module_mapping(nn.LayerNorm)
def layer_norm(m, call):
    x = call.inputs[0]
    k = len(m.normalized_shape)
    # LayerNorm works on the trailing dims: any layout that leaves them last and in order will do
    if isinstance(x.layout, lay.Perm) and x.layout.perm[x.rank - k:] == tuple(range(x.rank - k, x.rank)):
        want = x.layout
    else:
        want = lay.identity(x.rank)
    weights = {}
    if m.elementwise_affine:
        weights["gamma"] = Weight("weight", T.IDENTITY)
        if m.bias is not None:
            weights["beta"] = Weight("bias", T.IDENTITY)
    config = {"normalized_shape": tuple(m.normalized_shape), "eps": float(m.eps),
              "elementwise_affine": m.elementwise_affine, "bias": m.bias is not None}
    return LayerPlan("LayerNorm", config, weights, (want,), want)


MAPPINGS = (batch_norm, layer_norm)
