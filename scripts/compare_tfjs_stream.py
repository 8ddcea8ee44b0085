"""The streamed tfjs writer (bridge/export/tfjs_stream.py) against the tensorflowjs converter, on exports.

    python scripts/compare_tfjs_stream.py EXPORT [EXPORT ...]   # folders written by `bridge convert`

For each export (its saved_model/ and parity_samples/): converts the SavedModel both ways, each in its own
Python (so each peak RSS, from /usr/bin/time, is that writer's alone), then prints the op counts that
differ, the Transposes, nodes, weights and their bytes, the wall time and peak RSS of each, and runs both
models in Node (cpu, wasm) on the stored parity inputs: the largest difference between the two tfjs
models and each one's error against torch's stored outputs. A benchmark: prints figures, asserts nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _convert(saved: Path, out: Path, stream: bool) -> dict:
    code = ("import json, sys; from pathlib import Path; from bridge.export import tfjs; "
            "r = tfjs.convert_to_tfjs(Path(sys.argv[1]), Path(sys.argv[2]), metadata={}, stream=sys.argv[3] == '1'); "
            "print('RESULT ' + json.dumps(r))")
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", sys.executable, "-c", code, str(saved), str(out),
                           "1" if stream else "0"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    lines = (proc.stdout + proc.stderr).splitlines()
    result = next((json.loads(s[7:]) for s in lines if s.startswith("RESULT ")), None)
    if result is None:
        raise SystemExit(f"conversion failed ({'stream' if stream else 'converter'}):\n" + "\n".join(lines[-30:]))
    rss = next(int(s.split()[1]) for s in lines if s.startswith("MAXRSS "))
    return {**result, "wall_s": wall, "peak_rss_mb": rss / 1024}


def _samples(export: Path) -> list[tuple[dict, dict]]:
    from bridge.export import samples

    info = samples.read_samples(export / samples.FOLDER)
    sets = []
    for s in info["sets"]:
        def load(entry):
            dtype = {"float32": np.float32, "int32": np.int32, "bool": np.uint8}[entry["dtype"]]
            a = np.fromfile(export / samples.FOLDER / entry["file"], dtype=dtype).reshape(entry["shape"])
            return a.astype(bool) if entry["dtype"] == "bool" else a

        sets.append(({e["name"]: load(e) for e in s["inputs"]}, {e["name"]: load(e) for e in s["outputs"]}))
    return sets


def compare(export: Path, work: Path) -> dict:
    from bridge.export import tfjs

    saved = export / "saved_model"
    conv, stream = work / "converter", work / "streamed"
    a = _convert(saved, conv, stream=False)
    b = _convert(saved, stream, stream=True)
    ops = sorted(set(a["op_counts"]) | set(b["op_counts"]))
    differ = {op: (a["op_counts"].get(op, 0), b["op_counts"].get(op, 0)) for op in ops
              if a["op_counts"].get(op, 0) != b["op_counts"].get(op, 0)}
    runs = {"tfjs-vs-tfjs": 0.0, "converter-vs-torch": 0.0, "streamed-vs-torch": 0.0}
    for feeds, ref in _samples(export):
        got = tfjs.run_many_tfjs([(conv, feeds), (stream, feeds)], ("cpu", "wasm"))
        for backend in ("cpu", "wasm"):
            x, y = got[0][backend], got[1][backend]
            for name, r in ref.items():
                scale = max(1.0, float(np.max(np.abs(r))))
                runs["tfjs-vs-tfjs"] = max(runs["tfjs-vs-tfjs"], float(np.max(np.abs(x[name] - y[name]))))
                runs["converter-vs-torch"] = max(runs["converter-vs-torch"],
                                                 float(np.max(np.abs(x[name] - r))) / scale)
                runs["streamed-vs-torch"] = max(runs["streamed-vs-torch"], float(np.max(np.abs(y[name] - r))) / scale)
    model_a = json.loads((conv / "model.json").read_text())
    model_b = json.loads((stream / "model.json").read_text())
    n_weights = [sum(len(g["weights"]) for g in m["weightsManifest"]) for m in (model_a, model_b)]
    return {"export": export.name, "differ": differ,
            "nodes": (sum(a["op_counts"].values()), sum(b["op_counts"].values())),
            "transposes": (a["transpose_count"], b["transpose_count"]), "weights": tuple(n_weights),
            "weight_bytes": (a["weights_bytes"], b["weights_bytes"]),
            "wall_s": (round(a["wall_s"], 1), round(b["wall_s"], 1)),
            "peak_rss_mb": (round(a["peak_rss_mb"]), round(b["peak_rss_mb"])), **runs}


def main(argv: list[str]) -> int:
    rows = []
    for export in map(Path, argv):
        with tempfile.TemporaryDirectory(prefix="bridge-cmp-") as tmp:
            r = compare(export, Path(tmp))
        rows.append(r)
        print(json.dumps(r))
    print("\n| export | nodes conv / stream | Transposes | weights | weight bytes | wall s | peak RSS MB | "
          "ops that differ (conv, stream) | max abs tfjs conv vs stream | max rel vs torch conv / stream |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        differ = ", ".join(f"{k} {a}/{b}" for k, (a, b) in r["differ"].items()) or "none"
        print(f"| {r['export']} | {r['nodes'][0]} / {r['nodes'][1]} | {r['transposes'][0]} / {r['transposes'][1]} | "
              f"{r['weights'][0]} / {r['weights'][1]} | {r['weight_bytes'][0]:,} / {r['weight_bytes'][1]:,} | "
              f"{r['wall_s'][0]} / {r['wall_s'][1]} | {r['peak_rss_mb'][0]} / {r['peak_rss_mb'][1]} | {differ} | "
              f"{r['tfjs-vs-tfjs']:.3g} | {r['converter-vs-torch']:.3g} / {r['streamed-vs-torch']:.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
