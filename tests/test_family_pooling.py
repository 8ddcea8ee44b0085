"""MaxPool2d, AvgPool2d (padding, count_include_pad, ceil_mode, divisor_override),
AdaptiveAvgPool2d (even and uneven bins, None) and the functional forms, on odd sizes."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from torch import nn

from _parity import Fn, assert_port_matches, randn, seeded

CASES = [
    pytest.param(lambda: nn.MaxPool2d(2), (2, 3, 8, 10), id="max-k2"),
    pytest.param(lambda: nn.MaxPool2d(2), (2, 3, 7, 9), id="max-k2-odd"),
    pytest.param(lambda: nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 7, 9), id="max-k3s2p1"),
    pytest.param(lambda: nn.MaxPool2d((3, 2), stride=(1, 2)), (2, 3, 7, 9), id="max-k3x2-s1x2"),
    pytest.param(lambda: nn.MaxPool2d(2, ceil_mode=True), (2, 3, 7, 9), id="max-k2-ceil"),
    pytest.param(lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 8, 9), id="max-k3s2p1-ceil"),
    pytest.param(lambda: nn.MaxPool2d(3, stride=2, ceil_mode=True), (2, 3, 7, 10), id="max-k3s2-ceil"),
    pytest.param(lambda: nn.AvgPool2d(2), (2, 3, 7, 9), id="avg-k2-odd"),
    pytest.param(lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 3, 7, 9), id="avg-k3s2p1-cip"),
    pytest.param(lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 3, 7, 9),
                 id="avg-k3s2p1-no-cip"),
    pytest.param(lambda: nn.AvgPool2d(2, ceil_mode=True), (2, 3, 7, 9), id="avg-k2-ceil"),
    pytest.param(lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 8, 9), id="avg-k3s2p1-ceil-cip"),
    pytest.param(lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 3, 8, 9),
                 id="avg-k3s2p1-ceil-no-cip"),
    pytest.param(lambda: nn.AvgPool2d((2, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True), (2, 3, 7, 8),
                 id="avg-k2x3-p1-ceil"),
    pytest.param(lambda: nn.AvgPool2d(3, stride=2, padding=1, divisor_override=5), (2, 3, 7, 9),
                 id="avg-divisor-override"),
    pytest.param(lambda: nn.AvgPool2d(2, ceil_mode=True, divisor_override=3), (2, 3, 7, 9),
                 id="avg-ceil-divisor-override"),
    pytest.param(lambda: nn.AdaptiveAvgPool2d(1), (2, 3, 7, 7), id="adaptive-1"),
    pytest.param(lambda: nn.AdaptiveAvgPool2d((1, 1)), (2, 3, 7, 9), id="adaptive-1x1"),
    pytest.param(lambda: nn.AdaptiveAvgPool2d((2, 2)), (2, 3, 7, 7), id="adaptive-2x2-uneven"),
    pytest.param(lambda: nn.AdaptiveAvgPool2d((3, 3)), (2, 3, 7, 7), id="adaptive-3x3-uneven"),
    pytest.param(lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 8, 9), id="adaptive-2x3-even"),
    pytest.param(lambda: nn.AdaptiveAvgPool2d((None, 2)), (2, 3, 7, 7), id="adaptive-None-2"),
    pytest.param(lambda: nn.AdaptiveAvgPool2d((4, None)), (2, 3, 6, 7), id="adaptive-4-None"),
    pytest.param(lambda: nn.AdaptiveAvgPool2d(5), (2, 3, 3, 4), id="adaptive-upsample-5"),
    pytest.param(lambda: Fn(lambda s, x: F.max_pool2d(x, 2)), (2, 3, 7, 9), id="F.max_pool2d"),
    pytest.param(lambda: Fn(lambda s, x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True)), (2, 3, 8, 9),
                 id="F.max_pool2d-ceil"),
    pytest.param(lambda: Fn(lambda s, x: F.max_pool2d(x, kernel_size=3, stride=2)), (2, 3, 7, 9),
                 id="F.max_pool2d-kw"),
    pytest.param(lambda: Fn(lambda s, x: F.avg_pool2d(x, 2)), (2, 3, 7, 9), id="F.avg_pool2d"),
    pytest.param(lambda: Fn(lambda s, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)), (2, 3, 7, 9),
                 id="F.avg_pool2d-no-cip"),
    pytest.param(lambda: Fn(lambda s, x: F.avg_pool2d(x, 3, 2, 1, True, True, 4)), (2, 3, 8, 9),
                 id="F.avg_pool2d-positional"),
    pytest.param(lambda: Fn(lambda s, x: F.adaptive_avg_pool2d(x, (2, 3))), (2, 3, 7, 7),
                 id="F.adaptive_avg_pool2d"),
    pytest.param(lambda: Fn(lambda s, x: F.adaptive_avg_pool2d(x, 1).flatten(1)), (2, 3, 7, 7),
                 id="F.adaptive_avg_pool2d-flatten"),
    pytest.param(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
                                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)), (2, 3, 9, 10),
                 id="conv-pool-gap-linear"),
]


@pytest.mark.parametrize("factory, shape", CASES)
def test_pooling(factory, shape):
    assert_port_matches(seeded(factory), (randn(*shape),))
