"""Activations and softmax: modules, and the ATen ops that torch.export records
for their functional and method forms (F.relu, x.sigmoid(), torch.softmax, and
F.mish / F.softplus / F.hardtanh / F.relu6 / F.hardswish / F.hardsigmoid, which
transformers' ACT2FN activations call). Most other activation modules are traced
through (DECOMPOSE) into those ops and the ELU family, GLU, shrink, threshold,
log_sigmoid and eval-mode rrelu ops mapped here; PReLU is a layer with its weight."""

from __future__ import annotations

import math

import torch
from torch import nn

A = torch.ops.aten

from .. import layout as lay
from .. import transforms as T
from ..registry import LayerPlan, NotSupported, Weight, module_mapping, op_mapping
from ._util import keep_layout, stateless


@module_mapping(nn.ReLU)
def relu(m, call):
    return stateless("ReLU", call)


@module_mapping(nn.LeakyReLU)
def leaky_relu(m, call):
    return stateless("LeakyReLU", call, negative_slope=float(m.negative_slope))


@module_mapping(nn.GELU)
def gelu(m, call):
    return stateless("GELU", call, approximate=m.approximate)


@module_mapping(nn.SiLU)
def silu(m, call):
    return stateless("SiLU", call)


@module_mapping(nn.Sigmoid)
def sigmoid(m, call):
    return stateless("Sigmoid", call)


@module_mapping(nn.Tanh)
def tanh(m, call):
    return stateless("Tanh", call)


@module_mapping(nn.Softmax, nn.LogSoftmax)
def softmax(m, call):
    x = call.inputs[0]
    if m.dim is None:
        raise NotSupported("softmax without dim (torch's legacy implicit dim)")
    want = keep_layout(x)
    return LayerPlan(type(m).__name__, {"axis": _axis(want, m.dim)}, {}, (want,), want)


def _axis(layout, dim: int) -> int:
    """The TF axis of torch ``dim``; 0 for a 0-d tensor (softmax over it treats it as one element)."""
    return layout.tf_axis(dim) if layout.rank else 0


@module_mapping(nn.PReLU)
def prelu(m, call):
    """One slope works in any layout; per-channel slopes act on torch dim 1 (channels-last in conv maps)."""
    x = call.inputs[0]
    weights = {"weight": Weight("weight", T.IDENTITY)}
    if m.num_parameters == 1:
        return LayerPlan("PReLU", {"num_parameters": 1, "axis": None}, weights, (x.layout,), x.layout)
    want = keep_layout(x)
    config = {"num_parameters": m.num_parameters, "axis": want.tf_axis(1)}
    return LayerPlan("PReLU", config, weights, (want,), want)


# ---- functional and method forms
def _unary(fn: str):
    def emit(c):
        x = c.arg(0, "self")  # elementwise: any layout, a folded flatten included
        return c.out(f"{fn}({c.tensor(x, x.layout)})", x.layout)

    return emit


relu_op = op_mapping(A.relu.default, A.relu_.default)(_unary("tf.nn.relu"))
sigmoid_op = op_mapping(A.sigmoid.default, A.sigmoid_.default)(_unary("tf.sigmoid"))
tanh_op = op_mapping(A.tanh.default, A.tanh_.default)(_unary("tf.tanh"))
silu_op = op_mapping(A.silu.default, A.silu_.default)(_unary("L.silu"))


@op_mapping(A.gelu.default, A.gelu_.default)
def gelu_op(c):
    x = c.arg(0, "self")
    approximate = c.arg(1, "approximate", "none")
    return c.out(f"L.gelu({c.tensor(x, x.layout)}, {approximate!r})", x.layout)


@op_mapping(A.leaky_relu.default, A.leaky_relu_.default)
def leaky_relu_op(c):
    x = c.arg(0, "self")
    slope = float(c.arg(1, "negative_slope", 0.01))
    return c.out(f"tf.nn.leaky_relu({c.tensor(x, x.layout)}, alpha={slope})", x.layout)


def _softmax(log: str):
    def emit(c):
        """softmax.int(self, dim, dtype=None) and _softmax.default(self, dim, half_to_float)."""
        x = c.arg(0, "self")
        dim = c.arg(1, "dim")
        dtype = c.arg(2, "dtype", None) if c.node.target in (A.softmax.int, A.log_softmax.int) else None
        want = keep_layout(x)
        xs = c.tensor(x, want) if dtype is None else f"tf.cast({c.tensor(x, want)}, {c.render(dtype)})"
        return c.out(f"L.softmax({xs}, {_axis(want, dim)}{log})", want)

    return emit


softmax_op = op_mapping(A.softmax.int, A._softmax.default)(_softmax(""))
log_softmax_op = op_mapping(A.log_softmax.int, A._log_softmax.default)(_softmax(", log=True"))

mish_op = op_mapping(A.mish.default)(_unary("L.mish"))
hardswish_op = op_mapping(A.hardswish.default)(_unary("L.hardswish"))
hardsigmoid_op = op_mapping(A.hardsigmoid.default)(_unary("L.hardsigmoid"))


@op_mapping(A.softplus.default)
def softplus_op(c):
    """softplus(x, beta=1, threshold=20): linear above threshold/beta, as torch does."""
    x = c.arg(0, "self")
    beta, threshold = float(c.arg(1, "beta", 1.0)), float(c.arg(2, "threshold", 20.0))
    return c.out(f"L.softplus({c.tensor(x, x.layout)}, {beta!r}, {threshold!r})", x.layout)


@op_mapping(A.hardtanh.default, A.hardtanh_.default, A.relu6.default)
def hardtanh_op(c):
    """F.hardtanh(x, min_val, max_val) and F.relu6 (hardtanh(x, 0, 6)): a clamp."""
    x = c.arg(0, "self")
    if c.node.target == A.relu6.default:
        low, high = 0.0, 6.0
    else:
        low, high = float(c.arg(1, "min_val", -1.0)), float(c.arg(2, "max_val", 1.0))
    return c.out(f"tf.clip_by_value({c.tensor(x, x.layout)}, {low!r}, {high!r})", x.layout)


def _call(fn: str, *params: tuple[str, float]):
    """Op ``fn(x, param...)`` with each (name, default) read by position after self, or by keyword."""
    def emit(c):
        x = c.arg(0, "self")
        values = [float(c.arg(i + 1, name, default)) for i, (name, default) in enumerate(params)]
        return c.out(f"{fn}({', '.join([c.tensor(x, x.layout), *map(repr, values)])})", x.layout)

    return emit


elu_op = op_mapping(A.elu.default, A.elu_.default)(_call("L.elu", ("alpha", 1.0), ("scale", 1.0), ("input_scale", 1.0)))
celu_op = op_mapping(A.celu.default, A.celu_.default)(_call("L.celu", ("alpha", 1.0)))
softshrink_op = op_mapping(A.softshrink.default)(_call("L.softshrink", ("lambd", 0.5)))
hardshrink_op = op_mapping(A.hardshrink.default)(_call("L.hardshrink", ("lambd", 0.5)))
threshold_op = op_mapping(A.threshold.default, A.threshold_.default)(_call("L.threshold", ("threshold", 0.0),
                                                                              ("value", 0.0)))
log_sigmoid_op = op_mapping(A.log_sigmoid.default)(_unary("L.log_sigmoid"))


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


@op_mapping(A.selu.default, A.selu_.default)
def selu_op(c):
    x = c.arg(0, "self")
    return c.out(f"L.elu({c.tensor(x, x.layout)}, {SELU_ALPHA!r}, {SELU_SCALE!r})", x.layout)


@op_mapping(A.glu.default)
def glu_op(c):
    x = c.arg(0, "self")
    want = keep_layout(x)
    return c.out(f"L.glu({c.tensor(x, want)}, {want.tf_axis(c.arg(1, 'dim', -1))})", want)


@op_mapping(A.prelu.default)
def prelu_op(c):
    """F.prelu(x, weight) with a weight tensor of one slope, or one per channel (torch dim 1)."""
    x, weight = c.arg(0, "self"), c.arg(1, "weight")
    w = c.tensor(weight, lay.identity(weight.rank))
    if math.prod(weight.shape) == 1:
        return c.out(f"L.prelu({c.tensor(x, x.layout)}, {w}, None)", x.layout)
    want = keep_layout(x)
    return c.out(f"L.prelu({c.tensor(x, want)}, {w}, {want.tf_axis(1)})", want)


@op_mapping(A.rrelu.default, A.rrelu_.default)
def rrelu_op(c):
    """Eval-mode RReLU is LeakyReLU with the mean slope (lower + upper) / 2; training draws random slopes."""
    if c.arg(3, "training", False):
        raise NotSupported("RReLU in training mode draws a random slope per element")
    x = c.arg(0, "self")
    slope = (float(c.arg(1, "lower", 1 / 8)) + float(c.arg(2, "upper", 1 / 3))) / 2
    return c.out(f"tf.nn.leaky_relu({c.tensor(x, x.layout)}, alpha={slope!r})", x.layout)


MAPPINGS = (relu, leaky_relu, gelu, silu, sigmoid, tanh, softmax, prelu, relu_op, sigmoid_op, tanh_op, silu_op,
            gelu_op, leaky_relu_op, softmax_op, log_softmax_op, mish_op, hardswish_op, hardsigmoid_op, softplus_op,
            hardtanh_op, elu_op, celu_op, selu_op, glu_op, softshrink_op, hardshrink_op, threshold_op,
            log_sigmoid_op, prelu_op, rrelu_op)

# traced through: their ATen ops are mapped above (or in arith.py: abs, add, div, sub, neg)
DECOMPOSE = {
    nn.ReLU6: "hardtanh(x, 0, 6)",
    nn.Hardtanh: "hardtanh: a clamp",
    nn.Hardsigmoid: "hardsigmoid", nn.Hardswish: "hardswish", nn.Mish: "mish",
    nn.Softplus: "softplus(x, beta, threshold)",
    nn.Softsign: "x / (1 + |x|) (tfjs has no Softsign op)",
    nn.Tanhshrink: "x - tanh(x)",
    nn.Softmin: "softmax(-x, dim)", nn.Softmax2d: "softmax over dim -3",
    nn.ELU: "elu", nn.SELU: "selu: elu with fixed alpha and scale", nn.CELU: "celu: elu with input_scale 1/alpha",
    nn.GLU: "glu: a * sigmoid(b) over the halves of dim",
    nn.Softshrink: "softshrink", nn.Hardshrink: "hardshrink", nn.Threshold: "threshold(x, threshold, value)",
    nn.LogSigmoid: "log_sigmoid: min(x, 0) - log1p(exp(-|x|))",
    nn.RReLU: "eval mode: leaky_relu with slope (lower + upper) / 2; training mode is not supported",
}


# classes of this family not mapped yet (tests/test_verdicts.py keeps every class in one list)
NOT_SUPPORTED: dict = {}
