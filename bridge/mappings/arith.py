"""Arithmetic: + - * / (operators, torch functions and methods), matmul, and
the reductions mean/sum/amax. Elementwise ops keep a shared layout; reductions
translate torch dims into TF axes of the value's layout."""

from __future__ import annotations

import operator

import torch

from .. import layout as lay
from ..plan import PyValue, TensorValue
from ..registry import NotSupported, op_mapping
from ._util import keep_layout

_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//"}


def _binary(kind: str):
    sym = _SYMBOL[kind]

    def emit(c):
        a, b = c.arg(0, "input"), c.arg(1, "other")
        alpha = c.node.kwargs.get("alpha", 1)
        if alpha != 1 or c.node.kwargs.get("rounding_mode") is not None:
            raise NotSupported("alpha= / rounding_mode= arguments")
        tensors = [v for v in (a, b) if isinstance(v, TensorValue)]
        if not tensors:  # Python arithmetic on sizes, e.g. x.size(1) // 2
            return PyValue(f"({c.render(a)} {sym} {c.render(b)})", c.em.results[c.node])
        if kind == "floordiv":
            raise NotSupported("floor division of tensors")
        layouts = {keep_layout(t) for t in tensors}
        want = layouts.pop() if len(layouts) == 1 and len({t.rank for t in tensors}) == 1 else None
        if want is None:  # broadcasting across ranks follows torch's dim order
            want = lay.identity(max(t.rank for t in tensors))
        left = c.tensor(a, want if isinstance(a, TensorValue) and a.rank == want.rank else None)
        right = c.tensor(b, want if isinstance(b, TensorValue) and b.rank == want.rank else None)
        return c.out(f"{left} {sym} {right}", want)

    return emit


add = op_mapping(operator.add, operator.iadd, torch.add, "method:add")(_binary("add"))
sub = op_mapping(operator.sub, operator.isub, torch.sub, torch.subtract, "method:sub")(_binary("sub"))
mul = op_mapping(operator.mul, operator.imul, torch.mul, torch.multiply, "method:mul")(_binary("mul"))
div = op_mapping(operator.truediv, operator.itruediv, torch.div, torch.true_divide, "method:div")(_binary("div"))
floordiv = op_mapping(operator.floordiv)(_binary("floordiv"))


@op_mapping(operator.neg, torch.neg, "method:neg")
def neg(c):
    x = c.arg(0, "input")
    if not isinstance(x, TensorValue):
        return PyValue(f"(-{c.render(x)})", c.em.results[c.node])
    return c.out(f"-{c.tensor(x)}", keep_layout(x))


@op_mapping(torch.matmul, operator.matmul, torch.bmm, torch.mm, "method:matmul", "method:bmm", "method:mm")
def matmul(c):
    a, b = c.arg(0, "input"), c.arg(1, "other")
    if a.rank < 2 or b.rank < 2:
        raise NotSupported("matmul with a 1-D operand")
    ia, ib = c.tensor(a, lay.identity(a.rank)), c.tensor(b, lay.identity(b.rank))
    return c.out(f"L.matmul({ia}, {ib})", lay.identity(len(c.out_shape)))


def _reduce(fn: str, dim_name: str = "dim"):
    def emit(c):
        x = c.arg(0, "input")
        dim = c.arg(1, dim_name, None)
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
        kept = [d for d in range(x.rank) if d not in dims]
        renumber = {d: i for i, d in enumerate(kept)}
        return c.out(expr, lay.Perm(tuple(renumber[p] for p in want.perm if p in renumber)))

    return emit


mean = op_mapping(torch.mean, "method:mean")(_reduce("tf.reduce_mean"))
sum_ = op_mapping(torch.sum, "method:sum")(_reduce("tf.reduce_sum"))
amax = op_mapping(torch.amax, "method:amax")(_reduce("tf.reduce_max"))

MAPPINGS = (add, sub, mul, div, floordiv, neg, matmul, mean, sum_, amax)
