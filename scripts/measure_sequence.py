#!/usr/bin/env python3
"""Benchmark: convert the sequence models and print the figures the sequence-models issue asks for.

    .venv/bin/python scripts/measure_sequence.py [--out DIR] [--browser-all] [--runs N]

Models: models/digits_lstm (trained LSTM, through the CLI), the tagger and the two encoders of
tests/test_sequence_models.py (through ``bridge.convert`` + ``port.save``), and the three tiny HF
models of examples/hf_tiny.py (through the CLI with ``--input 2x16:int64:100 --input 2x16:int64:2``).

Per model: max abs / max rel error vs torch per runtime (tf, savedmodel, tfjs-cpu, tfjs-wasm,
browser-webgl where run), the number of parity input sets and the sequence lengths they covered,
the tfjs graph size (model.json bytes, node count, weight bytes), the Transpose count in the tfjs
graph, the conversion wall time (everything: parity, SavedModel, tfjs, Node and browser checks),
and the tfjs-wasm latency in Node (median of warm runs, batch 1, example sequence length). For
digits_lstm also the wasm latency at sequence lengths 16, 128 and 512. The browser check runs for
the first two models only unless --browser-all. A model that fails prints its error in its row.
Nothing is asserted here (the tests assert the bounds).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

RUNTIMES = ("tf", "savedmodel", "tfjs-cpu", "tfjs-wasm", "browser-webgl")
HF_INPUTS = ["--input", "2x16:int64:100", "--input", "2x16:int64:2"]
RNN_LENGTHS = (16, 128, 512)
WARMUP = 5


@dataclass
class Spec:
    """One model to measure: how to convert it and how to feed it for the latency run."""

    name: str
    kind: str  # "cli" or "api"
    target: str = ""  # cli: the TARGET argument
    cli_args: list = field(default_factory=list)
    factory: object = None  # api: () -> (module, inputs)
    id_high: int = 2  # ids drawn from [0, id_high) for the first integer input
    mask_value: int = 0  # fill of the second integer input (0: nothing padded / 1: all kept)
    lengths: tuple = ()  # extra sequence lengths to time (free time axis)


def specs() -> list[Spec]:
    hf = "examples/hf_tiny.py:"
    return [
        Spec("digits_lstm", "cli", str(ROOT / "models/digits_lstm"), lengths=RNN_LENGTHS),
        Spec("tagger", "api", factory=_test_model("tagger"), id_high=40, mask_value=0),
        Spec("encoder-post-relu", "api", factory=_test_model("encoder"), id_high=40, mask_value=0),
        Spec("encoder-pre-gelu-sin", "api", factory=_test_model("encoder-pre"), id_high=40, mask_value=0),
        Spec("hf-bert-sentence", "cli", str(ROOT / (hf + "bert_sentence_encoder")), HF_INPUTS, id_high=100,
             mask_value=1),
        Spec("hf-gpt2", "cli", str(ROOT / (hf + "gpt2")), HF_INPUTS, id_high=100, mask_value=1),
        Spec("hf-llama", "cli", str(ROOT / (hf + "llama")), HF_INPUTS, id_high=100, mask_value=1),
    ]


def _test_model(which: str):
    """A factory building the row of tests/test_sequence_models.py as the test does (seeded, same inputs)."""

    def build():
        import test_sequence_models as t
        from _parity import seeded

        factory = {"tagger": t.Tagger, "encoder": lambda: t.Encoder(),
                   "encoder-pre": lambda: t.Encoder(norm_first=True, activation="gelu", position="sinusoidal")}[which]
        return seeded(factory), (t.ids(), t.padding())

    return build


# ---------------------------------------------------------------- conversion


@contextlib.contextmanager
def recorded_parity_lengths(seen: set):
    """Record the sequence length (dim 1 of the first input) of every parity input set the port uses."""
    from bridge.api import Port

    original = Port.parity_inputs

    def parity_inputs(self):
        sets = original(self)
        seen.update(int(s[0].shape[1]) if s[0].dim() > 1 else None for s in sets)
        return sets

    Port.parity_inputs = parity_inputs
    try:
        yield
    finally:
        Port.parity_inputs = original


def convert(spec: Spec, out: Path, browser: bool) -> tuple[float, dict, set]:
    """Convert one model into ``out``; returns (wall seconds, report.json, sequence lengths parity covered)."""
    seen: set = set()
    started = time.perf_counter()
    with recorded_parity_lengths(seen):
        if spec.kind == "cli":
            _convert_cli(spec, out, browser)
        else:
            _convert_api(spec, out, browser)
    wall = time.perf_counter() - started
    return wall, json.loads((out / "report.json").read_text()), seen


def _convert_cli(spec: Spec, out: Path, browser: bool) -> None:
    from bridge import cli

    argv = ["convert", spec.target, *spec.cli_args, "--out", str(out), "--force", "--browser", "webgl" if browser else ""]
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        code = cli.main(argv)
    if not (out / "report.json").is_file():
        raise RuntimeError(f"bridge convert exit {code}, no report.json: {log.getvalue()[-600:]}")


def _convert_api(spec: Spec, out: Path, browser: bool) -> None:
    import bridge

    module, inputs = spec.factory()
    port = bridge.convert(module, inputs)
    port.save(out, force=True, backends=("cpu", "wasm"), browser_backends=("webgl",) if browser else ())


# ---------------------------------------------------------------- graph size

def graph_stats(tfjs_dir: Path, report: dict) -> dict:
    model_json = json.loads((tfjs_dir / "model.json").read_text())
    topology = model_json["modelTopology"]
    nodes = list(topology.get("node", []))
    for fn in topology.get("library", {}).get("function", []):
        nodes += fn.get("nodeDef", [])
    info = report.get("tfjs") or {}
    weights = info.get("weights_bytes")
    if weights is None:
        weights = sum((tfjs_dir / p).stat().st_size for g in model_json["weightsManifest"] for p in g["paths"])
    transposes = info.get("transpose_count", sum(n["op"] == "Transpose" for n in nodes))
    return {"json_bytes": (tfjs_dir / "model.json").stat().st_size, "nodes": len(nodes), "weights": weights,
            "transposes": transposes}


# ---------------------------------------------------------------- wasm latency in Node

TIMER_MJS = r"""
// Times a tfjs graph model on the wasm backend in Node: loads it as bridge's run.mjs does
// (a disk IOHandler reading model.json and its shards in manifest order, the signature dropped,
// feeds and fetches by graph node name), then runs each case WARMUP + RUNS times and prints
// one JSON line per case with the per-run milliseconds (execute + reading the outputs back).
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const req = JSON.parse(await readFile(process.argv[2], 'utf8'));
const require = createRequire(join(req.js_dir, 'package.json'));
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm');
wasm.setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');

const copy = (b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
const handler = {
  load: async () => {
    const mj = JSON.parse(await readFile(join(req.model_dir, 'model.json'), 'utf8'));
    delete mj.signature;
    return tf.io.getModelArtifactsForJSON(mj, async (manifest) => {
      const specs = [], buffers = [];
      for (const g of manifest) {
        for (const p of g.paths) buffers.push(copy(await readFile(join(req.model_dir, p))));
        specs.push(...g.weights);
      }
      return [specs, buffers];
    });
  },
};

function feed(inp) {
  const n = inp.shape.reduce((a, b) => a * b, 1);
  if (inp.kind === 'uniform') return tf.randomUniform(inp.shape, 0, 1, 'float32', 7);
  const data = new Int32Array(n);
  for (let i = 0; i < n; i++) data[i] = inp.kind === 'ids' ? (i * 7919) % inp.high : inp.value;
  return tf.tensor(data, inp.shape, 'int32');
}

async function run(model, feeds) {
  let out;
  try { out = model.execute(feeds, req.outputs); }
  catch (e) {
    if (!String(e && e.message).includes('executeAsync')) throw e;
    out = await model.executeAsync(feeds, req.outputs);
  }
  const list = Array.isArray(out) ? out : [out];
  for (const t of list) await t.data();
  tf.dispose(list);
}

if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend failed to initialise');
await tf.ready();
const model = await tf.loadGraphModel(handler);
for (const c of req.cases) {
  const feeds = Object.fromEntries(c.inputs.map((i) => [i.node, feed(i)]));
  try {
    for (let i = 0; i < req.warmup; i++) await run(model, feeds);
    const ms = [];
    for (let i = 0; i < req.runs; i++) {
      const t0 = performance.now();
      await run(model, feeds);
      ms.push(performance.now() - t0);
    }
    console.log(JSON.stringify({ length: c.length, ms }));
  } catch (e) {
    console.log(JSON.stringify({ length: c.length, error: String((e && e.message) || e).split('\n')[0] }));
  } finally {
    tf.dispose(Object.values(feeds));
  }
}
"""


def wasm_latency(spec: Spec, tfjs_dir: Path, example_length: int, runs: int) -> dict[int, str]:
    """'median/min' wasm milliseconds per sequence length (batch 1), or the error text for that length.

    The minimum is printed beside the median because the machine may be shared: load from other
    processes moves the median by 2-3x between runs, the minimum much less.
    """
    from bridge.export.exchange import js_dir as _js_dir

    meta = json.loads((tfjs_dir / "model.json").read_text())["userDefinedMetadata"]["bridge"]
    lengths = [example_length, *[n for n in spec.lengths if n != example_length]]
    cases = [{"length": n, "inputs": _latency_inputs(spec, meta, n)} for n in lengths]
    with tempfile.TemporaryDirectory(prefix="bridge-timing-") as tmp:
        script, request = Path(tmp) / "time_wasm.mjs", Path(tmp) / "request.json"
        script.write_text(TIMER_MJS)
        request.write_text(json.dumps({"js_dir": str(_js_dir()), "model_dir": str(tfjs_dir.resolve()),
                                       "outputs": list(meta["output_nodes"].values()), "cases": cases,
                                       "warmup": WARMUP, "runs": runs}))
        proc = subprocess.run(["node", str(script), str(request)], capture_output=True, text=True, timeout=1800)
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            found[r["length"]] = r.get("error") or f"{statistics.median(r['ms']):.1f}/{min(r['ms']):.1f}"
    if not found:
        raise RuntimeError(f"timing run failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}")
    return found


def _latency_inputs(spec: Spec, meta: dict, length: int) -> list[dict]:
    """One batch-1 input per model input at ``length``: floats uniform, first int input ids, the rest a fill."""
    inputs, seen_int = [], False
    for inp in meta["inputs"]:
        shape = [1, length, *[d for d in inp["shape"][2:]]]
        node = meta["input_nodes"][inp["name"]]
        if inp["dtype"].startswith("float"):
            inputs.append({"node": node, "shape": shape, "kind": "uniform"})
        else:
            kind = "fill" if seen_int else "ids"
            inputs.append({"node": node, "shape": shape, "kind": kind, "high": spec.id_high, "value": spec.mask_value})
            seen_int = True
    return inputs


# ---------------------------------------------------------------- the table

def errors_by_runtime(report: dict) -> dict[str, str]:
    out = {}
    for r in report["parity"]["runtimes"]:
        if r.get("skipped"):
            out[r["runtime"]] = "skipped"
        else:
            out[r["runtime"]] = f"{r['max_abs_error']:.1e}/{r['max_rel_error']:.1e}" + ("" if r["ok"] else " FAIL")
    return out


def measure(spec: Spec, base: Path, browser: bool, runs: int) -> list[str]:
    out = base / spec.name
    wall, report, lengths = convert(spec, out, browser)
    errs = errors_by_runtime(report)
    g = graph_stats(out / "tfjs", report)
    example_length = int(report["inputs"][0]["shape"][1])
    latency = wasm_latency(spec, out / "tfjs", example_length, runs)
    seq = ",".join(str(n) for n in sorted(n for n in lengths if n is not None))
    cells = [f"{spec.name:<21}"] + [f"{errs.get(r, '-'):>17}" for r in RUNTIMES] + [
        f"{report['parity']['n_inputs']:>4}", f"{seq:>7}", f"{g['json_bytes']:>9}", f"{g['nodes']:>6}",
        f"{g['weights']:>9}", f"{g['transposes']:>5}", f"{wall:>7.1f}", f"{latency.get(example_length, '-'):>11}"]
    rows = [" ".join(cells)]
    extra = list(spec.lengths)
    if extra:
        rows.append(f"{'':<21} wasm latency batch 1 by sequence length (ms, median/min of {runs}): "
                    + "  ".join(f"T={n}: {latency.get(n, '-')}" for n in extra))
    return rows


def header(runs: int) -> str:
    cells = [f"{'model':<21}"] + [f"{r:>17}" for r in RUNTIMES] + [
        f"{'sets':>4}", f"{'seqlens':>7}", f"{'json B':>9}", f"{'nodes':>6}", f"{'weight B':>9}", f"{'Tr':>5}",
        f"{'conv s':>7}", f"{'wasm ms':>11}"]
    return (" ".join(cells) + "\n" + f"(errors: max abs/max rel vs torch; 'sets' parity input sets; 'Tr' Transpose ops "
            f"in the tfjs graph; 'wasm ms' tfjs-wasm in Node, batch 1, example length, median/min of {runs} warm runs after "
            f"{WARMUP} warm-up; browser-webgl on the first 2 parity sets only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="where to keep the exports (default: a temp folder)")
    parser.add_argument("--browser-all", action="store_true", help="check every model in chromium, not the first two")
    parser.add_argument("--runs", type=int, default=25, help="timed wasm runs per case (after %d warm-up)" % WARMUP)
    parser.add_argument("--only", help="comma list of model names to measure")
    args = parser.parse_args()
    base = args.out or Path(tempfile.mkdtemp(prefix="bridge-measure-seq-"))
    chosen = [s for s in specs() if not args.only or s.name in args.only.split(",")]
    print(header(args.runs), flush=True)
    for i, spec in enumerate(chosen):
        try:
            rows = measure(spec, base, browser=args.browser_all or i < 2, runs=args.runs)
        except BaseException as exc:  # noqa: BLE001 - a failing model is a row, not the end of the table
            if isinstance(exc, KeyboardInterrupt):
                raise
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip().splitlines()[0][:300]
            rows = [f"{spec.name:<21} FAILED: {detail}"]
        print("\n".join(rows), flush=True)
    print(f"exports kept in {base}")


if __name__ == "__main__":
    main()
