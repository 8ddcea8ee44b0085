"""Property test: random stacks of supported layers, random shapes, channels,
groups, strides, dilations and paddings; each must match torch.

CI runs a bounded number of examples; scripts/nightly_property.py runs many
more (BRIDGE_HYPOTHESIS_EXAMPLES). A failure prints the stack hypothesis
shrank it to, and the first diverging module.
"""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import bridge

EXAMPLES = int(os.environ.get("BRIDGE_HYPOTHESIS_EXAMPLES", "12"))
ACTIVATIONS = [nn.ReLU, nn.SiLU, nn.Tanh, nn.Sigmoid, lambda: nn.GELU("tanh"), nn.GELU, lambda: nn.LeakyReLU(0.1)]


@st.composite
def conv_layer(draw, channels: int, size: int):
    out = draw(st.sampled_from([channels, 2 * channels, 3, 4, 8]))
    groups = draw(st.sampled_from([g for g in (1, 2, channels) if channels % g == 0 and out % g == 0]))
    k = draw(st.integers(1, min(3, size)))
    dilation = draw(st.integers(1, 2)) if (k - 1) * 2 + 1 <= size else 1
    stride = draw(st.integers(1, 2))
    mode = draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    max_pad = min(2, size - 1) if mode == "reflect" else 2
    padding = draw(st.integers(0, max(0, max_pad)))
    if stride == 1 and draw(st.booleans()) and mode == "zeros":
        padding = "same"
    return nn.Conv2d(channels, out, k, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     padding_mode=mode, bias=draw(st.booleans()))


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("BRIDGE_HYPOTHESIS_RANDOM"),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_stack_matches_torch(data):
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    channels = data.draw(st.integers(1, 4), label="channels")
    h, w = data.draw(st.integers(4, 9), label="height"), data.draw(st.integers(4, 10), label="width")
    x = torch.randn(2, channels, h, w)
    model = build_stack(data, x)
    port = bridge.convert(model, (x,))
    report = port.parity()
    tf_err = report.runtime("tf")
    assert report.ok, (f"{model}\nmax abs error {tf_err.max_abs_error:.3g}, "
                       f"first diverging module: {report.first_divergence}")
    assert tf_err.max_abs_error <= 1e-4 * max(1.0, max(d.bound / 1e-4 for d in tf_err.outputs))


def build_stack(data, x: torch.Tensor) -> nn.Sequential:
    layers = []
    for _ in range(data.draw(st.integers(1, 5), label="depth")):
        layer = data.draw(layer_for(x), label="layer")
        try:
            with torch.no_grad():
                y = layer.eval()(x)
        except RuntimeError:  # e.g. a window larger than the padded input: skip this layer
            continue
        if y.dim() != 4 or min(y.shape[2:]) < 1:
            continue
        layers.append(layer)
        x = y
    head = data.draw(st.sampled_from(["flatten_linear", "pool_linear", "none"]), label="head")
    if head == "flatten_linear":
        layers += [nn.Flatten(), nn.Linear(x[0].numel(), data.draw(st.integers(1, 6), label="features"))]
        if data.draw(st.booleans(), label="layernorm"):
            layers.append(nn.LayerNorm(layers[-1].out_features))
        if data.draw(st.booleans(), label="softmax"):
            layers.append(nn.Softmax(dim=-1))
    elif head == "pool_linear":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(x.shape[1], 3)]
    return nn.Sequential(*layers).eval()


@st.composite
def layer_for(draw, x: torch.Tensor):
    c, h, w = x.shape[1:]
    kind = draw(st.sampled_from(["conv", "conv", "bn", "act", "pool"]))
    if kind == "conv":
        return draw(conv_layer(c, min(h, w)))
    if kind == "bn":
        bn = nn.BatchNorm2d(c)
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
        return bn
    if kind == "act":
        return draw(st.sampled_from(ACTIVATIONS))()
    k = draw(st.integers(1, min(3, h, w)))
    pad = draw(st.integers(0, k // 2))
    which = draw(st.sampled_from(["max", "avg", "adaptive"]))
    if which == "max":
        return nn.MaxPool2d(k, stride=draw(st.integers(1, 2)), padding=pad, ceil_mode=draw(st.booleans()))
    if which == "avg":
        return nn.AvgPool2d(k, stride=draw(st.integers(1, 2)), padding=pad, ceil_mode=draw(st.booleans()),
                            count_include_pad=draw(st.booleans()))
    return nn.AdaptiveAvgPool2d((draw(st.integers(1, h)), draw(st.integers(1, w))))
