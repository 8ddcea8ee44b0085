"""Shared helpers for the per-family parity tests (tests/test_family_*.py).

``assert_port_matches`` converts a module, runs bridge's own parity check and
then asserts the number itself: the TF error must be within ``atol`` scaled by
the output's magnitude. float32 on these small, standard-normal inputs stays
below 2e-6 (measured over every row); 1e-5 leaves room for summation order,
not for a wrong formula, which shows up as 1e-2 or worse.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import bridge
from bridge.registry import default_registry

ATOL = 1e-5  # float32 target on unit-scale inputs; bridge's own bound is 1e-4


def seeded(factory, seed: int = 0) -> nn.Module:
    """Build ``factory()`` under a fixed seed, randomize norm statistics, and switch to eval mode.

    Fresh BatchNorm has mean 0 / var 1 / weight 1 / bias 0, which would hide a
    mapping that drops or swaps any of them.
    """
    torch.manual_seed(seed)
    module = factory()
    gen = torch.Generator().manual_seed(seed + 1)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            _randomize_batch_norm(m, gen)
        elif isinstance(m, nn.LayerNorm) and m.weight is not None:
            with torch.no_grad():
                m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=gen))
                if m.bias is not None:
                    m.bias.copy_(0.5 * torch.randn(m.bias.shape, generator=gen))
    return module.eval()


def _randomize_batch_norm(m, gen: torch.Generator) -> None:
    with torch.no_grad():
        if m.running_mean is not None:
            m.running_mean.copy_(0.5 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + 1.5 * torch.rand(m.num_features, generator=gen))
        if m.affine:
            m.weight.copy_(1 + 0.5 * torch.randn(m.num_features, generator=gen))
            m.bias.copy_(0.5 * torch.randn(m.num_features, generator=gen))


NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm)


def random_norm_stats(m: nn.Module, seed: int = 5, kinds: tuple = NORMS) -> nn.Module:
    """Random affine parameters and running stats for every ``kinds`` module in ``m`` (fresh ones are
    1/0 and would hide a dropped or swapped one)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for s in m.modules():
            if not isinstance(s, kinds):
                continue
            if getattr(s, "weight", None) is not None:
                s.weight.copy_(1 + 0.5 * torch.randn(s.weight.shape, generator=gen))
                s.bias.copy_(0.5 * torch.randn(s.bias.shape, generator=gen))
            if getattr(s, "running_mean", None) is not None:
                s.running_mean.copy_(0.5 * torch.randn(s.running_mean.shape, generator=gen))
                s.running_var.copy_(0.5 + 1.5 * torch.rand(s.running_var.shape, generator=gen))
    return m


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def output_scale(port) -> float:
    """max |torch output| over every input set parity uses."""
    scale = 0.0
    for inputs in port.parity_inputs():
        for _, value in port.torch_outputs(inputs):
            if value.dtype.kind == "f" and value.size:
                scale = max(scale, float(np.max(np.abs(value))))
    return scale


def assert_port_matches(module: nn.Module, inputs, atol: float = ATOL):
    """Convert ``module``, check parity, and assert TF's max abs error <= atol * max(1, max|torch|)."""
    # These tensors are tiny: torch's intra-op thread pool only contends with TF's for the
    # cores and makes each test ~10x slower, so torch runs single-threaded here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _check(module, inputs, atol)
    finally:
        torch.set_num_threads(threads)


def _check(module: nn.Module, inputs, atol: float):
    if default_registry().find_module(module) is not None:
        # fx always traces *into* the root's forward, so a bare mapped module (nn.Linear) reaches
        # F.linear instead of its mapping; a container keeps it one node, with per-module parity.
        module = nn.Sequential(module).eval()
    port = bridge.convert(module, inputs)
    report = port.parity()
    tf_result = report.runtime("tf")
    bound = atol * max(1.0, output_scale(port))
    error = tf_result.max_abs_error
    message = (f"tf max_abs_error={error:.3g} (bound {bound:.3g}), first divergence: {report.first_divergence}\n"
               + "\n".join(f"  {d.name}: {d.max_abs_error:.3g} ok={d.ok} {d.problem or ''}"
                           for d in [*tf_result.outputs, *report.per_module])
               + "\n--- generated source ---\n" + port.source)
    assert report.ok, message
    assert all(d.ok for d in report.per_module), message
    assert error <= bound, message
    return port


class Fn(nn.Module):
    """``fn(self, *inputs)`` as a module, with optional child modules (e.g. a conv before the op)."""

    def __init__(self, fn, **children: nn.Module):
        super().__init__()
        self.fn = fn
        for name, child in children.items():
            setattr(self, name, child)

    def forward(self, x):
        return self.fn(self, x)


class Fn2(Fn):
    """Two-input variant of ``Fn``."""

    def forward(self, x, y):
        return self.fn(self, x, y)
