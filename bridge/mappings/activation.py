"""Activations and softmax: modules and their functional / method forms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
        x = c.arg(0, "input")  # elementwise: any layout, a folded flatten included
        return c.out(f"{fn}({c.tensor(x, x.layout)})", x.layout)

    return emit


relu_op = op_mapping(F.relu, torch.relu, "method:relu")(_unary("tf.nn.relu"))
sigmoid_op = op_mapping(torch.sigmoid, F.sigmoid, "method:sigmoid")(_unary("tf.sigmoid"))
tanh_op = op_mapping(torch.tanh, F.tanh, "method:tanh")(_unary("tf.tanh"))
silu_op = op_mapping(F.silu)(_unary("L.silu"))


@op_mapping(F.gelu)
def gelu_op(c):
    x = c.arg(0, "input")
    approximate = c.arg(1, "approximate", "none")
    return c.out(f"L.gelu({c.tensor(x, x.layout)}, {approximate!r})", x.layout)


@op_mapping(F.leaky_relu)
def leaky_relu_op(c):
    x = c.arg(0, "input")
    slope = float(c.arg(1, "negative_slope", 0.01))
    return c.out(f"tf.nn.leaky_relu({c.tensor(x, x.layout)}, alpha={slope})", x.layout)


def _softmax(fn: str):
    def emit(c):
        x = c.arg(0, "input")
        dim = c.arg(1, "dim", None)
        if dim is None:
            raise NotSupported("softmax without dim")
        # F.softmax(input, dim, _stacklevel, dtype); torch.softmax(input, dim, dtype); x.softmax(dim, dtype)
        dtype = c.arg(3 if c.node.target in (F.softmax, F.log_softmax) else 2, "dtype", None)
        want = keep_layout(x)
        xs = c.tensor(x, want) if dtype is None else f"tf.cast({c.tensor(x, want)}, {c.render(dtype)})"
        return c.out(f"{fn}({xs}, axis={want.tf_axis(dim)})", want)

    return emit


softmax_op = op_mapping(F.softmax, torch.softmax, "method:softmax")(_softmax("tf.nn.softmax"))
log_softmax_op = op_mapping(F.log_softmax, torch.log_softmax, "method:log_softmax")(_softmax("tf.nn.log_softmax"))

MAPPINGS = (relu, leaky_relu, gelu, silu, sigmoid, tanh, softmax, relu_op, sigmoid_op, tanh_op, silu_op,
            gelu_op, leaky_relu_op, softmax_op, log_softmax_op)
