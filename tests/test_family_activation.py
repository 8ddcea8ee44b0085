"""Activations and softmax: modules, functional forms, torch.* and Tensor methods, on 2D
inputs and on channels-last conv feature maps (where dim=1 is the last TF axis).

Every row is checked in TF on its own and in tfjs cpu and wasm. The elementwise tables
(MODULES, FUNCTIONS, DTYPES, HF_ACTIVATIONS in each context) go to tfjs as one model per
table (``Bundle``: each row's module on the shared input, output i = row i), which costs
one conversion instead of one per row, and is held to 1e-4 absolute (the tightest bound any one
row could have); ROWS are checked one model per row."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _parity import Fn, assert_port_matches, randn, seeded
from _tfjs_batch import RTOL, TfjsBatch

BATCH = TfjsBatch()  # every table below is checked in tfjs (cpu, wasm) too: test_tfjs_activations, last

MODULES = [
    pytest.param(lambda: nn.ReLU(), id="ReLU"),
    pytest.param(lambda: nn.LeakyReLU(0.2), id="LeakyReLU0.2"),
    pytest.param(lambda: nn.LeakyReLU(), id="LeakyReLU-default"),
    pytest.param(lambda: nn.GELU(), id="GELU"),
    pytest.param(lambda: nn.GELU(approximate="tanh"), id="GELU-tanh"),
    pytest.param(lambda: nn.SiLU(), id="SiLU"),
    pytest.param(lambda: nn.Sigmoid(), id="Sigmoid"),
    pytest.param(lambda: nn.Tanh(), id="Tanh"),
    pytest.param(lambda: nn.Softmax(dim=1), id="Softmax1"),
    pytest.param(lambda: nn.Softmax(dim=-1), id="Softmax-1"),
    pytest.param(lambda: nn.LogSoftmax(dim=1), id="LogSoftmax1"),
    pytest.param(lambda: nn.LogSoftmax(dim=-1), id="LogSoftmax-1"),
]

FUNCTIONS = [
    pytest.param(lambda x: F.relu(x), id="F.relu"),
    pytest.param(lambda x: F.relu(x, inplace=False), id="F.relu-inplace-kw"),
    pytest.param(lambda x: F.gelu(x), id="F.gelu"),
    pytest.param(lambda x: F.gelu(x, approximate="tanh"), id="F.gelu-tanh"),
    pytest.param(lambda x: F.silu(x), id="F.silu"),
    pytest.param(lambda x: F.leaky_relu(x, 0.2), id="F.leaky_relu"),
    pytest.param(lambda x: F.leaky_relu(x, negative_slope=0.3), id="F.leaky_relu-kw"),
    pytest.param(lambda x: F.sigmoid(x), id="F.sigmoid"),
    pytest.param(lambda x: F.tanh(x), id="F.tanh"),
    pytest.param(lambda x: F.softmax(x, dim=1), id="F.softmax1"),
    pytest.param(lambda x: F.softmax(x, -1), id="F.softmax-1"),
    pytest.param(lambda x: F.log_softmax(x, dim=1), id="F.log_softmax1"),
    pytest.param(lambda x: torch.relu(x), id="torch.relu"),
    pytest.param(lambda x: torch.sigmoid(x), id="torch.sigmoid"),
    pytest.param(lambda x: torch.tanh(x), id="torch.tanh"),
    pytest.param(lambda x: torch.softmax(x, 1), id="torch.softmax1"),
    pytest.param(lambda x: torch.log_softmax(x, dim=-1), id="torch.log_softmax-1"),
    pytest.param(lambda x: x.relu(), id="Tensor.relu"),
    pytest.param(lambda x: x.sigmoid(), id="Tensor.sigmoid"),
    pytest.param(lambda x: x.tanh(), id="Tensor.tanh"),
    pytest.param(lambda x: x.softmax(1), id="Tensor.softmax1"),
    pytest.param(lambda x: x.softmax(dim=-1), id="Tensor.softmax-1"),
    pytest.param(lambda x: x.log_softmax(1), id="Tensor.log_softmax1"),
    pytest.param(lambda x: F.mish(x), id="F.mish"),
    pytest.param(lambda x: F.softplus(x), id="F.softplus"),
    pytest.param(lambda x: F.softplus(3 * x, beta=2, threshold=5), id="F.softplus-beta-threshold"),
    pytest.param(lambda x: F.hardtanh(x, -0.5, 0.8), id="F.hardtanh"),
    pytest.param(lambda x: F.relu6(4 * x), id="F.relu6"),
    pytest.param(lambda x: F.hardswish(4 * x), id="F.hardswish"),
    pytest.param(lambda x: F.hardsigmoid(4 * x), id="F.hardsigmoid"),
    pytest.param(lambda x: torch.square(x) - torch.clip(x, -0.3, 0.3), id="torch.square-clip"),
]

# softmax in another dtype: the result is float64, so these rows end the model (no Linear after)
DTYPES = [
    pytest.param(lambda x: torch.softmax(x, -1, torch.float64), id="torch.softmax-dtype-positional"),
    pytest.param(lambda x: F.softmax(x, 1, dtype=torch.float64), id="F.softmax-dtype"),
    pytest.param(lambda x: x.log_softmax(-1, torch.float64), id="Tensor.log_softmax-dtype"),
]


def _on_conv_map(act):
    return Fn(lambda s, x: s.act(s.conv(x)), conv=nn.Conv2d(3, 4, 3), act=act)


def _on_conv_map_fn(fn):
    return Fn(lambda s, x: fn(s.conv(x)), conv=nn.Conv2d(3, 4, 3))


def _on_flatten(fn):
    """After flatten of a conv map (a folded-flatten layout) and before a Linear."""
    return Fn(lambda s, x: s.fc(fn(s.conv(x).flatten(1))), conv=nn.Conv2d(3, 4, 3), fc=nn.Linear(4 * 5 * 7, 3))


@pytest.mark.parametrize("factory", MODULES)
def test_module_2d(factory):
    assert_port_matches(seeded(lambda: nn.Sequential(nn.Linear(6, 5), factory())), (randn(3, 6),))


@pytest.mark.parametrize("factory", MODULES)
def test_module_on_conv_map(factory):
    assert_port_matches(seeded(lambda: _on_conv_map(factory())), (randn(2, 3, 7, 9),))


def _module_after_flatten(act):
    return Fn(lambda s, x: s.fc(s.act(s.conv(x).flatten(1))), conv=nn.Conv2d(3, 4, 3), act=act,
              fc=nn.Linear(4 * 5 * 7, 3))


@pytest.mark.parametrize("factory", MODULES)
def test_module_after_flatten(factory):
    assert_port_matches(seeded(lambda: _module_after_flatten(factory())), (randn(2, 3, 7, 9),))


@pytest.mark.parametrize("fn", FUNCTIONS + DTYPES)
def test_function_2d(fn):
    assert_port_matches(seeded(lambda: Fn(lambda s, x: fn(x))), (randn(3, 6),))


@pytest.mark.parametrize("fn", FUNCTIONS + DTYPES)
def test_function_on_conv_map(fn):
    assert_port_matches(seeded(lambda: _on_conv_map_fn(fn)), (randn(2, 3, 7, 9),))


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_function_after_flatten(fn):
    assert_port_matches(seeded(lambda: _on_flatten(fn)), (randn(2, 3, 7, 9),))


def test_softmax_after_flatten_returned():
    """flatten -> softmax -> output: the softmax must see torch's column order."""
    module = Fn(lambda s, x: F.softmax(s.conv(x).flatten(1), dim=1), conv=nn.Conv2d(3, 4, 3))
    assert_port_matches(seeded(lambda: module), (randn(2, 3, 7, 9),))


# transformers' ACT2FN activations (their own modules, traced into ATen ops), after a Linear
HF_ACTIVATIONS = ["gelu", "gelu_10", "gelu_accurate", "gelu_fast", "gelu_new", "gelu_python", "gelu_python_tanh",
                  "gelu_pytorch_tanh", "laplace", "leaky_relu", "linear", "mish", "quick_gelu", "relu", "relu2",
                  "sigmoid", "silu", "sqrtsoftplus", "swish", "tanh"]


@pytest.mark.parametrize("name", HF_ACTIVATIONS)
def test_transformers_activation(name):
    from transformers.activations import get_activation

    assert_port_matches(seeded(lambda: nn.Sequential(nn.Linear(5, 6), get_activation(name))), (randn(2, 3, 5),))


# ---- the other activation modules (issue 7): each class and option once, checked in TF and in tfjs

def _after_linear(act, width: int = 5, gain: float = 1.0):
    """Linear(6, width), times ``gain`` (to reach a clamp or a threshold), then ``act``."""
    return Fn(lambda s, x: s.act(gain * s.fc(x)), fc=nn.Linear(6, width), act=act)


def _alone(act):
    """A traced-through module as the whole model (in an Fn: a Sequential of only traced ops has no layers)."""
    return Fn(lambda s, x: s.act(x), act=act)


def _prelu(n: int):
    """PReLU with distinct slopes, so a slope applied to the wrong channel shows."""
    m = nn.PReLU(n)
    with torch.no_grad():
        m.weight.copy_(torch.linspace(-0.5, 1.5, n))
    return m


ROWS = [  # (factory, input shape)
    pytest.param(lambda: _after_linear(nn.ReLU6(), gain=6.0), (3, 6), id="ReLU6"),
    pytest.param(lambda: _after_linear(nn.Hardtanh(-0.5, 0.8)), (3, 6), id="Hardtanh"),
    pytest.param(lambda: _after_linear(nn.Hardsigmoid(), gain=4.0), (3, 6), id="Hardsigmoid"),
    pytest.param(lambda: _after_linear(nn.Hardswish(), gain=4.0), (3, 6), id="Hardswish"),
    pytest.param(lambda: _after_linear(nn.Mish()), (3, 6), id="Mish"),
    pytest.param(lambda: _after_linear(nn.Softplus()), (3, 6), id="Softplus"),
    pytest.param(lambda: _after_linear(nn.Softplus(beta=2.0, threshold=1.0), gain=2.0), (3, 6),
                 id="Softplus-beta-threshold"),
    pytest.param(lambda: _after_linear(nn.Softsign(), gain=3.0), (3, 6), id="Softsign"),
    pytest.param(lambda: _after_linear(nn.Tanhshrink()), (3, 6), id="Tanhshrink"),
    pytest.param(lambda: _after_linear(nn.ELU()), (3, 6), id="ELU"),
    pytest.param(lambda: _after_linear(nn.ELU(alpha=0.5, inplace=True)), (3, 6), id="ELU-alpha-inplace"),
    pytest.param(lambda: _after_linear(nn.SELU()), (3, 6), id="SELU"),
    pytest.param(lambda: _after_linear(nn.CELU(alpha=0.7)), (3, 6), id="CELU"),
    pytest.param(lambda: _after_linear(nn.GLU(), width=6), (3, 6), id="GLU"),
    pytest.param(lambda: _on_conv_map(nn.GLU(dim=1)), (2, 3, 7, 9), id="GLU-dim1-conv-map"),
    pytest.param(lambda: _after_linear(nn.Softshrink(0.3)), (3, 6), id="Softshrink"),
    pytest.param(lambda: _after_linear(nn.Hardshrink(0.4)), (3, 6), id="Hardshrink"),
    pytest.param(lambda: _after_linear(nn.Threshold(0.1, 20.0)), (3, 6), id="Threshold"),
    pytest.param(lambda: _after_linear(nn.Threshold(-0.2, -3.0, inplace=True)), (3, 6), id="Threshold-inplace"),
    pytest.param(lambda: _after_linear(nn.LogSigmoid(), gain=30.0), (3, 6), id="LogSigmoid"),
    pytest.param(lambda: _after_linear(nn.RReLU(0.1, 0.3)), (3, 6), id="RReLU-eval"),
    pytest.param(lambda: _after_linear(nn.PReLU()), (3, 6), id="PReLU-one-slope"),
    pytest.param(lambda: _after_linear(_prelu(5)), (3, 6), id="PReLU-per-feature"),
    pytest.param(lambda: _on_conv_map(_prelu(4)), (2, 3, 7, 9), id="PReLU-per-channel-conv-map"),
    pytest.param(lambda: Fn(lambda s, x: s.fc(s.act(s.conv(x).flatten(1))), conv=nn.Conv2d(3, 4, 3), act=_prelu(1),
                            fc=nn.Linear(4 * 5 * 7, 3)), (2, 3, 7, 9), id="PReLU-after-flatten"),
    pytest.param(lambda: nn.Sequential(_prelu(1)), (4,), id="PReLU-1d"),  # torch: a 1-d input has one channel
    pytest.param(lambda: nn.Sequential(_prelu(5)), (2, 5, 3), id="PReLU-per-channel-3d"),
    pytest.param(lambda: _after_linear(nn.Softmin(dim=1)), (3, 6), id="Softmin"),
    pytest.param(lambda: _on_conv_map(nn.Softmin(dim=1)), (2, 3, 7, 9), id="Softmin-dim1-conv-map"),
    pytest.param(lambda: _on_conv_map(nn.Softmax2d()), (2, 3, 7, 9), id="Softmax2d-conv-map"),
    pytest.param(lambda: _alone(nn.Softmax2d()), (3, 4, 5), id="Softmax2d-unbatched"),
    # functional forms: the same ops, with a raw weight (F.prelu) or positional options
    pytest.param(lambda: Fn(lambda s, x: F.prelu(s.conv(x), s.slopes), conv=nn.Conv2d(3, 4, 3),
                            slopes=nn.Parameter(torch.linspace(-0.5, 1.5, 4))), (2, 3, 7, 9),
                 id="F.prelu-per-channel-conv-map"),
    pytest.param(lambda: Fn(lambda s, x: F.prelu(x, torch.tensor([0.3]))), (3, 6), id="F.prelu-one-slope"),
    pytest.param(lambda: Fn(lambda s, x: F.glu(x, 0) + F.threshold(x[:2], 0.2, -1.0) + F.rrelu(x[:2], 0.2, 0.4)
                            + F.logsigmoid(x[:2]) + F.elu(x[:2], 0.3) + F.softshrink(x[:2], 0.2)),
                 (4, 6), id="F.glu-threshold-rrelu-logsigmoid-elu-softshrink"),
    pytest.param(lambda: nn.Sequential(nn.Softmax(dim=0)), (), id="Softmax-0d"),  # torch: one element, 1.0
    pytest.param(lambda: nn.Sequential(nn.LogSoftmax(dim=-1)), (), id="LogSoftmax-0d"),
    pytest.param(lambda: _alone(nn.Softmin(dim=-1)), (), id="Softmin-0d"),
]


@BATCH.parametrize("factory, shape", ROWS)
def test_more_activations(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


def test_rrelu_training_is_refused():
    """F.rrelu(training=True) draws random slopes: conversion refuses it, naming the reason.
    (An nn.RReLU module is converted in eval mode, like every model.)"""
    import bridge

    with pytest.raises(Exception, match="training mode"):
        bridge.convert(Fn(lambda s, x: F.rrelu(x, training=True)), (randn(3, 6),))


# ---- the elementwise tables in tfjs: one Bundle per table and context
class Bundle(nn.Module):
    """Each row's module applied to the one input; output i is row i (a whole table in one tfjs conversion)."""

    def __init__(self, rows: list[nn.Module]):
        super().__init__()
        self.rows = nn.ModuleList(rows)

    def forward(self, x):
        return tuple(m(x) for m in self.rows)


def _first(params) -> list:
    return [p.values[0] for p in params]


BUNDLES = {  # tfjs row id -> (one module per table row, input shape)
    "modules-2d": (lambda: [nn.Sequential(nn.Linear(6, 5), f()) for f in _first(MODULES)], (3, 6)),
    "modules-on-conv-map": (lambda: [_on_conv_map(f()) for f in _first(MODULES)], (2, 3, 7, 9)),
    "modules-after-flatten": (lambda: [_module_after_flatten(f()) for f in _first(MODULES)],
                              (2, 3, 7, 9)),
    "functions-2d": (lambda: [Fn(lambda s, x, fn=fn: fn(x)) for fn in _first(FUNCTIONS + DTYPES)], (3, 6)),
    "functions-on-conv-map": (lambda: [_on_conv_map_fn(fn) for fn in _first(FUNCTIONS + DTYPES)], (2, 3, 7, 9)),
    "functions-after-flatten": (lambda: [_on_flatten(fn) for fn in _first(FUNCTIONS)], (2, 3, 7, 9)),
    "softmax-after-flatten-returned": (lambda: [Fn(lambda s, x: F.softmax(s.conv(x).flatten(1), dim=1),
                                                   conv=nn.Conv2d(3, 4, 3))], (2, 3, 7, 9)),
    "transformers-activations": (lambda: [nn.Sequential(nn.Linear(5, 6), _hf(name)) for name in HF_ACTIVATIONS],
                                 (2, 3, 5)),
}


def _hf(name: str) -> nn.Module:
    from transformers.activations import get_activation

    return get_activation(name)


def _bundle_row(rows, shape):
    return lambda: assert_port_matches(seeded(lambda: Bundle(rows())), (randn(*shape),))


for _id, (_rows, _shape) in BUNDLES.items():
    BATCH.row(f"bundle[{_id}]", _bundle_row(_rows, _shape))


@pytest.mark.node
def test_tfjs_activations(node_or_skip):
    result = BATCH.assert_all_within()
    # a bundle's bound scales with the largest output of all its rows; its error must also be within the
    # smallest bound any one row can have, 1e-4 * 1, so no row is checked looser than on its own
    loose = [r.line() for r in result.rows if r.row_id.startswith("bundle[")
             and any(b.max_abs_error > RTOL for b in r.backends.values())]
    assert not loose, loose
