"""assert_parity and the bridge_parity pytest fixture: a correct port passes, a drifted one fails
with the first diverging submodule named; channels-last ports are found by input_layout="auto"."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
from torch import nn

from bridge.errors import BadInputError
from bridge.porting import load_torch_weights
from bridge.testing import ParityOptions, assert_parity, run_parity

pytest_plugins = ["pytester"]

L = tf.keras.layers
TOL = 1e-5  # float32 on both sides: observed errors are ~1e-7 relative


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh())
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


class MLPPort(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.body = tf.keras.Sequential([L.Dense(8), L.ReLU(), L.Dense(8), L.Activation("tanh")])
        self.head = L.Dense(3)

    def call(self, x):
        return self.head(self.body(x))


@pytest.fixture
def mlp_pair():
    torch.manual_seed(0)
    net = MLP()
    port = MLPPort()
    port(tf.zeros((1, 4)))
    load_torch_weights(port, net.state_dict())
    return net, port


def test_a_correct_port_passes_with_per_module_detail(mlp_pair):
    net, port = mlp_pair
    report = assert_parity(net, port, [(torch.randn(5, 4),), (torch.randn(2, 4),)])
    assert report.ok and report.n_inputs == 2
    assert report.max_abs_error <= TOL
    assert [d.name for d in report.per_module] == ["body.0", "body.1", "body.2", "body.3", "body", "head"]
    assert all(d.ok for d in report.per_module)
    assert report.tolerance["rtol"] == 1e-4


def test_a_perturbed_layer_is_named_as_the_first_divergence(mlp_pair):
    net, port = mlp_pair
    dense = port.body.layers[2]
    dense.kernel.assign(dense.kernel + 0.05)
    with pytest.raises(AssertionError) as info:
        assert_parity(net, port, (torch.randn(5, 4),))
    message = str(info.value)
    assert "first diverging submodule: body.2 (Linear -> Dense" in message
    assert "output_0 [5, 3]: max abs error" in message and "FAIL" in message
    run = run_parity(net, port, (torch.randn(5, 4),))
    assert run.report.first_divergence == "body.2"
    assert [d.ok for d in run.report.per_module[:2]] == [True, True]


def test_tf_layer_classes_are_restored_after_a_run(mlp_pair):
    net, port = mlp_pair
    before = {cls: cls.__dict__.get("__call__") for cls in (L.Dense, L.ReLU, L.Activation, tf.keras.Sequential)}
    port.head.bias.assign(port.head.bias + 1.0)
    with pytest.raises(AssertionError, match="first diverging submodule: head"):
        assert_parity(net, port, (torch.randn(3, 4),))
    assert {cls: cls.__dict__.get("__call__") for cls in before} == before


def test_atol_adds_an_absolute_floor(mlp_pair):
    net, port = mlp_pair
    port.head.bias.assign(port.head.bias + 1e-3)
    with pytest.raises(AssertionError, match="bound 0.0001"):
        assert_parity(net, port, (torch.randn(3, 4),))
    report = assert_parity(net, port, (torch.randn(3, 4),), atol=1e-2)
    out = report.runtimes[0].outputs[0]
    assert out.bound == 1e-2 and out.max_abs_error == pytest.approx(1e-3, rel=1e-2)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6, eps=1e-3), nn.ReLU(),
                                      nn.Conv2d(6, 6, 3, groups=6))
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class CNNPort(tf.keras.Model):
    """The classic hand-written port: NHWC inputs, Keras layers in the same order."""

    def __init__(self):
        super().__init__()
        self.features = tf.keras.Sequential([L.Conv2D(6, 3, padding="same"), L.BatchNormalization(epsilon=1e-3),
                                             L.ReLU(), L.DepthwiseConv2D(3)])
        self.head = L.Dense(4)

    def call(self, x):
        return self.head(tf.reduce_mean(self.features(x), axis=(1, 2)))


@pytest.fixture
def cnn_pair():
    torch.manual_seed(0)
    net = CNN()
    with torch.no_grad():
        bn = net.features[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    port = CNNPort()
    port(tf.zeros((1, 8, 8, 3)))
    load_torch_weights(port, net.state_dict())
    return net, port


def test_channels_last_port_is_found_by_auto_layout(cnn_pair):
    net, port = cnn_pair
    x = torch.randn(2, 3, 8, 8)
    run = run_parity(net, port, (x,))
    assert run.layout == "channels_last"
    assert run.report.ok and run.report.max_abs_error <= TOL * 10  # conv sums of 27 terms
    assert [d.name for d in run.report.per_module] == ["features.0", "features.1", "features.2", "features.3",
                                                       "features", "head"]
    assert assert_parity(net, port, (x,), input_layout="channels_last").ok


def test_channels_last_inputs_are_drawn_from_the_built_port(cnn_pair):
    net, port = cnn_pair  # built on (1, 8, 8, 3): torch gets (1, 3, 8, 8)
    run = run_parity(net, port)
    assert run.layout == "channels_last" and run.report.n_inputs == 2
    assert run.report.ok and run.report.runtimes[0].outputs[0].shape == [1, 4]


def test_channels_last_port_divergence_is_found_in_torch_layout_terms(cnn_pair):
    net, port = cnn_pair
    bn = port.features.layers[1]
    bn.moving_mean.assign(bn.moving_mean + 0.3)
    with pytest.raises(AssertionError, match=r"TF fed channels_last inputs(?s:.*)first diverging submodule: "
                                             r"features\.1 \(BatchNorm2d -> BatchNormalization"):
        assert_parity(net, port, (torch.randn(2, 3, 8, 8),))


def test_forcing_the_wrong_layout_says_tf_could_not_run(cnn_pair):
    net, port = cnn_pair
    with pytest.raises(AssertionError, match="could not run on the inputs in any layout tried"):
        assert_parity(net, port, (torch.randn(2, 3, 8, 8),), input_layout="torch")
    with pytest.raises(BadInputError, match="input_layout must be one of"):
        assert_parity(net, port, (torch.randn(2, 3, 8, 8),), input_layout="nhwc")


class Renamed(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.dense_a = L.Dense(8)
        self.dense_b = L.Dense(3)

    def call(self, x):
        return self.dense_b(tf.nn.relu(self.dense_a(x)))


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_correspondence_pairs_modules_with_different_names():
    torch.manual_seed(0)
    net, port = Small(), Renamed()
    port(tf.zeros((1, 4)))
    load_torch_weights(port, net.state_dict(), {"fc1.weight": "dense_a.kernel", "fc1.bias": "dense_a.bias",
                                                "fc2.weight": "dense_b.kernel", "fc2.bias": "dense_b.bias"})
    port.dense_a.bias.assign(port.dense_a.bias + 0.5)
    x = (torch.randn(3, 4),)
    with pytest.raises(AssertionError, match="no submodule could be paired by path"):
        assert_parity(net, port, x)
    with pytest.raises(AssertionError, match=r"first diverging submodule: fc1 \(Linear -> Dense, TF dense_a\)"):
        assert_parity(net, port, x, correspondence={"fc1": "dense_a", "fc2": "dense_b"})
    with pytest.raises(BadInputError, match="'fc9' is not a torch submodule path"):
        assert_parity(net, port, x, correspondence={"fc9": "dense_a"})


class SignaturePort(tf.Module):
    def __init__(self):
        super().__init__()
        self.slope = tf.Variable(tf.zeros([2]))
        self.intercept = tf.Variable(tf.zeros([1]))

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def __call__(self, x):
        return tf.reduce_sum(x * self.slope, axis=-1, keepdims=True) + self.intercept


class LinReg(nn.Module):
    def __init__(self):
        super().__init__()
        self.slope = nn.Parameter(torch.tensor([2.0, -3.0]))
        self.intercept = nn.Parameter(torch.tensor([0.5]))

    def forward(self, x):
        return (x * self.slope).sum(-1, keepdim=True) + self.intercept


def test_inputs_are_drawn_from_the_declared_signature_or_a_built_keras_model(mlp_pair):
    net, port = LinReg(), SignaturePort()
    load_torch_weights(port, net.state_dict())
    report = assert_parity(net, port)
    assert report.n_inputs == 2 and report.runtimes[0].outputs[0].shape == [2, 1]
    assert report.max_abs_error <= TOL

    mlp, keras_port = mlp_pair  # built by calling it on (1, 4): the batch dim is the declared 1
    assert assert_parity(mlp, keras_port).runtimes[0].outputs[0].shape == [1, 3]


def test_missing_inputs_without_a_declared_shape_is_a_clear_error():
    class Bare(tf.Module):
        def __call__(self, x):
            return x

    with pytest.raises(BadInputError, match="no inputs: pass inputs="):
        assert_parity(nn.Identity(), Bare())


def test_options_are_validated():
    with pytest.raises(BadInputError, match="non-negative"):
        run_parity(nn.Identity(), tf.Module(), (torch.ones(1),), ParityOptions(rtol=-1.0))


def test_the_fixture_is_assert_parity(bridge_parity, mlp_pair):
    assert bridge_parity is assert_parity
    net, port = mlp_pair
    assert bridge_parity(net, port, (torch.randn(2, 4),)).ok


def test_the_fixture_is_registered_for_user_test_suites(pytester):
    pytester.makepyfile(test_user_port='''
        import tensorflow as tf
        import torch
        from torch import nn

        def make():
            torch.manual_seed(0)
            net = nn.Linear(3, 2)
            port = tf.keras.layers.Dense(2)
            port(tf.zeros((1, 3)))
            port.kernel.assign(net.weight.detach().numpy().T)
            port.bias.assign(net.bias.detach().numpy())
            return net, port

        def test_port(bridge_parity):
            net, port = make()
            bridge_parity(net, port, (torch.randn(4, 3),))

        def test_drifted_port(bridge_parity):
            net, port = make()
            port.bias.assign(port.bias + 1.0)
            bridge_parity(net, port, (torch.randn(4, 3),))
    ''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: the TF port differs from torch*"])


def test_integer_outputs_must_match_exactly():
    class ArgMax(nn.Module):
        def forward(self, x):
            return x.argmax(-1)

    class ArgMaxTF(tf.Module):
        def __call__(self, x):
            return tf.argmax(x, -1) + tf.cast(x[:, :1] > 0, tf.int64)[:, 0]

    x = torch.tensor([[1.0, 2.0], [-1.0, 0.0]])
    run = run_parity(ArgMax(), ArgMaxTF(), (x,))
    out = run.report.runtimes[0].outputs[0]
    assert not out.ok and out.problem == "1 integer values differ"
    assert np.isclose(out.bound, 0.0)
