"""Arithmetic: + - * / (operators, torch functions and methods), matmul, and
the reductions mean/sum/amax. Elementwise ops keep a shared layout; reductions
translate torch dims into TF axes of the value's layout."""

from __future__ import annotations

import math
import operator

import torch

from .. import layout as lay
from ..plan import PyValue, TensorValue
from ..registry import NotSupported, op_mapping
from ._util import drop_dims, keep_layout

A = torch.ops.aten
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//"}


def _binary(kind: str, swap: bool = False):
    sym = _SYMBOL[kind]

    def emit(c):
        a, b = c.arg(0, "self"), c.arg(1, "other")
        if swap:  # rsub(self, other) = other - self
            a, b = b, a
        alpha = c.node.kwargs.get("alpha", 1)
        if alpha != 1 or c.node.kwargs.get("rounding_mode") is not None:
            raise NotSupported("alpha= / rounding_mode= arguments")
        tensors = [v for v in (a, b) if isinstance(v, TensorValue)]
        if not tensors:  # Python arithmetic on sizes, e.g. x.size(1) // 2
            return PyValue(f"({c.render(a)} {sym} {c.render(b)})", c.em.results[c.node])
        if kind == "floordiv":
            raise NotSupported("floor division of tensors")
        if len(tensors) == 1:  # with a Python number: any layout works, a folded flatten included
            want = tensors[0].layout
            return c.out(f"{c.tensor(a, want)} {sym} {c.tensor(b, want)}", want)
        main = max(tensors, key=lambda t: (t.rank, math.prod(t.shape)))  # the largest keeps its layout
        want = keep_layout(main)
        left, right = (c.tensor(v, want) if v is main else broadcast_operand(c, v, want) for v in (a, b))
        return c.out(f"{left} {sym} {right}", want)

    return emit


def broadcast_operand(c, t: TensorValue, want: lay.Perm) -> str:
    """``t`` arranged to broadcast, as torch does, against a value stored in layout ``want``.

    Torch aligns trailing dims, TF aligns trailing axes. When those already agree ``t`` is used
    as stored; else it is reshaped into ``want``'s axis order (e.g. a (C, 1, 1) scale for an NHWC
    map becomes (1, 1, 1, C)), with one transpose of ``t`` first only if its non-size-1 dims are
    out of order. The feature map itself is never transposed for a small operand.
    """
    if t.rank == 0:
        return c.tensor(t)
    lead = want.rank - t.rank
    order = tuple(p - lead for p in want.perm if p >= lead)  # t's dims in want's TF order
    src = keep_layout(t)
    if [d for d in src.perm if t.shape[d] != 1] != [d for d in order if t.shape[d] != 1]:
        src = lay.Perm(order)
    if all(want.perm[lead + i] == lead + q for i, q in enumerate(src.perm)):  # TF broadcasts it as is
        return c.tensor(t, src)
    shape = [1 if p < lead else -1 if p == lead else t.shape[p - lead] for p in want.perm]
    return f"tf.reshape({c.tensor(t, src)}, {shape})"


add = op_mapping(A.add.Tensor, A.add.Scalar, A.add_.Tensor, operator.add)(_binary("add"))
sub = op_mapping(A.sub.Tensor, A.sub.Scalar, A.sub_.Tensor, operator.sub)(_binary("sub"))
rsub = op_mapping(A.rsub.Scalar, A.rsub.Tensor)(_binary("sub", swap=True))
mul = op_mapping(A.mul.Tensor, A.mul.Scalar, A.mul_.Tensor, operator.mul)(_binary("mul"))
div = op_mapping(A.div.Tensor, A.div.Scalar, A.div_.Tensor, A.div.Tensor_mode, operator.truediv)(_binary("div"))
floordiv = op_mapping(operator.floordiv)(_binary("floordiv"))


@op_mapping(A.neg.default, operator.neg)
def neg(c):
    x = c.arg(0, "self")
    if not isinstance(x, TensorValue):
        return PyValue(f"(-{c.render(x)})", c.em.results[c.node])
    return c.out(f"-{c.tensor(x, x.layout)}", x.layout)


def _unary(fn: str):
    def emit(c):
        x = c.arg(0, "self")  # elementwise: any layout
        return c.out(f"{fn}({c.tensor(x, x.layout)})", x.layout)

    return emit


exp = op_mapping(A.exp.default)(_unary("tf.exp"))
log = op_mapping(A.log.default)(_unary("tf.math.log"))
sqrt = op_mapping(A.sqrt.default)(_unary("tf.sqrt"))
rsqrt = op_mapping(A.rsqrt.default)(_unary("tf.math.rsqrt"))
abs_ = op_mapping(A.abs.default)(_unary("tf.abs"))
reciprocal = op_mapping(A.reciprocal.default)(_unary("tf.math.reciprocal"))


@op_mapping(A.pow.Tensor_Scalar)
def pow_(c):
    x = c.arg(0, "self")
    return c.out(f"tf.pow({c.tensor(x, x.layout)}, {float(c.arg(1, 'exponent'))})", x.layout)


@op_mapping(A.matmul.default, A.bmm.default, A.mm.default)
def matmul(c):
    """A transposed operand (``q @ k.transpose(-2, -1)``) is passed as stored with a transpose flag."""
    a, b = c.arg(0, "self"), c.arg(1, "other")
    if a.rank < 2 or b.rank < 2:
        raise NotSupported("matmul with a 1-D operand")
    ia, ta = _matmul_operand(c, a, allow_transposed=a.rank == b.rank)
    ib, tb = _matmul_operand(c, b, allow_transposed=True)
    flags = (", transpose_a=True" if ta else "") + (", transpose_b=True" if tb else "")
    return c.out(f"L.matmul({ia}, {ib}{flags})", lay.identity(len(c.out_shape)))


@op_mapping(A.linear.default)
def linear(c):
    """F.linear(x, weight, bias) outside an nn.Linear, e.g. with a raw parameter: x @ weight^T + bias."""
    x, w, b = c.arg(0, "input"), c.arg(1, "weight"), c.arg(2, "bias", None)
    expr = f"L.matmul({c.tensor(x, lay.identity(x.rank))}, {c.tensor(w, lay.identity(2))}, transpose_b=True)"
    if isinstance(b, TensorValue):
        expr += f" + {c.tensor(b, lay.identity(1))}"
    return c.out(expr, lay.identity(len(c.out_shape)))


def _matmul_operand(c, x: TensorValue, allow_transposed: bool) -> tuple[str, bool]:
    """(variable, transposed?): as stored if it is torch's layout with only the last two dims swapped."""
    swapped = lay.Perm((*range(x.rank - 2), x.rank - 1, x.rank - 2))
    if allow_transposed and x.layout == swapped:
        return c.tensor(x, swapped), True
    return c.tensor(x, lay.identity(x.rank)), False


def _reduce(fn: str):
    def emit(c):
        """mean.dim / sum.dim_IntList / amax (self, dim, keepdim); the .default forms reduce everything."""
        x = c.arg(0, "self")
        dim = c.arg(1, "dim", None) if len(c.node.args) > 1 or "dim" in c.node.kwargs else None
        keepdim = c.arg(2, "keepdim", False)
        if c.node.kwargs.get("dtype") is not None:
            raise NotSupported("reduction with dtype=")
        want = keep_layout(x)
        if dim is None or dim == []:
            return c.out(f"{fn}({c.tensor(x, want)})", lay.identity(0))
        dims = sorted({d % x.rank for d in (dim if isinstance(dim, (list, tuple)) else [dim])})
        axes = [want.tf_axis(d) for d in dims]
        expr = f"{fn}({c.tensor(x, want)}, {axes}, keepdims={bool(keepdim)})"
        if keepdim:
            return c.out(expr, want)
        return c.out(expr, drop_dims(want, dims))

    return emit


mean = op_mapping(A.mean.dim, A.mean.default)(_reduce("tf.reduce_mean"))
sum_ = op_mapping(A.sum.dim_IntList, A.sum.default)(_reduce("tf.reduce_sum"))
amax = op_mapping(A.amax.default)(_reduce("tf.reduce_max"))

MAPPINGS = (add, sub, rsub, mul, div, floordiv, neg, exp, log, sqrt, rsqrt, abs_, reciprocal, pow_, matmul, linear, mean, sum_,
            amax)
