"""MaxPool2d, AvgPool2d (padding, count_include_pad, ceil_mode, divisor_override),
AdaptiveAvgPool2d (even and uneven bins, None) and the functional forms, on odd sizes.

Every row is also checked in tfjs cpu and wasm. ``MORE``: the 1-D and 3-D forms of max/avg/adaptive-avg
pooling, adaptive max pooling, LPPool, max pooling with dilation, return_indices, MaxUnpool,
unbatched inputs and the 1-D/3-D functional forms."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from torch import nn

from _parity import Fn, assert_port_matches, randn, seeded
from _tfjs_batch import TfjsBatch

BATCH = TfjsBatch()  # every row below is checked in TF and in tfjs (cpu, wasm): test_tfjs_pooling, last

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


@BATCH.parametrize("factory, shape", CASES)
def test_pooling(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


MORE = [
    # max pooling: 1-D/3-D, dilation (also with ceil_mode and padding), unbatched
    pytest.param(lambda: nn.MaxPool1d(3, stride=2, padding=1), (2, 3, 11), id="max1d-k3s2p1"),
    pytest.param(lambda: nn.MaxPool1d(3, stride=2, dilation=2, ceil_mode=True), (2, 3, 12), id="max1d-dil2-ceil"),
    pytest.param(lambda: nn.MaxPool1d(2), (3, 9), id="max1d-unbatched"),
    pytest.param(lambda: nn.MaxPool2d(3, stride=(2, 1), padding=1, dilation=(2, 3)), (2, 3, 9, 10), id="max2d-dil"),
    pytest.param(lambda: nn.MaxPool2d(2, ceil_mode=True), (3, 7, 9), id="max2d-unbatched"),
    pytest.param(lambda: nn.MaxPool3d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 5, 6, 7), id="max3d-k3s2p1-ceil"),
    pytest.param(lambda: nn.MaxPool3d(2, stride=1, dilation=2), (2, 2, 5, 6, 5), id="max3d-dil2"),
    pytest.param(lambda: nn.MaxPool3d((1, 2, 2)), (2, 5, 6, 7), id="max3d-unbatched"),
    # average pooling: 1-D/3-D with count_include_pad, ceil_mode, divisor_override, unbatched
    pytest.param(lambda: nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 10), id="avg1d-ceil-cip"),
    pytest.param(lambda: nn.AvgPool1d(3, stride=2, padding=1, count_include_pad=False), (2, 3, 10),
                 id="avg1d-no-cip"),
    pytest.param(lambda: nn.AvgPool1d(2), (3, 9), id="avg1d-unbatched"),
    pytest.param(lambda: nn.AvgPool2d(3, stride=2, padding=1), (3, 7, 9), id="avg2d-unbatched"),
    pytest.param(lambda: nn.AvgPool3d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 5, 6, 7), id="avg3d-ceil-cip"),
    pytest.param(lambda: nn.AvgPool3d(3, stride=2, padding=1, count_include_pad=False), (2, 2, 5, 6, 7),
                 id="avg3d-no-cip"),
    pytest.param(lambda: nn.AvgPool3d((2, 3, 2), divisor_override=5), (2, 2, 4, 6, 5), id="avg3d-divisor"),
    # adaptive average pooling: uneven bins, None, global, unbatched
    pytest.param(lambda: nn.AdaptiveAvgPool1d(3), (2, 3, 8), id="adaptive-avg1d-uneven"),
    pytest.param(lambda: nn.AdaptiveAvgPool1d(5), (3, 7), id="adaptive-avg1d-unbatched"),
    pytest.param(lambda: nn.AdaptiveAvgPool3d((2, 3, None)), (2, 2, 5, 7, 4), id="adaptive-avg3d-uneven-None"),
    pytest.param(lambda: nn.AdaptiveAvgPool3d(1), (2, 3, 4, 5, 3), id="adaptive-avg3d-global"),
    pytest.param(lambda: nn.AdaptiveAvgPool2d((3, 2)), (3, 7, 8), id="adaptive-avg2d-unbatched"),
    # adaptive max pooling: uneven, even, None, global, more outputs than inputs, unbatched
    pytest.param(lambda: nn.AdaptiveMaxPool1d(3), (2, 3, 8), id="adaptive-max1d-uneven"),
    pytest.param(lambda: nn.AdaptiveMaxPool1d(4), (3, 8), id="adaptive-max1d-even-unbatched"),
    pytest.param(lambda: nn.AdaptiveMaxPool2d((3, 3)), (2, 3, 7, 8), id="adaptive-max2d-uneven"),
    pytest.param(lambda: nn.AdaptiveMaxPool2d((None, 2)), (2, 3, 5, 7), id="adaptive-max2d-None"),
    pytest.param(lambda: nn.AdaptiveMaxPool2d(1), (2, 3, 5, 7), id="adaptive-max2d-global"),
    pytest.param(lambda: nn.AdaptiveMaxPool2d(5), (2, 3, 3, 4), id="adaptive-max2d-upsample"),
    pytest.param(lambda: nn.AdaptiveMaxPool3d((2, 3, 4)), (2, 2, 4, 5, 7), id="adaptive-max3d-uneven"),
    pytest.param(lambda: nn.AdaptiveMaxPool3d(2), (2, 4, 4, 6), id="adaptive-max3d-even-unbatched"),
    # LPPool: p = 2, 1 and inf; stride, ceil_mode (torch scales clipped windows by the full kernel)
    pytest.param(lambda: nn.LPPool1d(2, 3, stride=2), (2, 3, 10), id="lp1d-p2-s2"),
    pytest.param(lambda: nn.LPPool1d(1, 2, ceil_mode=True), (3, 9), id="lp1d-p1-ceil-unbatched"),
    pytest.param(lambda: nn.LPPool2d(2, (2, 3), ceil_mode=True), (2, 3, 7, 8), id="lp2d-p2-ceil"),
    pytest.param(lambda: nn.LPPool2d(float("inf"), 2), (2, 3, 6, 7), id="lp2d-inf"),
    pytest.param(lambda: nn.LPPool3d(2, 2, stride=(1, 2, 2)), (2, 2, 4, 5, 6), id="lp3d-p2"),
    # functional forms (ATen max/avg/adaptive-avg pool 1d and 3d)
    pytest.param(lambda: Fn(lambda s, x: F.max_pool1d(x, 3, 2, 1, ceil_mode=True)), (2, 3, 10), id="F.max_pool1d"),
    pytest.param(lambda: Fn(lambda s, x: F.max_pool2d(x, 2, dilation=2)), (2, 3, 7, 9), id="F.max_pool2d-dil"),
    pytest.param(lambda: Fn(lambda s, x: F.max_pool3d(x, 2, 1, dilation=(1, 2, 2))), (2, 2, 4, 5, 6),
                 id="F.max_pool3d-dil"),
    pytest.param(lambda: Fn(lambda s, x: F.avg_pool1d(x, 3, 2, 1, count_include_pad=False)), (2, 3, 10),
                 id="F.avg_pool1d"),
    pytest.param(lambda: Fn(lambda s, x: F.avg_pool3d(x, 2, ceil_mode=True, divisor_override=3)), (2, 2, 5, 4, 5),
                 id="F.avg_pool3d-divisor"),
    pytest.param(lambda: Fn(lambda s, x: F.avg_pool2d(x, 2)), (3, 7, 8), id="F.avg_pool2d-unbatched"),
    pytest.param(lambda: Fn(lambda s, x: F.adaptive_avg_pool1d(x, 3)), (2, 3, 8), id="F.adaptive_avg_pool1d"),
    pytest.param(lambda: Fn(lambda s, x: F.adaptive_avg_pool3d(x, (1, 2, 3))), (2, 2, 3, 5, 7),
                 id="F.adaptive_avg_pool3d"),
    # return_indices=True: (values, int64 flat index of the first max in its input plane)
    pytest.param(lambda: nn.MaxPool2d(3, stride=2, padding=1, return_indices=True), (2, 3, 7, 9), id="max2d-indices"),
    pytest.param(lambda: nn.MaxPool1d(3, stride=2, dilation=2, ceil_mode=True, return_indices=True), (2, 3, 12),
                 id="max1d-indices-dil-ceil"),
    pytest.param(lambda: nn.MaxPool3d(2, stride=(1, 2, 2), padding=1, return_indices=True), (2, 4, 5, 6),
                 id="max3d-indices-unbatched"),
    pytest.param(lambda: nn.AdaptiveMaxPool2d((3, 2), return_indices=True), (2, 3, 7, 5), id="adaptive-max2d-indices"),
    pytest.param(lambda: nn.AdaptiveMaxPool1d(3, return_indices=True), (3, 8), id="adaptive-max1d-indices-unbatched"),
    pytest.param(lambda: nn.AdaptiveMaxPool3d((2, 3, 2), return_indices=True), (1, 2, 3, 5, 4),
                 id="adaptive-max3d-indices"),
    # MaxUnpool after a pooling with indices: default size, output_size, overlapping windows (repeated indices)
    pytest.param(lambda: Fn(lambda s, x: s.unpool(*s.pool(x)), pool=nn.MaxPool2d(2, return_indices=True),
                            unpool=nn.MaxUnpool2d(2)), (2, 3, 8, 10), id="unpool2d"),
    pytest.param(lambda: Fn(lambda s, x: s.unpool(*s.pool(x), output_size=(7, 9)),
                            pool=nn.MaxPool2d(2, return_indices=True), unpool=nn.MaxUnpool2d(2)), (2, 3, 7, 9),
                 id="unpool2d-output_size"),
    pytest.param(lambda: Fn(lambda s, x: s.unpool(*s.pool(x)), pool=nn.MaxPool1d(3, 2, 1, return_indices=True),
                            unpool=nn.MaxUnpool1d(3, 2, 1)), (2, 3, 9), id="unpool1d-overlap"),
    pytest.param(lambda: Fn(lambda s, x: s.unpool(*s.pool(x)), pool=nn.MaxPool3d(2, return_indices=True),
                            unpool=nn.MaxUnpool3d(2)), (2, 4, 4, 6), id="unpool3d-unbatched"),
    # functional forms with indices (ATen *_with_indices, adaptive_max_pool*, max_unpool2d/3d)
    pytest.param(lambda: Fn(lambda s, x: F.max_pool1d(x, 3, 2, 1, return_indices=True)), (2, 3, 10),
                 id="F.max_pool1d-indices"),
    pytest.param(lambda: Fn(lambda s, x: F.max_pool3d(x, 2, ceil_mode=True, return_indices=True)), (2, 2, 3, 5, 4),
                 id="F.max_pool3d-indices-ceil"),
    pytest.param(lambda: Fn(lambda s, x: F.adaptive_max_pool2d(x, (3, 2))), (2, 3, 7, 5), id="F.adaptive_max_pool2d"),
    pytest.param(lambda: Fn(lambda s, x: F.adaptive_max_pool3d(x, 2, return_indices=True)), (2, 2, 3, 5, 4),
                 id="F.adaptive_max_pool3d-indices"),
    pytest.param(lambda: Fn(lambda s, x: F.max_unpool1d(*F.max_pool1d(x, 2, return_indices=True), 2)), (2, 3, 9),
                 id="F.max_unpool1d"),
    pytest.param(lambda: Fn(lambda s, x: F.max_unpool2d(*F.max_pool2d(x, 3, 2, 1, return_indices=True), 3, 2, 1)),
                 (2, 3, 7, 9), id="F.max_unpool2d-overlap"),
    pytest.param(lambda: Fn(lambda s, x: F.max_unpool3d(*F.max_pool3d(x, 2, return_indices=True), 2)), (2, 2, 4, 4, 6),
                 id="F.max_unpool3d"),
    pytest.param(lambda: nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU(), nn.MaxPool1d(2), nn.AdaptiveMaxPool1d(1),
                                       nn.Flatten(), nn.Linear(4, 2)), (2, 3, 12), id="conv1d-pool-gmp-linear"),
]


@BATCH.parametrize("factory, shape", MORE)
def test_pooling_more(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


@pytest.mark.node
def test_tfjs_pooling(node_or_skip):
    BATCH.assert_all_within()
