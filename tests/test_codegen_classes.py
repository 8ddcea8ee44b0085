"""model_tf.py is shaped like the torch source: one TF class per torch module class (and variant).

Each test converts a small model, checks the classes the source defines, and checks that the
model built from that source still matches torch, module by module.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import bridge
from bridge import codegen

from conftest import ROOT

sys.path.insert(0, str(ROOT))
from examples.vision import resnet18  # noqa: E402


def classes(source: str) -> list[str]:
    return re.findall(r"^class (\w+)\(", source, re.M)


def one_line(source: str) -> str:
    """The source with calls that were wrapped over several lines written on one."""
    return re.sub(r",\s*\)", ")", re.sub(r"\(\s+", "(", re.sub(r"\s+", " ", source)))


@pytest.fixture(scope="module")
def resnet18_port():
    torch.manual_seed(0)
    return bridge.convert(resnet18(10), (torch.randn(1, 3, 32, 32),))


def test_resnet18_has_one_class_per_block_variant(resnet18_port):
    src = resnet18_port.source
    assert classes(src) == ["BasicBlock", "BasicBlockWithDownsample", "ResNet"]
    assert src.count("def __call__") == 3
    # widths differ between the stages: they are constructor arguments, shared where they move together
    assert "BasicBlock('layer1.0', conv1_in_channels=64)" in src
    assert ("BasicBlockWithDownsample('layer2.0', downsample_0_in_channels=64, downsample_0_out_channels=128)"
            in one_line(src))
    assert "relu = self.relu(bn1)" in src and "= self.layer4[1](" in src
    assert len(src.splitlines()) < 200  # the flat forward was 512 lines
    report = resnet18_port.parity()
    assert report.ok and report.max_rel_error <= 1e-5
    names = {d.name for d in report.per_module}
    assert {f"layer{i}.{j}" for i in range(1, 5) for j in range(2)} <= names  # every block instance
    assert {"layer2.0.downsample.0", "layer3.1.conv2", "layer4.1.relu#1"} <= names


def test_an_edit_to_one_class_reaches_every_instance(resnet18_port):
    """A person edits one block in one place: the first instance diverges first."""
    port = resnet18_port
    edited = port.source.replace("class BasicBlock(L.Module):", "class BasicBlock(L.Module):  # edited", 1)
    edited = edited.replace("        add = bn2 + x\n", "        add = bn2 + 1.01 * x\n", 1)
    assert edited.count("1.01 * x") == 1
    original = port.tf_model
    try:
        port.tf_model = bridge.build.instantiate(edited, port.plan.class_name)
        bridge.load_torch_weights(port, port.module.state_dict())
        port._parity = None
        report = port.parity()
        assert not report.ok and report.first_divergence.startswith("layer1.0")  # its second relu, then the block
    finally:
        port.tf_model, port._parity = original, None


class Scale(nn.Module):
    """A block whose forward takes a flag: called twice with different graphs."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x, double: bool = False):
        y = torch.tanh(self.lin(x))
        return y * 2 if double else y


class Shared(nn.Module):
    def __init__(self, flags=(False, False)):
        super().__init__()
        self.blk = Scale()
        self.head = nn.Linear(4, 3)
        self.flags = flags

    def forward(self, x):
        for flag in self.flags:
            x = self.blk(x, flag)
        return self.head(x)


def test_a_block_called_twice_is_one_class_and_one_instance():
    torch.manual_seed(0)
    port = bridge.convert(Shared().eval(), (torch.randn(2, 4),))
    assert classes(port.source) == ["Scale", "Shared"] and port.source.count("Scale('blk')") == 1
    assert port.source.count("= self.blk(") == 2
    report = port.parity()
    assert report.ok and {"blk", "blk#1", "blk.lin", "blk.lin#1"} <= {d.name for d in report.per_module}


def test_one_instance_traced_to_two_graphs_stays_flat_and_correct():
    torch.manual_seed(0)
    port = bridge.convert(Shared((False, True)).eval(), (torch.randn(2, 4),))
    assert classes(port.source) == ["Shared"] and "L.tap('blk', (), " in port.source
    report = port.parity()
    assert report.ok and {"blk", "blk#1"} <= {d.name for d in report.per_module}


class Mix(nn.Module):
    """Reads a constant tensor made in forward, and calls a layer it does not own."""

    def __init__(self, width, other):
        super().__init__()
        self.lin = nn.Linear(width, width)
        self._other = [other]  # not a child: the TF class gets it from its caller

    def forward(self, x):
        return self._other[0](self.lin(x)) * torch.tensor([0.5] * x.shape[-1])


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.act = nn.GELU()
        self.a, self.b = Mix(6, self.act), Mix(6, self.act)

    def forward(self, x):
        return self.b(self.a(x))


def test_constants_and_layers_from_outside_a_module_are_passed_in():
    torch.manual_seed(0)
    port = bridge.convert(Outer().eval(), (torch.randn(3, 6),))
    assert classes(port.source) == ["Mix", "Outer"]
    call = re.search(r"class Mix\(L\.Module\):.*?def __call__\(self, ([^)]*)\)", port.source, re.S).group(1)
    assert len(call.split(", ")) == 3  # x, the GELU layer and the constant
    assert port.parity().ok


class Widen(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.fc = nn.Linear(cin, cout)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x):
        return self.norm(torch.relu(self.fc(x)))


def test_config_values_that_differ_become_constructor_arguments():
    torch.manual_seed(0)
    model = nn.Sequential(Widen(3, 8), Widen(8, 16), Widen(16, 16)).eval()
    port = bridge.convert(model, (torch.randn(2, 3),))
    assert classes(port.source) == ["Widen", "Sequential"]
    init = re.search(r"def __init__\(self, path, ([^)]*)\)", port.source).group(1)
    assert init == "fc_in_features, fc_out_features, norm_normalized_shape"
    assert one_line("Widen('1', fc_in_features=8, fc_out_features=16, norm_normalized_shape=(16,))") in one_line(
        port.source)
    assert "in_features=fc_in_features" in port.source and "eps=1e-05" in port.source  # equal values stay literal
    assert port.parity().ok


def test_bridge_layers_py_has_every_name_of_bridge_layers():
    """The one file model_tf.py imports holds what the package exports, with the same code."""
    text = codegen.standalone_layers()
    assert "from ." not in text and "import bridge" not in text
    namespace: dict = {}
    exec(compile(text, codegen.LAYERS_FILE, "exec"), namespace)
    missing = [n for n in bridge.layers.__all__ if n not in namespace]
    assert not missing
    assert namespace["__all__"] == sorted(bridge.layers.__all__)


def test_resnet18_model_tf_restores_without_the_bridge(resnet18_port, tmp_path):
    """The classed source and bridge_layers.py run in a process that cannot import bridge."""
    from bridge.export.savedmodel import feeds_for
    from test_kept_port import RESTORE

    out = tmp_path / "r18"
    resnet18_port.save(out, tfjs=False, browser_backends=())
    assert (out / codegen.LAYERS_FILE).is_file()
    feeds = feeds_for(resnet18_port, resnet18_port.parity_inputs()[-1])
    np.savez(tmp_path / "feeds.npz", **feeds)
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", RESTORE, str(out), resnet18_port.plan.class_name,
                           str(tmp_path / "feeds.npz"), json.dumps(resnet18_port.input_names),
                           json.dumps(resnet18_port.output_names)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(result["bit_equal"]) and result["max_abs_diff"] == 0.0, result
