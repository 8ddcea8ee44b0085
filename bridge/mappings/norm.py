"""BatchNorm1d/2d/3d and SyncBatchNorm (over channels, last in TF), InstanceNorm1d/2d/3d, GroupNorm,
LocalResponseNorm and the legacy CrossMapLRN2d (channels-last), LayerNorm (over the trailing dims), and
RMSNorm, and the ops F.layer_norm / F.rms_norm record (hand-written RMS norms like
Llama's map through the arith ops)."""

from __future__ import annotations

import torch
from torch import nn

from .. import layout as lay
from .. import transforms as T
from ..plan import TensorValue
from ..registry import LayerPlan, NotSupported, Weight, module_mapping, op_mapping

A = torch.ops.aten


# The Lazy forms subclass _BatchNorm / _InstanceNorm, not their base: listed here so their verdict is this mapping
# (after their first call they are the base class, which is what a mapping sees).
@module_mapping(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
                nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)
def batch_norm(m, call):
    """SyncBatchNorm syncs only in distributed training: in eval it is the BatchNorm of its input's rank."""
    x = call.inputs[0]
    want = lay.channels_last(x.rank)  # (N, C) stays, (N, C, L) -> NLC, (N, C, H, W) -> NHWC, ... NDHWC
    weights, ignored = _stats_weights(m)
    config = {"num_features": m.num_features, "eps": float(m.eps), "affine": m.affine,
              "running_stats": m.track_running_stats and m.running_mean is not None}
    return LayerPlan("BatchNorm", config, weights, (want,), want, tuple(ignored))


def _stats_weights(m) -> tuple[dict, list]:
    """gamma/beta when affine, the running stats when tracked (eval uses them), and what is ignored."""
    weights, ignored = {}, []
    if m.affine:
        weights.update(gamma=Weight("weight", T.IDENTITY), beta=Weight("bias", T.IDENTITY))
    if m.track_running_stats and m.running_mean is not None:
        weights.update(moving_mean=Weight("running_mean", T.IDENTITY),
                       moving_variance=Weight("running_var", T.IDENTITY))
        ignored.append(("num_batches_tracked", "training counter, unused at inference"))
    return weights, ignored


@module_mapping(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
                nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d)
def instance_norm(m, call):
    """Batched (N, C, *) goes channels-last; unbatched (C, *) moves C last too."""
    x = call.inputs[0]
    batched = x.rank == m._get_no_batch_dim() + 1
    want = lay.channels_last(x.rank) if batched else lay.Perm((*range(1, x.rank), 0))
    weights, ignored = _stats_weights(m)
    config = {"num_features": m.num_features, "eps": float(m.eps), "affine": m.affine,
              "running_stats": m.track_running_stats and m.running_mean is not None, "batched": batched}
    return LayerPlan("InstanceNorm", config, weights, (want,), want, tuple(ignored))


@module_mapping(nn.GroupNorm)
def group_norm(m, call):
    want = lay.channels_last(call.inputs[0].rank)
    weights = {"gamma": Weight("weight", T.IDENTITY), "beta": Weight("bias", T.IDENTITY)} if m.affine else {}
    config = {"num_groups": m.num_groups, "num_channels": m.num_channels, "eps": float(m.eps), "affine": m.affine}
    return LayerPlan("GroupNorm", config, weights, (want,), want)


@op_mapping(A.group_norm.default)
def group_norm_op(c):
    """F.group_norm: group_norm(input, num_groups, weight, bias, eps, cudnn_enabled)."""
    x, groups = c.arg(0, "input"), int(c.arg(1, "num_groups"))
    weight, bias, eps = c.arg(2, "weight", None), c.arg(3, "bias", None), c.arg(4, "eps", 1e-5)
    want = lay.channels_last(x.rank)
    params = [c.tensor(v, lay.identity(v.rank)) if isinstance(v, TensorValue) else "None" for v in (weight, bias)]
    return c.out(f"L.group_norm({c.tensor(x, want)}, {groups}, {float(eps)!r}, {params[0]}, {params[1]})", want)


def _stats_op(kind: str):
    def emit(c):
        """batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled);
        instance_norm(... same, with use_input_stats for training)."""
        x = c.arg(0, "input")
        want = lay.channels_last(x.rank)
        weight, bias, mean, var = (c.arg(i, n, None) for i, n in
                                   enumerate(("weight", "bias", "running_mean", "running_var"), 1))
        batch_stats = bool(c.arg(5, "training" if kind == "batch" else "use_input_stats")) or mean is None
        axes = x.rank - 1 if kind == "batch" else x.rank - 2  # all but channels / the spatial axes
        params = [c.tensor(v, lay.identity(v.rank)) if isinstance(v, TensorValue) else "None"
                  for v in (weight, bias) + ((None, None) if batch_stats else (mean, var))]
        args = f"{c.tensor(x, want)}, {axes}, {float(c.arg(7, 'eps')) !r}, {', '.join(params)}"
        return c.out(f"L.channel_norm({args})", want)

    return emit


batch_norm_op = op_mapping(A.batch_norm.default)(_stats_op("batch"))
instance_norm_op = op_mapping(A.instance_norm.default)(_stats_op("instance"))


@module_mapping(nn.LocalResponseNorm)
def local_response_norm(m, call):
    want = lay.channels_last(call.inputs[0].rank)
    config = {"size": int(m.size), "alpha": float(m.alpha), "beta": float(m.beta), "k": float(m.k)}
    return LayerPlan("LocalResponseNorm", config, {}, (want,), want)


@module_mapping(nn.CrossMapLRN2d)
def cross_map_lrn2d(m, call):
    """The legacy (Lua torch) form: 4-D input only, a channel window unlike LocalResponseNorm's."""
    x = call.inputs[0]
    if x.rank != 4:
        raise NotSupported(f"CrossMapLRN2d takes 4-D input, got rank {x.rank}")
    want = lay.channels_last(4)
    config = {"size": int(m.size), "alpha": float(m.alpha), "beta": float(m.beta), "k": float(m.k),
              "channels": int(x.shape[1])}
    return LayerPlan("CrossMapLRN2d", config, {}, (want,), want)


def _trailing_layout(x, k: int) -> lay.Perm:
    """A layout that leaves the last ``k`` torch dims last in TF and in order (x's own if it does)."""
    if isinstance(x.layout, lay.Perm) and x.layout.perm[x.rank - k:] == tuple(range(x.rank - k, x.rank)):
        return x.layout
    return lay.identity(x.rank)


@module_mapping(nn.LayerNorm)
def layer_norm(m, call):
    x = call.inputs[0]
    want = _trailing_layout(x, len(m.normalized_shape))  # any layout that keeps the normalized dims last
    weights = {}
    if m.elementwise_affine:
        weights["gamma"] = Weight("weight", T.IDENTITY)
        if m.bias is not None:
            weights["beta"] = Weight("bias", T.IDENTITY)
    config = {"normalized_shape": tuple(m.normalized_shape), "eps": float(m.eps),
              "elementwise_affine": m.elementwise_affine, "bias": m.bias is not None}
    return LayerPlan("LayerNorm", config, weights, (want,), want)


@module_mapping(nn.RMSNorm)
def rms_norm(m, call):
    """x / sqrt(mean(x^2) + eps) over the trailing dims; eps=None is torch's finfo(float32).eps."""
    x = call.inputs[0]
    want = _trailing_layout(x, len(m.normalized_shape))
    eps = float(torch.finfo(torch.float32).eps) if m.eps is None else float(m.eps)
    weights = {"gamma": Weight("weight", T.IDENTITY)} if m.elementwise_affine else {}
    config = {"normalized_shape": tuple(m.normalized_shape), "eps": eps, "elementwise_affine": m.elementwise_affine}
    return LayerPlan("RMSNorm", config, weights, (want,), want)


def _norm_op(kind: str):
    def emit(c):
        """layer_norm(input, normalized_shape, weight, bias, eps) / rms_norm(input, normalized_shape, weight, eps)."""
        x, shape = c.arg(0, "input"), list(c.arg(1, "normalized_shape"))
        want = _trailing_layout(x, len(shape))
        weight = c.arg(2, "weight", None)
        if kind == "layer":
            bias, eps = c.arg(3, "bias", None), c.arg(4, "eps", 1e-5)
        else:
            bias, eps = None, c.arg(3, "eps", None)
            eps = float(torch.finfo(x.dtype).eps) if eps is None else eps
        params = [c.tensor(v, lay.identity(v.rank)) if isinstance(v, TensorValue) else "None" for v in (weight, bias)]
        args = f"{c.tensor(x, want)}, {len(shape)}, {float(eps)!r}, {params[0]}"
        args += f", {params[1]}" if kind == "layer" else ""
        return c.out(f"L.{kind}_norm({args})", want)

    return emit


layer_norm_op = op_mapping(A.layer_norm.default)(_norm_op("layer"))
rms_norm_op = op_mapping(A.rms_norm.default)(_norm_op("rms"))

MAPPINGS = (batch_norm, instance_norm, group_norm, local_response_norm, cross_map_lrn2d, layer_norm, rms_norm,
            layer_norm_op, rms_norm_op, group_norm_op, batch_norm_op, instance_norm_op)


# classes of this family not mapped yet, each with its reason (tests/test_verdicts.py keeps every class in one list)
NOT_SUPPORTED = {}
