"""Conv1d/2d/3d and ConvTranspose1d/2d/3d: stride, dilation, groups, every padding form and padding_mode, bias.

Every row is checked in TF and, in one batch, in tfjs cpu and wasm (split grouped convs, stride with
dilation, reflect/replicate/circular padding as Gathers)."""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from torch import nn

from _parity import Fn, assert_port_matches, randn, seeded
from _tfjs_batch import TfjsBatch

MODES = ["zeros", "reflect", "replicate", "circular"]
BATCH = TfjsBatch()  # every row below is checked in TF and in tfjs (cpu, wasm): test_tfjs_conv, last

# torch notes that it copies the input for these; harmless for a parity test
pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel:UserWarning")

# (factory, input shape); inputs are small with odd spatial sizes so no window lines up by accident
CONV2D = [
    pytest.param(lambda: nn.Conv2d(3, 4, 3), (2, 3, 7, 9), id="k3"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, bias=False), (2, 3, 7, 9), id="k3-nobias"),
    pytest.param(lambda: nn.Conv2d(3, 4, 1), (2, 3, 7, 9), id="k1"),
    pytest.param(lambda: nn.Conv2d(3, 4, (3, 5)), (2, 3, 7, 9), id="k3x5"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, stride=2), (2, 3, 7, 9), id="stride2"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, stride=(2, 1)), (2, 3, 7, 9), id="stride2x1"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, dilation=2), (2, 3, 7, 9), id="dilation2"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, dilation=(1, 2)), (2, 3, 7, 9), id="dilation1x2"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, stride=2, dilation=2), (2, 3, 9, 11), id="stride2-dilation2"),
    pytest.param(lambda: nn.Conv2d(3, 4, (3, 2), stride=(1, 3), dilation=(2, 1), padding=1), (2, 3, 9, 11),
                 id="stride1x3-dilation2x1"),
    pytest.param(lambda: nn.Conv2d(4, 6, 3, groups=2), (2, 4, 7, 9), id="groups2"),
    pytest.param(lambda: nn.Conv2d(6, 6, 3, groups=3, stride=2, padding=1), (2, 6, 7, 9), id="groups3-stride2"),
    pytest.param(lambda: nn.Conv2d(4, 4, 3, groups=4), (2, 4, 7, 9), id="depthwise"),
    pytest.param(lambda: nn.Conv2d(4, 8, 3, groups=4), (2, 4, 7, 9), id="depthwise-mult2"),
    pytest.param(lambda: nn.Conv2d(4, 8, (3, 5), groups=4, padding=(1, 2), bias=False), (2, 4, 7, 9),
                 id="depthwise-mult2-k3x5-nobias"),
    pytest.param(lambda: nn.Conv2d(4, 4, 3, groups=4, stride=2, dilation=2, padding=2), (2, 4, 9, 11),
                 id="depthwise-stride2-dilation2"),
    pytest.param(lambda: nn.Conv2d(4, 4, 3, groups=4, stride=(2, 1), padding=1), (2, 4, 7, 9),
                 id="depthwise-stride2x1"),
    pytest.param(lambda: nn.Conv2d(4, 8, 3, groups=4, stride=(1, 2), dilation=(2, 1), padding=1), (2, 4, 7, 9),
                 id="depthwise-mult2-stride1x2-dilation2x1"),
    pytest.param(lambda: nn.Conv2d(1, 3, 3, groups=1), (2, 1, 7, 9), id="one-in-channel"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 7, 9), id="pad1"),
    pytest.param(lambda: nn.Conv2d(3, 4, (3, 5), padding=(0, 2)), (2, 3, 7, 9), id="pad0x2"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, padding="same"), (2, 3, 7, 9), id="same"),
    pytest.param(lambda: nn.Conv2d(3, 4, (2, 4), padding="same"), (2, 3, 7, 9), id="same-even-kernel"),
    pytest.param(lambda: nn.Conv2d(3, 4, (3, 2), padding="same", dilation=(2, 3)), (2, 3, 7, 9),
                 id="same-dilation"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, padding="valid"), (2, 3, 7, 9), id="valid"),
    *[pytest.param(lambda mode=mode: nn.Conv2d(3, 4, (3, 5), padding=(1, 2), padding_mode=mode), (2, 3, 7, 9),
                   id=f"pad1x2-{mode}") for mode in MODES],
    *[pytest.param(lambda mode=mode: nn.Conv2d(3, 4, (2, 4), padding="same", padding_mode=mode), (2, 3, 7, 9),
                   id=f"same-even-{mode}") for mode in MODES],
    *[pytest.param(lambda mode=mode: nn.Conv2d(4, 8, 3, groups=4, stride=2, padding=2, padding_mode=mode,
                                               bias=False), (2, 4, 7, 9), id=f"depthwise-stride2-{mode}")
      for mode in MODES],
    pytest.param(lambda: nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                       nn.Conv2d(8, 8, 3, groups=8, padding=1), nn.Conv2d(8, 5, 1)),
                 (2, 3, 9, 11), id="stack"),
]

CONV1D = [
    pytest.param(lambda: nn.Conv1d(3, 4, 3), (2, 3, 11), id="k3"),
    pytest.param(lambda: nn.Conv1d(3, 4, 3, bias=False), (2, 3, 11), id="k3-nobias"),
    pytest.param(lambda: nn.Conv1d(3, 4, 4, stride=2), (2, 3, 11), id="stride2"),
    pytest.param(lambda: nn.Conv1d(3, 4, 3, dilation=3), (2, 3, 11), id="dilation3"),
    pytest.param(lambda: nn.Conv1d(3, 4, 3, stride=2, dilation=2, padding=1), (2, 3, 12), id="stride2-dilation2"),
    pytest.param(lambda: nn.Conv1d(4, 6, 3, groups=2), (2, 4, 11), id="groups2"),
    pytest.param(lambda: nn.Conv1d(4, 4, 5, groups=4, padding=2), (2, 4, 11), id="depthwise"),
    pytest.param(lambda: nn.Conv1d(4, 8, 3, groups=4), (2, 4, 11), id="depthwise-mult2"),
    pytest.param(lambda: nn.Conv1d(4, 4, 3, groups=4, stride=2), (2, 4, 11), id="depthwise-stride2"),
    pytest.param(lambda: nn.Conv1d(4, 8, 3, groups=4, stride=2, dilation=2), (2, 4, 13),
                 id="depthwise-mult2-stride2-dilation2"),
    pytest.param(lambda: nn.Conv1d(3, 4, 3, padding=2), (2, 3, 11), id="pad2"),
    pytest.param(lambda: nn.Conv1d(3, 4, (3,), padding=(1,)), (2, 3, 11), id="pad-tuple"),
    pytest.param(lambda: nn.Conv1d(3, 4, 4, padding="same"), (2, 3, 11), id="same-even"),
    pytest.param(lambda: nn.Conv1d(3, 4, 3, padding="same", dilation=2), (2, 3, 11), id="same-dilation"),
    pytest.param(lambda: nn.Conv1d(3, 4, 3, padding="valid"), (2, 3, 11), id="valid"),
    *[pytest.param(lambda mode=mode: nn.Conv1d(3, 4, 5, padding=3, padding_mode=mode), (2, 3, 11),
                   id=f"pad3-{mode}") for mode in MODES],
    *[pytest.param(lambda mode=mode: nn.Conv1d(4, 4, 4, padding="same", groups=4, padding_mode=mode), (2, 4, 11),
                   id=f"depthwise-same-even-{mode}") for mode in MODES],
]


@BATCH.parametrize("factory, shape", CONV2D)
def test_conv2d(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


@BATCH.parametrize("factory, shape", CONV1D)
def test_conv1d(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


# ---------------------------------------------------------------- Conv3d, ConvTranspose1d/2d/3d, Lazy forms


def lazy(m: nn.Module, shape) -> nn.Module:
    """A Lazy* module after its first call, which infers in_channels and turns it into its base class."""
    m(randn(*shape, seed=9))
    return m


MORE = [
    pytest.param(lambda: nn.Conv3d(3, 4, 3), (2, 3, 5, 6, 7), id="conv3d-k3"),
    pytest.param(lambda: nn.Conv3d(3, 4, (2, 3, 1), stride=(1, 2, 2), padding=(1, 0, 1), bias=False),
                 (2, 3, 5, 6, 7), id="conv3d-stride-pad-nobias"),
    pytest.param(lambda: nn.Conv3d(4, 6, 3, groups=2, dilation=(2, 1, 1), stride=2), (2, 4, 7, 6, 7),
                 id="conv3d-groups2-dilation-stride"),
    pytest.param(lambda: nn.Conv3d(4, 4, 3, groups=4, padding="same", padding_mode="reflect"), (2, 4, 5, 6, 7),
                 id="conv3d-depthwise-same-reflect"),
    pytest.param(lambda: nn.Conv3d(3, 4, 3, padding=1, padding_mode="circular"), (2, 3, 5, 6, 7),
                 id="conv3d-circular"),
    pytest.param(lambda: lazy(nn.LazyConv3d(4, 3), (2, 3, 5, 6, 7)), (2, 3, 5, 6, 7), id="lazy-conv3d"),
    pytest.param(lambda: nn.ConvTranspose2d(3, 4, 3), (2, 3, 5, 6), id="convT2d-k3"),
    pytest.param(lambda: nn.ConvTranspose2d(3, 4, (3, 2), stride=(2, 3), bias=False), (2, 3, 5, 6),
                 id="convT2d-stride-nobias"),
    pytest.param(lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), (2, 3, 5, 6),
                 id="convT2d-stride2-pad1-outpad1"),
    pytest.param(lambda: nn.ConvTranspose2d(3, 4, 3, stride=(3, 2), padding=(0, 2), output_padding=(2, 1)),
                 (2, 3, 5, 6), id="convT2d-outpad-over-pad"),
    pytest.param(lambda: nn.ConvTranspose2d(3, 4, 3, dilation=(2, 3), padding=2), (2, 3, 5, 6),
                 id="convT2d-dilation"),
    pytest.param(lambda: nn.ConvTranspose2d(3, 4, 2, stride=2, dilation=3, output_padding=2), (2, 3, 5, 6),
                 id="convT2d-dilation3-outpad2"),
    pytest.param(lambda: nn.ConvTranspose2d(4, 6, 3, groups=2, stride=2, padding=1), (2, 4, 5, 6),
                 id="convT2d-groups2"),
    pytest.param(lambda: nn.ConvTranspose2d(4, 8, 3, groups=4), (2, 4, 5, 6), id="convT2d-depthwise-mult2"),
    pytest.param(lambda: nn.ConvTranspose1d(3, 4, 3), (2, 3, 9), id="convT1d-k3"),
    pytest.param(lambda: nn.ConvTranspose1d(4, 6, 4, stride=3, padding=2, output_padding=1, dilation=2, groups=2,
                                            bias=False), (2, 4, 9), id="convT1d-all-options"),
    pytest.param(lambda: nn.ConvTranspose3d(3, 4, 3), (2, 3, 3, 4, 5), id="convT3d-k3"),
    pytest.param(lambda: nn.ConvTranspose3d(4, 6, (2, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
                                            output_padding=(0, 1, 0), dilation=(2, 1, 1), groups=2),
                 (2, 4, 3, 4, 5), id="convT3d-all-options"),
    pytest.param(lambda: nn.ConvTranspose3d(2, 3, 1, stride=3, padding=1, output_padding=2), (2, 2, 3, 4, 2),
                 id="convT3d-stride-over-kernel-crops"),
    pytest.param(lambda: lazy(nn.LazyConvTranspose1d(4, 3, stride=2), (2, 3, 9)), (2, 3, 9), id="lazy-convT1d"),
    pytest.param(lambda: lazy(nn.LazyConvTranspose2d(4, 3, stride=2), (2, 3, 5, 6)), (2, 3, 5, 6),
                 id="lazy-convT2d"),
    pytest.param(lambda: lazy(nn.LazyConvTranspose3d(4, 2, stride=2), (2, 3, 3, 4, 5)), (2, 3, 3, 4, 5),
                 id="lazy-convT3d"),
    pytest.param(lambda: nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(),
                                       nn.ConvTranspose2d(6, 3, 3, stride=2, padding=1, output_padding=1)),
                 (2, 3, 8, 10), id="encoder-decoder"),
    pytest.param(lambda: Fn(lambda s, x: s.up(x, output_size=[10, 11]), up=nn.ConvTranspose2d(3, 4, 3, stride=2,
                                                                                               padding=1)),
                 (2, 3, 5, 6), id="convT2d-output-size"),
    pytest.param(lambda: Fn(lambda s, x: F.conv1d(x, s.c.weight, s.c.bias, 2, 1), c=nn.Conv1d(3, 4, 3)), (2, 3, 11),
                 id="F.conv1d"),
    pytest.param(lambda: Fn(lambda s, x: F.conv2d(x, s.c.weight, None, (2, 1), (1, 2), 2, 2),
                            c=nn.Conv2d(4, 6, 3, groups=2)), (2, 4, 7, 9), id="F.conv2d-groups-stride-dilation"),
    pytest.param(lambda: Fn(lambda s, x: F.conv3d(x, s.c.weight, s.c.bias, padding="same"), c=nn.Conv3d(3, 4, 2)),
                 (2, 3, 4, 5, 6), id="F.conv3d-same-even"),
    pytest.param(lambda: Fn(lambda s, x: F.conv2d(x, s.c.weight, s.c.bias, padding="valid", dilation=(1, 2)),
                            c=nn.Conv2d(3, 4, 3)), (2, 3, 7, 9), id="F.conv2d-valid"),
    pytest.param(lambda: Fn(lambda s, x: F.conv_transpose2d(x, s.c.weight, s.c.bias, 2, 1, 1, 2),
                            c=nn.ConvTranspose2d(4, 6, 3, groups=2)), (2, 4, 5, 6), id="F.conv_transpose2d"),
    pytest.param(lambda: Fn(lambda s, x: F.conv_transpose1d(x, s.c.weight, None, 3), c=nn.ConvTranspose1d(3, 4, 2)),
                 (2, 3, 9), id="F.conv_transpose1d"),
    # torch's unbatched (C, *spatial) input
    pytest.param(lambda: nn.Conv1d(4, 4, 3, groups=4, padding=1, padding_mode="reflect"), (4, 9),
                 id="conv1d-unbatched-depthwise-reflect"),
    pytest.param(lambda: nn.Conv2d(3, 4, 3, stride=2), (3, 7, 9), id="conv2d-unbatched"),
    pytest.param(lambda: nn.Conv3d(3, 4, 2, padding=1), (3, 4, 5, 6), id="conv3d-unbatched"),
    pytest.param(lambda: nn.ConvTranspose1d(3, 4, 3, stride=2), (3, 9), id="convT1d-unbatched"),
    pytest.param(lambda: nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=1), (3, 5, 6),
                 id="convT2d-unbatched"),
    pytest.param(lambda: nn.ConvTranspose3d(3, 4, 2, stride=2), (3, 3, 4, 5), id="convT3d-unbatched"),
]


@BATCH.parametrize("factory, shape", MORE)
def test_conv_more(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


@pytest.mark.node
def test_tfjs_conv(node_or_skip):
    BATCH.assert_all_within()
