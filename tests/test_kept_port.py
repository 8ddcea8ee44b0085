"""The TF port a team keeps (issue 9): top-level API names, torch's trainable split, a TF checkpoint
that restores into model_tf.py with plain TensorFlow, and gradient parity (plus SGD steps) against torch."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from conftest import MODELS, ROOT


@functools.lru_cache(maxsize=None)
def model_port(name: str):
    """(Cached: tests that change weights build their own.) The Port of a models/ entry with its trained weights, as ``bridge convert models/<name>`` builds it."""
    import bridge
    from bridge.target import from_manifest, instantiate

    t = from_manifest(ROOT / "models" / name)
    module = instantiate(t)
    module.load_state_dict(bridge.load_checkpoint(t.weights).state_dict)
    gen = torch.Generator().manual_seed(0)
    return bridge.convert(module, tuple(spec.example(gen) for spec in t.inputs))


class Frozen(torch.nn.Module):
    """A conv + BatchNorm feature block frozen with requires_grad_(False), then a trainable head."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        self.features.requires_grad_(False)
        self.head = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def frozen_port():
    import bridge

    torch.manual_seed(0)
    module = Frozen()
    module.features[1].running_mean.uniform_(-1, 1)
    module.features[1].running_var.uniform_(0.5, 2)
    return bridge.convert(module, (torch.randn(2, 2, 6, 6),))


# ----------------------------------------------------------------------------- 1. top-level API


def test_top_level_names_work_on_a_tiny_model(tmp_path):
    from bridge import assert_parity, convert, load_checkpoint, load_torch_weights

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).eval()
    x = torch.randn(2, 3)
    port = convert(net, (x,))
    report = assert_parity(net, port.tf_model, (x,))
    assert report.ok and report.max_abs_error <= 1e-5
    other = {k: torch.randn_like(v) for k, v in net.state_dict().items()}
    torch.save(other, tmp_path / "other.pt")
    assert set(load_checkpoint(tmp_path / "other.pt").state_dict) == set(other)
    assert load_torch_weights(port, tmp_path / "other.pt") is port.tf_model  # a path...
    net.load_state_dict(other)
    assert_parity(net, port.tf_model, (x,), rtol=1e-5)  # ...now computes the new weights
    fresh = port.tf_model.__class__()  # a new instance of the model_tf.py class, all zeros
    load_torch_weights(fresh, net.state_dict(), bindings=port.bindings)  # a state_dict, explicit bindings
    got = np.asarray(fresh(x.numpy()))
    assert np.abs(got - net(x).detach().numpy()).max() <= 1e-5


def test_top_level_load_torch_weights_fills_a_hand_written_port_from_a_path():
    import importlib.util

    from bridge import assert_parity, load_checkpoint, load_torch_weights
    from bridge.target import from_manifest, instantiate

    folder = ROOT / "models" / "linear_regression"
    spec = importlib.util.spec_from_file_location("port_tf", folder / "port_tf.py")
    port_tf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(port_tf)
    tf_net = port_tf.LinearRegressionTF()
    report = load_torch_weights(tf_net, folder / "linear_regression.pt")  # by name, identity transform
    assert sorted(item.torch_key for item in report.loaded) == ["intercept", "slope"]
    torch_net = instantiate(from_manifest(folder)).eval()
    torch_net.load_state_dict(load_checkpoint(folder / "linear_regression.pt").state_dict)
    assert assert_parity(torch_net, tf_net, (torch.randn(4, 2),), rtol=1e-5).ok


def test_load_torch_weights_names_every_missing_key():
    from bridge import convert, load_torch_weights
    from bridge.errors import KeyMismatchError

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)).eval()
    port = convert(net, (torch.randn(1, 3),))
    partial = {k: v for k, v in net.state_dict().items() if k.startswith("0.")}
    with pytest.raises(KeyMismatchError) as err:
        load_torch_weights(port, partial)
    assert "1.weight" in str(err.value) and "1.bias" in str(err.value)


# ----------------------------------------------------------------------------- 2. trainable split


def _split_matches_torch(port) -> dict:
    """Trainable variables hold exactly the requires_grad parameters; the rest hold buffers/frozen ones."""
    from bridge.build import resolve, variable_name, variable_summary

    module = port.module
    grad_keys = {k for k, p in module.named_parameters() if p.requires_grad}
    other_keys = {k for k, p in module.named_parameters() if not p.requires_grad} | dict(module.named_buffers()).keys()
    model = port.tf_model
    for b in port.bindings:
        var = resolve(model, b.access)
        assert var.trainable == any(k in grad_keys for k in b.keys), b.key
        assert var.name == f"{variable_name(b.keys)}:0"  # named by its torch key(s)
    trainable = {id(v) for v in model.trainable_variables}
    bound = {id(resolve(model, b.access)): b.keys for b in port.bindings}
    assert trainable <= bound.keys()
    held = {k for i in trainable for k in bound[i]}
    assert held == grad_keys  # every trainable torch parameter, nothing else
    assert not {k for i, keys in bound.items() if i not in trainable for k in keys} & grad_keys
    summary = variable_summary(model, port.bindings, module)
    assert summary["trainable"] == len(model.trainable_variables)
    assert summary["non_trainable"] == len(model.non_trainable_variables)
    assert set(summary["by_torch_key"]) <= grad_keys | other_keys
    return summary


@pytest.mark.parametrize("name", MODELS)
def test_variable_split_on_models(name):
    summary = _split_matches_torch(model_port(name))
    counts = summary["torch"]
    combined = sum(e.endswith("combined into one variable (rnn_bias_sum)") for e in summary["exceptions"])
    assert summary["trainable"] == counts["trainable_parameters"] - combined  # LSTM's two biases are one variable
    ignored = sum(e.endswith("num_batches_tracked: no TF variable (the port does not read it)")
                  for e in summary["exceptions"])
    assert summary["non_trainable"] == counts["buffers"] - ignored  # BatchNorm's counter is not read
    if name == "digits_cnn":  # 4 BatchNorms: their running mean and var are the non-trainable variables
        assert summary["non_trainable"] == 8 and summary["trainable"] == 20


def test_variable_split_with_a_frozen_submodule():
    port = frozen_port()
    summary = _split_matches_torch(port)
    assert summary["trainable"] == 2  # head.weight, head.bias
    assert summary["torch"] == {"trainable_parameters": 2, "frozen_parameters": 4, "buffers": 3}
    assert summary["non_trainable"] == 6  # conv weight/bias, BN gamma/beta, running mean/var
    assert sorted(v.name for v in port.tf_model.trainable_variables) == ["head.bias:0", "head.weight:0"]


def test_variable_names_are_valid_in_graph_mode():
    from bridge.build import variable_name

    assert variable_name(("lstm.bias_ih_l0", "lstm.bias_hh_l0")) == "lstm.bias_ih_l0-lstm.bias_hh_l0"
    assert variable_name(("_tensor_constant0",)) == "v_tensor_constant0"
    assert variable_name(("blocks.0.attn.w q",)) == "blocks.0.attn.w_q"


# ----------------------------------------------------------------------------- 3. TF checkpoint

RESTORE = r'''
import importlib.util, json, sys
import numpy as np
import tensorflow as tf

out, cls = sys.argv[1], sys.argv[2]


class NoBridge:  # this process cannot import bridge: model_tf.py must run on TensorFlow alone
    def find_spec(self, name, path=None, target=None):
        if name == "bridge" or name.startswith("bridge."):
            raise ImportError(f"{name} is blocked here")


sys.meta_path.insert(0, NoBridge())
sys.path.insert(0, out)  # model_tf.py imports bridge_layers.py from beside it
spec = importlib.util.spec_from_file_location("model_tf", f"{out}/model_tf.py")
model_tf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_tf)
# the three lines a user writes (README):
model = getattr(model_tf, cls)()
tf.train.Checkpoint(model=model).read(f"{out}/checkpoint/ckpt").assert_consumed()
served = tf.saved_model.load(f"{out}/saved_model").signatures["serving_default"]
feeds = dict(np.load(sys.argv[3]))
names = json.loads(sys.argv[4])
signature = served.structured_input_signature[1]  # the exported shapes: free dims stay free (None)
specs = [tf.TensorSpec(signature[n].shape, signature[n].dtype, name=n) for n in names]
run = tf.function(lambda *a: model(*a), input_signature=specs, autograph=False)
mine = run(*[tf.constant(feeds[n]) for n in names])
mine = mine if isinstance(mine, (list, tuple)) else [mine]
theirs = served(**{n: tf.constant(feeds[n]) for n in names})
theirs = [theirs[k] for k in json.loads(sys.argv[5])]
assert "bridge" not in sys.modules and "bridge_layers" in sys.modules
print(json.dumps({"bit_equal": [bool(np.array_equal(a.numpy(), b.numpy())) for a, b in zip(mine, theirs)],
                  "max_abs_diff": max(float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(mine, theirs)),
                  "values": sorted(float(np.sum(np.abs(v.numpy()))) for v in model.variables)}))
'''


@pytest.mark.parametrize("name", ["digits_cnn", "digits_lstm"])
def test_tf_checkpoint_restores_into_model_tf_bit_for_bit(name, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from bridge.export.savedmodel import feeds_for

    port = model_port(name)
    out = tmp_path / name
    port.save(out, tfjs=False, browser_backends=())
    assert (out / "checkpoint" / "ckpt.index").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["tf_checkpoint"] == "checkpoint/ckpt" and report["variables"]["trainable"] == {
        "digits_cnn": 20, "digits_lstm": 5}[name]
    assert (out / "bridge_layers.py").is_file() and "import bridge_layers as L" in (out / "model_tf.py").read_text()
    feeds = feeds_for(port, port.parity_inputs()[-1])  # the batch of 3
    np.savez(tmp_path / "feeds.npz", **feeds)
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", RESTORE, str(out), port.plan.class_name, str(tmp_path / "feeds.npz"),
                           json.dumps(port.input_names), json.dumps(port.output_names)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(result["bit_equal"]) and result["max_abs_diff"] == 0.0, result
    ours = sorted(float(np.sum(np.abs(v.numpy()))) for v in port.tf_model.variables)
    assert result["values"] == ours  # every variable restored with its value


# ----------------------------------------------------------------------------- 4. gradient parity

GRAD_RTOL = 1e-4  # the bound: max abs error <= 1e-4 * max(1, max|torch grad|)


def _assert_gradients(port, n_keys: int, max_sets: int | None = None):
    report = port.gradient_parity(max_sets=max_sets)
    assert report.not_compared == {}, report.not_compared
    assert len(report.keys) == n_keys
    for k in report.keys:
        assert k.max_abs_error <= GRAD_RTOL * max(1.0, k.max_abs_grad), k
    return report


@pytest.mark.parametrize("name", MODELS)
def test_gradient_parity_on_models(name):
    port = model_port(name)
    n_params = sum(p.requires_grad for p in port.module.parameters())
    report = _assert_gradients(port, n_params, max_sets=2)
    assert report.n_inputs == 2
    if name == "digits_cnn":  # BatchNorm and Dropout: the comparison is their eval behaviour
        assert set(report.inference_only) == {"features.1", "features.4", "features.7", "features.11",
                                              "classifier.1", "classifier.4"}
    if name == "digits_lstm":  # lstm's two biases are one TF variable; each gets that variable's gradient
        keys = {k.key for k in report.keys}
        assert {"lstm.bias_ih_l0", "lstm.bias_hh_l0"} <= keys


def _layer(module, *inputs):
    import bridge

    torch.manual_seed(0)
    for p in module.parameters():  # away from init values (BatchNorm's gamma=1, beta=0)
        p.data.uniform_(-1, 1)
    for name, b in module.named_buffers():
        if name.endswith("running_var"):
            b.uniform_(0.5, 2)
        elif name.endswith("running_mean"):
            b.uniform_(-1, 1)
    return bridge.convert(module, inputs)


LAYERS = {
    "conv2d": lambda: _layer(torch.nn.Conv2d(3, 4, 3, padding=1, stride=2), torch.randn(2, 3, 7, 7)),
    "conv1d_groups": lambda: _layer(torch.nn.Conv1d(4, 6, 3, groups=2), torch.randn(2, 4, 9)),
    "batchnorm2d": lambda: _layer(torch.nn.BatchNorm2d(3), torch.randn(2, 3, 4, 4)),
    "layernorm": lambda: _layer(torch.nn.LayerNorm(5), torch.randn(2, 3, 5)),
    "groupnorm": lambda: _layer(torch.nn.GroupNorm(2, 4), torch.randn(2, 4, 3, 3)),
    "linear": lambda: _layer(torch.nn.Linear(5, 3), torch.randn(4, 5)),
    "embedding": lambda: _layer(torch.nn.Embedding(7, 3), torch.tensor([[1, 2, 2, 6], [0, 1, 5, 5]])),
}


@pytest.mark.parametrize("kind", list(LAYERS))
def test_gradient_parity_on_layers(kind):
    port = LAYERS[kind]()
    report = _assert_gradients(port, sum(1 for _ in port.module.parameters()), max_sets=2)
    if kind == "batchnorm2d":
        assert list(report.inference_only) == ["model"]  # a lone leaf module is wrapped as "model"
    if kind == "embedding":  # repeated ids: the gradient rows add up, in both
        assert max(k.max_abs_grad for k in report.keys) > 0


class Small(torch.nn.Module):
    """Conv -> BatchNorm -> ReLU -> Linear: kernels transposed, the flatten folded into the Linear kernel."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)
        self.bn = torch.nn.BatchNorm2d(3)
        self.fc = torch.nn.Linear(3 * 3 * 3, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_three_sgd_steps_match_torch():
    import tensorflow as tf

    from bridge.build import resolve
    from bridge.gradients import loss_weights

    port = _layer(Small(), torch.randn(2, 2, 5, 5))
    module, model = port.module, port.tf_model
    x = torch.randn(4, 2, 5, 5)
    w = loss_weights([("y", module(x))], seed=3)[0]
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    trainable = model.trainable_variables
    assert len(trainable) == 6  # conv, bn, fc weight + bias; running stats are not trained
    for step in range(3):
        opt.zero_grad()
        (module(x) * torch.from_numpy(w)).sum().backward()
        opt.step()
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(port.boundary_inputs((x,))[0].numpy()) * w)
        for var, g in zip(trainable, tape.gradient(loss, trainable)):
            var.assign_sub(0.1 * g)
        state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
        for b in port.bindings:
            want = b.transform(*(state[k] for k in b.keys))
            got = resolve(model, b.access).numpy()
            assert np.abs(got - want).max() <= GRAD_RTOL * max(1.0, np.abs(want).max()), (step, b.key)


def test_convert_check_gradients_writes_them_in_the_report(tmp_path):
    import json

    from bridge.cli import main

    out = tmp_path / "two_layer"
    assert main(["convert", str(ROOT / "models" / "two_layer"), "--out", str(out), "--no-tfjs",
                 "--check-gradients"]) == 0
    report = json.loads((out / "report.json").read_text())
    grads = report["gradients"]
    assert grads["ok"] and grads["mode"].startswith("eval") and grads["not_compared"] == {}
    assert sorted(k["key"] for k in grads["keys"]) == ["hidden.bias", "hidden.weight", "out.bias", "out.weight"]
    assert all(k["max_abs_error"] <= 1e-4 * max(1.0, k["max_abs_grad"]) for k in grads["keys"])
    assert report["variables"]["trainable"] == 4 and report["variables"]["non_trainable"] == 0
    assert report["variables"]["by_torch_key"]["out.weight"] == {"variables": ["out/kernel"], "trainable": True}
    assert (out / "checkpoint" / "ckpt.index").is_file()


def test_source_imports_bridge_keeps_the_short_form(tmp_path):
    """--source-imports-bridge: model_tf.py imports bridge.layers and no bridge_layers.py is written."""
    from bridge import convert
    from bridge.api import Options

    torch.manual_seed(0)
    port = convert(nn.Sequential(nn.Linear(3, 2)), (torch.randn(1, 3),), options=Options(source_imports_bridge=True))
    port.save(tmp_path / "short", tfjs=False, browser_backends=())
    assert "from bridge import layers as L" in (tmp_path / "short" / "model_tf.py").read_text()
    assert not (tmp_path / "short" / "bridge_layers.py").exists()
