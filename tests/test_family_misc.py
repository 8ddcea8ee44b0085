"""Inference identities (Dropout, Identity, contiguous/clone/detach), how unsupported parts
are reported (every one of them, at once, in one UnsupportedError), tensor factories and casts,
and the ops added for transformers models run in tfjs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bridge
from bridge.errors import UnsupportedError
from _parity import Fn, assert_port_matches, randn, seeded

IDENTITIES = [
    pytest.param(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout(0.5), nn.Dropout2d(0.3), nn.Identity()),
                 id="dropout-modules"),
    pytest.param(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Dropout3d(0.5), nn.FeatureAlphaDropout(0.2)),
                 id="dropout3d-feature-alpha-dropout"),
    pytest.param(lambda: Fn(lambda s, x: F.dropout(s.conv(x), 0.5, training=False).contiguous().clone().detach(),
                            conv=nn.Conv2d(3, 4, 3)), id="identity-ops"),
    pytest.param(lambda: Fn(lambda s, x: s.fc(s.drop(s.conv(x).flatten(1))), conv=nn.Conv2d(3, 4, 3),
                            drop=nn.Dropout(), fc=nn.Linear(4 * 5 * 7, 3)), id="flatten-dropout-linear"),
]


@pytest.mark.parametrize("factory", IDENTITIES)
def test_identities(factory):
    assert_port_matches(seeded(factory), (randn(2, 3, 7, 9),))


class ManyUnsupported(nn.Module):
    """Two unsupported modules and two unsupported ops, each feeding the outputs."""

    def __init__(self):
        super().__init__()
        self.pool = nn.FractionalMaxPool2d(2, output_size=(2, 2))  # refused for good: random regions
        self.loss = nn.L1Loss(reduction="none")  # refused for good: a training loss
        self.fc = nn.Linear(4, 4)

    def forward(self, x, v):
        pooled = self.pool(x.unsqueeze(1))
        h = self.fc(x)
        running = torch.cumprod(h, 1)  # line of the cumprod op
        spectrum = torch.fft.fft(h)  # line of the fft op
        return pooled, self.loss(v, v), running, spectrum.real  # line of the real op


class UnusedUnsupported(ManyUnsupported):
    """The same four parts computed but not returned: they must still be reported."""

    def forward(self, x, v):
        self.pool(x.unsqueeze(1))
        self.loss(v, v)
        h = self.fc(x)
        torch.cumprod(h, 1)  # line of the cumprod op
        torch.fft.fft(h)  # line of the fft op
        return h


def _line_of(cls, marker: str) -> int:
    import inspect

    lines, first = inspect.getsourcelines(cls.forward)
    return first + next(i for i, line in enumerate(lines) if marker in line)


def _assert_all_reported(cls):
    module = seeded(cls)
    with pytest.raises(UnsupportedError) as info:
        bridge.convert(module, (randn(2, 5, 4), randn(2, 2, 3, 3, 3, seed=1)))
    items = info.value.items
    text = "\n".join(u.line() for u in items)
    by_where = {u.where: u for u in items}
    assert by_where["pool"].what == "torch.nn.modules.pooling.FractionalMaxPool2d", text
    assert by_where["loss"].what == "torch.nn.modules.loss.L1Loss", text
    ops = [u for u in items if u.where.startswith("op at ")]
    cumprod_line, fft_line = _line_of(cls, "cumprod op"), _line_of(cls, "fft op")
    assert any("cumprod" in u.what and u.where == f"op at test_family_misc.py:{cumprod_line}" for u in ops), text
    assert any("fft" in u.what and u.where == f"op at test_family_misc.py:{fft_line}" for u in ops), text
    # nothing reported twice; mapped ops downstream of them are not reported, unmapped ones are
    expected = 5 if cls is ManyUnsupported else 4
    if cls is ManyUnsupported:
        real_line = _line_of(cls, "real op")
        assert any("real" in u.what and u.where == f"op at test_family_misc.py:{real_line}" for u in ops), text
    assert len(items) == expected, text
    assert all(re.search(r"\S", u.why) for u in items), text  # every item says why


def test_unsupported_all_reported_at_once():
    _assert_all_reported(ManyUnsupported)


def test_unsupported_all_reported_at_once_when_unused():
    _assert_all_reported(UnusedUnsupported)


# ---------------------------------------------------------------- factories and casts
FACTORIES = [
    pytest.param(lambda s, x: x + torch.arange(5), id="arange-int-promoted"),
    pytest.param(lambda s, x: x * torch.arange(1, 6) + torch.arange(0, 10, 2), id="arange-start-step"),
    pytest.param(lambda s, x: x * torch.arange(5, dtype=torch.float32) / 4, id="arange-float"),
    pytest.param(lambda s, x: x + torch.arange(x.size(0))[:, None, None], id="arange-dynamic-batch"),
    pytest.param(lambda s, x: x + torch.arange(0.5, 2.0, 0.5)[:, None], id="arange-float-step"),
    pytest.param(lambda s, x: x + torch.zeros(3, 5) + torch.ones(x.size(0), 1, 1), id="zeros-ones"),
    pytest.param(lambda s, x: x * torch.full((5,), 2.5) + torch.full((1,), 7, dtype=torch.long), id="full"),
    pytest.param(lambda s, x: x + x.new_ones(3, 5) - x.new_zeros((x.size(0), 3, 5)), id="new-ones-zeros"),
    pytest.param(lambda s, x: x * x.new_full((5,), 0.5), id="new-full"),
    pytest.param(lambda s, x: torch.zeros_like(x) + x * torch.ones_like(x) - torch.full_like(x, 3.0), id="like"),
    pytest.param(lambda s, x: torch.where(x > 0, torch.full_like(x, float("-inf")), x).exp(), id="full-like-inf"),
    pytest.param(lambda s, x: x + torch.scalar_tensor(2.0), id="scalar-tensor"),
    pytest.param(lambda s, x: (x * 3).to(torch.int32).to(torch.float32), id="cast-truncates"),
    pytest.param(lambda s, x: x.to("cpu", torch.float64) * 2, id="cast-to-device-dtype"),
    pytest.param(lambda s, x: (x > 0).type_as(x) * x, id="type-as"),
]


@pytest.mark.parametrize("fn", FACTORIES)
def test_factories_and_casts(fn):
    assert_port_matches(seeded(lambda: Fn(fn)), (randn(2, 3, 5),))


def test_factory_like_on_conv_map():
    """zeros_like / full_like of an NHWC value keep its layout (no transpose for them)."""
    module = Fn(lambda s, x: s.conv(x) + torch.full_like(s.conv(x), 0.5) * torch.ones_like(s.conv(x)),
                conv=nn.Conv2d(3, 4, 3))
    port = assert_port_matches(seeded(lambda: module), (randn(2, 3, 7, 9),))
    assert port.source.count("tf.transpose") == 2, port.source


# ---------------------------------------------------------------- the transformers ops, in tfjs (node: cpu and wasm)
class OpsZoo(nn.Module):
    """The ops added for transformers models in one graph, so one tfjs conversion checks them all:
    tril/triu, cumsum, where/masked_fill with -inf, integer-tensor indexing (one axis and leading
    axes), torch.gather, split/cat, factories, expand, F.embedding, F.rms_norm, softplus/mish/hardswish,
    cos/erf/clamp."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(10, 5))

    def forward(self, x, ids):
        a = x.tril() + x.triu(1) * 2 + x.cumsum(1) + (x > 0).cumsum(-1)
        b = torch.where(x > 0.2, x, -1.0).masked_fill(x < -1, float("-inf")).softmax(-1)
        c = x[:, torch.tensor([2, 0, -1])].sum(1, keepdim=True) + torch.gather(x, 2, ids.clamp(max=4))
        d = torch.cat(torch.split(x, [2, 3], -1)[::-1], -1) * x.new_ones(5) + torch.arange(5) / 5
        e = x[:1].expand(x.size(0), -1, -1) + torch.full_like(x, 0.5) + F.embedding(ids[:, :, 0], self.table)
        f = F.rms_norm(x, (5,)) + F.softplus(x) + F.mish(x) + F.hardswish(x) + x.cos() * torch.erf(x)
        picked = (ids > 1)[torch.arange(x.size(0))[:, None], torch.arange(x.size(1))[None, :]]
        return a + b + c + d + e + f + picked.float() + x.clamp(-0.5, 0.5)


@pytest.mark.node
def test_transformers_ops_run_in_tfjs(node_or_skip, tmp_path):
    """Within 1e-4 * max(1, max|torch|) in tfjs cpu and wasm (measured 1.9e-6 on both).

    This found that tf.gather with batch_dims is wrong in tfjs wasm (torch.gather now uses gather_nd).
    """
    torch.manual_seed(0)
    inputs = (randn(2, 4, 5), torch.randint(0, 6, (2, 4, 5), generator=torch.Generator().manual_seed(1)))
    port = assert_port_matches(seeded(OpsZoo), inputs)
    result = port.save(tmp_path / "zoo", per_module_tfjs=False, browser_backends=())
    scale = max(max(1.0, float(np.max(np.abs(v)))) for s in port.parity_inputs() for _, v in port.torch_outputs(s))
    runtimes = {r["runtime"]: r for r in result["parity"]["runtimes"]}
    for backend in ("tfjs-cpu", "tfjs-wasm"):
        assert runtimes[backend]["skipped"] is None, runtimes[backend]
        assert runtimes[backend]["max_abs_error"] <= 1e-4 * scale, runtimes[backend]
