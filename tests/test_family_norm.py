"""BatchNorm1d/2d/3d and SyncBatchNorm (randomized running stats, affine off, batch statistics),
InstanceNorm1d/2d/3d, GroupNorm, LocalResponseNorm, CrossMapLRN2d, the Lazy forms, LayerNorm, and the
functional forms F.batch_norm / F.instance_norm / F.group_norm / F.layer_norm / F.rms_norm and a
hand-written (Llama-style) RMS norm."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from _parity import Fn, assert_port_matches, random_norm_stats, randn, seeded
from _tfjs_batch import TfjsBatch

# InstanceNorm with affine=False warns when num_features is given; harmless here
pytestmark = pytest.mark.filterwarnings("ignore:input.s size at dim=:UserWarning")
BATCH = TfjsBatch()  # every row below is checked in TF and in tfjs (cpu, wasm): test_tfjs_norm, last

def rms(shape, **kw) -> nn.RMSNorm:
    """nn.RMSNorm with a random weight (a fresh one is all ones and would hide a dropped weight)."""
    m = nn.RMSNorm(shape, **kw)
    if m.weight is not None:
        with torch.no_grad():
            m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=torch.Generator().manual_seed(3)))
    return m


CASES = [
    pytest.param(lambda: rms(8), (2, 5, 8), id="rmsnorm-last1-eps-default"),
    pytest.param(lambda: rms((5, 8), eps=1e-6), (2, 5, 8), id="rmsnorm-last2"),
    pytest.param(lambda: rms(8, elementwise_affine=False), (3, 8), id="rmsnorm-no-affine"),
    pytest.param(lambda: nn.BatchNorm1d(6), (4, 6), id="bn1d-NC"),
    pytest.param(lambda: nn.BatchNorm1d(6), (2, 6, 5), id="bn1d-NCL"),
    pytest.param(lambda: nn.BatchNorm2d(6), (2, 6, 5, 7), id="bn2d"),
    pytest.param(lambda: nn.BatchNorm2d(6, eps=1e-3), (2, 6, 5, 7), id="bn2d-eps1e-3"),
    pytest.param(lambda: nn.BatchNorm2d(6, affine=False), (2, 6, 5, 7), id="bn2d-no-affine"),
    pytest.param(lambda: nn.BatchNorm1d(6, affine=False), (4, 6), id="bn1d-NC-no-affine"),
    pytest.param(lambda: nn.BatchNorm2d(6, track_running_stats=False), (2, 6, 5, 7), id="bn2d-batch-stats"),
    pytest.param(lambda: nn.BatchNorm1d(6, track_running_stats=False), (4, 6), id="bn1d-NC-batch-stats"),
    pytest.param(lambda: nn.BatchNorm1d(6, track_running_stats=False, affine=False), (2, 6, 5),
                 id="bn1d-NCL-batch-stats-no-affine"),
    pytest.param(lambda: nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU()), (2, 3, 7, 9),
                 id="conv-bn2d-relu"),
    pytest.param(lambda: nn.Sequential(nn.Conv1d(3, 6, 3), nn.BatchNorm1d(6)), (2, 3, 9), id="conv1d-bn1d"),
    pytest.param(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.BatchNorm1d(4 * 5 * 7),
                                       nn.Linear(4 * 5 * 7, 3)), (2, 3, 7, 9), id="conv-flatten-bn1d-linear"),
    pytest.param(lambda: nn.LayerNorm(8), (2, 5, 8), id="ln-last1"),
    pytest.param(lambda: nn.LayerNorm(8), (3, 8), id="ln-last1-rank2"),
    pytest.param(lambda: nn.LayerNorm((5, 8)), (2, 5, 8), id="ln-last2"),
    pytest.param(lambda: nn.LayerNorm(8, elementwise_affine=False), (2, 5, 8), id="ln-no-affine"),
    pytest.param(lambda: nn.LayerNorm((5, 8), elementwise_affine=False), (2, 5, 8), id="ln-last2-no-affine"),
    pytest.param(lambda: nn.LayerNorm(8, bias=False), (2, 5, 8), id="ln-no-bias"),
    pytest.param(lambda: nn.LayerNorm(8, eps=1e-6), (2, 5, 8), id="ln-eps1e-6"),
    pytest.param(lambda: Fn(lambda s, x: s.ln(s.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2),
                            conv=nn.Conv2d(3, 6, 3), ln=nn.LayerNorm(6)), (2, 3, 7, 9), id="conv-permute-ln-channels"),
    pytest.param(lambda: Fn(lambda s, x: s.ln(s.conv(x)), conv=nn.Conv2d(3, 4, 3), ln=nn.LayerNorm([4, 5, 7])),
                 (2, 3, 7, 9), id="conv-ln-CHW"),
    pytest.param(lambda: Fn(lambda s, x: s.ln(s.conv(x)), conv=nn.Conv2d(3, 4, 3), ln=nn.LayerNorm(7)),
                 (2, 3, 7, 9), id="conv-ln-W"),
]


@BATCH.parametrize("factory, shape", CASES)
def test_norm(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


class FunctionalNorms(nn.Module):
    """F.layer_norm / F.rms_norm with raw parameters, and Llama's hand-written RMS norm."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.weight = nn.Parameter(1 + 0.5 * torch.randn(8))
        self.bias = nn.Parameter(0.5 * torch.randn(8))

    def forward(self, x):
        if self.kind == "layer_norm":
            return F.layer_norm(x, (8,), self.weight, self.bias, 1e-5)
        if self.kind == "layer_norm-plain":
            return F.layer_norm(x, (5, 8))
        if self.kind == "rms_norm":
            return F.rms_norm(x, (8,), self.weight, 1e-6)
        if self.kind == "rms_norm-plain":
            return F.rms_norm(x, (5, 8))
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)  # LlamaRMSNorm, written out
        return self.weight * (x * torch.rsqrt(variance + 1e-6)).to(x.dtype)


@BATCH.parametrize("kind", ["layer_norm", "layer_norm-plain", "rms_norm", "rms_norm-plain", "llama-rms"])
def test_functional_norm(kind):
    return assert_port_matches(seeded(lambda: FunctionalNorms(kind)), (randn(2, 5, 8),))


# ---------------------------------------------------------------- BatchNorm3d, InstanceNorm, GroupNorm, LRN


def stats(m: nn.Module, seed: int = 5) -> nn.Module:
    """Random affine parameters and running stats (fresh ones are 1/0 and would hide a dropped or swapped one)."""
    return random_norm_stats(m, seed)


def lazy(m: nn.Module, shape) -> nn.Module:
    """A Lazy* module after its first call, which infers num_features and turns it into its base class."""
    m(torch.zeros(shape))
    return stats(m)


MORE = [
    pytest.param(lambda: nn.BatchNorm3d(4), (2, 4, 3, 5, 6), id="bn3d"),
    pytest.param(lambda: nn.BatchNorm3d(4, affine=False, track_running_stats=False), (2, 4, 3, 5, 6),
                 id="bn3d-batch-stats-no-affine"),
    pytest.param(lambda: lazy(nn.LazyBatchNorm3d(), (2, 4, 3, 5, 6)), (2, 4, 3, 5, 6), id="lazy-bn3d"),
    pytest.param(lambda: lazy(nn.LazyBatchNorm1d(), (4, 6)), (4, 6), id="lazy-bn1d"),
    pytest.param(lambda: lazy(nn.LazyBatchNorm2d(), (2, 4, 5, 7)), (2, 4, 5, 7), id="lazy-bn2d"),
    pytest.param(lambda: nn.InstanceNorm1d(4), (2, 4, 9), id="in1d"),
    pytest.param(lambda: nn.InstanceNorm1d(4), (4, 9), id="in1d-unbatched"),
    pytest.param(lambda: stats(nn.InstanceNorm1d(4, affine=True)), (2, 4, 9), id="in1d-affine"),
    pytest.param(lambda: nn.InstanceNorm2d(4, eps=1e-3), (2, 4, 5, 7), id="in2d-eps1e-3"),
    pytest.param(lambda: stats(nn.InstanceNorm2d(4, affine=True)), (4, 5, 7), id="in2d-affine-unbatched"),
    pytest.param(lambda: stats(nn.InstanceNorm2d(4, track_running_stats=True)), (2, 4, 5, 7), id="in2d-running"),
    pytest.param(lambda: stats(nn.InstanceNorm2d(4, affine=True, track_running_stats=True)), (4, 5, 7),
                 id="in2d-affine-running-unbatched"),
    pytest.param(lambda: nn.InstanceNorm3d(3), (2, 3, 4, 5, 6), id="in3d"),
    pytest.param(lambda: stats(nn.InstanceNorm3d(3, affine=True)), (3, 4, 5, 6), id="in3d-affine-unbatched"),
    pytest.param(lambda: lazy(nn.LazyInstanceNorm1d(), (2, 4, 9)), (2, 4, 9), id="lazy-in1d"),
    pytest.param(lambda: lazy(nn.LazyInstanceNorm2d(affine=True), (2, 4, 5, 7)), (2, 4, 5, 7), id="lazy-in2d"),
    pytest.param(lambda: lazy(nn.LazyInstanceNorm3d(track_running_stats=True), (2, 3, 4, 5, 6)), (2, 3, 4, 5, 6),
                 id="lazy-in3d"),
    pytest.param(lambda: stats(nn.GroupNorm(2, 6)), (2, 6, 5, 7), id="gn2d"),
    pytest.param(lambda: stats(nn.GroupNorm(3, 6)), (2, 6), id="gn-NC"),
    pytest.param(lambda: stats(nn.GroupNorm(1, 6, eps=1e-3)), (2, 6, 9), id="gn1-NCL-eps1e-3"),
    pytest.param(lambda: nn.GroupNorm(6, 6, affine=False), (2, 6, 3, 4, 5), id="gn6-NCDHW-no-affine"),
    pytest.param(lambda: Fn(lambda s, x: F.group_norm(x, 3, s.gn.weight, s.gn.bias, 1e-3),
                            gn=stats(nn.GroupNorm(3, 6))), (2, 6, 5, 7), id="F.group_norm-affine"),
    pytest.param(lambda: Fn(lambda s, x: F.group_norm(x, 2)), (2, 4, 9), id="F.group_norm-plain-NCL"),
    pytest.param(lambda: Fn(lambda s, x: F.batch_norm(x, s.bn.running_mean, s.bn.running_var, s.bn.weight, s.bn.bias,
                                                     eps=1e-3), bn=nn.BatchNorm2d(6)), (2, 6, 5, 7),
                 id="F.batch_norm-running-affine"),
    pytest.param(lambda: Fn(lambda s, x: F.batch_norm(x, None, None, training=True)), (4, 6),
                 id="F.batch_norm-NC-batch"),
    pytest.param(lambda: Fn(lambda s, x: F.instance_norm(x, weight=s.n.weight, bias=s.n.bias),
                            n=stats(nn.InstanceNorm2d(6, affine=True))), (2, 6, 5, 7), id="F.instance_norm-affine"),
    pytest.param(lambda: Fn(lambda s, x: F.instance_norm(x, s.n.running_mean, s.n.running_var, use_input_stats=False),
                            n=stats(nn.InstanceNorm1d(6, track_running_stats=True))), (2, 6, 9),
                 id="F.instance_norm-running"),
    pytest.param(lambda: nn.LocalResponseNorm(3), (2, 6, 5, 7), id="lrn3"),
    pytest.param(lambda: nn.LocalResponseNorm(4, alpha=1e-2, beta=0.5, k=2.0), (2, 6, 9), id="lrn4-NCL-options"),
    pytest.param(lambda: nn.LocalResponseNorm(5, alpha=0.1), (2, 6, 3, 4, 5), id="lrn5-NCDHW"),
    pytest.param(lambda: nn.CrossMapLRN2d(5, alpha=0.5, beta=0.75, k=1.5), (2, 10, 3, 4), id="crossmap-lrn5"),
    pytest.param(lambda: nn.CrossMapLRN2d(2), (2, 3, 3, 4), id="crossmap-lrn2-defaults"),
    pytest.param(lambda: nn.SyncBatchNorm(4), (2, 4, 3, 5), id="syncbn-NCHW"),
    pytest.param(lambda: nn.SyncBatchNorm(4, affine=False, track_running_stats=False), (2, 4, 3, 5, 6),
                 id="syncbn-NCDHW-batch-stats"),
    pytest.param(lambda: nn.Sequential(nn.Conv2d(3, 6, 3), stats(nn.GroupNorm(3, 6)), nn.ReLU(),
                                       stats(nn.InstanceNorm2d(6, affine=True))), (2, 3, 7, 9), id="conv-gn-in"),
]


@BATCH.parametrize("factory, shape", MORE)
def test_norm_more(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


@pytest.mark.node
def test_tfjs_norm(node_or_skip):
    BATCH.assert_all_within()
