"""Benchmark: which graph form of the recurrent time loop runs in tfjs, and what each costs.

For each cell (LSTM, GRU) and graph form of bridge.layers.recurrent (a static
unroll; the layer's "loop", a tf.while_loop writing outputs into a TensorArray;
a tf.while_loop growing its outputs by concat), it saves a SavedModel of a
one-layer module (batch_first, input 32, hidden 64 by default), converts it with
the tfjs converter (own process, oneDNN off, as bridge.export.tfjs does) and
runs it in Node on the tfjs wasm and cpu backends at each sequence length and
batch. The "_lowered" variants build the same loops without the layer's
``_functional_while`` marking, i.e. what any tf.while_loop gives by default.
One markdown row per (cell, form, length, batch):

  converts / cpu / wasm     True/ok, or the first line of the error
  json_kB, nodes            model.json size and graph nodes (top level + loop body functions)
  convert_s                 wall time of the conversion (includes ~5-8 s of starting a Python
                            with TF and tensorflowjs)
  wasm_ms, cpu_ms           median latency of warm runs (3 warm-up rounds, then up to --reps rounds,
                            each running every case of the model once, until --budget-ms per case
                            is spent, at least 3; output read back included)
  err                       max abs error vs torch over output, h_n (and c_n), both backends

Loop forms keep the sequence length dynamic, so one model serves every length;
the unrolled form needs one model per length.

Usage: .venv/bin/python scripts/rnn_graph_form.py [--lengths 16 128 512] [--batches 1 4]
       [--forms unroll loop ...] [--cells LSTM GRU] [--reps 20] [--json rows.json]
       .venv/bin/python scripts/rnn_graph_form.py --browser [--lengths ...]   (webgl check)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import contextlib
from unittest import mock
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge import transforms as T  # noqa: E402
from bridge.export.tfjs import node_status  # noqa: E402
from bridge.layers import recurrent as R  # noqa: E402

INPUT_SIZE = 32
ERR_CHARS = int(os.environ.get("BENCH_ERR_CHARS", 80))  # how much of an error message a table cell shows
JS_DIR = Path(os.environ.get("BRIDGE_JS_DIR") or Path(__file__).resolve().parents[1] / "bridge/export/js")
# Variants measured: (graph form of the layer, lowered). "lowered" turns off the layer's
# _functional_while marking, so the converter's default freezing lowers the While to v1
# Enter/Merge/Switch/Exit control flow, as it does for any tf.while_loop.
VARIANTS = {"unroll": ("unroll", False), "loop": ("loop", False), "while_concat": ("while_concat", False),
            "loop_lowered": ("loop", True), "while_concat_lowered": ("while_concat", True)}
BENCH_JS = r"""
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const req = JSON.parse(await readFile(process.argv[2], 'utf8'));
const require = createRequire(join(req.js_dir, 'package.json'));
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
wasm.setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');
const exact = (b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);

function handler(dir) {
  return { load: async () => {
    const mj = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
    delete mj.signature;
    return tf.io.getModelArtifactsForJSON(mj, async (manifest) => {
      const specs = [], bufs = [];
      for (const g of manifest) {
        for (const p of g.paths) bufs.push(exact(await readFile(join(dir, p))));
        specs.push(...g.weights);
      }
      return [specs, bufs];
    });
  } };
}

let useAsync = false;  // decided on the first call: graphs with control flow refuse execute()
async function run(model, feeds, outs) {
  if (useAsync) return await model.executeAsync(feeds, outs);
  try { return model.execute(feeds, outs); } catch (e) {
    if (!String(e && e.message).includes('executeAsync')) throw e;
    useAsync = true;
    return await model.executeAsync(feeds, outs);
  }
}

async function runOnce(model, feeds) {
  const t0 = performance.now();
  let out = await run(model, feeds, req.outputs);
  if (!Array.isArray(out)) out = [out];
  await Promise.all(out.map((t) => t.data()));
  return [performance.now() - t0, out];
}

// Rounds over all cases (one run of each per round), so load from elsewhere on the
// machine spreads over every case instead of landing on one.
async function timeCases(model, backend) {
  const feeds = {}, times = {}, errors = {}, last = {};
  for (const c of req.cases) {
    feeds[c.id] = {};
    for (const i of c.inputs) {
      const data = new Float32Array(exact(await readFile(join(req.work_dir, i.file))));
      feeds[c.id][i.node] = tf.tensor(data, i.shape);
    }
    times[c.id] = [];
  }
  const live = () => req.cases.filter((c) => !(c.id in errors));
  const start = performance.now();
  for (let r = 0; r < req.warmups + req.reps; r++) {
    for (const c of live()) {
      try {
        const [ms, out] = await runOnce(model, feeds[c.id]);
        if (r >= req.warmups) times[c.id].push(ms);
        if (last[c.id]) tf.dispose(last[c.id]);
        last[c.id] = out;
      } catch (e) { errors[c.id] = String((e && e.message) || e); }
    }
    if (r >= req.warmups + 2 && performance.now() - start > req.budget_ms * req.cases.length) break;
  }
  const result = {};
  for (const c of req.cases) {
    if (c.id in errors) { result[c.id] = { ok: false, error: errors[c.id] }; continue; }
    const files = [];
    for (const [k, t] of last[c.id].entries()) {
      const file = `out_${backend}_${c.id}_${k}.bin`;
      const d = await t.data();
      await writeFile(join(req.work_dir, file), new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      files.push({ file, shape: t.shape });
    }
    tf.dispose(last[c.id]);
    const ts = times[c.id].sort((x, y) => x - y);
    result[c.id] = { ok: true, median_ms: ts[Math.floor((ts.length - 1) / 2)], runs: ts.length, outputs: files };
  }
  for (const f of Object.values(feeds)) tf.dispose(Object.values(f));
  return result;
}

const result = {};
for (const backend of req.backends) {
  result[backend] = {};
  try {
    if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} failed to initialise`);
    await tf.ready();
  } catch (e) { for (const c of req.cases) result[backend][c.id] = { ok: false, error: String(e) }; continue; }
  const model = await tf.loadGraphModel(handler(req.model_dir));
  result[backend] = await timeCases(model, backend);
  if (backend === 'wasm') result.wasm_flags = { simd: tf.env().getBool('WASM_HAS_SIMD_SUPPORT'),
                                                threads: tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT') };
  model.dispose();
}
await writeFile(join(req.work_dir, 'result.json'), JSON.stringify(result));
"""


# ---------------------------------------------------------------- models


def torch_module(cell: str, hidden: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[cell]
    return cls(INPUT_SIZE, hidden, batch_first=True).eval()


def tf_layer(cell: str, module: torch.nn.Module, form: str) -> R.Layer:
    cls = {"LSTM": R.LSTM, "GRU": R.GRU}[cell]
    layer = cls(path="rnn", input_size=INPUT_SIZE, hidden_size=module.hidden_size, batch_first=True)
    layer.graph_form = form
    sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    bias = T.GRU_BIAS if cell == "GRU" else T.RNN_BIAS_SUM
    layer.kernel_ih_l0.assign(T.RNN_KERNEL(sd["weight_ih_l0"]))
    layer.kernel_hh_l0.assign(T.RNN_KERNEL(sd["weight_hh_l0"]))
    layer.bias_l0.assign(bias(sd["bias_ih_l0"], sd["bias_hh_l0"]))
    return layer


class Served(tf.Module):
    """The layer behind one signature: x (N, T, in) -> one flat output [y, h_n(, c_n)].

    One output keeps the benchmark independent of the converter's output naming.
    """

    def __init__(self, layer, length: int | None):
        super().__init__()
        self.layer = layer
        spec = tf.TensorSpec([None, length, INPUT_SIZE], tf.float32, name="x")
        self.serve = tf.function(self._serve, input_signature=[spec], autograph=False)

    def _serve(self, x):
        return {"out": tf.concat([tf.reshape(t, [-1]) for t in tf.nest.flatten(self.layer(x))], 0)}


def torch_output(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        outs = torch.utils._pytree.tree_leaves(module(torch.from_numpy(x)))
    return np.concatenate([t.numpy().reshape(-1) for t in outs])


# ---------------------------------------------------------------- export and run


_CONVERT = (
    "import sys\n"
    "from tensorflowjs.converters import tf_saved_model_conversion_v2 as conv\n"
    "conv.convert_tf_saved_model(sys.argv[1], sys.argv[2], signature_def='serving_default',\n"
    "                            control_flow_v2=sys.argv[3] == '1')\n"
)


def convert(saved: Path, out: Path, control_flow_v2: bool) -> None:
    """The tfjs converter as bridge.export.tfjs runs it (own process, oneDNN off), control flow v2 optional."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", _CONVERT, str(saved), str(out), "1" if control_flow_v2 else "0"],
                          env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if "Error" in line]
        raise RuntimeError(errors[-1] if errors else proc.stderr[-500:])


def export(layer, length: int | None, root: Path, lowered: bool, control_flow_v2: bool = False) -> dict:
    """SavedModel + tfjs conversion; returns size, node count, conversion time, or the error."""
    served = Served(layer, length)
    saved = root / "saved_model"
    marking = mock.patch.object(R, "_functional_while", contextlib.nullcontext) if lowered else contextlib.nullcontext()
    with marking:
        tf.saved_model.save(served, str(saved), signatures=served.serve.get_concrete_function())
    start = time.perf_counter()
    try:
        convert(saved, root / "tfjs", control_flow_v2)
    except Exception as e:  # noqa: BLE001 - a failed conversion is a result here
        return {"ok": False, "error": str(e).splitlines()[0], "convert_s": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    model_json = json.loads((root / "tfjs" / "model.json").read_text())
    topology = model_json["modelTopology"]
    nodes = len(topology.get("node", []))
    nodes += sum(len(f.get("nodeDef", [])) for f in topology.get("library", {}).get("function", []))
    (inp,), (out,) = model_json["signature"]["inputs"].values(), model_json["signature"]["outputs"].values()
    return {"ok": True, "convert_s": seconds, "nodes": nodes, "dir": root / "tfjs",
            "json_bytes": (root / "tfjs" / "model.json").stat().st_size,
            "input": inp["name"].split(":")[0], "output": out["name"].split(":")[0]}


def run_node(model: dict, inputs: dict[str, np.ndarray], backends, reps: int, budget_ms: float, work: Path) -> dict:
    """{backend: {case_id: {"ok", "median_ms", "runs", "out": array} or {"ok": False, "error"}}}."""
    cases = []
    for case_id, x in inputs.items():
        x.astype("<f4").tofile(work / f"in_{case_id}.bin")
        cases.append({"id": case_id, "inputs": [{"node": model["input"], "file": f"in_{case_id}.bin",
                                                 "shape": list(x.shape)}]})
    request = {"js_dir": str(JS_DIR), "model_dir": str(model["dir"]), "work_dir": str(work),
               "backends": list(backends), "reps": reps, "warmups": 3, "budget_ms": budget_ms, "cases": cases,
               "outputs": [model["output"]]}
    (work / "bench.mjs").write_text(BENCH_JS)
    (work / "request.json").write_text(json.dumps(request))
    proc = subprocess.run(["node", str(work / "bench.mjs"), str(work / "request.json")],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench runner failed: {proc.stderr[-2000:]}")
    result = json.loads((work / "result.json").read_text())
    print(f"# wasm flags: {result.pop('wasm_flags', None)}", file=sys.stderr)
    for per_case in result.values():
        for r in per_case.values():
            if r["ok"]:
                r["out"] = np.fromfile(work / r["outputs"][0]["file"], "<f4")
    return result


# ---------------------------------------------------------------- the table


def measure(cell: str, variant: str, args, root: Path) -> list[dict]:
    form, lowered = VARIANTS[variant]
    module = torch_module(cell, args.hidden, seed=0)
    layer = tf_layer(cell, module, form)
    rng = np.random.default_rng(0)
    lengths = [[t] for t in args.lengths] if form == "unroll" else [args.lengths]
    rows = []
    for group in lengths:
        model_root = root / f"{cell}_{variant}_{group[0] if form == 'unroll' else 'dyn'}"
        model_root.mkdir()
        exported = export(layer, group[0] if form == "unroll" else None, model_root, lowered)
        inputs = {f"t{t}_b{b}": rng.standard_normal((b, t, INPUT_SIZE)).astype(np.float32)
                  for t in group for b in args.batches}
        results = {}
        if exported["ok"]:
            work = model_root / "work"
            work.mkdir()
            results = run_node(exported, inputs, ("wasm", "cpu"), args.reps, args.budget_ms, work)
        for case_id, x in inputs.items():
            rows.append(_row(cell, variant, x, exported, results, torch_output(module, x)))
            print(_format(rows[-1]), flush=True)
    return rows


def _row(cell, form, x, exported, results, ref) -> dict:
    case_id = f"t{x.shape[1]}_b{x.shape[0]}"
    row = {"cell": cell, "form": form, "T": x.shape[1], "B": x.shape[0], "converts": exported["ok"] or
           exported["error"], "convert_s": exported["convert_s"], "nodes": exported.get("nodes"),
           "json_bytes": exported.get("json_bytes"), "max|torch|": float(np.abs(ref).max())}
    errs = []
    for backend in ("cpu", "wasm"):
        r = results.get(backend, {}).get(case_id)
        row[backend] = "n/a" if r is None else ("ok" if r["ok"] else r["error"].splitlines()[0][:ERR_CHARS])
        if r and r["ok"]:
            row[f"{backend}_ms"] = r["median_ms"]
            errs.append(float(np.abs(r["out"] - ref).max()) if r["out"].shape == ref.shape else float("inf"))
    row["err"] = max(errs) if errs else None
    return row


COLUMNS = ("cell", "form", "T", "B", "converts", "cpu", "wasm", "json_kB", "nodes", "convert_s",
           "wasm_ms", "cpu_ms", "err")


def _format(row: dict) -> str:
    def cell(k):
        v = row.get(k) if k != "json_kB" else (row["json_bytes"] / 1024 if row.get("json_bytes") else None)
        if v is None:
            return "-"
        if k == "err":
            return f"{v:.1e}"
        if isinstance(v, float):
            return f"{v:.1f}" if k != "wasm_ms" and k != "cpu_ms" else f"{v:.2f}"
        return str(v)

    return "| " + " | ".join(cell(k) for k in COLUMNS) + " |"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["LSTM", "GRU"], choices=["LSTM", "GRU"])
    p.add_argument("--forms", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--lengths", nargs="+", type=int, default=[16, 128, 512])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--reps", type=int, default=20, help="timed warm runs per case (at most)")
    p.add_argument("--budget-ms", type=float, default=8000, help="stop timing a case after this (min 3 runs)")
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--browser", action="store_true",
                   help="instead: run the layer's default form through bridge's export in headless Chromium "
                        "(webgl, wasm, cpu) and print the max error vs torch per backend")
    return p


def browser_check(args) -> None:
    """The layer's default form, exported by bridge.export.tfjs, run by bridge.export.browser."""
    from bridge.export.browser import run_browser
    from bridge.export.tfjs import convert_to_tfjs

    rng = np.random.default_rng(0)
    print("| cell | T | B | backend | err | max abs torch |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="rnn-browser-") as tmp:
        for cell in args.cells:
            module = torch_module(cell, args.hidden, seed=0)
            served = Served(tf_layer(cell, module, "loop"), None)
            root = Path(tmp) / cell
            tf.saved_model.save(served, str(root / "sm"), signatures=served.serve.get_concrete_function())
            convert_to_tfjs(root / "sm", root / "tfjs", metadata={"bench": "rnn_graph_form"})
            for t, b in ((t, b) for t in args.lengths for b in args.batches):
                x = rng.standard_normal((b, t, INPUT_SIZE)).astype(np.float32)
                ref = torch_output(module, x)
                for backend, outs in run_browser(root / "tfjs", {"x": x}).items():
                    err = float(np.abs(outs["out"] - ref).max())
                    print(f"| {cell} | {t} | {b} | {backend} | {err:.1e} | {np.abs(ref).max():.2f} |", flush=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    reason = node_status()
    if reason:
        print(f"cannot run tfjs in Node: {reason}", file=sys.stderr)
        return 2
    if args.browser:
        browser_check(args)
        return 0
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rnn-graph-form-") as tmp:
        for cell in args.cells:
            for form in args.forms:
                rows += measure(cell, form, args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
