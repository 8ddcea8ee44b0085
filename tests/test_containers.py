"""Containers: the TF model mirrors Sequential, ModuleList, ModuleDict and custom
submodules with the same names, and every state_dict key is accounted for."""

from __future__ import annotations

import torch
from torch import nn

import bridge


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x))) + x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.blocks = nn.ModuleList([Block(4), Block(4)])
        self.heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "box-reg": nn.Linear(4, 2)})
        self.unused = nn.Linear(2, 2)  # never called: its keys must be reported, not silently dropped

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        x = x.mean((2, 3))
        return {"cls": self.heads["cls"](x), "box": self.heads["box-reg"](x)}


def test_tree_names_and_structured_outputs():
    torch.manual_seed(0)
    net = Net().eval()
    port = bridge.convert(net, (torch.randn(2, 3, 9, 9),))
    report = port.parity()
    assert report.ok and report.runtime("tf").max_abs_error <= 1e-5 * 10
    src = port.source
    assert "self.stem = [" in src and "self.blocks = [" in src
    # the user's Block is one TF class (its forward is its __call__), built twice at its torch paths
    assert src.count("class Block(L.Module):") == 1 and "Block('blocks.0')" in src and "Block('blocks.1')" in src
    assert "self.heads['box-reg'](" in src and "= self.blocks[1](" in src and "conv = self.conv(x)" in src
    assert "L.tap(self.torch_path, (), add)" in src
    assert [d.name for d in report.per_module][:2] == ["stem.0", "stem.1"]
    assert port.output_names == ["cls", "box"]
    out = port.tf_model(torch.randn(2, 3, 9, 9).numpy())
    assert set(out) == {"cls", "box"} and tuple(out["box"].shape) == (2, 2)
    assert port.keys.unused == ["unused.weight", "unused.bias"]
    assert port.keys.ignored == {f"blocks.{i}.bn.num_batches_tracked": "training counter, unused at inference"
                                 for i in range(2)}
    assert len(port.keys.used) == len(net.state_dict()) - 2 - 2


def test_root_sequential_and_a_module_called_twice():
    torch.manual_seed(0)
    act = nn.Tanh()
    seq = nn.Sequential(nn.Linear(5, 5), act, nn.Linear(5, 5), act).eval()
    port = bridge.convert(seq, (torch.randn(3, 5),))
    assert port.parity().ok
    # the Tanh at [1] and [3] is one module (one state, one name): it is called twice as layers[1]
    assert "self.layers = [" in port.source and port.source.count("= self.layers[1](") == 2
    assert [d.name for d in port.parity().per_module] == ["0", "1", "2", "1#1"]  # the shared Tanh, twice


def test_tf_model_takes_numpy_float64_and_tf_tensors():
    import numpy as np
    import tensorflow as tf

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(3 * 3 * 3, 2)).eval()
    x = torch.randn(2, 2, 5, 5)
    port = bridge.convert(net, (x,))
    ref = net(x).detach().numpy()
    for given in (x.numpy().astype(np.float64), tf.constant(x.numpy())):
        got = np.asarray(port.tf_model(given))
        assert got.dtype == np.float32 and np.abs(got - ref).max() <= 1e-5


def test_a_sequential_of_only_traced_through_modules():
    """Its children have no TF layers of their own (their ops are translated inline): an empty list."""
    model = torch.nn.Sequential(torch.nn.Softsign(), torch.nn.Softmin(dim=-1)).eval()
    port = bridge.convert(model, (torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),))
    assert "self.layers = [\n        ]" in port.source
    assert port.parity().ok and port.parity().max_abs_error <= 1e-5
