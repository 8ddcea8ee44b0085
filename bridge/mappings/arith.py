"""Arithmetic: + - * / (operators, torch functions and methods), comparisons and
logical ops, where/masked_fill, clamp/maximum/minimum, matmul/addmm, unary math
(exp, log, cos, sin, erf ...), cumsum, tril/triu, and the reductions
mean/sum/amax. Elementwise ops keep a shared layout; reductions translate torch
dims into TF axes of the value's layout. Operands are cast to the dtype torch
computes in (e.g. an int64 mask times a float), since TF does not promote."""

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


def scalar(value, dtype: torch.dtype | None = None) -> str:
    """A Python number as TF source: inf/nan spelled out; a typed constant when ``dtype`` is given."""
    if isinstance(value, float) and not math.isfinite(value):
        text = f"float({str(value)!r})"
    else:
        text = repr(value)
    return f"tf.constant({text}, {tf_dtype(dtype)})" if dtype is not None else text


def tf_dtype(dtype: torch.dtype) -> str:
    return f"tf.{str(dtype).replace('torch.', '')}"


def cast_expr(text: str, src: torch.dtype, dst: torch.dtype) -> str:
    """``text`` (a tensor of torch dtype ``src``) as ``dst``; to bool it is ``!= 0``, as torch means it.

    tfjs wasm's Cast copies the numbers into a byte array, so a plain cast would turn 0.5
    into False (and -1 into 255) there.
    """
    if src == dst:
        return text
    if dst == torch.bool:
        return f"tf.not_equal({text}, 0)"
    return f"tf.cast({text}, {tf_dtype(dst)})"


def compute_dtype(values) -> torch.dtype:
    """The dtype torch compares in: tensor dtypes promoted, and a Python float lifts integers."""
    dtypes = [v.dtype for v in values if isinstance(v, TensorValue)]
    result = dtypes[0]
    for d in dtypes[1:]:
        result = torch.promote_types(result, d)
    if not result.is_floating_point and any(isinstance(v, float) for v in values):
        result = torch.get_default_dtype()
    return result


def operand(c, v, want: lay.Layout, main: TensorValue, dtype: torch.dtype | None, typed: bool = False) -> str:
    """One operand of an elementwise op, in ``want``'s arrangement and cast to ``dtype`` (None: as it is)."""
    if isinstance(v, PyValue):  # a size read at run time is an int32 scalar tensor in TF
        literal = v.expr.lstrip("-").isdigit()
        return v.expr if literal and not typed else f"tf.cast({v.expr}, {tf_dtype(dtype)})"
    if not isinstance(v, TensorValue):
        return scalar(v, dtype if typed else None)
    text = c.tensor(v, want) if v is main else broadcast_operand(c, v, want)
    return text if dtype is None else cast_expr(text, v.dtype, dtype)


def elementwise(c, values, dtype: torch.dtype | None = None, typed: bool = False,
                as_is: tuple[int, ...] = ()) -> tuple[list[str], lay.Layout]:
    """Render the operands of an elementwise op: the largest tensor keeps its layout, the others broadcast to it.

    Operands are cast to ``dtype`` (default: torch's result dtype) except those at ``as_is``;
    ``typed`` makes Python numbers typed constants (for ops that do not convert them, like where).
    With a single tensor any layout works, a folded flatten included.
    """
    tensors = [v for v in values if isinstance(v, TensorValue)]
    main = max(tensors, key=lambda t: (t.rank, math.prod(t.shape)))
    want = main.layout if len(tensors) == 1 else keep_layout(main)
    dtype = dtype or c.out_meta.dtype
    return [operand(c, v, want, main, None if i in as_is else dtype, typed) for i, v in enumerate(values)], want


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
        (left, right), want = elementwise(c, (a, b))
        if kind == "add" and (_from_matmul(c, a, b) or _from_matmul(c, b, a)):
            product, other = (left, right) if _from_matmul(c, a, b) else (right, left)
            return c.out(_matrix_sum(c, product, other), want)
        return c.out(f"{left} {sym} {right}", want)

    return emit


def _from_matmul(c, v, other) -> bool:
    """True when ``v + other`` would be fused badly for tfjs wasm: see ``_matrix_sum``."""
    if not (isinstance(v, TensorValue) and v.rank == 2 and isinstance(other, TensorValue)):
        return False
    line = next((ln for ln in c.em.lines if ln.startswith(f"{v.var} = L.matmul(")), None)
    return line is not None and (other.rank == 2 or _unfusable(line))


def _unfusable(matmul_source: str) -> bool:
    """A transposed operand: wasm's _FusedMatMul with a bias gets transpose_a/b products wrong."""
    return "transpose_" in matmul_source


def _matrix_sum(c, product: str, other: str) -> str:
    """``product + other`` after a 2-D MatMul, as an AddN the tfjs converter does not fuse.

    It would fuse MatMul + Add into a _FusedMatMul, whose wasm kernel refuses a matrix bias
    ("only supports rank-1 bias") and, with a transposed operand, returns wrong numbers
    (errors near 2 measured); an AddN (after broadcasting) is left alone.
    """
    return f"tf.add_n([{product}, tf.broadcast_to({other}, tf.shape({product}))])"


def broadcast_operand(c, t: TensorValue, want: lay.Perm) -> str:
    """``t`` arranged to broadcast, as torch does, against a value stored in layout ``want``.

    Torch aligns trailing dims, TF aligns trailing axes. When those already agree ``t`` is used
    as stored; else it is reshaped into ``want``'s axis order (e.g. a (C, 1, 1) scale for an NHWC
    map becomes (1, 1, 1, C)), with one transpose of ``t`` first only if its non-size-1 dims are
    out of order. The feature map itself is never transposed for a small operand. Sizes other
    than the first are read at run time, so a dynamic one (a sequence length) stays dynamic.
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
    var = c.tensor(t, src)
    sized = [p for p in want.perm if p >= lead and t.shape[p - lead] != 1]  # only size-1 dims move
    shape = [-1 if sized and p == sized[0] else f"tf.shape({var})[{src.tf_axis(p - lead)}]" if p in sized else 1
             for p in want.perm]
    return f"tf.reshape({var}, [{', '.join(map(str, shape))}])"


add = op_mapping(A.add.Tensor, A.add.Scalar, A.add_.Tensor, operator.add)(_binary("add"))
sub = op_mapping(A.sub.Tensor, A.sub.Scalar, A.sub_.Tensor, operator.sub)(_binary("sub"))
rsub = op_mapping(A.rsub.Scalar, A.rsub.Tensor)(_binary("sub", swap=True))
mul = op_mapping(A.mul.Tensor, A.mul.Scalar, A.mul_.Tensor, operator.mul)(_binary("mul"))
div = op_mapping(A.div.Tensor, A.div.Scalar, A.div_.Tensor, operator.truediv)(_binary("div"))
floordiv = op_mapping(operator.floordiv)(_binary("floordiv"))


def _function(fn: str, compare: bool = False):
    """An elementwise op written as ``fn(a, b, ...)`` over the node's tensor/scalar arguments."""

    def emit(c):
        values = [c.em.value(a) for a in c.node.args]
        dtype = compute_dtype(values) if compare else None
        parts, want = elementwise(c, values, dtype)
        return c.out(f"{fn}({', '.join(parts)})", want)

    return emit


_COMPARE = {"eq": "tf.equal", "ne": "tf.not_equal", "lt": "tf.less", "le": "tf.less_equal",
            "gt": "tf.greater", "ge": "tf.greater_equal"}
eq, ne, lt, le, gt, ge = (op_mapping(getattr(A, k).Tensor, getattr(A, k).Scalar)(_function(fn, compare=True))
                          for k, fn in _COMPARE.items())
maximum = op_mapping(A.maximum.default, A.max.other)(_function("tf.maximum"))
minimum = op_mapping(A.minimum.default, A.min.other)(_function("tf.minimum"))


def _logical(bool_fn: str, int_fn: str):
    """and/or/xor: logical on bools (masks), bitwise on integers, as torch's & | ^ are."""

    def emit(c):
        values = [c.em.value(a) for a in c.node.args[:2]]
        fn = bool_fn if c.out_meta.dtype == torch.bool else int_fn
        parts, want = elementwise(c, values)
        return c.out(f"{fn}({', '.join(parts)})", want)

    return emit


and_ = op_mapping(A.__and__.Tensor, A.bitwise_and.Tensor, A.logical_and.default, A.bitwise_and.Scalar)(
    _logical("tf.logical_and", "tf.bitwise.bitwise_and"))
or_ = op_mapping(A.__or__.Tensor, A.bitwise_or.Tensor, A.logical_or.default, A.bitwise_or.Scalar)(
    _logical("tf.logical_or", "tf.bitwise.bitwise_or"))
xor = op_mapping(A.__xor__.Tensor, A.bitwise_xor.Tensor, A.logical_xor.default)(
    _logical("tf.math.logical_xor", "tf.bitwise.bitwise_xor"))


@op_mapping(A.logical_not.default, A.bitwise_not.default)
def not_(c):
    x = c.arg(0, "self")
    if c.node.target == A.logical_not.default or x.dtype == torch.bool:
        text = cast_expr(c.tensor(x, x.layout), x.dtype, torch.bool)
        return c.out(f"tf.logical_not({text})", x.layout)
    return c.out(f"tf.bitwise.invert({c.tensor(x, x.layout)})", x.layout)


@op_mapping(A.where.self, A.where.ScalarOther, A.where.ScalarSelf, A.where.Scalar)
def where(c):
    """torch.where(cond, a, b): TF's where broadcasts all three the same way."""
    cond, a, b = c.arg(0, "condition"), c.arg(1, "self"), c.arg(2, "other")
    return _select(c, cond, a, b)


@op_mapping(A.masked_fill.Scalar, A.masked_fill.Tensor, A.masked_fill_.Scalar, A.masked_fill_.Tensor)
def masked_fill(c):
    """x.masked_fill(mask, value) = where(mask, value, x)."""
    x, mask, value = c.arg(0, "self"), c.arg(1, "mask"), c.arg(2, "value")
    return _select(c, mask, value, x)


def _select(c, cond, a, b):
    (cond_text, a_text, b_text), want = elementwise(c, (cond, a, b), typed=True, as_is=(0,))
    cond_text = cast_expr(cond_text, cond.dtype, torch.bool)
    return c.out(f"tf.where({cond_text}, {a_text}, {b_text})", want)


@op_mapping(A.clamp.default, A.clamp.Tensor, A.clamp_min.default, A.clamp_max.default, A.clamp_.default,
            A.clip.default)
def clamp(c):
    x = c.arg(0, "self")
    if c.node.target == A.clamp_max.default:
        low, high = None, c.arg(1, "max")
    else:
        low = c.arg(1, "min", None)
        high = c.arg(2, "max", None) if c.node.target != A.clamp_min.default else None
    parts, want = elementwise(c, [x, *(v for v in (low, high) if v is not None)])
    text, rest = parts[0], iter(parts[1:])
    if low is not None:
        text = f"tf.maximum({text}, {next(rest)})"
    if high is not None:
        text = f"tf.minimum({text}, {next(rest)})"
    return c.out(text, want)


@op_mapping(A.neg.default, operator.neg)
def neg(c):
    x = c.arg(0, "self")
    if not isinstance(x, TensorValue):
        return PyValue(f"(-{c.render(x)})", c.em.results[c.node])
    return c.out(f"-{c.tensor(x, x.layout)}", x.layout)


def _unary(fn: str):
    def emit(c):
        x = c.arg(0, "self")  # elementwise: any layout
        text = c.tensor(x, x.layout)
        if x.dtype != c.out_meta.dtype:  # e.g. exp of an integer tensor is float in torch
            text = f"tf.cast({text}, {tf_dtype(c.out_meta.dtype)})"
        return c.out(f"{fn}({text})", x.layout)

    return emit


exp = op_mapping(A.exp.default)(_unary("tf.exp"))
log = op_mapping(A.log.default)(_unary("tf.math.log"))
sqrt = op_mapping(A.sqrt.default)(_unary("tf.sqrt"))
rsqrt = op_mapping(A.rsqrt.default)(_unary("tf.math.rsqrt"))
abs_ = op_mapping(A.abs.default)(_unary("tf.abs"))
reciprocal = op_mapping(A.reciprocal.default)(_unary("tf.math.reciprocal"))
cos = op_mapping(A.cos.default)(_unary("tf.cos"))
sin = op_mapping(A.sin.default)(_unary("tf.sin"))
erf = op_mapping(A.erf.default)(_unary("tf.math.erf"))
square = op_mapping(A.square.default)(_unary("tf.square"))
erf_alias = op_mapping(A.special_erf.default)(_unary("tf.math.erf"))


def _rounding(fn: str):
    """floor/ceil/round: integers are returned as they are (torch keeps their dtype)."""
    def emit(c):
        x = c.arg(0, "self")
        if not x.dtype.is_floating_point:
            return c.alias(x, x.layout)
        decimals = c.node.kwargs.get("decimals", 0)
        if decimals:  # torch: nearbyint(x * 10^d) / 10^d
            var = c.tensor(x, x.layout)
            return c.out(f"{fn}({var} * {10.0 ** decimals!r}) / {10.0 ** decimals!r}", x.layout)
        return c.out(f"{fn}({c.tensor(x, x.layout)})", x.layout)

    return emit


floor = op_mapping(A.floor.default)(_rounding("tf.math.floor"))
ceil = op_mapping(A.ceil.default)(_rounding("tf.math.ceil"))
round_ = op_mapping(A.round.default, A.round.decimals)(_rounding("tf.math.round"))  # half to even everywhere
sign = op_mapping(A.sign.default)(_unary("tf.math.sign"))
log1p = op_mapping(A.log1p.default)(_unary("tf.math.log1p"))
expm1 = op_mapping(A.expm1.default)(_unary("tf.math.expm1"))
log2 = op_mapping(A.log2.default)(_unary(f"{1 / math.log(2)!r} * tf.math.log"))
log10 = op_mapping(A.log10.default)(_unary(f"{1 / math.log(10)!r} * tf.math.log"))
tan = op_mapping(A.tan.default)(_unary("tf.math.tan"))
atan = op_mapping(A.atan.default)(_unary("tf.math.atan"))
asin = op_mapping(A.asin.default)(_unary("tf.math.asin"))
acos = op_mapping(A.acos.default)(_unary("tf.math.acos"))
sinh = op_mapping(A.sinh.default)(_unary("tf.math.sinh"))
cosh = op_mapping(A.cosh.default)(_unary("tf.math.cosh"))


@op_mapping(A.trunc.default)
def trunc(c):
    """Round toward zero: ceil below 0, floor above (neither TF's Cast nor tfjs has a Trunc op for floats)."""
    x = c.arg(0, "self")
    if not x.dtype.is_floating_point:
        return c.alias(x, x.layout)
    var = c.tensor(x, x.layout)
    return c.out(f"tf.where({var} < 0, tf.math.ceil({var}), tf.math.floor({var}))", x.layout)


def _named(c, parts: list[str]) -> list[str]:
    """Operands used more than once: each expression gets a variable (identifiers and numbers stay)."""
    return [p if p.isidentifier() or p.replace(".", "", 1).lstrip("-").isdigit() else
            c.em.assign(f"{c.node.name}_arg", p) for p in parts]


def _floor_mod_div(c, a_text: str, b_text: str, kind: str, dtype: torch.dtype) -> str:
    """remainder (floor mod), fmod (sign of the dividend), floor and trunc division, as torch defines them.

    tfjs lacks TruncateMod/TruncateDiv, so the truncating forms correct the floored ones where
    the remainder is non-zero and the signs differ.
    """
    if kind == "remainder":
        return f"tf.math.floormod({a_text}, {b_text})"
    if kind == "floor":
        return f"tf.math.floordiv({a_text}, {b_text})"
    if kind == "trunc" and dtype.is_floating_point:
        q = c.em.assign(f"{c.node.name}_q", f"{a_text} / {b_text}")
        return f"tf.where({q} < 0, tf.math.ceil({q}), tf.math.floor({q}))"
    r = c.em.assign(f"{c.node.name}_r", f"tf.math.floormod({a_text}, {b_text})")
    mixed = f"tf.logical_and(tf.not_equal({r}, 0), tf.not_equal({a_text} < 0, {b_text} < 0))"
    if kind == "fmod":
        return f"tf.where({mixed}, {r} - {b_text}, {r})"
    return f"tf.where({mixed}, tf.math.floordiv({a_text}, {b_text}) + 1, tf.math.floordiv({a_text}, {b_text}))"


def _modular(kind: str | None):
    def emit(c):
        """remainder / fmod / floor_divide, and div(..., rounding_mode='floor' | 'trunc')."""
        a, b = c.arg(0, "self"), c.arg(1, "other")
        mode = kind or c.node.kwargs.get("rounding_mode")
        if mode is None:
            return _binary("div")(c)
        if not any(isinstance(v, TensorValue) for v in (a, b)):
            raise NotSupported(f"{mode} division of two Python numbers")
        parts, want = elementwise(c, (a, b), typed=True)
        return c.out(_floor_mod_div(c, *_named(c, parts), mode, c.out_meta.dtype), want)

    return emit


remainder = op_mapping(A.remainder.Scalar, A.remainder.Tensor, A.remainder.Scalar_Tensor)(_modular("remainder"))
fmod = op_mapping(A.fmod.Scalar, A.fmod.Tensor)(_modular("fmod"))
floor_divide = op_mapping(A.floor_divide.default, A.floor_divide.Scalar)(_modular("floor"))
div_mode = op_mapping(A.div.Tensor_mode, A.div.Scalar_mode)(_modular(None))


def _shift(left: bool):
    def emit(c):
        """x << k / x >> k on integers as * 2**k / floor division by 2**k (tfjs has no shift ops)."""
        x, k = c.arg(0, "self"), c.arg(1, "other")
        if not isinstance(x, TensorValue) or isinstance(k, TensorValue) or x.dtype.is_floating_point:
            raise NotSupported("bit shifts of an integer tensor by a Python int only")
        var = c.tensor(x, x.layout)
        factor = scalar(2 ** int(k), x.dtype)
        return c.out(f"{var} * {factor}" if left else f"tf.math.floordiv({var}, {factor})", x.layout)

    return emit


lshift = op_mapping(A.__lshift__.Scalar, A.bitwise_left_shift.Tensor_Scalar)(_shift(left=True))
rshift = op_mapping(A.__rshift__.Scalar, A.bitwise_right_shift.Tensor_Scalar)(_shift(left=False))


@op_mapping(A.atan2.default)
def atan2(c):
    (a, b), want = elementwise(c, (c.arg(0, "self"), c.arg(1, "other")))
    return c.out(f"tf.math.atan2({a}, {b})", want)


@op_mapping(A.hypot.default)
def hypot(c):
    """sqrt(a^2 + b^2) (TF has no Hypot op)."""
    (a, b), want = elementwise(c, (c.arg(0, "self"), c.arg(1, "other")))
    a, b = _named(c, [a, b])
    return c.out(f"tf.sqrt({a} * {a} + {b} * {b})", want)


@op_mapping(A.pow.Tensor_Scalar, A.pow.Tensor_Tensor, A.pow.Scalar)
def pow_(c):
    """x ** 2 is written as a square (exact, as torch computes it); other powers as tf.pow."""
    base, exponent = c.arg(0, "self"), c.arg(1, "exponent")
    if isinstance(base, TensorValue) and not isinstance(exponent, TensorValue):
        (x,), want = elementwise(c, [base])
        if exponent == 2:
            return c.out(f"tf.square({x})", want)
        return c.out(f"tf.pow({x}, {scalar(float(exponent))})", want)
    (x, y), want = elementwise(c, [base, exponent], typed=True)
    return c.out(f"tf.pow({x}, {y})", want)


@op_mapping(A.matmul.default, A.bmm.default, A.mm.default)
def matmul(c):
    """A transposed operand (``q @ k.transpose(-2, -1)``) is passed as stored with a transpose flag."""
    a, b = c.arg(0, "self"), c.arg(1, "other")
    if a.rank < 2 or b.rank < 2:
        raise NotSupported("matmul with a 1-D operand")
    return c.out(_matmul_expr(c, a, b), lay.identity(len(c.out_shape)))


def _matmul_expr(c, a: TensorValue, b: TensorValue) -> str:
    ia, ta = _matmul_operand(c, a, allow_transposed=a.rank == b.rank)
    ib, tb = _matmul_operand(c, b, allow_transposed=True)
    flags = (", transpose_a=True" if ta else "") + (", transpose_b=True" if tb else "")
    return f"L.matmul({ia}, {ib}{flags})"


@op_mapping(A.baddbmm.default)
def baddbmm(c):
    """baddbmm(self, b1, b2, beta=1, alpha=1) = beta * self + alpha * (b1 @ b2)."""
    bias, a, b = c.arg(0, "self"), c.arg(1, "batch1"), c.arg(2, "batch2")
    beta, alpha = c.node.kwargs.get("beta", 1), c.node.kwargs.get("alpha", 1)
    product = _matmul_expr(c, a, b) if alpha == 1 else f"{scalar(alpha)} * {_matmul_expr(c, a, b)}"
    if beta == 0:  # torch ignores self then, NaNs included
        return c.out(product, lay.identity(3))
    scaled = broadcast_operand(c, bias, lay.identity(3))
    return c.out(f"{product} + {scaled if beta == 1 else f'{scalar(beta)} * {scaled}'}", lay.identity(3))


@op_mapping(A.einsum.default)
def einsum(c):
    """torch.einsum, planned as transposes, sums and batched matmuls two tensors at a time (L.einsum).

    A contraction ``path=`` (opt_einsum's order) is ignored: the result is the same, left to right.
    """
    equation, operands = c.arg(0, "equation"), list(c.arg(1, "tensors"))
    terms = equation.replace(" ", "").split("->")[0].split(",")
    if any(len(set(t.replace("...", ""))) != len(t.replace("...", "")) for t in terms):
        raise NotSupported("einsum with a label repeated within one operand (a diagonal or trace)")
    if len({v.dtype for v in operands}) != 1:
        raise NotSupported("einsum of tensors with different dtypes")
    parts = ", ".join(c.tensor(v, lay.identity(v.rank)) for v in operands)
    return c.out(f"L.einsum({equation!r}, {parts})", lay.identity(len(c.out_shape)))


@op_mapping(A.outer.default)
def outer(c):
    """torch.outer(a, b): a column times a row."""
    (a, b), _ = elementwise(c, (c.arg(0, "self"), c.arg(1, "vec2")))
    return c.out(f"tf.reshape({a}, [-1, 1]) * tf.reshape({b}, [1, -1])", lay.identity(2))


@op_mapping(A.eye.default, A.eye.m)
def eye(c):
    """torch.eye(n[, m]) made in forward(): a comparison of two ranges (no MatrixDiag op needed)."""
    n = c.arg(0, "n")
    m = c.arg(1, "m") if c.node.target == A.eye.m else n
    ones = f"tf.equal(tf.range({c.render(n)})[:, None], tf.range({c.render(m)})[None, :])"
    return c.out(cast_expr(ones, torch.bool, c.out_meta.dtype), lay.identity(2))


@op_mapping(A.addmm.default)
def addmm(c):
    """addmm(bias, a, b) = bias + a @ b (what HF's Conv1D, e.g. in GPT-2, records)."""
    bias, a, b = c.arg(0, "self"), c.arg(1, "mat1"), c.arg(2, "mat2")
    if c.node.kwargs.get("beta", 1) != 1 or c.node.kwargs.get("alpha", 1) != 1:
        raise NotSupported("addmm with beta= / alpha=")
    product, added = _matmul_expr(c, a, b), c.tensor(bias, lay.identity(bias.rank))
    if bias.rank < 2 and not _unfusable(product):  # a bias vector: the fused MatMul + BiasAdd runs everywhere
        return c.out(f"{product} + {added}", lay.identity(2))
    return c.out(_matrix_sum(c, c.em.assign(f"{c.node.name}_mm", product), added), lay.identity(2))


@op_mapping(A.linear.default)
def linear(c):
    """F.linear(x, weight, bias) outside an nn.Linear, e.g. with a raw parameter: x @ weight^T + bias."""
    x, w, b = c.arg(0, "input"), c.arg(1, "weight"), c.arg(2, "bias", None)
    expr = f"L.matmul({c.tensor(x, lay.identity(x.rank))}, {c.tensor(w, lay.identity(2))}, transpose_b=True)"
    if not isinstance(b, TensorValue):
        return c.out(expr, lay.identity(len(c.out_shape)))
    if x.rank == 2:  # one MatMul with transpose_b: see _matrix_sum
        return c.out(_matrix_sum(c, c.em.assign(f"{c.node.name}_mm", expr), c.tensor(b, lay.identity(1))),
                     lay.identity(2))
    return c.out(f"{expr} + {c.tensor(b, lay.identity(1))}", lay.identity(len(c.out_shape)))


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
        want = keep_layout(x)
        # sum of a bool mask is int64 in torch, all/any test != 0; a dtype= argument is the result dtype
        text = cast_expr(c.tensor(x, want), x.dtype, c.out_meta.dtype)
        if dim is None or dim == []:
            return c.out(f"{fn}({text})", lay.identity(0))
        dims = sorted({d % x.rank for d in (dim if isinstance(dim, (list, tuple)) else [dim])})
        axes = [want.tf_axis(d) for d in dims]
        expr = f"{fn}({text}, {axes}, keepdims={bool(keepdim)})"
        if keepdim:
            return c.out(expr, want)
        return c.out(expr, drop_dims(want, dims))

    return emit


mean = op_mapping(A.mean.dim, A.mean.default)(_reduce("tf.reduce_mean"))
sum_ = op_mapping(A.sum.dim_IntList, A.sum.default)(_reduce("tf.reduce_sum"))
amax = op_mapping(A.amax.default, A.max.default)(_reduce("tf.reduce_max"))
amin = op_mapping(A.amin.default, A.min.default)(_reduce("tf.reduce_min"))
prod = op_mapping(A.prod.default, A.prod.dim_int)(_reduce("tf.reduce_prod"))
all_ = op_mapping(A.all.default, A.all.dim, A.all.dims)(_reduce("tf.reduce_all"))
any_ = op_mapping(A.any.default, A.any.dim, A.any.dims)(_reduce("tf.reduce_any"))


def _moment_args(c) -> tuple[TensorValue, list[int], float, bool]:
    """(x, torch dims, correction, keepdim) of var/std/var_mean/std_mean, .dim or .correction form."""
    x = c.arg(0, "self")
    dim = c.arg(1, "dim", None)
    dims = list(range(x.rank)) if dim is None else sorted({d % x.rank for d in
                                                            (dim if isinstance(dim, (list, tuple)) else [dim])})
    if c.node.target._overloadname == "correction":
        correction = c.node.kwargs.get("correction")
        correction = 1 if correction is None else correction
        keepdim = c.node.kwargs.get("keepdim", False)
    else:
        correction = 1 if c.arg(2, "unbiased", True) else 0
        keepdim = c.arg(3, "keepdim", False)
    return x, dims, float(correction), bool(keepdim)


def traced_size(c, index: int, dim: int) -> int | None:
    """torch dim ``dim`` of argument ``index`` as export traced it: an int if static, None if symbolic (the batch)."""
    arg = c.node.args[index]
    val = arg.meta.get("val") if hasattr(arg, "meta") else None
    n = val.shape[dim] if isinstance(val, torch.Tensor) else None
    return n if isinstance(n, int) else None


def _moments(c) -> tuple[str, str, lay.Layout]:
    """(variance, mean, layout): mean, then the mean of squared deviations over N - correction."""
    x, dims, correction, keepdim = _moment_args(c)
    want = keep_layout(x)
    var = c.tensor(x, want)
    axes = [want.tf_axis(d) for d in dims]
    sizes = [traced_size(c, 0, d) for d in dims]
    count = (str(float(math.prod(sizes))) if None not in sizes else
             f"tf.cast(tf.reduce_prod(tf.gather(tf.shape({var}), {axes})), {var}.dtype)")
    mean = c.em.assign(f"{c.node.name}_mean", f"tf.reduce_mean({var}, {axes}, keepdims=True)")
    dev = c.em.assign(f"{c.node.name}_dev", f"{var} - {mean}")
    variance = f"tf.reduce_sum({dev} * {dev}, {axes}, keepdims={keepdim}) / ({count} - {correction})"
    mean_out = mean if keepdim else f"tf.squeeze({mean}, {axes})"
    return variance, mean_out, want if keepdim else drop_dims(want, dims)


@op_mapping(A.var.dim, A.var.correction, A.std.dim, A.std.correction)
def var_std(c):
    """x.var / x.std over dims with Bessel's correction (unbiased=, correction=), as torch computes them."""
    variance, _, layout = _moments(c)
    std = c.node.target in (A.std.dim, A.std.correction)
    return c.out(f"tf.sqrt({variance})" if std else variance, layout)


@op_mapping(A.var_mean.dim, A.var_mean.correction, A.std_mean.dim, A.std_mean.correction)
def var_std_mean(c):
    """torch.var_mean / std_mean: (var or std, mean)."""
    variance, mean, layout = _moments(c)
    std = c.node.target in (A.std_mean.dim, A.std_mean.correction)
    return _outputs(c, [f"tf.sqrt({variance})" if std else variance, mean], layout)


@op_mapping(A.logsumexp.default)
def logsumexp(c):
    """log(sum(exp(x))) over dims, shifted by the max (a row of -inf gives -inf, as in torch).

    tf.math.reduce_logsumexp uses IsFinite, which tfjs lacks.
    """
    x, dim, keepdim = c.arg(0, "self"), c.arg(1, "dim"), bool(c.arg(2, "keepdim", False))
    dims = sorted({d % x.rank for d in (dim if isinstance(dim, (list, tuple)) else [dim])})
    want = keep_layout(x)
    var = cast_expr(c.tensor(x, want), x.dtype, c.out_meta.dtype)
    axes = [want.tf_axis(d) for d in dims]
    top = c.em.assign(f"{c.node.name}_max", f"tf.reduce_max({var}, {axes}, keepdims=True)")
    shift = c.em.assign(f"{c.node.name}_shift", f"tf.where(tf.abs({top}) < float('inf'), {top}, tf.zeros_like({top}))")
    expr = f"tf.math.log(tf.reduce_sum(tf.exp({var} - {shift}), {axes}, keepdims=True)) + {shift}"
    if keepdim:
        return c.out(expr, want)
    return c.out(f"tf.squeeze({expr}, {axes})", drop_dims(want, dims))


def _outputs(c, exprs: list[str], layout: lay.Layout) -> list[TensorValue]:
    """One variable per torch output (values, indices), all in ``layout``."""
    return [TensorValue(c.em.assign(f"{c.node.name}_{i}", e), layout, m.shape, m.dtype)
            for i, (e, m) in enumerate(zip(exprs, c.out_meta))]


def _searchable(c, x: TensorValue, want: lay.Layout) -> str:
    """x in ``want`` for argmax/top_k, which take no bools in TF: a mask is searched as int32."""
    text = c.tensor(x, want)
    return f"tf.cast({text}, tf.int32)" if x.dtype == torch.bool else text


def _extreme(largest: bool):
    def emit(c):
        """max.dim / min.dim (self, dim, keepdim): values and int64 indices along the dim's TF axis."""
        x = c.arg(0, "self")
        dim, keepdim = c.arg(1, "dim") % max(x.rank, 1), c.arg(2, "keepdim", False)
        want = keep_layout(x)
        text, axis = _searchable(c, x, want), want.tf_axis(dim) if x.rank else 0
        reduce, arg = ("tf.reduce_max", "tf.argmax") if largest else ("tf.reduce_min", "tf.argmin")
        index = f"{arg}({text}, axis={axis}, output_type=tf.int64)"
        if keepdim:
            index = f"tf.expand_dims({index}, {axis})"
        values = f"{reduce}({c.tensor(x, want)}, axis={axis}, keepdims={bool(keepdim)})"
        return _outputs(c, [values, index], want if keepdim else drop_dims(want, [dim]))

    return emit


max_dim = op_mapping(A.max.dim)(_extreme(largest=True))
min_dim = op_mapping(A.min.dim)(_extreme(largest=False))


def _arg_extreme(fn: str):
    def emit(c):
        """argmax/argmin(self, dim=None, keepdim=False): int64; without dim, over torch's flattened order."""
        x = c.arg(0, "self")
        dim, keepdim = c.arg(1, "dim", None), c.arg(2, "keepdim", False)
        if dim is None:
            flat = f"tf.reshape({_searchable(c, x, lay.identity(x.rank))}, [-1])"
            expr = f"{fn}({flat}, axis=0, output_type=tf.int64)"
            if keepdim:
                expr = f"tf.reshape({expr}, {[1] * x.rank})"
            return c.out(expr, lay.identity(len(c.out_shape)))
        dim = dim % max(x.rank, 1)
        want = keep_layout(x)
        axis = want.tf_axis(dim)
        expr = f"{fn}({_searchable(c, x, want)}, axis={axis}, output_type=tf.int64)"
        if keepdim:
            return c.out(f"tf.expand_dims({expr}, {axis})", want)
        return c.out(expr, drop_dims(want, [dim]))

    return emit


argmax = op_mapping(A.argmax.default)(_arg_extreme("tf.argmax"))
argmin = op_mapping(A.argmin.default)(_arg_extreme("tf.argmin"))


@op_mapping(A.topk.default)
def topk(c):
    """topk(self, k, dim=-1, largest=True, sorted=True): tf.math.top_k on the dim's TF axis (moved last if needed).

    torch leaves the order of sorted=False results unspecified; they come sorted here.
    """
    x = c.arg(0, "self")
    k, dim = c.arg(1, "k"), c.arg(2, "dim", -1) % max(x.rank, 1)
    largest = c.arg(3, "largest", True)
    want = keep_layout(x)
    names = [c.em.fresh(f"{c.node.name}_{i}") for i in range(2)]
    c.em.lines.append(f"{names[0]}, {names[1]} = L.top_k({_searchable(c, x, want)}, {c.render(k)}, "
                      f"axis={want.tf_axis(dim)}, largest={bool(largest)})")
    return _cast_values(c, names, x, want)


def _cast_values(c, names: list[str], x: TensorValue, want: lay.Layout) -> list[TensorValue]:
    """(values, indices) as TensorValues; a bool input searched as int32 gets its values back as bools."""
    if x.dtype == torch.bool:
        c.em.lines.append(f"{names[0]} = {cast_expr(names[0], torch.int32, torch.bool)}")
    return [TensorValue(n, want, m.shape, m.dtype) for n, m in zip(names, c.out_meta)]


def _sort_args(c) -> tuple[TensorValue, int, bool]:
    """(x, dim, descending) of sort/argsort, default or .stable (stable is a keyword there)."""
    x = c.arg(0, "self")
    stable_form = c.node.target in (A.sort.stable, A.argsort.stable)
    dim = c.node.kwargs.get("dim", -1) if stable_form else c.arg(1, "dim", -1)
    descending = c.node.kwargs.get("descending", False) if stable_form else c.arg(2, "descending", False)
    return x, dim % max(x.rank, 1), bool(descending)


@op_mapping(A.sort.default, A.sort.stable)
def sort(c):
    """sort(self, dim=-1, descending=False): a top_k over the whole dim (ties keep their order, as stable=True).

    tfjs has no Sort op; TopKV2 runs on every backend.
    """
    x, dim, descending = _sort_args(c)
    want = keep_layout(x)
    names = [c.em.fresh(f"{c.node.name}_{i}") for i in range(2)]
    c.em.lines.append(f"{names[0]}, {names[1]} = L.top_k({_searchable(c, x, want)}, None, "
                      f"axis={want.tf_axis(dim)}, largest={descending})")
    return _cast_values(c, names, x, want)


@op_mapping(A.argsort.default, A.argsort.stable)
def argsort(c):
    """argsort(self, dim=-1, descending=False): the indices of ``sort``."""
    x, dim, descending = _sort_args(c)
    want = keep_layout(x)
    expr = f"L.top_k({_searchable(c, x, want)}, None, axis={want.tf_axis(dim)}, largest={descending})[1]"
    return c.out(expr, want)


@op_mapping(A.cumsum.default)
def cumsum(c):
    """Running sum along one torch dim, on that dim's TF axis (bools and ints sum as int64, as in torch)."""
    x, dim = c.arg(0, "self"), c.arg(1, "dim")
    want = keep_layout(x)
    text = c.tensor(x, want)
    if x.dtype != c.out_meta.dtype:
        text = f"tf.cast({text}, {tf_dtype(c.out_meta.dtype)})"
    return c.out(f"tf.cumsum({text}, axis={want.tf_axis(dim % x.rank)})", want)


@op_mapping(A.linspace.default)
def linspace(c):
    """torch.linspace(start, end, steps) made in forward(), by torch's own two-sided formula (L.linspace)."""
    start, end, steps = (c.arg(i, n) for i, n in enumerate(("start", "end", "steps")))
    if any(isinstance(v, TensorValue) for v in (start, end, steps)):
        raise NotSupported("linspace with tensor bounds")
    bounds = ", ".join(c.render(v) for v in (start, end, steps))
    return c.out(f"L.linspace({bounds}, {tf_dtype(c.out_meta.dtype)})", lay.identity(1))


def _is_literal(v) -> bool:
    return not isinstance(v, PyValue) or v.expr.lstrip("-").replace(".", "", 1).isdigit()


def _py_operand(c, v, as_float: bool) -> str:
    """A number or size in Python-level arithmetic; a run-time size (an int32 tensor) cast when floats are needed."""
    text = c.render(v)
    return f"tf.cast({text}, tf.float32)" if as_float and not _is_literal(v) else text


def _python(symbol: str):
    """Arithmetic and comparisons on sizes (``x.shape[-1] ** -0.5``): a Python expression, dynamic sizes included."""

    def emit(c):
        a, b = c.arg(0), c.arg(1)
        if isinstance(a, TensorValue) or isinstance(b, TensorValue):
            raise NotSupported(f"Python operator {symbol} on a tensor")
        as_float = isinstance(c.em.results[c.node], (float, torch.SymFloat)) or symbol == "**"
        return PyValue(f"({_py_operand(c, a, as_float)} {symbol} {_py_operand(c, b, as_float)})",
                       c.em.results[c.node])

    return emit


_PY_COMPARE = {operator.ge: ">=", operator.gt: ">", operator.le: "<=", operator.lt: "<", operator.eq: "==",
               operator.ne: "!="}
py_pow = op_mapping(operator.pow)(_python("**"))
py_mod = op_mapping(operator.mod)(_python("%"))


@op_mapping(*_PY_COMPARE)
def py_compare(c):
    """A comparison of sizes (export records them for its own checks): a Python/TF boolean."""
    return _python(_PY_COMPARE[c.node.target])(c)


@op_mapping(torch.sym_float)
def sym_float(c):
    """float(size): a literal stays Python, a run-time size becomes a float32 scalar."""
    v = c.arg(0)
    text = f"float({c.render(v)})" if _is_literal(v) else f"tf.cast({c.render(v)}, tf.float32)"
    return PyValue(text, c.em.results[c.node])


@op_mapping(A.tril.default, A.triu.default)
def triangle(c):
    """tril/triu from range comparisons over the last two dims (tf.linalg.band_part is wrong in tfjs)."""
    x = c.arg(0, "self")
    diagonal = c.arg(1, "diagonal", 0)
    upper = c.node.target == A.triu.default
    return c.out(f"L.triangle({c.tensor(x, lay.identity(x.rank))}, {c.render(diagonal)}, upper={upper})",
                 lay.identity(x.rank))


MAPPINGS = (add, sub, rsub, mul, div, floordiv, eq, ne, lt, le, gt, ge, maximum, minimum, and_, or_, xor, not_,
            where, masked_fill, clamp, neg, exp, log, sqrt, rsqrt, abs_, reciprocal, cos, sin, erf, square, pow_, matmul,
            addmm, linear, mean, sum_, amax, amin, max_dim, min_dim, argmax, argmin, topk, sort, argsort, cumsum,
            linspace, py_pow, py_mod, py_compare, sym_float, triangle, prod, all_, any_, var_std, var_std_mean,
            logsumexp, erf_alias, floor, ceil, round_, sign, log1p, expm1, log2, log10, tan, atan, asin, acos, sinh,
            cosh, trunc, remainder, fmod, floor_divide, div_mode, atan2, hypot, baddbmm, outer, eye, lshift, rshift, einsum)
