"""Arithmetic: + - * / with tensors, scalars and broadcast parameters; matmul; the
reductions mean/sum/amax; raw nn.Parameters and buffers used in forward(). Every row
is checked in TF and, through the file's batch, in tfjs (cpu, wasm)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _parity import Fn, Fn2, assert_port_matches, randn, seeded
from _tfjs_batch import TfjsBatch

BATCH = TfjsBatch()
C = 4  # channels of the conv map (2, C, 5, 7) made from a (2, 3, 7, 9) input


class ConvParams(nn.Module):
    """conv -> fn(self, x) with a (C,1,1) parameter ``g``, a (C,) parameter ``v`` and a (7,) buffer ``w``."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.conv = nn.Conv2d(3, C, 3)
        self.g = nn.Parameter(torch.randn(C, 1, 1))
        self.v = nn.Parameter(torch.randn(C))
        self.register_buffer("w", torch.rand(7) + 0.5)
        self.other = nn.Conv2d(3, C, 3, bias=False)

    def forward(self, x):
        return self.fn(self, self.conv(x), x)


CONV_CASES = [
    pytest.param(lambda s, y, x: y + 1, id="add-scalar"),
    pytest.param(lambda s, y, x: 2 * y - 0.5, id="rmul-sub-scalar"),
    pytest.param(lambda s, y, x: 1 - y / 3, id="rsub-div-scalar"),
    pytest.param(lambda s, y, x: 1 / (y * y + 1), id="rdiv"),
    pytest.param(lambda s, y, x: -y, id="neg"),
    pytest.param(lambda s, y, x: y + s.other(x), id="add-two-maps"),
    pytest.param(lambda s, y, x: y * s.other(x) - y, id="mul-sub-two-maps"),
    pytest.param(lambda s, y, x: y / (s.other(x) * s.other(x) + 1),
                 id="div-two-maps"),
    pytest.param(lambda s, y, x: y * s.g, id="mul-param-C11"),
    pytest.param(lambda s, y, x: y * s.g + s.g, id="mul-add-param-C11"),
    pytest.param(lambda s, y, x: s.g - y, id="param-C11-sub-map"),
    pytest.param(lambda s, y, x: y / s.w, id="div-buffer-W"),
    pytest.param(lambda s, y, x: y * s.v[:, None, None], id="mul-param-indexed"),
    pytest.param(lambda s, y, x: y * s.v.view(1, -1, 1, 1), id="mul-param-viewed"),
    pytest.param(lambda s, y, x: y + s.v.reshape(C, 1, 1) * s.g, id="param-arith-then-map"),
    pytest.param(lambda s, y, x: y + s.v[:, None, None], id="add-param-C11-indexed"),
    pytest.param(lambda s, y, x: y.mean(1, keepdim=True) * y.mean((2, 3), keepdim=True), id="mutual-broadcast"),
    pytest.param(lambda s, y, x: (y.permute(0, 2, 3, 1) * s.v).permute(0, 3, 1, 2), id="channels-last-view-mul"),
    pytest.param(lambda s, y, x: y.flatten(2) * s.v[:, None] + s.g.flatten(1), id="flatten2-broadcast"),
    pytest.param(lambda s, y, x: y[:, 1:3] * s.g[1:3], id="slice-broadcast"),
    pytest.param(lambda s, y, x: torch.add(y, s.g), id="torch.add"),
    pytest.param(lambda s, y, x: torch.mul(y, 3.0), id="torch.mul-scalar"),
    pytest.param(lambda s, y, x: y.mul(s.g).add(1).sub(s.g).div(2), id="methods"),
    pytest.param(lambda s, y, x: y + y.mean((2, 3), keepdim=True), id="add-keepdim-mean"),
    pytest.param(lambda s, y, x: y * y.mean(1, keepdim=True).sigmoid(), id="mul-channel-mean"),
    pytest.param(lambda s, y, x: y * y.mean((2, 3))[:, :, None, None], id="mul-mean-unsqueezed"),
    pytest.param(lambda s, y, x: y.mean((2, 3)), id="mean-spatial"),
    pytest.param(lambda s, y, x: y.mean([-1, -2], keepdim=True), id="mean-negative-keepdim"),
    pytest.param(lambda s, y, x: y.mean(1), id="mean-channels"),
    pytest.param(lambda s, y, x: y.mean(), id="mean-all"),
    pytest.param(lambda s, y, x: torch.mean(y, dim=(1, 3)), id="torch.mean-dims"),
    pytest.param(lambda s, y, x: y.sum(2), id="sum-H"),
    pytest.param(lambda s, y, x: y.sum((1, 2), keepdim=True), id="sum-keepdim"),
    pytest.param(lambda s, y, x: torch.sum(y, [2, 3]), id="torch.sum-list"),
    pytest.param(lambda s, y, x: y.sum(), id="sum-all"),
    pytest.param(lambda s, y, x: y.amax((2, 3)), id="amax-spatial"),
    pytest.param(lambda s, y, x: torch.amax(y, dim=1, keepdim=True), id="amax-channels-keepdim"),
    pytest.param(lambda s, y, x: y.amax(-1) + y.sum(-1), id="amax-sum-last"),
    pytest.param(lambda s, y, x: (y + 1).mean(2).flatten(1), id="mean-then-flatten"),
]


@BATCH.parametrize("fn", CONV_CASES)
def test_on_conv_map(fn):
    return assert_port_matches(seeded(lambda: ConvParams(fn)), (randn(2, 3, 7, 9),))


PLAIN = [
    pytest.param(lambda s, x, y: x + y, (2, 3, 5), (2, 3, 5), id="add"),
    pytest.param(lambda s, x, y: x * y - x / (y * y + 1), (2, 3, 5), (2, 3, 5), id="mul-sub-div"),
    pytest.param(lambda s, x, y: x + y, (2, 3, 5), (5,), id="add-broadcast-rank1"),
    pytest.param(lambda s, x, y: x * y, (2, 3, 5), (3, 1), id="mul-broadcast-rank2"),
    pytest.param(lambda s, x, y: x @ y, (2, 3, 5), (2, 5, 4), id="matmul-3x3"),
    pytest.param(lambda s, x, y: torch.matmul(x, y), (2, 3, 5), (5, 4), id="matmul-3x2"),
    pytest.param(lambda s, x, y: torch.bmm(x, y), (2, 3, 5), (2, 5, 4), id="bmm"),
    pytest.param(lambda s, x, y: x.matmul(y.transpose(1, 2)), (2, 3, 5), (2, 4, 5), id="matmul-transposed"),
    pytest.param(lambda s, x, y: x @ y.permute(0, 2, 1) / 5 ** 0.5, (2, 3, 5), (2, 4, 5), id="attention-scores"),
    pytest.param(lambda s, x, y: torch.mm(x, y), (2, 5), (5, 4), id="mm"),
    pytest.param(lambda s, x, y: x @ y, (2, 2, 3, 5), (2, 2, 5, 4), id="matmul-4x4"),
    pytest.param(lambda s, x, y: x.transpose(-1, -2) @ y, (2, 5, 3), (2, 5, 4), id="matmul-transposed-a"),
    pytest.param(lambda s, x, y: x.transpose(1, 2) @ y.transpose(1, 2), (2, 5, 3), (2, 4, 5), id="matmul-both-transposed"),
    pytest.param(lambda s, x, y: x.transpose(1, 2) @ y, (2, 5, 3), (5, 4), id="matmul-3x2-transposed-a"),
    pytest.param(lambda s, x, y: x @ y.transpose(0, 1), (2, 3, 5), (4, 5),
                 id="matmul-3x2-transposed-b"),
    pytest.param(lambda s, x, y: x @ y.transpose(-2, -1), (2, 2, 3, 5), (2, 2, 4, 5), id="matmul-4d-scores"),
]


@BATCH.parametrize("fn, shape_x, shape_y", PLAIN)
def test_two_inputs(fn, shape_x, shape_y):
    return assert_port_matches(seeded(lambda: Fn2(fn)), (randn(*shape_x), randn(*shape_y, seed=1)))


class RawParams(nn.Module):
    """Raw parameters in forward(): a weight matrix, a bias vector, and a scale in a submodule."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(5, 4))
        self.bias = nn.Parameter(torch.randn(4))
        self.block = nn.Module()
        self.block.scale = nn.Parameter(torch.rand(4) + 0.5)

    def forward(self, x):
        return (x @ self.weight + self.bias) * self.block.scale


class ConvToSeq(nn.Module):
    """conv -> flatten(2).transpose(1, 2) -> @ weight + pos: a patch embedding with a position table."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3)
        self.proj = nn.Parameter(torch.randn(C, 6))
        self.pos = nn.Parameter(torch.randn(35, 6))

    def forward(self, x):
        return self.conv(x).flatten(2).transpose(1, 2) @ self.proj + self.pos


def _size_arithmetic():
    """Python arithmetic on sizes stays Python (e.g. a reshape target computed from x.size)."""
    return Fn(lambda s, x: x.reshape(x.size(0), x.size(1) // 2, -1).sum(1) * 2)


MODELS = [
    pytest.param(lambda: RawParams(), (2, 3, 5), id="raw-parameters"),
    pytest.param(lambda: RawParams(), (3, 5), id="raw-parameters-rank2-input"),
    pytest.param(lambda: ConvToSeq(), (2, 3, 7, 9), id="conv-to-sequence-matmul"),
    pytest.param(_size_arithmetic, (2, 6, 5), id="size-arithmetic"),
    pytest.param(lambda: TensorConstants(), (3, 2), id="tensor-constants-in-forward"),
    pytest.param(lambda: AddMM(), (2, 4, 5), id="addmm"),
]


@BATCH.parametrize("factory, shape", MODELS)
def test_model(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


class Attention(nn.Module):
    """Single-head self-attention scores and mix: q @ k^T / sqrt(d), softmax, @ v."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.scale = d ** -0.5

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(-2, -1) * self.scale
        return scores.softmax(-1) @ self.v(x)


def test_attention_needs_no_transpose():
    """k.transpose(-2, -1) only relabels the layout; the matmul reads it with transpose_b."""
    port = assert_port_matches(seeded(Attention), (randn(2, 5, 6),))
    assert "tf.transpose" not in port.source, port.source


class TensorConstants(nn.Module):
    """Tensors made eagerly in forward(): fx stores them as ``_tensor_constant*`` attributes."""

    def __init__(self):
        super().__init__()
        self.register_buffer("b", torch.arange(4.0))

    def forward(self, x):
        return (x + self.b[:2]) * torch.tensor([1.0, 2.0])


# ---------------------------------------------------------------- comparisons, masks, where, clamp, math, cumsum, tril
ELEMENTWISE = [
    pytest.param(lambda s, x, y: (x > 0).float() + (x <= y).float(), id="gt-le"),
    pytest.param(lambda s, x, y: (x >= 0.5).float() - (x < y).float(), id="ge-lt"),
    pytest.param(lambda s, x, y: ((x > 0) == (y > 0)).float() + ((x > 0) != (y < 0)).float(), id="eq-ne-bools"),
    # a bool -> float cast ends in arithmetic here: as a graph output, tfjs cpu hands out the bool bytes unconverted
    pytest.param(lambda s, x, y: (x.long() == 0).float() * y, id="eq-int-scalar"),
    pytest.param(lambda s, x, y: ((x > 0) & (y < 0)).float() + ((x > 1) | (y > 1)).float(), id="and-or"),
    pytest.param(lambda s, x, y: ((x > 0) ^ (y > 0)).float() + (~(x > 0)).float(), id="xor-not"),
    pytest.param(lambda s, x, y: torch.logical_and(x > 0, torch.logical_not(y > 0)).float() - y, id="logical-and-not"),
    pytest.param(lambda s, x, y: torch.logical_or(x > 0, y > 0).float() * x, id="logical-or-mul"),
    pytest.param(lambda s, x, y: torch.where(x > 0, x, y), id="where-tensors"),
    pytest.param(lambda s, x, y: torch.where(x > 0, x, 0.0), id="where-scalar-other"),
    pytest.param(lambda s, x, y: torch.where(y < 0, -1.5, x), id="where-scalar-self"),
    pytest.param(lambda s, x, y: torch.where(x > y, 1.0, -1.0), id="where-two-scalars"),
    pytest.param(lambda s, x, y: torch.where(x[:, :1] > 0, x, y[0]), id="where-broadcast"),
    pytest.param(lambda s, x, y: x.masked_fill(y > 0, -1e9).softmax(-1), id="masked-fill-softmax"),
    pytest.param(lambda s, x, y: x.masked_fill(y > 0.5, float("-inf")).exp(), id="masked-fill-minus-inf"),
    pytest.param(lambda s, x, y: x.masked_fill(y[:, :, :1] > 0, y.amax()), id="masked-fill-tensor"),
    pytest.param(lambda s, x, y: x.clamp(-0.5, 0.5) + x.clamp(min=0.1) + torch.clamp_max(x, 0.2), id="clamp"),
    pytest.param(lambda s, x, y: x.clamp(max=y) + x.clamp(min=y[0]), id="clamp-tensor"),
    pytest.param(lambda s, x, y: torch.maximum(x, y) - torch.minimum(x, y[:, :1]), id="maximum-minimum"),
    pytest.param(lambda s, x, y: x.cos() * y.sin() + torch.erf(x), id="cos-sin-erf"),
    pytest.param(lambda s, x, y: x.pow(3) + x ** 2 + 2 ** y, id="pow-scalars"),
    pytest.param(lambda s, x, y: x.abs() ** y, id="pow-tensors"),
    pytest.param(lambda s, x, y: x.cumsum(1) + torch.cumsum(y, -1), id="cumsum"),
    pytest.param(lambda s, x, y: x * (y > 0).cumsum(2), id="cumsum-bool-is-int"),
    pytest.param(lambda s, x, y: x.tril() + y.triu(1), id="tril-triu"),
    pytest.param(lambda s, x, y: torch.tril(x, -1) - torch.triu(y, -2), id="tril-triu-negative-diagonal"),
    pytest.param(lambda s, x, y: x * (y > 0), id="float-times-bool"),
    pytest.param(lambda s, x, y: x + (y > 0).long() / 2, id="int-true-division"),
    pytest.param(lambda s, x, y: (y * 3).long() * 0.5 - x, id="int-times-float-scalar"),
    pytest.param(lambda s, x, y: x + (y > 0).sum(-1, keepdim=True), id="sum-of-bools"),
]


@BATCH.parametrize("fn", ELEMENTWISE)
def test_elementwise(fn):
    return assert_port_matches(seeded(lambda: Fn2(fn)), (randn(2, 4, 5), randn(2, 4, 5, seed=1)))


ON_CONV_MAP = [  # NHWC inside TF: each op must act on the TF axis holding torch's dim
    pytest.param(lambda s, y, x: torch.where(y > 0, y, s.g * y), id="where-param-C11"),
    pytest.param(lambda s, y, x: y.masked_fill(y < s.g, 0.0), id="masked-fill-param-C11"),
    pytest.param(lambda s, y, x: y.clamp(0, 6) + torch.maximum(y, s.g), id="clamp-maximum"),
    pytest.param(lambda s, y, x: (y > s.g).float() * y.cos(), id="gt-param-cos"),
    pytest.param(lambda s, y, x: y.cumsum(1) + y.cumsum(-1), id="cumsum-channels-W"),
    pytest.param(lambda s, y, x: y.tril(), id="tril-HW"),
]


@BATCH.parametrize("fn", ON_CONV_MAP)
def test_elementwise_on_conv_map(fn):
    return assert_port_matches(seeded(lambda: ConvParams(fn)), (randn(2, 3, 7, 9),))


class AddMM(nn.Module):
    """GPT-2's Conv1D: addmm(bias, x.view(-1, nx), weight).view(..., nf)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(5, 6))
        self.bias = nn.Parameter(torch.randn(6))

    def forward(self, x):
        return torch.addmm(self.bias, x.view(-1, 5), self.weight).view(*x.shape[:-1], 6)


@pytest.mark.node
def test_tfjs(node_or_skip):
    BATCH.assert_all_within()
