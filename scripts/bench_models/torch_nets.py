"""The torch side of scripts/bench.py: model factories that `bridge convert` loads, and a `save` command
that writes their seeded weights as a checkpoint (run by bench.py in a subprocess, untimed).

    bridge convert scripts/bench_models/torch_nets.py:resnet18 --weights W.pt --input 1x3x224x224
    bridge convert scripts/bench_models/torch_nets.py:gpt2 --kwargs '{"n_embd": 192, ...}' \
        --weights W.safetensors --input 1x32:int64:50257 --input 1x32:int64:2

    python scripts/bench_models/torch_nets.py save resnet18 W.pt
    python scripts/bench_models/torch_nets.py save gpt2 W.safetensors --kwargs '{"n_embd": 192, ...}'

The ResNets are examples/vision.py's (torchvision's layout, BasicBlock 2-2-2-2 and Bottleneck 3-4-6-3);
the factories here build them *without* randomizing, because the weights come from the checkpoint.
The `save` command writes vision.py's randomized weights (seeded, BatchNorm statistics drawn at random).
The GPT-2 is transformers' GPT2Model from a config (seeded init, no download) called without a KV cache,
returning its last hidden state, as examples/hf_tiny.py's gpt2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

import vision


def resnet18() -> nn.Module:
    return vision.ResNet((2, 2, 2, 2), 1000, vision.BasicBlock).eval()


def resnet50() -> nn.Module:
    return vision.ResNet((3, 4, 6, 3), 1000, vision.Bottleneck).eval()


def gpt2(n_embd: int = 192, n_layer: int = 2, n_head: int = 6, vocab_size: int = 50257,
         n_positions: int = 1024) -> nn.Module:
    """scripts/large_models.py's GPT-2 (hf_tiny's NoCache wrapper around GPT2Model), seeded, in eval mode."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import large_models

    return large_models.gpt2(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab_size=vocab_size,
                             n_positions=n_positions, seed=0).eval()


def _seeded(name: str, kwargs: dict) -> nn.Module:
    if name in ("resnet18", "resnet50"):
        return getattr(vision, name)()  # seeded weights and random BatchNorm statistics
    if name == "gpt2":
        return gpt2(**kwargs)
    raise SystemExit(f"unknown model {name!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("save", help="write the seeded weights of NAME to PATH (.pt state_dict or .safetensors)")
    s.add_argument("name")
    s.add_argument("path", type=Path)
    s.add_argument("--kwargs", default="{}")
    args = ap.parse_args()
    model = _seeded(args.name, json.loads(args.kwargs))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    args.path.parent.mkdir(parents=True, exist_ok=True)
    if args.path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(args.path))
    else:
        torch.save(state, args.path)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"params": params, "checkpoint_bytes": args.path.stat().st_size, "keys": len(state)}))


if __name__ == "__main__":
    main()
