"""Inference identities (Dropout, Identity, contiguous/clone/detach) and how unsupported
parts are reported: every one of them, at once, in one UnsupportedError."""

from __future__ import annotations

import re

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
        self.lstm = nn.LSTM(4, 3, batch_first=True)
        self.conv3d = nn.Conv3d(2, 2, 1)
        self.fc = nn.Linear(4, 4)

    def forward(self, x, v):
        seq, _ = self.lstm(x)
        h = self.fc(x)
        running = torch.cumsum(h, 1)  # line of the cumsum op
        spectrum = torch.fft.fft(h)  # line of the fft op
        return seq, self.conv3d(v), running, spectrum.real  # line of the real op


class UnusedUnsupported(ManyUnsupported):
    """The same four parts computed but not returned: they must still be reported."""

    def forward(self, x, v):
        self.lstm(x)
        self.conv3d(v)
        h = self.fc(x)
        torch.cumsum(h, 1)  # line of the cumsum op
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
    assert by_where["lstm"].what == "torch.nn.modules.rnn.LSTM", text
    assert by_where["conv3d"].what == "torch.nn.modules.conv.Conv3d", text
    ops = [u for u in items if u.where.startswith("op at ")]
    cumsum_line, fft_line = _line_of(cls, "cumsum op"), _line_of(cls, "fft op")
    assert any("cumsum" in u.what and u.where == f"op at test_family_misc.py:{cumsum_line}" for u in ops), text
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
