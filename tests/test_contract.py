"""The mapping contract: real call arguments, structured outputs, multi-key weights, decomposed modules.

These tests use a toy module with a mapping registered only in a test registry, so the
contract is checked independently of any real layer family.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
from torch import nn

import bridge
import bridge.layers as L
from bridge import layout as lay
from bridge.errors import UnsupportedError
from bridge.registry import LayerPlan, Weight, default_registry, module_mapping
from bridge.trace import trace
from bridge.transforms import Transform

from _parity import randn


class Pair(nn.Module):
    """Returns torch's kind of structure: ``y, (a, b)``; takes an optional keyword tensor and a flag."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))
        self.b1 = nn.Parameter(torch.randn(4))
        self.b2 = nn.Parameter(torch.randn(4))

    def forward(self, x, y, scale=None, double=False):
        out = x @ self.w.T + self.b1 + self.b2 + y
        if scale is not None:
            out = out * scale
        if double:
            out = out * 2
        return out, (out.sum(-1), x * 1.0)


class TFPair(L.Layer):
    def __init__(self, *, path):
        super().__init__(path=path)
        self.kernel = self.variable("kernel", [4, 4])
        self.bias = self.variable("bias", [4])

    def call(self, x, y, scale=None, double=False):
        out = tf.matmul(x, self.kernel) + self.bias + y
        if scale is not None:
            out = out * scale
        if double:
            out = out * 2
        return out, (tf.reduce_sum(out, -1), x * 1.0)


SUM2 = Transform("test_sum", "PT (n,), (n,) -> TF (n,) = a + b", lambda a, b: a + b, arity=2)


@module_mapping(Pair)
def pair_mapping(m, call):
    """Toy mapping for the contract tests."""
    ident = lay.identity(2)
    weights = {"kernel": Weight("w", bridge.transforms.LINEAR_KERNEL), "bias": Weight(("b1", "b2"), SUM2)}
    return LayerPlan("TFPair", {}, weights, tuple(ident for _ in call.inputs), (ident, (lay.identity(1), ident)))


@pytest.fixture
def registry(monkeypatch):
    monkeypatch.setattr(L, "TFPair", TFPair, raising=False)
    reg = default_registry()
    reg.add(pair_mapping)
    return reg


class UsesPair(nn.Module):
    def __init__(self):
        super().__init__()
        self.p = Pair()

    def forward(self, x, s):
        out, (total, same) = self.p(x, x, scale=s, double=True)
        return out + same, total


def test_a_call_keeps_its_real_arguments(registry):
    x, s = randn(2, 4), randn(2, 4, seed=1)
    gm = trace(UsesPair().eval(), (x, s), registry)
    call = next(n for n in gm.graph.nodes if n.op == "call_module")
    assert call.args[0] is call.args[1]  # the same tensor twice, not one deduplicated input
    assert set(call.kwargs) == {"scale", "double"} and call.kwargs["double"] is True


def test_structured_outputs_and_a_weight_from_two_keys(registry):
    module = UsesPair().eval()
    port = bridge.convert(module, (randn(2, 4), randn(2, 4, seed=1)), registry=registry)
    assert "p_0, (p_1_0, p_1_1) = self.p(x, x, scale=s, double=True)" in port.source
    report = port.parity()
    assert report.ok and report.max_abs_error <= 1e-5 * max(1.0, float(module.p.w.detach().abs().max()) * 8)
    names = [d.name for d in report.per_module]
    assert names == ["p[0]", "p[1][0]", "p[1][1]"]
    # each of the two bias entries is used once, by the same named transform
    assert port.keys.used["p.b1"] == port.keys.used["p.b2"] == "test_sum"
    assert port.keys.unused == [] and port.keys.shared == {}
    tf_bias = port.tf_model.p.bias.numpy()
    np.testing.assert_allclose(tf_bias, (module.p.b1 + module.p.b2).detach().numpy(), rtol=0, atol=1e-6)


def test_a_weight_must_name_as_many_sources_as_its_transform_takes():
    with pytest.raises(ValueError, match="combines 2 arrays"):
        Weight("bias", SUM2)


def test_multihead_attention_called_with_one_tensor_three_times_is_one_call():
    """The tagger from the issue: the folded graph passes h three times and keeps the mask a keyword."""

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)
            self.lstm = nn.LSTM(16, 8, batch_first=True, bidirectional=True)
            self.att = nn.MultiheadAttention(16, 2, batch_first=True)
            self.fc = nn.Linear(16, 5)

        def forward(self, ids, mask):
            h, _ = self.lstm(self.emb(ids))
            a, _ = self.att(h, h, h, key_padding_mask=mask, need_weights=False)
            return self.fc(a)

    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 7, dtype=torch.bool)
    mask[1, 5:] = True
    gm = trace(Tagger().eval(), (ids, mask), default_registry())
    att = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == "att")
    assert att.args[0] is att.args[1] is att.args[2]
    assert att.kwargs["need_weights"] is False and att.kwargs["key_padding_mask"].op == "placeholder"


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x)) + x, x * 2


class TwoBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = Block(), Block()

    def forward(self, x):
        y, z = self.a(x)
        return self.b(y)[0] + z


def test_decomposed_modules_are_still_compared_at_their_paths():
    port = bridge.convert(TwoBlocks().eval(), (randn(1, 3, 5, 5),))
    report = port.parity()
    names = [d.name for d in report.per_module]
    assert {"a[0]", "a[1]", "b[0]", "a.conv", "b.conv"} <= set(names)
    assert report.ok and all(d.max_abs_error <= 1e-5 for d in report.per_module)


def test_a_wrong_decomposed_output_is_named_as_the_first_divergence(monkeypatch):
    """Per-module parity must localise an error inside a decomposed module to that module's path."""
    port = bridge.convert(TwoBlocks().eval(), (randn(1, 3, 5, 5),))
    # Block is one TF class for a and b (or one per variant): break the output of the instance at b only
    broken = port.source.replace("L.tap(self.torch_path, (0,), ",
                                 "L.tap(self.torch_path, (0,), (1.5 if self.torch_path == 'b' else 1.0) * ")
    assert broken != port.source
    port.tf_model = bridge.build.instantiate(broken, port.plan.class_name)
    bridge.build.load_weights(port.tf_model, port.bindings, {
        **{k: v.detach().numpy() for k, v in port.module.state_dict().items()}})
    port._parity = None
    assert port.parity().first_divergence == "b[0]"


def test_packed_sequences_are_refused_with_what_to_do_instead():
    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(3, 4, batch_first=True)

        def forward(self, x):
            packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([x.shape[1]] * x.shape[0]), batch_first=True)
            out, h = self.rnn(packed)
            return h

    with pytest.raises(UnsupportedError) as info:
        bridge.convert(Packed().eval(), (randn(2, 5, 3),))
    text = str(info.value)
    assert "PackedSequence" in text and "padded batch" in text and "rnn" in text


def test_a_zero_dim_tensor_constant_keeps_its_shape():
    class Scaled(nn.Module):
        def forward(self, x):
            return x * torch.tensor(2.0)

    port = bridge.convert(Scaled().eval(), (randn(2, 3),))
    assert port.parity().ok and port.parity().max_abs_error == 0.0


def test_a_dim_the_tf_graph_needs_static_stays_fixed_and_the_note_says_so():
    """torch's SDPA accepts any head size, but the TF graph computes its scale from the static size."""

    class Attend(nn.Module):
        def forward(self, q):
            return nn.functional.scaled_dot_product_attention(q, q, q)

    port = bridge.convert(Attend().eval(), (randn(2, 3, 5, 4),))
    assert port.dynamic_dims == [frozenset({1, 2})]  # heads and length free, the head size fixed
    assert any("q dim 3" in n for n in port.notes), port.notes
    assert port.parity().ok
