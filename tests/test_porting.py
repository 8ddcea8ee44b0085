"""load_torch_weights: a hand-written TF port filled from a torch state_dict, by layer kind and name,
by explicit mapping, and all or nothing when keys do not fit."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
from torch import nn

from bridge.checkpoint import load_checkpoint
from bridge.errors import BadInputError, KeyMismatchError
from bridge.porting import load_torch_weights

L = tf.keras.layers
TOL = 1e-5  # float32 on both sides, same arithmetic up to summation order


class Holder(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer


class KHolder(tf.keras.Model):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def call(self, x):
        return self.layer(x)


def _nhwc(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a.transpose(0, 2, 1) if a.ndim == 3 else a


def _nchw(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a.transpose(0, 2, 1) if a.ndim == 3 else a


def _randomize_bn(bn: nn.Module) -> nn.Module:
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
    return bn


# (id, torch layer, keras layer, torch input, channels-last in TF, {torch key: (tf path, transform)})
CASES = [
    ("dense", lambda: nn.Linear(4, 3), lambda: L.Dense(3), lambda: torch.randn(2, 4), False,
     {"layer.weight": ("layer.kernel", "linear_kernel"), "layer.bias": ("layer.bias", "identity")}),
    ("conv1d", lambda: nn.Conv1d(3, 5, 3), lambda: L.Conv1D(5, 3), lambda: torch.randn(2, 3, 10), True,
     {"layer.weight": ("layer.kernel", "keras_conv1d_kernel"), "layer.bias": ("layer.bias", "identity")}),
    ("conv2d", lambda: nn.Conv2d(3, 4, 3), lambda: L.Conv2D(4, 3), lambda: torch.randn(2, 3, 7, 7), True,
     {"layer.weight": ("layer.kernel", "conv2d_kernel"), "layer.bias": ("layer.bias", "identity")}),
    ("depthwise", lambda: nn.Conv2d(4, 8, 3, groups=4), lambda: L.DepthwiseConv2D(3, depth_multiplier=2),
     lambda: torch.randn(2, 4, 7, 7), True,
     {"layer.weight": ("layer.kernel", "depthwise_kernel"), "layer.bias": ("layer.bias", "identity")}),
    ("batchnorm", lambda: _randomize_bn(nn.BatchNorm2d(4, eps=1e-3)), lambda: L.BatchNormalization(epsilon=1e-3),
     lambda: torch.randn(2, 4, 5, 5), True,
     {"layer.weight": ("layer.gamma", "identity"), "layer.bias": ("layer.beta", "identity"),
      "layer.running_mean": ("layer.moving_mean", "identity"),
      "layer.running_var": ("layer.moving_variance", "identity")}),
    ("layernorm", lambda: _randomize_ln(nn.LayerNorm(6)), lambda: L.LayerNormalization(epsilon=1e-5),
     lambda: torch.randn(2, 5, 6), False,
     {"layer.weight": ("layer.gamma", "identity"), "layer.bias": ("layer.beta", "identity")}),
    ("embedding", lambda: nn.Embedding(10, 4), lambda: L.Embedding(10, 4), lambda: torch.randint(0, 10, (2, 5)),
     False, {"layer.weight": ("layer.embeddings", "identity")}),
]


def _randomize_ln(ln: nn.LayerNorm) -> nn.LayerNorm:
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)
    return ln


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_each_layer_kind_is_filled_by_name_and_computes_the_same(case):
    _, make_torch, make_keras, make_x, channels_last, expected = case
    torch.manual_seed(0)
    net = Holder(make_torch()).eval()
    port = KHolder(make_keras())
    x = make_x()
    tf_x = _nhwc(x.numpy()) if channels_last else x.numpy()
    port(tf.constant(tf_x))  # build

    report = load_torch_weights(port, net.state_dict())

    assert report.table() == expected
    got = port(tf.constant(tf_x)).numpy()
    got = _nchw(got) if channels_last else got
    with torch.no_grad():
        ref = net.layer(x).numpy()
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) <= TOL * max(1.0, np.max(np.abs(ref)))


def test_batchnorm_step_counter_is_ignored_with_a_reason():
    net = Holder(nn.BatchNorm1d(3))
    port = KHolder(L.BatchNormalization())
    port(tf.zeros((1, 3)))
    report = load_torch_weights(port, net.state_dict())
    assert "layer.num_batches_tracked" in report.ignored
    assert "counter" in report.ignored["layer.num_batches_tracked"]
    assert len(report.loaded) == 4


def test_ignore_patterns_leave_keys_out_on_purpose():
    net = Holder(nn.Linear(2, 2))
    port = KHolder(L.Dense(2))
    port(tf.zeros((1, 2)))
    state = {**net.state_dict(), "aux.proj.weight": torch.randn(4, 4), "aux.proj.bias": torch.randn(4)}
    with pytest.raises(KeyMismatchError, match="unexpected  aux.proj.weight"):
        load_torch_weights(port, state)
    report = load_torch_weights(port, state, ignore=["aux.*"])
    assert report.ignored == {"aux.proj.weight": "ignored on request", "aux.proj.bias": "ignored on request"}
    assert sorted(report.table()) == ["layer.bias", "layer.weight"]


class PlainPort(tf.Module):
    def __init__(self):
        super().__init__()
        self.slope = tf.Variable(tf.zeros([2]))
        self.intercept = tf.Variable(tf.zeros([1]))
        self.blocks = [tf.Module()]
        self.blocks[0].w = tf.Variable(tf.zeros([3, 2]))

    def __call__(self, x):
        return tf.reduce_sum(x * self.slope, -1, keepdims=True) + self.intercept


def test_plain_variables_match_by_attribute_path_with_numpy_arrays():
    port = PlainPort()
    state = {"slope": np.array([2.0, -3.0], np.float32), "intercept": np.array([0.5], np.float32),
             "blocks.0.w": np.arange(6, dtype=np.float32).reshape(3, 2)}
    report = load_torch_weights(port, state)
    assert report.table() == {"slope": ("slope", "identity"), "intercept": ("intercept", "identity"),
                              "blocks.0.w": ("blocks.0.w", "identity")}
    np.testing.assert_array_equal(port.slope.numpy(), [2.0, -3.0])
    np.testing.assert_array_equal(port.blocks[0].w.numpy(), state["blocks.0.w"])
    assert float(port(tf.constant([[1.0, 1.0]]))[0, 0]) == pytest.approx(-0.5)


def test_plain_variable_shapes_must_match_exactly():
    port = PlainPort()
    state = {"slope": np.zeros((1, 2), np.float32), "intercept": np.zeros(1, np.float32),
             "blocks.0.w": np.zeros((3, 2), np.float32)}
    with pytest.raises(KeyMismatchError) as info:
        load_torch_weights(port, state)
    assert [(k.split(" ")[0], e, f) for k, e, f in info.value.problems.mismatched] == [("slope", (2,), (1, 2))]


class Renamed(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.head = L.Dense(2)
        self.w = tf.Variable(tf.zeros([4, 3]))  # stored (in, out): needs linear_kernel, named explicitly

    def call(self, x):
        return self.head(tf.matmul(x, self.w))


def _renamed_state():
    torch.manual_seed(1)
    return {"fc.weight": torch.randn(2, 3), "fc.bias": torch.randn(2), "proj.weight": torch.randn(3, 4)}


def test_explicit_mapping_dict_with_and_without_a_transform_name():
    port = Renamed()
    port(tf.zeros((1, 4)))
    state = _renamed_state()
    mapping = {"fc.weight": "head.kernel", "fc.bias": "head.bias", "proj.weight": ("w", "linear_kernel")}
    report = load_torch_weights(port, state, mapping)
    assert report.table() == {"fc.weight": ("head.kernel", "linear_kernel"), "fc.bias": ("head.bias", "identity"),
                              "proj.weight": ("w", "linear_kernel")}
    np.testing.assert_array_equal(port.head.kernel.numpy(), state["fc.weight"].numpy().T)
    np.testing.assert_array_equal(port.w.numpy(), state["proj.weight"].numpy().T)


def test_explicit_mapping_callable_falls_back_to_names_on_none():
    port = Renamed()
    port(tf.zeros((1, 4)))
    state = {"head.weight": torch.randn(2, 3), "head.bias": torch.randn(2), "proj.weight": torch.randn(3, 4)}
    report = load_torch_weights(port, state, lambda k: ("w", "linear_kernel") if k == "proj.weight" else None)
    assert report.table()["head.weight"] == ("head.kernel", "linear_kernel")
    assert report.table()["proj.weight"] == ("w", "linear_kernel")
    np.testing.assert_array_equal(port.head.bias.numpy(), state["head.bias"].numpy())


def _snapshot(model) -> dict[str, np.ndarray]:
    return {v.path: v.numpy().copy() for v in model.weights}


class TwoDense(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = L.Dense(3)
        self.out = L.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def test_missing_unexpected_and_mismatched_are_reported_together_and_nothing_changes():
    port = TwoDense()
    port(tf.zeros((1, 4)))
    before = _snapshot(port)
    state = {"hidden.weight": torch.randn(3, 5),  # TF kernel is (4, 3): wrong in-features
             "hidden.bias": torch.randn(3),  # fits, but must not be written either
             "extra.weight": torch.randn(7)}  # and out.* is missing

    with pytest.raises(KeyMismatchError) as info:
        load_torch_weights(port, state)

    p = info.value.problems
    assert [k.split(" ")[0] for k, _ in p.missing] == ["out.kernel", "out.bias"]
    assert [s for _, s in p.missing] == [(3, 2), (2,)]
    assert p.unexpected == [("extra.weight", (7,))]
    assert [(k.split(" ")[0], e, f) for k, e, f in p.mismatched] == [("hidden.weight", (4, 3), (5, 3))]
    assert "nothing was written" in info.value.message and "out.kernel (from torch out.weight)" in info.value.message
    after = _snapshot(port)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_bad_mapping_fails_whole_before_writing():
    port = Renamed()
    port(tf.zeros((1, 4)))
    before = _snapshot(port)
    expected = "(?s)unknown transform 'transpose'.*'nope' is not a key of the state_dict"
    with pytest.raises(BadInputError, match=expected) as info:
        load_torch_weights(port, _renamed_state(), {"proj.weight": ("w", "transpose"), "nope": "w"})
    assert "linear_kernel" in info.value.message  # the valid names are listed
    assert all(np.array_equal(v, _snapshot(port)[k]) for k, v in before.items())


def test_unbuilt_keras_model_asks_to_be_built_or_builds_from_input_shape():
    port = TwoDense()
    state = {"hidden.weight": torch.randn(3, 4), "hidden.bias": torch.randn(3),
             "out.weight": torch.randn(2, 3), "out.bias": torch.randn(2)}
    with pytest.raises(BadInputError, match="not built yet.*hidden, out.*Call it once") as info:
        load_torch_weights(port, state)
    assert info.value.exit_code == 2

    report = load_torch_weights(port, state, input_shape=(1, 4))
    assert len(report.loaded) == 4
    np.testing.assert_array_equal(port.out.kernel.numpy(), state["out.weight"].numpy().T)


def test_a_keras_kind_without_rule_needs_an_explicit_transform():
    port = KHolder(L.Conv3D(2, 1, use_bias=False))
    port(tf.zeros((1, 2, 2, 2, 3)))
    state = {"layer.weight": torch.randn(2, 3, 1, 1, 1)}
    with pytest.raises(KeyMismatchError, match="no default rule for Keras Conv3D") as info:
        load_torch_weights(port, state)
    assert [k for k, _ in info.value.problems.unexpected] == ["layer.weight"]
    with pytest.raises(BadInputError, match="no default transform"):
        load_torch_weights(port, state, {"layer.weight": "layer.kernel"})


def test_checkpoint_objects_are_accepted_with_their_notes(tmp_path):
    torch.manual_seed(2)
    net = nn.Sequential()
    net.add_module("hidden", nn.Linear(4, 3))
    net.add_module("out", nn.Linear(3, 2))
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    port = TwoDense()
    port(tf.zeros((1, 4)))

    report = load_torch_weights(port, load_checkpoint(path))

    assert "prefix 'module.' stripped" in report.notes
    assert report.table()["out.weight"] == ("out.kernel", "linear_kernel")
    x = torch.randn(5, 4)
    with torch.no_grad():
        ref = net(x).numpy()
    assert np.max(np.abs(port(tf.constant(x.numpy())).numpy() - ref)) <= TOL
