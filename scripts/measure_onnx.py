"""ONNX route vs tfjs, per export folder written by `bridge convert --onnx` (tfjs on).

Prints, per export: the max abs / rel error vs torch of every runtime (from report.json),
model.onnx bytes vs the tfjs download (weights and model.json), and the latency of one
run on the example's shape (random values), median of WARM runs after the first, one
thread, outputs read back: onnxruntime (Python), onnxruntime-web wasm (Node), tfjs cpu
and wasm (Node). Every runtime runs the same shape in the same conditions here.

    .venv/bin/python scripts/measure_onnx.py EXPORT_DIR [EXPORT_DIR ...]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bridge.export import onnx as onnx_route
from bridge.export import tfjs

WARM = 20


def _inputs(report: dict, key: str, rng) -> dict:
    out = {}
    for i in report["inputs"]:
        shape = i[key]
        if i["dtype"].startswith("float"):
            out[i["name"]] = rng.standard_normal(shape).astype(np.float32)
        else:
            out[i["name"]] = np.zeros(shape, dtype=np.int64)
    return out


def _median_warm(ms: list[float]) -> float:
    return statistics.median(ms[1:])


def measure(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    rng = np.random.default_rng(0)
    onnx_feeds = _inputs(report, "shape", rng)  # torch layout
    for i in report["onnx"]["inputs"]:
        onnx_feeds[i["name"]] = onnx_feeds[i["name"]].astype(i["dtype"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    ms = []
    for _ in range(WARM + 1):
        t = time.perf_counter()
        session.run(None, onnx_feeds)
        ms.append((time.perf_counter() - t) * 1e3)
    latency = {"onnxruntime": _median_warm(ms)}
    [web], _ = onnx_route.run_ort_web(folder / "model.onnx", [onnx_feeds], report["outputs"], repeat_first=WARM + 1)
    latency["onnxruntime-web-wasm"] = _median_warm(web.ms)
    tf_feeds = {k: (v.astype(np.int32) if v.dtype.kind in "iu" else v)
                for k, v in _inputs(report, "boundary_shape", rng).items()}
    [res] = tfjs.run_many_tfjs([(folder / "tfjs", tf_feeds)], ("cpu", "wasm"), repeat=WARM + 1)
    for backend, got in res.items():
        latency[f"tfjs-{backend}"] = _median_warm(got.ms)
    tfjs_json = (folder / "tfjs" / "model.json").stat().st_size
    return {
        "model": folder.name,
        "errors": {r["runtime"]: (r["max_abs_error"], r["max_rel_error"], r["ok"])
                   for r in report["parity"]["runtimes"] if r["skipped"] is None},
        "n_inputs": report["parity"]["n_inputs"],
        "onnx_bytes": report["onnx"]["bytes"],
        "tfjs_weights_bytes": report["tfjs"]["weights_bytes"],
        "tfjs_model_json_bytes": tfjs_json,
        "latency_warm_ms": latency,
        "onnx_ops": report["onnx"]["op_counts"],
    }


def main(argv: list[str]) -> None:
    rows = [measure(Path(a)) for a in argv]
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
