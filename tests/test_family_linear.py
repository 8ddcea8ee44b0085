"""Linear and Embedding: parity per configuration (one table row per case), in TF and, in one batch,
in tfjs cpu and wasm (Embedding's int64 ids cross into tfjs as int32)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bridge
from _parity import Fn, assert_port_matches, randn, seeded
from _tfjs_batch import TfjsBatch

BATCH = TfjsBatch()  # every row below is checked in TF and in tfjs (cpu, wasm): test_tfjs_linear, last

CASES = [
    pytest.param(lambda: nn.Linear(7, 5), (3, 7), id="rank2"),
    pytest.param(lambda: nn.Linear(7, 5, bias=False), (3, 7), id="rank2-nobias"),
    pytest.param(lambda: nn.Linear(9, 13), (2, 5, 9), id="rank3"),
    pytest.param(lambda: nn.Linear(9, 13, bias=False), (2, 5, 9), id="rank3-nobias"),
    pytest.param(lambda: nn.Linear(3, 1), (2, 4, 6, 3), id="rank4-to-1"),
    pytest.param(lambda: nn.Sequential(nn.Linear(11, 17), nn.ReLU(), nn.Linear(17, 3)), (4, 11), id="mlp"),
    pytest.param(lambda: Fn(lambda s, x: s.fc(x.transpose(1, 2)), fc=nn.Linear(5, 4)), (2, 5, 6),
                 id="after-transpose"),
]


@BATCH.parametrize("factory, shape", CASES)
def test_linear(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


EMBEDDINGS = [
    pytest.param(lambda: nn.Embedding(10, 6), (2, 5), id="2d-ids"),
    pytest.param(lambda: nn.Embedding(7, 3, padding_idx=0), (4,), id="1d-ids-padding-idx"),
    pytest.param(lambda: Fn(lambda s, x: s.fc(s.emb(x)), emb=nn.Embedding(12, 8), fc=nn.Linear(8, 3)), (2, 6),
                 id="then-linear"),
]


@BATCH.parametrize("factory, shape", EMBEDDINGS)
def test_embedding(factory, shape):
    module = seeded(factory)
    n = next(m for m in module.modules() if isinstance(m, nn.Embedding)).num_embeddings
    ids = torch.arange(int(torch.tensor(shape).prod())).reshape(shape) % n  # every id up to max, int64
    assert ids.dtype == torch.int64
    return assert_port_matches(module, (ids,))


# ---------------------------------------------------------------- a bare mapped module, and a module called on two layouts
def _bare_linear():
    return bridge.convert(seeded(lambda: nn.Linear(4, 3)), (randn(2, 4),))


BATCH.row("test_bare_linear_as_the_model", _bare_linear)


def test_bare_linear_as_the_model():
    port = _bare_linear()
    assert port.parity().runtime("tf").max_abs_error <= 1e-5
    BATCH.add("test_bare_linear_as_the_model", port)


SHARED = [
    pytest.param(lambda: Fn(lambda s, x: s.fc(x).sum(1) + s.fc(x[:, 0]), fc=nn.Linear(5, 5)), (2, 4, 5),
                 id="rank3-then-rank2"),
    pytest.param(lambda: Fn(lambda s, x: s.fc(s.conv(x).flatten(1)) + s.fc(x.flatten(1)), conv=nn.Conv2d(3, 3, 1),
                            fc=nn.Linear(3 * 4 * 5, 3)), (2, 3, 4, 5), id="folded-flatten-then-plain"),
]


@BATCH.parametrize("factory, shape", SHARED)
def test_linear_called_twice_on_different_layouts(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


@pytest.mark.node
def test_tfjs_linear(node_or_skip):
    BATCH.assert_all_within()
