"""Shape ops, mostly right after a conv (channels-last inside TF, torch order outside):
flatten/view/reshape into Linear, permute/transpose, squeeze/unsqueeze, cat, stack,
indexing, F.pad. Also: how many transposes a conv stack costs. Then the padding,
shuffle and resampling modules (nn.*Pad*, Unflatten, Pixel(Un)Shuffle, ChannelShuffle,
Upsample / F.interpolate). Every row but the transpose counts is checked in TF and, through
the file's batch, in tfjs (cpu, wasm)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import bridge
from bridge.errors import UnsupportedError
from _parity import Fn, Fn2, assert_port_matches, randn, seeded
from _tfjs_batch import TfjsBatch

C, H, W = 4, 5, 7  # conv output of a (2, 3, 7, 9) input with a 3x3 kernel
BATCH = TfjsBatch()


def conv_then(fn, **children):
    """conv (3 -> C channels) -> fn(self, feature_map); ``fc`` maps C*H*W features if present."""
    return lambda: Fn(lambda s, x: fn(s, s.conv(x)), conv=nn.Conv2d(3, C, 3), **children)


def fc(n_in: int = C * H * W, n_out: int = 3) -> nn.Linear:
    return nn.Linear(n_in, n_out)


CASES = [
    # flatten into a Linear: the flatten order is folded into the Linear's weight rows
    pytest.param(conv_then(lambda s, x: s.fc(x.flatten(1)), fc=fc()), id="flatten-method-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(torch.flatten(x, 1)), fc=fc()), id="torch.flatten-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(s.flat(x)), fc=fc(), flat=nn.Flatten()), id="nn.Flatten-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.view(x.size(0), -1)), fc=fc()), id="view-size0-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.reshape(x.shape[0], -1)), fc=fc()), id="reshape-shape0-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.view(-1, C * H * W)), fc=fc()), id="view-minus1-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.flatten(1, -1)), fc=fc()), id="flatten-1-minus1-linear"),
    pytest.param(conv_then(lambda s, x: s.fc2(s.fc(x.flatten(1)).relu()), fc=fc(n_out=6), fc2=fc(6, 2)),
                 id="flatten-linear-relu-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(s.drop(x.flatten(1))), fc=fc(), drop=nn.Dropout(0.5)),
                 id="flatten-dropout-linear"),
    # flatten with other consumers: torch's order must come back
    pytest.param(conv_then(lambda s, x: x.flatten(1)), id="flatten-returned"),
    pytest.param(conv_then(lambda s, x: x.view(x.size(0), -1)), id="view-returned"),
    pytest.param(conv_then(lambda s, x: F.softmax(x.flatten(1), dim=1)), id="flatten-softmax"),
    pytest.param(conv_then(lambda s, x: x.flatten(1) * 2 + 1), id="flatten-arith"),
    pytest.param(conv_then(lambda s, x: x.flatten(1)[:, 3:9]), id="flatten-slice"),
    pytest.param(conv_then(lambda s, x: (x.flatten(1), s.fc(x.flatten(1))), fc=fc()), id="flatten-two-consumers"),
    pytest.param(conv_then(lambda s, x: x.flatten(1).view(x.size(0), C, H * W)), id="flatten-view-back"),
    pytest.param(conv_then(lambda s, x: x.flatten(2)), id="flatten2"),
    pytest.param(conv_then(lambda s, x: x.flatten(0, 1)), id="flatten0-1"),
    pytest.param(conv_then(lambda s, x: x.flatten()), id="flatten-all"),
    pytest.param(conv_then(lambda s, x: x.flatten(1, 2)), id="flatten1-2"),
    pytest.param(conv_then(lambda s, x: s.fc(x.flatten(2).transpose(1, 2)), fc=fc(C, 6)), id="flatten2-transpose-linear"),
    pytest.param(conv_then(lambda s, x: x.reshape(x.size(0), C, -1)), id="reshape-NCL"),
    pytest.param(conv_then(lambda s, x: x.view(2, C * H, W)), id="view-literal"),
    # permute / transpose
    pytest.param(conv_then(lambda s, x: s.fc(x.permute(0, 2, 3, 1).reshape(x.size(0), -1, C)), fc=fc(C, 6)),
                 id="permute-reshape-NLC-linear"),
    pytest.param(conv_then(lambda s, x: x.permute(0, 2, 3, 1)), id="permute-NHWC-returned"),
    pytest.param(conv_then(lambda s, x: x.permute(0, 3, 1, 2)), id="permute-other"),
    pytest.param(conv_then(lambda s, x: torch.permute(x, (0, 2, 3, 1)).contiguous()), id="torch.permute"),
    pytest.param(conv_then(lambda s, x: x.transpose(1, 3)), id="transpose1-3"),
    pytest.param(conv_then(lambda s, x: x.transpose(-1, -2)), id="transpose-last2"),
    pytest.param(conv_then(lambda s, x: torch.transpose(x, 2, 3)), id="torch.transpose"),
    pytest.param(conv_then(lambda s, x: s.fc(x.transpose(1, 3)), fc=fc(C, 6)), id="transpose-linear"),
    # squeeze / unsqueeze
    pytest.param(conv_then(lambda s, x: x.unsqueeze(1)), id="unsqueeze1"),
    pytest.param(conv_then(lambda s, x: x.unsqueeze(-1)), id="unsqueeze-last"),
    pytest.param(conv_then(lambda s, x: torch.unsqueeze(x, 2)), id="torch.unsqueeze"),
    pytest.param(conv_then(lambda s, x: x.mean(3, keepdim=True).squeeze(3)), id="squeeze3"),
    pytest.param(conv_then(lambda s, x: s.gap(x).squeeze(-1).squeeze(-1), gap=nn.AdaptiveAvgPool2d(1)),
                 id="gap-squeeze-squeeze"),
    pytest.param(conv_then(lambda s, x: s.fc(s.gap(x).squeeze()), gap=nn.AdaptiveAvgPool2d(1), fc=fc(C, 2)),
                 id="gap-squeeze-all-linear"),
    pytest.param(conv_then(lambda s, x: torch.squeeze(s.gap(x), (2, 3)), gap=nn.AdaptiveAvgPool2d(1)),
                 id="torch.squeeze-dims"),
    pytest.param(conv_then(lambda s, x: x.squeeze(1)), id="squeeze-noop"),
    # cat / stack
    pytest.param(conv_then(lambda s, x: torch.cat([x, s.conv2(x)], dim=1), conv2=nn.Conv2d(C, 2, 1)), id="cat-channels"),
    pytest.param(conv_then(lambda s, x: torch.cat((x, x * 2), 2)), id="cat-H"),
    pytest.param(conv_then(lambda s, x: torch.cat([x, s.conv2(x)], -3), conv2=nn.Conv2d(C, 2, 1)), id="cat-minus3"),
    pytest.param(conv_then(lambda s, x: torch.cat([x, x.permute(0, 1, 3, 2).transpose(2, 3)], 1)), id="cat-mixed"),
    pytest.param(conv_then(lambda s, x: torch.stack([x, s.conv2(x)], 1), conv2=nn.Conv2d(C, C, 1)), id="stack1"),
    pytest.param(conv_then(lambda s, x: torch.stack([x, x + 1], dim=-1)), id="stack-last"),
    pytest.param(conv_then(lambda s, x: torch.stack((x, x))), id="stack0"),
    # indexing
    pytest.param(conv_then(lambda s, x: x[:, None]), id="index-None"),
    pytest.param(conv_then(lambda s, x: x[:, 1:3]), id="index-channel-slice"),
    pytest.param(conv_then(lambda s, x: x[..., ::2]), id="index-ellipsis-step"),
    pytest.param(conv_then(lambda s, x: x[:, :, 1:-1, 2:]), id="index-spatial-slices"),
    pytest.param(conv_then(lambda s, x: x[:, 0]), id="index-int-channel"),
    pytest.param(conv_then(lambda s, x: x[:, -1, :, None]), id="index-negative-int-None"),
    pytest.param(conv_then(lambda s, x: x[:, :]), id="index-full"),
    pytest.param(conv_then(lambda s, x: x[0]), id="index-batch-int"),
    # F.pad
    pytest.param(conv_then(lambda s, x: F.pad(x, (1, 2))), id="pad-W"),
    pytest.param(conv_then(lambda s, x: F.pad(x, (1, 2, 0, 3), value=0.5)), id="pad-WH-value"),
    pytest.param(conv_then(lambda s, x: F.pad(x, (0, 0, 0, 0, 1, 1))), id="pad-channels"),
    pytest.param(conv_then(lambda s, x: F.pad(x, (1, 1, 2, 0), mode="reflect")), id="pad-reflect"),
    pytest.param(conv_then(lambda s, x: F.pad(x, [2, 1, 1, 1], "replicate")), id="pad-replicate"),
    pytest.param(conv_then(lambda s, x: F.pad(x, (1, 2, 2, 1), mode="circular")), id="pad-circular"),
    pytest.param(conv_then(lambda s, x: F.pad(x, (-1, 2, 0, -2))), id="pad-negative-crops"),
]


@BATCH.parametrize("factory", CASES)
def test_after_conv(factory):
    return assert_port_matches(seeded(factory), (randn(2, 3, 7, 9),))


PLAIN = [
    pytest.param(lambda s, x: x.transpose(0, 1), (3, 4), id="transpose-2d"),
    pytest.param(lambda s, x: x.t() @ x, (3, 4), id="t-matmul"),
    pytest.param(lambda s, x: torch.t(x[0]) + x[1], (2, 3), id="torch.t-1d"),
    pytest.param(lambda s, x: x.permute(2, 0, 1), (2, 3, 4), id="permute-3d"),
    pytest.param(lambda s, x: x.unsqueeze(0).squeeze(0), (2, 3), id="unsqueeze-squeeze"),
    pytest.param(lambda s, x: x.view(2, 3, 4)[:, None, 1:, ::3], (2, 12), id="view-index"),
    pytest.param(lambda s, x: F.pad(x, (1, 1)), (2, 3), id="pad-2d"),
    pytest.param(lambda s, x: x.reshape(-1, 6).flatten(), (2, 3, 2), id="reshape-flatten"),
]


@BATCH.parametrize("fn, shape", PLAIN)
def test_plain(fn, shape):
    return assert_port_matches(seeded(lambda: Fn(fn)), (randn(*shape),))


def _cat_two_convs():
    return Fn2(lambda s, x, y: torch.cat([s.a(x), s.b(y)], 1).flatten(1), a=nn.Conv2d(3, 2, 3), b=nn.Conv2d(1, 5, 1))


def _conv_inputs():
    return randn(2, 3, 7, 9), randn(2, 1, 5, 7, seed=1)


def _gather_inputs():
    """torch.gather with an int64 index input (random parity indices stay in [0, 2])."""
    return randn(2, 3, 5), torch.tensor([[[0, 1, 2, 0, 1], [2, 2, 0, 1, 0]], [[1, 0, 0, 2, 2], [0, 1, 2, 1, 0]]])


def _hf_mask_lookup(s, x, m):
    """The padding-mask lookup transformers records: mask[batch[:, None, None, None], kv[None, None, None, :]]."""
    b, kv = torch.arange(m.size(0)), torch.arange(m.size(1))
    picked = m.bool()[b[:, None, None, None], kv[None, None, None, :]]  # (B, 1, 1, S)
    return x.masked_fill(~picked, -1e9).softmax(-1)


def _hf_mask_inputs():
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, 4:] = 0
    return randn(2, 2, 6, 6), mask


class RawEmbedding(nn.Module):
    """F.embedding with a raw weight (no nn.Embedding): ids -> rows."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(10, 4))

    def forward(self, ids):
        return F.embedding(ids, self.table) * 2


OWN_INPUTS = [  # (module factory, inputs factory): rows with their own inputs
    pytest.param(_cat_two_convs, _conv_inputs, id="cat-two-inputs-of-two-convs"),
    pytest.param(lambda: Fn2(lambda s, x, i: torch.gather(x, 1, i)), _gather_inputs, id="gather-with-index-input"),
    pytest.param(lambda: Fn2(_hf_mask_lookup), _hf_mask_inputs, id="index-like-hf-mask"),
    pytest.param(RawEmbedding, lambda: (torch.tensor([[1, 9, 0], [4, 4, 7]]),), id="embedding-op"),
]


@BATCH.parametrize("factory, inputs", OWN_INPUTS)
def test_model_inputs(factory, inputs):
    return assert_port_matches(seeded(factory), inputs())


# ---------------------------------------------------------------- transposes: only where layouts must change
class ConvAffine(nn.Module):
    """conv -> x * scale + shift with (C, 1, 1) broadcast tensors (a buffer, a raw Parameter) -> head."""

    def __init__(self, head: nn.Module | None = None):
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3)
        self.register_buffer("scale", torch.randn(C, 1, 1))
        self.shift = nn.Parameter(torch.randn(C, 1, 1))
        self.head = head or nn.Identity()

    def forward(self, x):
        return self.head(self.conv(x) * self.scale + self.shift)


class SqueezeExcite(nn.Module):
    """conv -> x * sigmoid(fc(mean over H, W))[:, :, None, None] -> conv -> flatten -> linear."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc, self.conv2 = nn.Conv2d(3, C, 3), nn.Linear(C, C), nn.Conv2d(C, 2, 3)
        self.out = nn.Linear(2 * 3 * 5, 2)

    def forward(self, x):
        x = self.conv(x)
        x = x * self.fc(x.mean((2, 3))).sigmoid()[:, :, None, None]
        return self.out(self.conv2(x).flatten(1))


TRANSPOSES = [
    pytest.param(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3),
                                       nn.Flatten(), nn.Linear(4 * 3 * 5, 2)), 1, id="conv-bn-relu-conv-flatten-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.flatten(1)), fc=fc()), 1, id="conv-flatten-method-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.view(x.size(0), -1)), fc=fc()), 1, id="conv-view-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.view(-1, C * H * W)), fc=fc()), 1, id="conv-view-minus1-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.permute(0, 2, 3, 1).reshape(x.size(0), -1, C)), fc=fc(C, 6)), 1,
                 id="conv-permute-reshape-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.flatten(2).transpose(1, 2)), fc=fc(C, 6)), 1,
                 id="conv-flatten2-transpose-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(torch.flatten(s.gap(x), 1)), gap=nn.AdaptiveAvgPool2d(1), fc=fc(C, 2)),
                 1, id="conv-gap-flatten-linear"),
    pytest.param(conv_then(lambda s, x: s.fc(x.mean((2, 3))), fc=fc(C, 2)), 1, id="conv-mean-linear"),
    pytest.param(conv_then(lambda s, x: torch.cat([x, s.conv2(x)], 1).relu(), conv2=nn.Conv2d(C, 2, 1)), 2,
                 id="conv-cat-relu-returned"),
    pytest.param(ConvAffine, 2, id="conv-broadcast-params-returned"),
    pytest.param(lambda: ConvAffine(nn.Sequential(nn.Conv2d(C, 2, 3), nn.Flatten(), nn.Linear(2 * 3 * 5, 2))), 1,
                 id="conv-broadcast-params-conv-linear"),
    pytest.param(SqueezeExcite, 1, id="squeeze-excite"),
    pytest.param(conv_then(lambda s, x: s.fc(x[:, 1:3].unsqueeze(2).squeeze(2).flatten(1)), fc=fc(2 * H * W)), 1,
                 id="conv-slice-unsqueeze-squeeze-flatten-linear"),
    # channel picks, splits and expands act on the NHWC axis: no transpose of their own
    pytest.param(conv_then(lambda s, x: x.index_select(1, torch.tensor([3, 0])).relu()), 2, id="conv-index-select"),
    pytest.param(conv_then(lambda s, x: x[:, torch.tensor([1, 2])] * 2), 2, id="conv-index-tensor"),
    pytest.param(conv_then(lambda s, x: torch.split(x, [1, 3], 1)[1] + 1), 2, id="conv-split-channels"),
    pytest.param(conv_then(lambda s, x: x.mean(1, keepdim=True).expand(-1, C, -1, -1) + x), 2, id="conv-expand"),
    pytest.param(conv_then(lambda s, x: torch.where(x > 0, x, torch.zeros_like(x)).cumsum(1)), 2, id="conv-where-cumsum"),
]


@pytest.mark.parametrize("factory, expected", TRANSPOSES)
def test_transpose_count(factory, expected):
    """Conv stacks run channels-last: the input is transposed once, and the output only if it is a feature map."""
    port = assert_port_matches(seeded(factory), (randn(2, 3, 7, 9),))
    assert port.source.count("tf.transpose") == expected, port.source


def test_transpose_count_conv1d():
    module = nn.Sequential(nn.Conv1d(3, 4, 3), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 7, 2))
    port = assert_port_matches(seeded(lambda: module), (randn(2, 3, 9),))
    assert port.source.count("tf.transpose") == 1, port.source


# ---------------------------------------------------------------- expand, split, tensor indexing, gather, embedding
SEQ = [
    pytest.param(lambda s, x: x[:, :1].expand(-1, 3, -1), id="expand-minus1"),
    pytest.param(lambda s, x: x[:1].expand(x.size(0), -1, -1) * x, id="expand-dynamic-batch"),
    pytest.param(lambda s, x: x[0].expand(2, 3, 5) + x, id="expand-new-leading-dim"),
    pytest.param(lambda s, x: x[:, :, :1].expand_as(x) - x, id="expand-as"),
    pytest.param(lambda s, x: x.expand(2, 3, 5), id="expand-noop"),
    pytest.param(lambda s, x: torch.split(x, 2, dim=-1), id="split-size"),
    pytest.param(lambda s, x: torch.split(x, [1, 4], -1)[1] * 2, id="split-sizes"),
    pytest.param(lambda s, x: x.chunk(3, 1), id="chunk"),
    pytest.param(lambda s, x: x.unbind(1), id="unbind"),
    pytest.param(lambda s, x: x[:, torch.tensor([2, 0, -1])], id="index-one-tensor-negative"),
    pytest.param(lambda s, x: x[..., torch.tensor([[4, 0], [1, 1]])], id="index-last-dim-2d"),
    pytest.param(lambda s, x: x[torch.arange(2)[:, None], torch.tensor([[0, 2, 1]])], id="index-two-broadcast"),
    pytest.param(lambda s, x: x.index_select(2, torch.tensor([3, 1])), id="index-select"),
    pytest.param(lambda s, x: torch.gather(x, 2, torch.tensor([[[0, 4], [1, 1], [3, 2]]]).expand(2, -1, -1)),
                 id="gather-last"),
    pytest.param(lambda s, x: x.gather(1, torch.tensor([[[2, 0, 1, 1, 0]]]).expand(2, -1, -1)), id="gather-middle"),
]


@BATCH.parametrize("fn", SEQ)
def test_sequence_shapes(fn):
    return assert_port_matches(seeded(lambda: Fn(fn)), (randn(2, 3, 5),))


AFTER_CONV = [  # NHWC inside TF
    pytest.param(conv_then(lambda s, x: x.mean(1, keepdim=True).expand(-1, C, -1, -1) + x), id="expand-channels"),
    pytest.param(conv_then(lambda s, x: torch.split(x, [1, 3], 1)), id="split-channels"),
    pytest.param(conv_then(lambda s, x: x.chunk(2, 2)[0]), id="chunk-H"),
    pytest.param(conv_then(lambda s, x: x.unbind(1)[2]), id="unbind-channels"),
    pytest.param(conv_then(lambda s, x: x.index_select(1, torch.tensor([3, 0]))), id="index-select-channels"),
    pytest.param(conv_then(lambda s, x: x[:, torch.tensor([1, 2])]), id="index-tensor-channels"),
    pytest.param(conv_then(lambda s, x: x[:, :, torch.tensor([[0, 4], [2, 1]])]), id="index-tensor-2d-H"),
]


@BATCH.parametrize("factory", AFTER_CONV)
def test_sequence_shapes_after_conv(factory):
    return assert_port_matches(seeded(factory), (randn(2, 3, 7, 9),))


# ---------------------------------------------------------------- padding, shuffle and resampling modules


def mod(module_factory, conv: int | None = None):
    """``module`` applied to the input, after a conv (3 -> ``conv`` channels, NHWC inside TF) when given."""
    if conv is None:
        return lambda: Fn(lambda s, x: s.m(x), m=module_factory())
    return lambda: Fn(lambda s, x: s.m(s.conv(x)), conv=nn.Conv2d(3, conv, 3), m=module_factory())


MODULES = [
    # pads: traced through to the mapped aten pad op (1-D/2-D/3-D, batched and unbatched)
    pytest.param(mod(lambda: nn.ZeroPad1d((2, 1))), (3, 5), id="zeropad1d-unbatched"),
    pytest.param(mod(lambda: nn.ZeroPad2d((1, 2, 0, 1)), conv=4), (2, 3, 6, 7), id="zeropad2d-after-conv"),
    pytest.param(mod(lambda: nn.ZeroPad3d(1)), (1, 2, 3, 4, 3), id="zeropad3d"),
    pytest.param(mod(lambda: nn.ConstantPad1d(2, -1.5)), (2, 3, 5), id="constantpad1d"),
    pytest.param(mod(lambda: nn.ConstantPad2d((1, 0, 2, 1), 0.5)), (3, 4, 5), id="constantpad2d-unbatched"),
    pytest.param(mod(lambda: nn.ConstantPad3d((1, 0, 2, 1, 0, 1), 0.5)), (2, 2, 3, 4, 3), id="constantpad3d"),
    pytest.param(mod(lambda: nn.ReflectionPad1d((2, 1))), (2, 3, 5), id="reflectionpad1d"),
    pytest.param(mod(lambda: nn.ReflectionPad2d((1, 2, 2, 0)), conv=4), (2, 3, 6, 7), id="reflectionpad2d-after-conv"),
    pytest.param(mod(lambda: nn.ReflectionPad3d(1)), (2, 3, 4, 3), id="reflectionpad3d-unbatched"),
    pytest.param(mod(lambda: nn.ReplicationPad1d(2)), (3, 5), id="replicationpad1d-unbatched"),
    pytest.param(mod(lambda: nn.ReplicationPad2d((2, 1, 1, 1))), (2, 3, 4, 5), id="replicationpad2d"),
    pytest.param(mod(lambda: nn.ReplicationPad3d((1, 0, 0, 2, 1, 1))), (1, 2, 3, 4, 5), id="replicationpad3d"),
    pytest.param(mod(lambda: nn.CircularPad1d((2, 1))), (2, 3, 5), id="circularpad1d"),
    pytest.param(mod(lambda: nn.CircularPad2d(1), conv=4), (2, 3, 6, 7), id="circularpad2d-after-conv"),
    pytest.param(mod(lambda: nn.CircularPad3d((1, 1, 0, 1, 1, 0))), (2, 3, 4, 3), id="circularpad3d-unbatched"),
    # unflatten, pixel (un)shuffle, channel shuffle
    pytest.param(mod(lambda: nn.Unflatten(1, (2, 3))), (2, 6, 4), id="unflatten-middle"),
    pytest.param(mod(lambda: nn.Unflatten(-1, (2, -1))), (2, 3, 6), id="unflatten-last-minus1"),
    pytest.param(mod(lambda: nn.Unflatten(1, (2, 2)), conv=4), (2, 3, 6, 7), id="unflatten-channels-after-conv"),
    pytest.param(mod(lambda: nn.PixelShuffle(2)), (2, 8, 3, 4), id="pixelshuffle"),
    pytest.param(mod(lambda: nn.PixelShuffle(3)), (9, 2, 3), id="pixelshuffle-unbatched"),
    pytest.param(mod(lambda: nn.PixelShuffle(2), conv=8), (2, 3, 5, 6), id="pixelshuffle-after-conv"),
    pytest.param(mod(lambda: nn.PixelUnshuffle(2)), (2, 2, 4, 6), id="pixelunshuffle"),
    pytest.param(mod(lambda: nn.PixelUnshuffle(2), conv=3), (2, 3, 6, 8), id="pixelunshuffle-after-conv"),
    pytest.param(mod(lambda: nn.ChannelShuffle(2)), (2, 6, 3, 3), id="channelshuffle"),
    pytest.param(mod(lambda: nn.ChannelShuffle(3), conv=6), (2, 3, 5, 5), id="channelshuffle-after-conv"),
    # Upsample / interpolate
    pytest.param(mod(lambda: nn.Upsample(scale_factor=2)), (2, 3, 4, 5), id="upsample-nearest-x2"),
    pytest.param(mod(lambda: nn.Upsample(size=(7, 9)), conv=4), (2, 3, 6, 7), id="upsample-nearest-size-after-conv"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=1.7, mode="nearest-exact")), (2, 3, 4, 5), id="upsample-nearest-exact"),
    pytest.param(mod(lambda: nn.UpsamplingNearest2d(scale_factor=3)), (1, 2, 3, 4), id="upsamplingnearest2d"),
    # torch's own special cases: 2-D nearest copies/halves when out == in or 2*in whatever the factor (H 4 -> 4,
    # W 5 -> 10 at 2.1); linear kernels copy an axis whose size is kept (H 4 -> 4 at 1.2), bicubic does not
    pytest.param(mod(lambda: nn.Upsample(scale_factor=(1.2, 2.1))), (2, 3, 4, 5), id="upsample-nearest-torch-shortcuts"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=1.2, mode="bilinear")), (2, 3, 4, 5), id="upsample-bilinear-kept-axis"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=1.2, mode="bicubic")), (2, 3, 4, 5), id="upsample-bicubic-kept-axis"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=2, mode="bilinear")), (2, 3, 4, 5), id="upsample-bilinear"),
    pytest.param(mod(lambda: nn.Upsample(size=(7, 4), mode="bilinear", align_corners=True), conv=4), (2, 3, 6, 7),
                 id="upsample-bilinear-corners-after-conv"),
    pytest.param(mod(lambda: nn.UpsamplingBilinear2d(scale_factor=2)), (2, 3, 4, 5), id="upsamplingbilinear2d"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=2.5, mode="linear")), (2, 3, 5), id="upsample-linear-1d"),
    pytest.param(mod(lambda: nn.Upsample(size=4, mode="linear", align_corners=True)), (2, 3, 7), id="upsample-linear-down"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=(1.5, 2), mode="bicubic")), (2, 3, 4, 5), id="upsample-bicubic"),
    pytest.param(mod(lambda: nn.Upsample(size=(6, 3), mode="bicubic", align_corners=True)), (2, 3, 4, 5),
                 id="upsample-bicubic-corners"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=2, mode="trilinear")), (1, 2, 3, 4, 3), id="upsample-trilinear"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=(1, 2, 1.5))), (1, 2, 3, 4, 3), id="upsample-nearest-3d"),
    pytest.param(mod(lambda: nn.Upsample(size=(3, 4), mode="area")), (2, 3, 6, 7), id="upsample-area-size"),
    # a scale_factor makes the size int(in * s): free sizes would need math.trunc, so the export keeps the traced size
    pytest.param(mod(lambda: nn.Upsample(scale_factor=0.5, mode="area")), (2, 3, 6, 7), id="upsample-area-scale"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=0.4, mode="area"), conv=4), (2, 3, 6, 7),
                 id="upsample-area-scale-after-conv"),
    pytest.param(mod(lambda: nn.Upsample(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True)),
                 (2, 3, 4, 5), id="upsample-bilinear-recompute-scale"),
]


@BATCH.parametrize("factory, shape", MODULES)
def test_module(factory, shape):
    """After a conv the module works on the NHWC map: one transpose in, one back to torch's order."""
    module = seeded(factory)
    port = assert_port_matches(module, (randn(*shape),))
    if hasattr(module, "conv"):
        assert port.source.count("tf.transpose") == 2, port.source
    return port


INTERPOLATE = [
    pytest.param(lambda s, x: F.interpolate(x, size=(3, 7), mode="nearest"), id="nearest-down-up"),
]


@BATCH.parametrize("fn", INTERPOLATE)
def test_interpolate(fn):
    return assert_port_matches(seeded(lambda: Fn(fn)), (randn(2, 3, 6, 6),))


def test_interpolate_antialias_unsupported():
    with pytest.raises(UnsupportedError, match="upsample_bilinear2d_aa"):
        bridge.convert(Fn(lambda s, x: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)),
                       (randn(2, 3, 6, 6),))


@pytest.mark.node
def test_tfjs_modules(node_or_skip):
    BATCH.assert_all_within()
