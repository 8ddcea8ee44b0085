"""The ONNX route, side by side with tfjs: ``bridge convert --onnx``.

``write_and_verify`` exports the same torch module, on the same example inputs,
with torch's own exporter (``torch.onnx.export``, dynamo=True: torch.export plus
onnxscript's ATen translations), checks the file with ``onnx.checker``, and runs
it against torch in two runtimes:

- ``onnxruntime``: onnxruntime's CPU provider in this process;
- ``onnxruntime-web-wasm``: onnxruntime-web's wasm backend in Node
  (``js/ort_run.mjs``), the build a web page loads, its .wasm read from
  node_modules (no network).

Why the pieces look the way they do:

- ONNX keeps torch's layout and dtypes: inputs are NCHW even with
  ``--channels-last-io``, and the references are ``port.torch_outputs(inputs)``
  in torch's layout. int64 stays int64 (onnxruntime and onnxruntime-web take
  it); every input is fed in the dtype model.onnx declares.
- Input and output names are the SavedModel's (``port.input_names`` /
  ``port.output_names``). The batch dim is named ``batch`` and left free when
  the port's is; the port's other free dims (sequence lengths) are named
  ``<input>_dim<k>``. The export is traced on a batch of 2 (as bridge's own
  trace is), so torch does not specialise the batch to the example's 1. If
  torch cannot export the free dims, the export is retried with the batch only,
  then fully static, and the report's notes say what was fixed.
- A model that torch's exporter cannot export (an ATen op with no ONNX
  translation, such as ``torch.hypot``) does not fail the conversion: the
  reason goes into the notes and both ONNX runtimes are reported skipped with
  it. ``onnx_strict`` (``--onnx-strict``) makes it an ExportError (exit 5)
  instead. Once model.onnx exists, its runtimes are checked like every other
  runtime: an error beyond the bound, or a runtime that cannot run the model,
  fails parity (exit 4).
- Latency is the median of warm runs on the example input, one thread in both
  runtimes (the tfjs wasm backend in Node is single-threaded too), outputs read
  back included. It is a figure for the report, never asserted.
- Arrays cross to Node as raw little-endian files next to a JSON request, as
  for ``js/run.mjs``; int64 crosses as int64.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import statistics
import subprocess
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .. import parity
from ..errors import ExportError
from . import exchange, runners, tfjs

ONNX_FILE = "model.onnx"
OPSET = 20  # torch 2.13's default for the dynamo exporter; onnxruntime 1.31 and onnxruntime-web 1.30 run it
RUNTIME_PYTHON = "onnxruntime"
RUNTIME_WEB = "onnxruntime-web-wasm"
RUNTIMES = (RUNTIME_PYTHON, RUNTIME_WEB)
WARM_RUNS = 10  # latency: the median of this many runs after the first
THREADS = 1
RUNNER = tfjs.JS_DIR / "ort_run.mjs"
RUN_TIMEOUT_S = 600
MAX_BYTES = 2 * 1024**3 - 1  # protobuf's limit for one file; larger weights would need external data
_NPM_FILES = ("node_modules/onnxruntime-web/package.json",
              "node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm")
# ONNX tensor element type -> numpy dtype name
_ONNX_NUMPY = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
               11: "float64"}
# what crosses to Node: numpy dtype name -> the dtype of its little-endian exchange file
_EXCHANGE = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1",
             "uint8": "u1", "bool": "u1"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class OnnxExportError(ExportError):
    """torch's ONNX exporter (or onnx.checker) rejected the model."""

    code = "onnx_export_failed"


# ---------------------------------------------------------------- the one entry point save.py calls


def write_and_verify(port, folder: Path, report, options, step=lambda message: None, notes=None) -> dict:
    """Write ``folder/model.onnx``, verify it in onnxruntime (Python) and onnxruntime-web (wasm, Node).

    Appends one parity.RuntimeResult per ONNX runtime to ``report.runtimes`` (save's own copy of
    the port's report) and its notes to ``notes``, and returns report.json's ``onnx`` section. ``options`` is save.SaveOptions
    (``onnx_strict``, ``require_node``).
    """
    notes = [] if notes is None else notes
    t0 = time.perf_counter()
    step("exporting ONNX (torch.onnx.export)")
    path = folder / ONNX_FILE
    try:
        info = export_onnx(port, path)
    except OnnxExportError as exc:
        if getattr(options, "onnx_strict", False):
            raise
        path.unlink(missing_ok=True)
        reason = f"torch.onnx.export could not export the model: {exc.message}"
        notes.append(f"ONNX not written: {reason} (--onnx-strict makes this an error)")
        report.runtimes += [parity.RuntimeResult(r, skipped=reason) for r in RUNTIMES]
        return {"file": None, "skipped": reason, "error": exc.to_dict(), "runtimes": {},
                "parity": {r: {"skipped": reason} for r in RUNTIMES}, "timings": {"export_s": time.perf_counter() - t0}}
    notes += info.pop("notes")
    export_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    step("verifying ONNX (onnxruntime, onnxruntime-web wasm)")
    sets = _fitting_sets(port, info["inputs"], notes)
    refs = [port.torch_outputs(inputs) for _, inputs in sets]  # torch layout: ONNX takes torch's layout
    rtol = port.tolerance.output.rtol
    declared = {i["name"]: i["dtype"] for i in info["inputs"]}
    outputs = [o["name"] for o in info["outputs"]]
    fed = [(k, _fed(declared, port.input_names, inputs)) for k, inputs in sets]  # a feed, or why it cannot be
    results, runtime_info = [], {}
    for runner, required in ((OnnxRuntimeRunner(path, outputs), False),
                             (OnnxWebRunner(path, outputs), getattr(options, "require_node", False))):
        if not sets:  # every parity input set was dropped (_fitting_sets): nothing proves the file
            results.append(_failed_runtime(runner.names[0], refs, "no parity input set fits model.onnx's input shapes"))
            continue
        checked = runners.check(runner, list(zip(fed, refs)), rtol, required=required)
        results += checked.results
        runtime_info[runner.names[0]] = runner.info
    py_result, web_result = results
    report.runtimes += [py_result, web_result]
    info["runtimes"] = runtime_info
    info["parity"] = {r.runtime: ({"skipped": r.skipped} if r.skipped else
                                  {"ok": r.ok, "max_abs_error": r.max_abs_error, "max_rel_error": r.max_rel_error})
                      for r in (py_result, web_result)}
    info["timings"] = {"export_s": export_s, "verify_s": time.perf_counter() - t1}
    info["skipped"] = None
    return info


# ---------------------------------------------------------------- export


def export_onnx(port, path: Path) -> dict:
    """Export ``port.module`` to ``path`` and check it; returns the facts for report.json's ``onnx`` section.

    Raises OnnxExportError when torch cannot export it or onnx.checker rejects the file.
    """
    names = list(port.input_names)
    examples = tuple(port.example_inputs)
    args = tuple(_batch_of_two(x) for x in examples) if port.dynamic_batch else examples
    free = list(port.dynamic_dims) or [frozenset()] * len(examples)
    attempts = []
    if port.dynamic_batch:
        if any(free):
            attempts.append(("batch and free dims", args, _shapes(names, examples, free, batch=True)))
        attempts.append(("batch", args, _shapes(names, examples, [frozenset()] * len(examples), batch=True)))
    elif any(free):
        attempts.append(("free dims", examples, _shapes(names, examples, free, batch=False)))
    attempts.append(("static", examples, None))
    notes, first_error = [], None
    for label, inputs, shapes in attempts:
        try:
            _export(port.module, inputs, shapes, names, list(port.output_names), path)
            break
        except OnnxExportError as exc:
            first_error = first_error or exc
    else:
        raise first_error
    if label != attempts[0][0]:
        notes.append(f"ONNX: exported with {label} free only ({first_error.message})")
    _strip_debug_info(path, _bridge_metadata(port))
    model = _check(path)
    return {**describe(model, path), "notes": notes}


def _export(module, inputs: tuple, shapes, input_names: list, output_names: list, path: Path) -> None:
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    captured = io.StringIO()
    try:
        quiet.setLevel(logging.ERROR)  # "torchvision is not installed" and other advice for exporter users
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(module, inputs, dynamo=True, input_names=input_names,
                                        output_names=output_names, dynamic_shapes=shapes, opset_version=OPSET,
                                        external_data=False, optimize=True, verbose=False)
            program.save(str(path), external_data=False)
    except Exception as exc:  # the exporter raises many types (ConversionError, TorchExportError, ...)
        raise OnnxExportError(_reason(exc), details={"exception": type(exc).__name__,
                                                     "log": captured.getvalue()[-4000:]}) from exc
    finally:
        quiet.setLevel(level)
    if path.stat().st_size > MAX_BYTES:
        raise OnnxExportError(f"model.onnx is {path.stat().st_size} bytes, above protobuf's 2 GB limit for one file")


def _shapes(names: list, examples: tuple, free: list, batch: bool) -> tuple:
    """dynamic_shapes for the exporter: the batch dim named 'batch', free dims '<input>_dim<k>'."""
    out = []
    for name, x, dims in zip(names, examples, free):
        spec = {0: "batch"} if batch and x.dim() else {}
        spec.update({d: f"{name}_dim{d}" for d in sorted(dims)})
        out.append(spec or None)
    return tuple(out)


def _batch_of_two(x):
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        return x
    if x.shape[0] == 0:
        return torch.zeros((2, *x.shape[1:]), dtype=x.dtype)
    return torch.cat([x, x])[: max(2, x.shape[0])]


def _reason(exc: Exception) -> str:
    """One line: the exporter's own summary ('No ONNX function found for prims.hypot ...') when it has one."""
    text = _ANSI.sub("", str(exc))
    summary = text.split("## Exception summary", 1)
    if len(summary) == 2:
        lines = [s.strip() for s in summary[1].splitlines() if s.strip().startswith("<class")]
        if lines:
            return re.sub(r"^<class '(?:[\w.]+\.)?(\w+)'>:\s*", r"\1: ", lines[0])
    first = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _strip_debug_info(path: Path, metadata: dict) -> None:
    """Drop what the exporter records for debugging, and put bridge's own metadata in its place.

    Each node carries torch's stack trace (absolute local source paths), its fx
    node text and module scopes, and the graph the ExportedProgram's signature:
    18% of digits_cnn's file (58% of two_layer's), read by no runtime, and the
    paths tie the bytes to where the model's source and the venv live, which a
    file shipped to browsers should not reveal.
    """
    import onnx

    model = onnx.load(str(path))
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        del graph.metadata_props[:]
        graph.doc_string = ""
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            graphs += [a.g for a in node.attribute if a.HasField("g")] + [g for a in node.attribute for g in a.graphs]
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save_model(model, str(path))


def _bridge_metadata(port) -> dict[str, str]:
    """model.onnx's metadata_props (strings): bridge's version, the source class and the checkpoint's sha256."""
    from .. import __version__

    meta = {"bridge.version": __version__, "bridge.source": port.plan.class_name}
    sha = getattr(port.checkpoint, "sha256", None)
    if sha:
        meta["bridge.checkpoint_sha256"] = sha
    return meta


def _check(path: Path):
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        return onnx.load(str(path))
    except Exception as exc:  # onnx.checker.ValidationError, shape inference errors
        raise OnnxExportError(f"onnx.checker rejected model.onnx: {str(exc).strip().splitlines()[0]}") from exc


def describe(model, path: Path) -> dict:
    """Bytes, opset, op counts and the named inputs/outputs of an ONNX model."""
    import onnx

    ops = Counter()
    _count_ops(model.graph, ops)
    for function in model.functions:
        _count_ops(function, ops)
    return {
        "file": ONNX_FILE,
        "bytes": path.stat().st_size,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "ir_version": model.ir_version,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "exporter": "torch.onnx.export(dynamo=True)",
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxscript": _version("onnxscript")},
        "op_counts": dict(sorted(ops.items())),
        "node_count": sum(ops.values()),
        "inputs": [_value_info(v) for v in model.graph.input],
        "outputs": [_value_info(v) for v in model.graph.output],
        "metadata": {p.key: p.value for p in model.metadata_props},
    }


def _count_ops(graph, ops: Counter) -> None:
    for node in graph.node:
        ops[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"] += 1
        for attr in node.attribute:  # Loop / Scan / If bodies
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _count_ops(sub, ops)


def _value_info(v) -> dict:
    t = v.type.tensor_type
    shape = [d.dim_param or None if not d.HasField("dim_value") else d.dim_value for d in t.shape.dim]
    return {"name": v.name, "dtype": _ONNX_NUMPY.get(t.elem_type, str(t.elem_type)), "shape": shape}


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# ---------------------------------------------------------------- feeds


def _fitting_sets(port, declared: list[dict], notes: list) -> list[tuple[int, tuple]]:
    """(index, inputs) of the parity input sets model.onnx can take. All of them, unless the export had
    to fix a dim the port leaves free (see export_onnx): the sets it cannot take are named in the notes."""
    fixed = {i["name"]: i["shape"] for i in declared}
    keep = []
    for k, inputs in enumerate(port.parity_inputs()):
        shapes = {n: list(np.shape(parity.to_numpy(x))) for n, x in zip(port.input_names, inputs)}
        bad = [(n, shapes[n], want) for n, want in fixed.items() if n in shapes and not _fits(shapes[n], want)]
        if bad:
            name, shape, want = bad[0]
            notes.append(f"ONNX: parity input set {k} not checked: {name} has shape {shape}, "
                              f"model.onnx takes {want}")
        else:
            keep.append((k, inputs))
    return keep


def _fits(shape: list, declared: list) -> bool:
    return len(shape) == len(declared) and all(not isinstance(d, int) or d == n for n, d in zip(shape, declared))


def feeds(declared: dict[str, str], names: list, inputs: tuple) -> dict[str, np.ndarray]:
    """One parity input set in torch's layout, each input in the dtype the ONNX model declares.

    ``declared``: {input name: numpy dtype name}. Inputs the model does not
    declare (torch dropped an unused one) are not fed; a declared input that
    bridge does not have, or an integer value the declared dtype cannot hold, is an ExportError.
    """
    given = {n: parity.to_numpy(x) for n, x in zip(names, inputs)}
    missing = sorted(set(declared) - set(given))
    if missing:
        raise ExportError(f"model.onnx declares inputs {missing}, which the torch module does not take "
                          f"(it takes {names})")
    out = {}
    for name, dtype in declared.items():
        a = np.asarray(given[name])
        cast = a.astype(dtype)
        if a.dtype.kind in "iub" and not np.array_equal(cast.astype(a.dtype), a):
            raise ExportError(f"input {name!r} has values that model.onnx's {dtype} cannot hold")
        out[name] = cast
    return out


# ---------------------------------------------------------------- onnxruntime (Python)


def _fed(declared: dict, names: list, inputs: tuple):
    """The feeds of one parity input set, or the ExportError saying why model.onnx cannot take it."""
    try:
        return feeds(declared, names, inputs)
    except ExportError as exc:
        return exc


class OnnxRuntimeRunner(runners.Runner):
    """model.onnx in onnxruntime (Python, CPU, one thread). Feed sets are (index, feeds or ExportError);
    ``info`` gets the version and the latency of the first set that ran."""

    names = (RUNTIME_PYTHON,)
    what = "model.onnx in onnxruntime"

    def __init__(self, path: Path, outputs: list[str]):
        self.path, self.outputs, self.info = path, outputs, {}

    def run(self, feed_sets: list) -> dict[str, list[runners.Run]]:
        import onnxruntime as ort

        self.info = {"version": ort.__version__, "provider": "CPUExecutionProvider", "threads": THREADS}
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = THREADS
            options.inter_op_num_threads = THREADS
            options.log_severity_level = 3  # errors only: shape-inference warnings are not ours to print
            session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            return {RUNTIME_PYTHON: [runners.Run(error=f"onnxruntime could not load model.onnx: {exc}")
                                     for _ in feed_sets]}
        runs = []
        for k, fed in feed_sets:
            try:
                if isinstance(fed, ExportError):
                    raise fed
                got = dict(zip(self.outputs, session.run(self.outputs, fed)))
            except Exception as exc:
                runs.append(runners.Run(error=f"onnxruntime failed on parity input set {k}: {_first_line(exc)}"))
                continue
            runs.append(runners.Run(got))
            if "first_ms" not in self.info:  # the first set that ran: the example, unless it did not fit
                self.info.update(_python_latency(session, self.outputs, fed, k))
        return {RUNTIME_PYTHON: runs}


def _python_latency(session, names, fed, input_set: int) -> dict:
    ms = []
    for _ in range(WARM_RUNS + 1):
        t = time.perf_counter()
        session.run(names, fed)
        ms.append((time.perf_counter() - t) * 1e3)
    return _latency(ms, input_set)


def _latency(ms: list[float], input_set: int) -> dict:
    """The first run (session warm-up included) and the median of the warm runs after it, on one input set
    (names as in report.json's tfjs ``latency``: first_ms, warm_ms, n_warm)."""
    if not ms:
        return {}
    return {"first_ms": ms[0], "warm_ms": statistics.median(ms[1:]) if len(ms) > 1 else None,
            "n_warm": len(ms) - 1, "input_set": input_set}


# ---------------------------------------------------------------- onnxruntime-web (Node, wasm)


def web_status() -> str | None:
    """None if node and onnxruntime-web (under tfjs's npm folder) are usable, else why not."""
    reason = tfjs.node_status()
    if reason:
        return reason
    js = exchange.js_dir()
    if not all((js / f).is_file() for f in _NPM_FILES):
        return f"onnxruntime-web is missing: run `npm ci --prefix {js}`"
    return None


class OnnxWebRunner(runners.Runner):
    """model.onnx in onnxruntime-web (wasm) in Node, every set in one process; feed sets as for
    OnnxRuntimeRunner. ``info`` gets the versions and the latency of the first set sent."""

    names = (RUNTIME_WEB,)
    what = "model.onnx in onnxruntime-web"

    def __init__(self, path: Path, outputs: list[str]):
        self.path, self.outputs, self.info = path, outputs, {}

    def unavailable(self) -> str | None:
        return web_status()

    def run(self, feed_sets: list) -> dict[str, list[runners.Run]]:
        sent = [fed for _, fed in feed_sets if not isinstance(fed, ExportError)]
        results, versions = run_ort_web(self.path, sent, self.outputs, repeat_first=WARM_RUNS + 1) if sent else ([], {})
        results = iter(results)
        self.info = {"versions": versions, "backend": "wasm", "threads": THREADS}
        runs = []
        for k, fed in feed_sets:
            got = fed if isinstance(fed, ExportError) else next(results)
            if isinstance(got, ExportError):
                runs.append(runners.Run(error=f"onnxruntime-web failed on parity input set {k}: {got.message}"))
                continue
            runs.append(runners.Run(dict(got), list(got.ms)))
            if fed is sent[0]:
                self.info.update(_latency(got.ms, k))
        return {RUNTIME_WEB: runs}


def run_ort_web(path: Path, requests: list[dict[str, np.ndarray]], output_names: list[str],
                repeat_first: int = 1) -> tuple[list, dict]:
    """Run every input set on model.onnx in one Node process (onnxruntime-web, wasm backend).

    Returns ([tfjs.Outputs or ExportError per request], onnxruntime-web's versions).
    The first request runs ``repeat_first`` times (its ``.ms`` lists each run).
    Raises ExportError when node or onnxruntime-web is not usable or the runner crashes before any result.
    """
    reason = web_status()
    if reason:
        raise ExportError(f"cannot run model.onnx in onnxruntime-web: {reason}")
    with tempfile.TemporaryDirectory(prefix="bridge-ort-") as tmp:
        work = Path(tmp)
        runs = []
        for i, inputs in enumerate(requests):
            specs = []
            for j, (name, a) in enumerate(inputs.items()):
                file = f"r{i}_in_{j}.bin"
                np.ascontiguousarray(a).astype(_EXCHANGE[a.dtype.name]).tofile(work / file)
                specs.append({"name": name, "dtype": a.dtype.name, "shape": list(a.shape), "file": file})
            runs.append({"id": i, "repeat": repeat_first if i == 0 else 1, "inputs": specs})
        request = {"js_dir": str(exchange.js_dir().resolve()), "work_dir": str(work), "threads": THREADS,
                   "models": [{"model_path": str(Path(path).resolve()), "outputs": output_names, "runs": runs}]}
        (work / "request.json").write_text(json.dumps(request))
        crash, stderr = None, ""
        try:
            proc = subprocess.run(["node", str(RUNNER), str(work / "request.json")], capture_output=True,
                                  text=True, timeout=RUN_TIMEOUT_S)
            stderr = proc.stderr
            if proc.returncode != 0:
                crash = f"the onnxruntime-web runner failed (exit code {proc.returncode}): {exchange.tail(stderr, 5)}"
        except subprocess.TimeoutExpired:
            crash = f"the onnxruntime-web runner did not finish within {RUN_TIMEOUT_S} s"
        result_path = work / "result.jsonl"
        lines = [json.loads(s) for s in result_path.read_text().splitlines()] if result_path.is_file() else []
        versions = next((ln["versions"] for ln in lines if "versions" in ln), {})
        by_id = {ln["id"]: ln for ln in lines if "id" in ln}
        if crash and not by_id:
            raise ExportError(crash, details={"stderr": exchange.tail(stderr)})
        return [_web_result(work, by_id.get(i), crash) for i in range(len(requests))], versions


def _web_result(work: Path, line: dict | None, crash: str | None):
    if line is None:
        return ExportError(crash or "the onnxruntime-web runner wrote no result for this run")
    if not line["ok"]:
        return ExportError(_first_line(line.get("error") or "(no message)"), details={"error": line.get("error")})
    arrays = {}
    for o in line["outputs"]:
        a = np.fromfile(work / o["file"], dtype=_EXCHANGE[o["dtype"]]).reshape(o["shape"])
        arrays[o["name"]] = a.astype(bool) if o["dtype"] == "bool" else a.astype(o["dtype"])
    return tfjs.Outputs(arrays, line.get("ms", []))


# ---------------------------------------------------------------- failures as parity results


def _failed_runtime(runtime: str, refs, problem: str) -> parity.RuntimeResult:
    return parity.RuntimeResult(runtime, runners.failed_diffs(refs[0] if refs else [("model", np.zeros(0))], problem))


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
