"""Activations and softmax: modules, and the ATen ops that torch.export records
for their functional and method forms (F.relu, x.sigmoid(), torch.softmax, and
F.mish / F.softplus / F.hardtanh / F.relu6 / F.hardswish / F.hardsigmoid, which
transformers' ACT2FN activations call)."""

from __future__ import annotations

import torch
from torch import nn

A = torch.ops.aten

from ..registry import LayerPlan, NotSupported, module_mapping, op_mapping
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
    return LayerPlan(type(m).__name__, {"axis": want.tf_axis(m.dim)}, {}, (want,), want)


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


def _softmax(fn: str):
    def emit(c):
        """softmax.int(self, dim, dtype=None) and _softmax.default(self, dim, half_to_float)."""
        x = c.arg(0, "self")
        dim = c.arg(1, "dim")
        dtype = c.arg(2, "dtype", None) if c.node.target in (A.softmax.int, A.log_softmax.int) else None
        want = keep_layout(x)
        xs = c.tensor(x, want) if dtype is None else f"tf.cast({c.tensor(x, want)}, {c.render(dtype)})"
        return c.out(f"{fn}({xs}, axis={want.tf_axis(dim)})", want)

    return emit


softmax_op = op_mapping(A.softmax.int, A._softmax.default)(_softmax("tf.nn.softmax"))
log_softmax_op = op_mapping(A.log_softmax.int, A._log_softmax.default)(_softmax("tf.nn.log_softmax"))

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


MAPPINGS = (relu, leaky_relu, gelu, silu, sigmoid, tanh, softmax, relu_op, sigmoid_op, tanh_op, silu_op,
            gelu_op, leaky_relu_op, softmax_op, log_softmax_op, mish_op, hardswish_op, hardsigmoid_op, softplus_op,
            hardtanh_op)


# classes of this family not mapped yet, each with its reason (tests/test_verdicts.py keeps every class in one list)
NOT_SUPPORTED = {
    nn.RReLU: "random negative slope; in eval mode it is LeakyReLU((lower+upper)/2), which has no mapping here yet",
    **{cls: "no TF mapping yet" for cls in (
        nn.CELU, nn.ELU, nn.GLU, nn.Hardshrink, nn.Hardsigmoid, nn.Hardswish, nn.Hardtanh, nn.LogSigmoid, nn.Mish, nn.PReLU, nn.ReLU6, nn.SELU, nn.Softmax2d, nn.Softmin, nn.Softplus, nn.Softshrink, nn.Softsign, nn.Tanhshrink, nn.Threshold)},
}
