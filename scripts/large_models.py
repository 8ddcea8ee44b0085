"""Large models built from a config with seeded random weights, for the memory benchmarks.

    bridge convert scripts/large_models.py:gpt2 --kwargs '{"n_layer": 24, "n_embd": 1024, "n_head": 16}' \
        --input 1x16:int64:50257 --input 1x16:int64:2
    bridge convert scripts/large_models.py:linear_stack --kwargs '{"width": 2048, "depth": 10}' --input 1x2048

``gpt2`` with n_layer 24, n_embd 1024, n_head 16 and vocab 50257 is GPT-2-medium's shape (354.8M parameters,
1.42 GB of float32 weights). Nothing is downloaded; transformers must be installed (a test dependency).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn


def _hf_tiny():
    """examples/hf_tiny.py (its NoCache wrapper), loaded by path: examples/ is not a package."""
    spec = importlib.util.spec_from_file_location("bridge_examples_hf_tiny",
                                                  Path(__file__).resolve().parents[1] / "examples" / "hf_tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gpt2(n_layer: int = 24, n_embd: int = 1024, n_head: int = 16, vocab_size: int = 50257,
         n_positions: int = 1024, seed: int = 0) -> nn.Module:
    import transformers

    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=vocab_size, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                                     n_positions=n_positions, bos_token_id=0, eos_token_id=0)
    return _hf_tiny().NoCache(transformers.GPT2Model(config))


def linear_stack(width: int = 2048, depth: int = 10, seed: int = 0) -> nn.Module:
    """depth x (Linear(width, width) + ReLU): width 2048 and depth 10 is 42M parameters."""
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.state_dict().values())
