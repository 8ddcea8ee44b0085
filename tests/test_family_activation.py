"""Activations and softmax: modules, functional forms, torch.* and Tensor methods, on 2D
inputs and on channels-last conv feature maps (where dim=1 is the last TF axis)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _parity import Fn, assert_port_matches, randn, seeded

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


@pytest.mark.parametrize("factory", MODULES)
def test_module_after_flatten(factory):
    assert_port_matches(seeded(lambda: Fn(lambda s, x: s.fc(s.act(s.conv(x).flatten(1))), conv=nn.Conv2d(3, 4, 3),
                                          act=factory(), fc=nn.Linear(4 * 5 * 7, 3))), (randn(2, 3, 7, 9),))


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
