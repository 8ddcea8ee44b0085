"""Property test: random stacks of supported layers, random shapes, channels,
groups, strides, dilations and paddings; each must match torch within a fixed
bound, max abs error <= 1e-5 * max(1, max|torch|) (float32), never the bridge's
own tolerance.

Coverage is recorded, not hoped for. Every layer kind the strategy can produce
is named in ``ALL_KINDS``; each checked stack adds the kinds it really contains
(read from the built modules, so a layer torch refused and the stack skipped
does not count) to ``COVERED``. A covering phase draws, through the same
strategy, one stack per group of kinds with those kinds forced; the last test
asserts every kind in ``ALL_KINDS`` was checked at least once in the run, and
nothing outside it.

CI runs a bounded, derandomized number of examples (BRIDGE_HYPOTHESIS_EXAMPLES,
default 12); scripts/nightly_property.py runs many more with a fresh seed
(BRIDGE_HYPOTHESIS_RANDOM=1 and --hypothesis-seed) and prints the kinds covered,
which this file writes to $BRIDGE_PROPERTY_KINDS. A failure prints the stack
hypothesis shrank it to, and the first diverging module.
"""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from torch import nn

import bridge

EXAMPLES = int(os.environ.get("BRIDGE_HYPOTHESIS_EXAMPLES", "12"))
RANDOM = bool(os.environ.get("BRIDGE_HYPOTHESIS_RANDOM"))
BOUND = 1e-5  # max abs error <= BOUND * max(1, max|torch|): float32 arithmetic, reordered

PAD_MODES = ("zeros", "reflect", "replicate", "circular")
ACTIVATIONS = {"ReLU": nn.ReLU, "SiLU": nn.SiLU, "Tanh": nn.Tanh, "Sigmoid": nn.Sigmoid,
               "GELU-tanh": lambda: nn.GELU("tanh"), "GELU": nn.GELU, "LeakyReLU": lambda: nn.LeakyReLU(0.1)}
LAYER_KINDS = (
    "conv:valid", *(f"conv:{m}" for m in PAD_MODES), "conv:same",
    "conv:grouped", "conv:dilated", "conv:strided", "conv:no-bias",
    "bn",
    *(f"act:{a}" for a in ACTIVATIONS),
    "pool:max", "pool:max-ceil", "pool:avg", "pool:avg-ceil", "pool:avg-exclude-pad", "pool:adaptive",
)
HEAD_KINDS = ("head:flatten-linear", "head:pool-linear", "head:none", "head:layernorm", "head:softmax")
ALL_KINDS = (*LAYER_KINDS, *HEAD_KINDS)
N_GROUPS = 8  # covering stacks: kinds i, i+8, i+16 of LAYER_KINDS, and one head each
COVER_GROUPS = [(LAYER_KINDS[i::N_GROUPS], HEAD_KINDS[i % len(HEAD_KINDS)]) for i in range(N_GROUPS)]

COVERED: Counter = Counter()  # kind -> stacks checked that contain it, in this run
COVER_RAN: set[int] = set()  # covering groups that passed in this run
WORST = {"error_over_scale": 0.0, "stack": ""}  # the largest max abs error / max(1, max|torch|) seen


def _settings(examples: int):
    return settings(max_examples=examples, deadline=None, derandomize=not RANDOM,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ------------------------------------------------------------------ the strategy


@st.composite
def conv_layer(draw, channels: int, size: int, need: str | None = None):
    """A Conv2d for a (channels, size x size or larger) input; ``need`` forces one conv kind."""
    outs = [channels, 2 * channels, 3, 4, 8]
    if need == "grouped":
        assume(channels > 1)
        groups = draw(st.sampled_from([g for g in (2, 3, 4) if channels % g == 0]))
        out = draw(st.sampled_from([o for o in outs if o % groups == 0]))
    else:
        out = draw(st.sampled_from(outs))
        groups = draw(st.sampled_from([g for g in (1, 2, channels) if channels % g == 0 and out % g == 0]))
    k = draw(st.integers(2 if need == "dilated" else 1, min(3, size)))
    can_dilate = (k - 1) * 2 + 1 <= size
    dilation = 2 if need == "dilated" else draw(st.integers(1, 2)) if can_dilate else 1
    stride = 2 if need == "strided" else 1 if need == "same" else draw(st.integers(1, 2))
    mode = need if need in PAD_MODES else "zeros" if need == "same" else draw(st.sampled_from(PAD_MODES))
    max_pad = min(2, size - 1) if mode == "reflect" else 2
    low = 1 if need in PAD_MODES else 0
    padding = 0 if need == "valid" else draw(st.integers(low, max(low, max_pad)))
    if need == "same" or (need is None and stride == 1 and mode == "zeros" and draw(st.booleans())):
        padding = "same"
    bias = need != "no-bias" and draw(st.booleans())
    return nn.Conv2d(channels, out, k, stride=stride, padding=padding, dilation=dilation, groups=groups,
                     padding_mode=mode, bias=bias)


@st.composite
def layer_for(draw, x: torch.Tensor, need: str | None = None):
    """One layer for input ``x``: random, or of the kind ``need`` (one of LAYER_KINDS)."""
    c, h, w = x.shape[1:]
    family, _, detail = (need or "").partition(":")
    family = family or draw(st.sampled_from(["conv", "conv", "bn", "act", "pool"]))
    if family == "conv":
        return draw(conv_layer(c, min(h, w), detail or None))
    if family == "bn":
        bn = nn.BatchNorm2d(c)
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
        return bn
    if family == "act":
        return ACTIVATIONS[detail or draw(st.sampled_from(list(ACTIVATIONS)))]()
    return draw(pool_layer(h, w, detail or None))


@st.composite
def pool_layer(draw, h: int, w: int, need: str | None = None):
    exclude = need == "avg-exclude-pad"
    k = draw(st.integers(2 if exclude else 1, min(3, h, w)))
    pad = draw(st.integers(1 if exclude else 0, k // 2))
    which = (need or "").split("-")[0] or draw(st.sampled_from(["max", "avg", "adaptive"]))
    ceil = need in ("max-ceil", "avg-ceil") or (need is None and draw(st.booleans()))
    if which == "max":
        return nn.MaxPool2d(k, stride=draw(st.integers(1, 2)), padding=pad, ceil_mode=ceil)
    if which == "avg":
        return nn.AvgPool2d(k, stride=draw(st.integers(1, 2)), padding=pad, ceil_mode=ceil,
                            count_include_pad=not exclude and (need is not None or draw(st.booleans())))
    return nn.AdaptiveAvgPool2d((draw(st.integers(1, h)), draw(st.integers(1, w))))


def layer_kinds(layer: nn.Module) -> set[str]:
    """The kinds (LAYER_KINDS) a built layer exercises, read from the module itself."""
    if isinstance(layer, nn.Conv2d):
        pad = layer.padding
        kinds = {"conv:same" if pad == "same" else "conv:valid" if max(pad) == 0 else f"conv:{layer.padding_mode}"}
        flags = {"conv:grouped": layer.groups > 1, "conv:dilated": max(layer.dilation) > 1,
                 "conv:strided": max(layer.stride) > 1, "conv:no-bias": layer.bias is None}
        return kinds | {k for k, on in flags.items() if on}
    if isinstance(layer, nn.BatchNorm2d):
        return {"bn"}
    if isinstance(layer, nn.GELU):
        return {"act:GELU-tanh" if layer.approximate == "tanh" else "act:GELU"}
    if isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
        which = "max" if isinstance(layer, nn.MaxPool2d) else "avg"
        kinds = {f"pool:{which}"} | ({f"pool:{which}-ceil"} if layer.ceil_mode else set())
        if which == "avg" and not layer.count_include_pad and layer.padding:
            kinds.add("pool:avg-exclude-pad")
        return kinds
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return {"pool:adaptive"}
    return {f"act:{type(layer).__name__}"}


def _runs(layer: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The layer's output on ``x``, or None if torch refuses (e.g. a window larger than the padded input)."""
    try:
        with torch.no_grad():
            y = layer.eval()(x)
    except RuntimeError:
        return None
    return y if y.dim() == 4 and min(y.shape[2:]) >= 1 else None


def build_stack(data, x: torch.Tensor, need: tuple[str, ...] = (), head: str | None = None):
    """(model, kinds): the forced layers ``need`` first, then 1-5 random ones (none when forced), then a head."""
    layers, kinds = [], set()
    for kind in need:
        layer = data.draw(layer_for(x, kind), label=kind)
        y = _runs(layer, x)
        assume(y is not None)
        layers.append(layer)
        kinds |= layer_kinds(layer)
        x = y
    for _ in range(0 if need else data.draw(st.integers(1, 5), label="depth")):
        layer = data.draw(layer_for(x), label="layer")
        y = _runs(layer, x)
        if y is None:
            continue
        layers.append(layer)
        kinds |= layer_kinds(layer)
        x = y
    head = head or data.draw(st.sampled_from(HEAD_KINDS), label="head")
    if head in ("head:flatten-linear", "head:layernorm", "head:softmax"):
        # LayerNorm over 1-3 features is ill-conditioned (two near-equal values normalise to about +-1, so a
        # 1e-7 input error can grow past the bound): a LayerNorm head gets 4-6 features.
        norm = head == "head:layernorm" or (head == "head:flatten-linear" and data.draw(st.booleans(), label="ln"))
        features = data.draw(st.integers(4 if norm else 1, 6), label="features")
        layers += [nn.Flatten(), nn.Linear(x[0].numel(), features)]
        if norm:
            layers.append(nn.LayerNorm(layers[-1].out_features))
        if head == "head:softmax":
            layers.append(nn.Softmax(dim=-1))
        kinds |= {"head:flatten-linear", *(["head:layernorm"] if isinstance(layers[-1], nn.LayerNorm) else []),
                  *([head] if head == "head:softmax" else [])}
    elif head == "head:pool-linear":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(x.shape[1], 3)]
        kinds.add(head)
    else:
        kinds.add("head:none")
    return nn.Sequential(*layers).eval(), kinds


# ------------------------------------------------------------------ checking a stack


def check_stack(model: nn.Sequential, x: torch.Tensor, kinds: set[str]) -> None:
    """Convert, and assert every output within BOUND * max(1, max|torch|) over all parity inputs."""
    port = bridge.convert(model, (x,))
    report = port.parity()
    scales: dict[str, float] = {}
    for inputs in port.parity_inputs():
        for name, a in port.torch_outputs(inputs):
            scales[name] = max(scales.get(name, 0.0), float(np.max(np.abs(a))) if a.size else 0.0)
    outputs = report.runtime("tf").outputs
    assert [d.name for d in outputs] == list(scales), f"{model}\noutputs {[d.name for d in outputs]}"
    for d in outputs:
        limit = BOUND * max(1.0, scales[d.name])
        if d.problem is None and d.max_abs_error / max(1.0, scales[d.name]) > WORST["error_over_scale"]:
            WORST.update(error_over_scale=d.max_abs_error / max(1.0, scales[d.name]), stack=repr(model))
        assert d.problem is None and d.max_abs_error <= limit, (
            f"{model}\n{d.name}: max abs error {d.max_abs_error:.3g} > {limit:.3g} ({d.problem or 'values'}); "
            f"first diverging module: {report.first_divergence}")
    record(kinds)


def record(kinds: set[str]) -> None:
    for kind in sorted(kinds):
        event(kind)  # in --hypothesis-show-statistics
    COVERED.update(kinds)
    out = os.environ.get("BRIDGE_PROPERTY_KINDS")
    if out:  # for scripts/nightly_property.py
        with open(out, "w") as f:
            json.dump({"covered": dict(COVERED), "all": list(ALL_KINDS), "worst": WORST}, f, indent=1)


def _input(data, channels=(1, 4), size=(4, 9)) -> torch.Tensor:
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    c = data.draw(st.integers(*channels), label="channels")
    h = data.draw(st.integers(*size), label="height")
    w = data.draw(st.integers(size[0], size[1] + 1), label="width")
    return torch.randn(2, c, h, w)


@_settings(EXAMPLES)
@given(data=st.data())
def test_random_stack_matches_torch(data):
    x = _input(data)
    model, kinds = build_stack(data, x)
    check_stack(model, x, kinds)


@pytest.mark.parametrize("group", range(N_GROUPS), ids=[",".join(g) + "," + h for g, h in COVER_GROUPS])
@_settings(1)
@given(data=st.data())
def test_covering_stack_matches_torch(group, data):
    """The kinds of one group forced, in order, through the same strategy (the rest drawn)."""
    need, head = COVER_GROUPS[group]
    x = _input(data, channels=(2, 4), size=(8, 10))
    model, kinds = build_stack(data, x, need, head)
    assert set(need) <= kinds and head in kinds, f"forced {need} {head}, built {sorted(kinds)}"
    check_stack(model, x, kinds)
    COVER_RAN.add(group)


def test_every_kind_in_the_strategy_was_checked():
    if len(COVER_RAN) < N_GROUPS:
        pytest.skip("needs this file's covering tests passing in the same run")
    missing = [k for k in ALL_KINDS if not COVERED[k]]
    unknown = sorted(set(COVERED) - set(ALL_KINDS))
    assert not missing and not unknown, f"never checked: {missing}; not in ALL_KINDS: {unknown}"
