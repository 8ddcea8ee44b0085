#!/usr/bin/env python3
"""Benchmark (not a test): the reference vision/audio models of examples/vision.py, converted from the CLI.

    .venv/bin/python scripts/bench_reference.py [NAME ...] [--size N] [--channels-last-io] [--runs N] [--json FILE]

``--size N`` converts image models at NxN (and the audio model at 125*N samples) instead of the
published sizes: tfjs-cpu (pure JS) takes minutes on a 224x224 ResNet-50 batch.

Per model, each conversion in a fresh process (`bridge convert examples/vision.py:NAME`, tfjs verified on
cpu and wasm in Node, browser and per-module tfjs off): wall seconds, peak RSS of the conversion, tfjs
weight bytes, the Transpose count of the tfjs graph, max error vs torch per runtime (relative to
max(1, max|torch|)), and latency on the example input: TF (the SavedModel in Python) next to
tfjs-wasm in Node, median of N warm runs, plus tfjs-wasm's first run. Nothing is asserted here;
tests/test_reference_models.py asserts the errors and Transpose counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import vision  # noqa: E402

_CHILD = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
          "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)")


def input_shape(name: str, size: int | None) -> tuple:
    shape = vision.REFERENCE[name]
    if size is None or name == "vit":  # ViT's learned positions fix its image size
        return shape
    return (*shape[:2], 125 * size) if len(shape) == 3 else (*shape[:2], size, size)


def convert(name: str, out: Path, channels_last_io: bool, shape: tuple) -> dict:
    shape = "x".join(map(str, shape))
    argv = [sys.executable, "-m", "bridge.cli", "convert", f"{ROOT}/examples/vision.py:{name}", "--input", shape,
            "--out", str(out), "--force", "--browser", "", "--no-per-module-tfjs"]
    if channels_last_io:
        argv.append("--channels-last-io")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - started
    rc, rss_kb = map(int, proc.stderr.strip().splitlines()[-1].split())
    if rc != 0:
        raise SystemExit(f"{name}: bridge convert exited {rc}\n{proc.stdout[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    return {"wall_s": wall, "peak_rss_mb": rss_kb / 1024, "report": report}


def latencies(out: Path, report: dict, runs: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from bridge.export.tfjs import run_many_tfjs

    shape = report["inputs"][0]["boundary_shape"]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    fn = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    feed = {report["inputs"][0]["name"]: tf.constant(x)}
    fn(**feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn(**feed)
        times.append((time.perf_counter() - t) * 1e3)
    result = run_many_tfjs([(out / "tfjs", {report["inputs"][0]["name"]: x})], ("wasm",), repeat=runs + 1)[0]["wasm"]
    return {"tf_ms": float(np.median(times)), "wasm_first_ms": result.ms[0],
            "wasm_ms": float(np.median(result.ms[1:]))}


def weight_bytes(tfjs_dir: Path) -> int:
    return sum(p.stat().st_size for p in tfjs_dir.glob("*.bin"))


def errors(report: dict) -> dict:
    out = {}
    for r in report["parity"]["runtimes"]:
        if r.get("skipped"):
            continue
        out[r["runtime"]] = max(o["max_abs_error"] / (o["bound"] / 1e-4) for o in r["outputs"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=list(vision.REFERENCE))
    ap.add_argument("--channels-last-io", action="store_true")
    ap.add_argument("--size", type=int, help="image side (default: each model's published size)")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        for name in args.names:
            out = Path(tmp) / name
            shape = input_shape(name, args.size)
            c = convert(name, out, args.channels_last_io, shape)
            rep = c["report"]
            row = {"model": name, "input": list(shape), "wall_s": round(c["wall_s"], 1),
                   "peak_rss_mb": round(c["peak_rss_mb"]), "tfjs_weight_bytes": weight_bytes(out / "tfjs"),
                   "transposes": rep["tfjs"]["transpose_count"], "rel_errors": errors(rep),
                   "timings": {k: round(v, 2) for k, v in rep["timings"].items()},
                   **{k: round(v, 1) for k, v in latencies(out, rep, args.runs).items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'model':20} {'input':>14} {'wall s':>7} {'RSS MB':>7} {'tfjs MB':>8} {'Transp':>6} {'max rel err':>11} "
          f"{'TF ms':>7} {'wasm ms':>8} {'wasm 1st':>8}")
    for r in rows:
        print(f"{r['model']:20} {'x'.join(map(str, r['input'])):>14} {r['wall_s']:7.1f} {r['peak_rss_mb']:7d} {r['tfjs_weight_bytes'] / 1e6:8.1f} "
              f"{r['transposes']:6d} {max(r['rel_errors'].values()):11.2e} {r['tf_ms']:7.1f} {r['wasm_ms']:8.1f} "
              f"{r['wasm_first_ms']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
