#!/usr/bin/env python3
"""Benchmark: convert every models/ entry and print the figures the issues ask for.

    .venv/bin/python scripts/measure_models.py [--out DIR]

Per model: conversion wall time (the whole `bridge convert`, tfjs and browser
checks included), max abs error vs torch per runtime over all parity inputs,
the same on the model's real inputs alone when it ships some, and the number of
Transpose ops in the tfjs graph. Prints a table; nothing is asserted here
(tests/test_models_e2e.py asserts the bounds).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def convert(model: Path, out: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bridge.cli", "convert", str(model), "--out", str(out), "--force"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{model.name}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return wall, json.loads((out / "report.json").read_text())


def real_input_errors(model: Path, out: Path) -> dict[str, float]:
    """Max abs error per runtime on the manifest's real parity inputs only (tf and tfjs)."""
    manifest = json.loads((model / "bridge.json").read_text())
    if not manifest.get("parity_inputs"):
        return {}
    import numpy as np
    import tensorflow as tf
    import torch

    from bridge.export.tfjs import run_tfjs
    from bridge.target import from_manifest, instantiate

    target = from_manifest(model)
    module = instantiate(target).eval()
    module.load_state_dict(torch.load(target.weights, weights_only=True))
    x = np.load(model / manifest["parity_inputs"])["x"].astype(np.float32)
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    sig = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    got_tf = next(iter(sig(x=tf.constant(x)).values())).numpy()
    errors = {"tf": float(np.abs(got_tf - ref).max())}
    for backend, outs in run_tfjs(out / "tfjs", {"x": x}).items():
        errors[f"tfjs-{backend}"] = float(np.abs(next(iter(outs.values())) - ref).max())
    errors["max|torch|"] = float(np.abs(ref).max())
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to keep the exports (default: a temp folder)")
    args = parser.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="bridge-measure-"))
    models = sorted(p for p in (ROOT / "models").iterdir() if (p / "bridge.json").is_file())
    print(f"{'model':<18} {'wall s':>7} {'transposes':>10}  max abs error vs torch per runtime (all parity inputs)")
    for model in models:
        wall, report = convert(model, base / model.name)
        errs = {r["runtime"]: ("skipped" if r["skipped"] else f"{r['max_abs_error']:.2e}")
                for r in report["parity"]["runtimes"]}
        scale = max(o["bound"] / 1e-4 for r in report["parity"]["runtimes"] for o in r["outputs"]) if errs else 1
        tr = report["tfjs"]["transpose_count"] if report.get("tfjs") else "-"
        print(f"{model.name:<18} {wall:7.1f} {tr!s:>10}  " + "  ".join(f"{k} {v}" for k, v in errs.items())
              + f"  (output scale max(1,|torch|) up to {scale:.3g})")
        real = real_input_errors(model, base / model.name)
        if real:
            scale = real.pop("max|torch|")
            print(f"{'':<18} {'':>7} {'':>10}  real inputs only (max|torch| {scale:.3g}): "
                  + "  ".join(f"{k} {v:.2e}" for k, v in real.items()))
    print(f"exports kept in {base}")


if __name__ == "__main__":
    main()
