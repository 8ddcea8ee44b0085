"""SavedModel -> tfjs graph model, and running that model in Node to check it.

Why the pieces look the way they do:

- The converter runs in a subprocess with ``TF_ENABLE_ONEDNN_OPTS=0``. TF reads
  that variable once, at import. With oneDNN on, grappler writes oneDNN-only
  fused ops (``_MklLayerNorm``, ``_FusedConv2D`` with exotic activations) into
  the frozen graph, which tfjs rejects or cannot run. The calling process may
  already have TF imported with oneDNN on, so it cannot convert in-process.
- The converter names signature inputs and outputs by matching shapes and
  falls back to tensor names (or swaps names) when two shapes coincide. We
  derive our own name -> graph node maps from the SavedModel's SignatureDef
  (whose tensor names carry the output index of the signature call), check
  them against the converted graph, store them in model.json's
  ``userDefinedMetadata["bridge"]`` and feed and fetch by node name only.
- model.json is rewritten with sorted keys: the converter serialises protobuf
  maps (signature, node attrs), whose order is not promised, and two
  conversions of one SavedModel must give identical bytes.
- Node runs pure ``@tensorflow/tfjs`` (cpu) and ``@tensorflow/tfjs-backend-wasm``;
  tfjs-node cannot be installed here. Arrays go to and from Node as raw
  little-endian files next to a JSON request (see ``js/run.mjs``), which is
  exact for float32 and int32.
- Both processes are expensive to start (the converter imports TF, seconds;
  Node loads tfjs and the wasm binary), so ``convert_many_to_tfjs`` and
  ``run_many_tfjs`` do many models in one process each, with an error per
  model (or per backend) instead of one failure for all. The single-model
  functions are the batch of one.
- tfjs has no int64. The converter keeps ``DT_INT64`` in model.json (graph and
  signature) and tfjs loads such a placeholder as int32; bridge's own
  SavedModels declare ids int32 already. Either way integer inputs cross as
  int32, after ``checked_int32``: an id outside int32 is a BadInputError that
  names the input and the value, never a silent wraparound.
- A job may ask for quantized weights (``quantization``, from ``quantize.converter_request``).
  The worker traces each graph constant of the signature function back to the torch keys it is
  computed from and hands the converter the exact names to quantize; ``_finish`` then checks that
  the converter quantized exactly those (``quantize.summarize``). See bridge/export/quantize.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bridge import progress
from bridge.errors import BridgeError, ExportError

from . import faults
from .exchange import (JS_DIR, bridge_metadata, dies_with_parent, graph_nodes, input_dtypes, js_dir, node_status, read_array, tail,
                       text, write_inputs)
from .exchange import checked_int32  # noqa: F401 - part of this module's interface (run_tfjs's int32 rule)

RUNNER = JS_DIR / "run.mjs"
CONVERT_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 600
RUN_TIMEOUT_PER_MODEL_S = 60  # added for each further model in one Node run
_SHARD_RE = re.compile(r"group\d+-shard\d+of\d+\.bin")
_UNSUPPORTED_RE = re.compile(r"Unsupported Ops in the model (before|after) optimization\n(.*)", re.S)
# ---------------------------------------------------------------- node status


# ---------------------------------------------------------------- conversion


def convert_to_tfjs(saved_model_dir: Path, out_dir: Path, *, metadata: dict,
                    signature: str = "serving_default", quantization: dict | None = None,
                    stream: bool | None = None) -> dict:
    """Convert the SavedModel's signature to a tfjs graph model in out_dir (model.json + shards).

    ``metadata`` goes into model.json's userDefinedMetadata under "bridge", with
    "input_nodes" and "output_nodes" (signature name -> graph node) added.
    ``quantization``: a ``quantize.converter_request`` (which weights go float16/uint8), or None.
    Returns {"op_counts", "transpose_count", "weights_bytes"} (+ "quantization": ``quantize.summarize``).
    Raises ExportError (BadInputError for a quantization pattern that selects no weight).
    ``stream``: use the streamed writer (tfjs_stream.py: no frozen graph, one weight in memory at a time);
    None decides (tfjs_stream.mode): streamed when it writes the converter's graph or the model is too large
    for the converter, falling back to the converter when it cannot stream.
    """
    from . import tfjs_stream

    how = tfjs_stream.mode(saved_model_dir, stream, quantization)
    if how is not None:
        saved_model_dir, out_dir = _checked_job((saved_model_dir, out_dir, metadata), [])
        try:
            return tfjs_stream.convert_to_tfjs_streamed(saved_model_dir, out_dir, metadata=metadata,
                                                        signature=signature, same_graph=how == "prefer")
        except tfjs_stream.NotStreamable:
            if stream:
                raise
    result = convert_many_to_tfjs([(saved_model_dir, out_dir, metadata, quantization)], signature=signature)[0]
    if isinstance(result, BridgeError):
        raise result
    return result


def convert_many_to_tfjs(jobs: list[tuple[Path, Path, dict]], *,
                         signature: str = "serving_default") -> list[dict | ExportError]:
    """Convert many SavedModels in one converter process (TF is imported once, not once per model).

    Each job is ``(saved_model_dir, out_dir, metadata)`` or ``(..., quantization)`` as for
    convert_to_tfjs, and gets the same checks. Returns, in job order, the job's stats dict or the
    ExportError that job would have raised; one job's failure (even a crash of
    the converter process) does not stop the others.
    """
    results: list[dict | ExportError | None] = [None] * len(jobs)
    with contextlib.ExitStack() as stack:
        staged: dict[int, tuple[Path, Path]] = {}  # job index -> (staging dir, out_dir)
        requests = []
        for i, job in enumerate(jobs):
            try:
                saved, out = _checked_job(job, [o for _, o in staged.values()])
            except ExportError as e:
                results[i] = e
                continue
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".tfjs-", dir=out.parent)))
            staged[i] = (tmp / "model", out)
            requests.append({"saved_model_dir": str(saved), "out_dir": str(tmp / "model"),
                             "signature": signature, "metadata": job[2],
                             "quantization": job[3] if len(job) > 3 else None})
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bridge-tfjs-convert-")))
        outcomes = _run_converter(requests, work)
        for (i, (model_dir, out)), outcome, request in zip(staged.items(), outcomes, requests):
            results[i] = (outcome if isinstance(outcome, ExportError) else
                          _finish(model_dir, out, request["quantization"], outcome.get("quantization")))
    return results


def _checked_job(job: tuple, taken: list[Path]) -> tuple[Path, Path]:
    """The job's resolved (saved_model_dir, out_dir), created; ExportError if the job cannot run."""
    saved_model_dir, out_dir, metadata = job[:3]
    saved_model_dir, out_dir = Path(saved_model_dir).resolve(), Path(out_dir).resolve()
    if not (saved_model_dir / "saved_model.pb").is_file():
        raise ExportError(f"no SavedModel at {saved_model_dir} (saved_model.pb is missing)")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as e:
        raise ExportError(f"metadata must be JSON-serialisable, it goes into model.json: {e}") from None
    if out_dir in taken:
        raise ExportError(f"two jobs write to {out_dir}; give each job its own out_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    return saved_model_dir, out_dir


def _finish(staged: Path, out_dir: Path, quantization: dict | None = None,
            quantized: dict | None = None) -> dict | BridgeError:
    """Check the staged conversion, move it into out_dir and return its stats.

    ``quantization``: the job's request; ``quantized``: what the worker traced (weight name -> torch keys).
    """
    if not (staged / "model.json").is_file():
        return ExportError(f"the tfjs converter reported success but wrote no model.json in {staged}")
    try:
        model_json = _canonicalize(staged / "model.json")
        _check_node_maps(model_json)
        summary = None
        if quantization:
            from . import quantize

            traced = (quantized or {}).get("attribution", {})
            summary = quantize.summarize(model_json, staged, quantization, traced)
    except BridgeError as e:
        return e
    _install(staged, out_dir)
    return {**_stats(model_json, out_dir), **({"quantization": summary} if summary else {})}


def in_process_problem() -> str | None:
    """None when this process may run the tfjs converter itself, else why it needs a fresh Python.

    The converter is safe in-process only where TensorFlow runs with oneDNN off (see the module
    docstring): the CLI and the tests set ``TF_ENABLE_ONEDNN_OPTS=0`` before TF is imported, which
    saves the worker's TF import (seconds). A library user who imported TF with oneDNN on (the x86
    default) gets the worker. ``BRIDGE_TFJS_SUBPROCESS=1`` forces the worker.
    """
    if os.environ.get("BRIDGE_TFJS_SUBPROCESS") == "1":
        return "BRIDGE_TFJS_SUBPROCESS=1"
    if "tensorflow" not in sys.modules and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
        return "TensorFlow is not imported yet and TF_ENABLE_ONEDNN_OPTS is not 0"
    from tensorflow.python.util import _pywrap_util_port

    if _pywrap_util_port.IsMklEnabled():  # reads the setting TF took at import
        return "TensorFlow runs with oneDNN on in this process (TF_ENABLE_ONEDNN_OPTS was not 0 at import)"
    return None


def _run_converter(requests: list[dict], work: Path) -> list[ExportError | dict]:
    """Convert the requests in this process when that is safe (``in_process_problem``), else in the
    worker (a fresh Python with oneDNN off); one error or result each.

    The worker appends one result line per request as it goes. If it dies, the
    request it was on gets the crash as its error and the rest go to a new worker.
    """
    if in_process_problem() is None:
        tfjs_conv, import_error = _import_converter()
        return [r if r["ok"] else _converter_error(r["error"], "")
                for r in (_convert_job(tfjs_conv, import_error, job) for job in requests)]
    outcomes: list[ExportError | dict] = []
    while len(outcomes) < len(requests):
        pending = requests[len(outcomes):]
        lines, crash, log = _run_worker(pending, work)
        outcomes += [r if r["ok"] else _converter_error(r["error"], log) for r in lines]
        if crash is not None and len(lines) < len(pending):
            outcomes.append(ExportError(crash, details={"log": log}))
    return outcomes


def _run_worker(requests: list[dict], work: Path) -> tuple[list[dict], str | None, str]:
    """One worker run: (result lines, why it stopped early or None, log tail)."""
    req_path, res_path = work / "request.json", work / "result.jsonl"
    req_path.write_text(json.dumps({"jobs": requests}))
    res_path.unlink(missing_ok=True)
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "bridge.export.tfjs", str(req_path), str(res_path)]
    crash = None
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
        log = tail(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            crash = f"the tfjs converter crashed (exit code {proc.returncode})"
    except subprocess.TimeoutExpired as e:
        log = tail(text(e.stdout) + text(e.stderr))
        crash = f"the tfjs converter did not finish within {CONVERT_TIMEOUT_S} s"
    lines = [json.loads(s) for s in res_path.read_text().splitlines()] if res_path.is_file() else []
    if crash is None and len(lines) < len(requests):
        crash = f"the tfjs converter stopped after {len(lines)} of {len(requests)} models"
    return lines[: len(requests)], crash, log


def _converter_error(message: str, log: str) -> ExportError:
    """Turn the converter's exception text into an ExportError that names what to do."""
    found = _UNSUPPORTED_RE.search(message)
    if not found:
        return ExportError(f"the tfjs converter failed: {message}", details={"log": log})
    ops = sorted({op.strip() for op in found.group(2).split(",") if op.strip()})
    return ExportError(
        f"tfjs does not support {len(ops)} op(s) in the graph ({found.group(1)} grappler): "
        f"{', '.join(ops)}. Rewrite them in the model with ops tfjs supports and export again.",
        details={"unsupported_ops": ops, "converter_message": message, "log": log},
    )


def _canonicalize(model_json_path: Path) -> dict:
    """Rewrite model.json with sorted keys (see the module docstring) and return it."""
    model_json = json.loads(model_json_path.read_text())
    model_json_path.write_text(json.dumps(model_json, sort_keys=True))
    return model_json


def _check_node_maps(model_json: dict) -> None:
    """Our output nodes must be exactly the converter's outputs, and every node must exist."""
    bridge = model_json["userDefinedMetadata"]["bridge"]
    ours = {_tensor_name(n) for n in bridge["output_nodes"].values()}
    theirs = {o["name"] for o in model_json["signature"]["outputs"].values()}
    if ours != theirs:
        raise ExportError(f"output node map {sorted(ours)} does not match the converted graph's outputs "
                          f"{sorted(theirs)}; refusing to guess names")
    missing = {n.split(":")[0] for n in bridge["output_nodes"].values()} - graph_nodes(model_json)
    if missing:
        raise ExportError(f"output nodes {sorted(missing)} are not in the converted graph")


def _tensor_name(node: str) -> str:
    return node if ":" in node else node + ":0"


def _install(staged: Path, out_dir: Path) -> None:
    """Replace model.json and shards in out_dir by the staged ones; leave other files alone."""
    for old in out_dir.iterdir():
        if old.name == "model.json" or _SHARD_RE.fullmatch(old.name):
            old.unlink()
    for new in sorted(staged.iterdir()):
        os.replace(new, out_dir / new.name)


def _stats(model_json: dict, out_dir: Path) -> dict:
    topology = model_json["modelTopology"]
    nodes = list(topology.get("node", []))
    for fn in topology.get("library", {}).get("function", []):
        nodes += fn.get("nodeDef", [])
    op_counts = dict(sorted(Counter(n["op"] for n in nodes).items()))
    paths = [p for group in model_json["weightsManifest"] for p in group["paths"]]
    return {
        "op_counts": op_counts,
        "transpose_count": op_counts.get("Transpose", 0),
        "weights_bytes": sum((out_dir / p).stat().st_size for p in paths),
    }


# ---------------------------------------------------------------- worker (runs in the subprocess)


def _import_converter():
    """(the converter module, None) or (None, why it cannot be imported); its import is kept quiet."""
    # tensorflow_decision_forests (which the converter imports) prints a banner, through IPython when
    # stdout is not a terminal file (pytest, a notebook): without IPython that import fails
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    try:
        with _quiet_fds():  # and tensorflow_hub warns about pkg_resources
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_conv
        return tfjs_conv, None
    except Exception as e:  # noqa: BLE001 - every job fails the same way; retrying would not help
        return None, f"cannot import the tfjs converter: {type(e).__name__}: {e}"


@contextlib.contextmanager
def _quiet_fds():
    """stdout and stderr (the file descriptors, so C++ and print both) to /dev/null for a moment."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def quiet():
    """The converter's own output (prints, grappler's session logs) off the terminal, unless BRIDGE_DEBUG."""
    return contextlib.nullcontext() if os.environ.get("BRIDGE_DEBUG") else _quiet_fds()


def _convert_job(tfjs_conv, import_error: str | None, job: dict) -> dict:
    """Convert one job; {"ok": True, ...} or {"ok": False, "error": text}. Runs in the worker or in-process."""
    try:
        if tfjs_conv is None:
            raise RuntimeError(import_error)
        node_maps = _signature_node_maps(job["saved_model_dir"], job["signature"])
        metadata = {"bridge": {**job["metadata"], **node_maps}}
        dtype_map, result = None, {"ok": True}
        if job.get("quantization"):
            from bridge.export import quantize

            dtype_map, attribution = quantize.converter_map(job["saved_model_dir"], job["signature"],
                                                            job["quantization"])
            result["quantization"] = {"attribution": attribution}
        with quiet(), _shard_fault():
            tfjs_conv.convert_tf_saved_model(job["saved_model_dir"], job["out_dir"],
                                             signature_def=job["signature"], metadata=metadata,
                                             quantization_dtype_map=dtype_map)
        return result
    except Exception as e:  # noqa: BLE001 - reported to the caller, which makes it an ExportError
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}


@contextlib.contextmanager
def _shard_fault():
    """With BRIDGE_FAULT=shard, the converter's first weight shard is cut off halfway and the process
    killed there (faults.py): a kill in the middle of writing a shard."""
    if not faults.armed("shard"):
        yield
        return
    from tensorflowjs import write_weights

    real = write_weights._shard_group_bytes_to_disk

    def half_then_kill(write_dir, group_index, group_bytes, total_bytes, shard_size_bytes):
        data = group_bytes.read(min(total_bytes, shard_size_bytes or total_bytes))
        with open(os.path.join(write_dir, f"group{group_index + 1}-shard1of1.bin"), "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        faults.fault("shard")

    write_weights._shard_group_bytes_to_disk = half_then_kill
    try:
        yield
    finally:
        write_weights._shard_group_bytes_to_disk = real


def _worker(request_path: str, result_path: str) -> None:
    """Entry point of the converter subprocess: convert each job, append one ok/error JSON line per job."""
    jobs = json.loads(Path(request_path).read_text())["jobs"]
    tfjs_conv, import_error = _import_converter()
    with open(result_path, "a") as results:
        for job in jobs:
            results.write(json.dumps(_convert_job(tfjs_conv, import_error, job)) + "\n")
            results.flush()


def _signature_node_maps(saved_model_dir: str, signature: str) -> dict:
    """{"input_nodes": {name: node}, "output_nodes": {name: node}} for the signature.

    The SignatureDef names each output as output k of one call op
    ("StatefulPartitionedCall:k"), and each input as a tensor fed to that call.
    Output k of the call is output k of the signature function the converter
    loads, so the index links a name to a node without any shape matching.
    """
    import tensorflow as tf

    meta_graph = _serving_meta_graph(Path(saved_model_dir))
    if signature not in meta_graph.signature_def:
        raise ValueError(f"signature {signature!r} not found; the SavedModel has "
                         f"{sorted(meta_graph.signature_def)}")
    sig = meta_graph.signature_def[signature]
    call_op, out_index = _call_outputs(sig)
    in_index = _call_input_index(meta_graph.graph_def, call_op, sig)
    fn = tf.saved_model.load(saved_model_dir).signatures[signature]
    if len(fn.outputs) != len(out_index):
        raise ValueError(f"signature has {len(out_index)} outputs but its function returns {len(fn.outputs)}")
    outputs = {k: _checked(fn.outputs[i], sig.outputs[k], k) for k, i in sorted(out_index.items())}
    inputs = {k: _checked(fn.inputs[i], sig.inputs[k], k) for k, i in sorted(in_index.items())}
    return {"input_nodes": inputs, "output_nodes": outputs}


def _serving_meta_graph(saved_model_dir: Path):
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((saved_model_dir / "saved_model.pb").read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError("the SavedModel has no meta graph tagged 'serve'")


def _call_outputs(sig) -> tuple[str, dict[str, int]]:
    """The one call op behind the signature's outputs, and each output's index on it."""
    parts = {k: info.name.rsplit(":", 1) for k, info in sig.outputs.items()}
    ops = {op for op, _ in parts.values()}
    if len(ops) != 1:
        raise ValueError(f"signature outputs come from {sorted(ops)}, not from one call op; "
                         "save the model with tf.saved_model.save and a tf.function signature")
    return ops.pop(), {k: int(i) for k, (_, i) in parts.items()}


def _call_input_index(graph_def, call_op: str, sig) -> dict[str, int]:
    """Each signature input's position among the call op's data inputs."""
    call_node = next((n for n in graph_def.node if n.name == call_op), None)
    if call_node is None:
        raise ValueError(f"the signature's call op {call_op!r} is not in the SavedModel's graph")
    fed = [i for i in call_node.input if not i.startswith("^")]  # GraphDef writes "op" for "op:0"
    missing = sorted(k for k, info in sig.inputs.items() if _op_name(info.name) not in fed)
    if missing:
        raise ValueError(f"signature inputs {missing} do not feed the call op {call_op!r} directly")
    return {k: fed.index(_op_name(info.name)) for k, info in sig.inputs.items()}


def _op_name(tensor_name: str) -> str:
    op, _, index = tensor_name.partition(":")
    return op if index in ("", "0") else tensor_name


def _checked(tensor, info, name: str) -> str:
    """The tfjs node name of ``tensor``, after checking it agrees with the SignatureDef entry."""
    import tensorflow as tf

    spec_shape = tf.TensorShape(info.tensor_shape)
    if tensor.dtype.as_datatype_enum != info.dtype or not tensor.shape.is_compatible_with(spec_shape):
        raise ValueError(f"signature entry {name!r} ({tf.dtypes.as_dtype(info.dtype).name}, {spec_shape}) "
                         f"does not match graph tensor {tensor.name} ({tensor.dtype.name}, {tensor.shape})")
    return _op_name(tensor.name)


# ---------------------------------------------------------------- running in Node


def run_tfjs(model_dir: Path, inputs: dict[str, np.ndarray],
             backends: tuple[str, ...] = ("cpu", "wasm")) -> dict[str, dict[str, np.ndarray]]:
    """Run the tfjs model in Node on each backend; returns {backend: {output_name: array}}.

    Inputs are keyed by signature input name; float32 and bool go as they are.
    tfjs has no int64: integer inputs (int64 token ids included) are fed as
    int32, which is what tfjs makes of an int64 placeholder, after a range
    check that raises BadInputError naming the input and the first value
    outside int32. Integer outputs come back as int32 for the same reason.
    Raises ExportError when the inputs do not fit the model or a backend fails.
    """
    result = run_many_tfjs([(model_dir, inputs)], backends)[0]
    if isinstance(result, BridgeError):
        raise result
    failed = {b: r for b, r in result.items() if isinstance(r, ExportError)}
    if failed:
        raise backend_failures(failed)
    return result


def backend_failures(failed: dict[str, ExportError]) -> ExportError:
    """One ExportError naming each failed backend's first error line (run_many_tfjs's per-backend errors)."""
    lines = "\n".join(f"  {b}: {e.details['error'].splitlines()[0] or '(no message)'}" for b, e in failed.items())
    return ExportError(f"the tfjs model failed on {len(failed)} backend(s):\n{lines}",
                       details={"errors": {b: e.details["error"] for b, e in failed.items()},
                                "stderr": next(iter(failed.values())).details["stderr"]})


# tfjs wasm's Transpose traps ("divide by zero") on a zero-size tensor, and every channels-last graph
# starts with one; cpu and webgl run an empty batch
ZERO_SIZE_UNSUPPORTED = ("wasm",)


def zero_size_problem(inputs: dict[str, np.ndarray], backend: str) -> str | None:
    """Why ``backend`` cannot run this input set (a zero-size input on wasm), or None."""
    empty = [(n, list(np.shape(a))) for n, a in inputs.items() if np.size(a) == 0]
    if backend in ZERO_SIZE_UNSUPPORTED and empty:
        name, shape = empty[0]
        return (f"tfjs {backend} cannot run a zero-size input ({name} has shape {shape}): its Transpose kernel "
                f"traps with 'divide by zero'; cpu and webgl run it")
    return None


def run_many_tfjs(requests: list[tuple[Path, dict[str, np.ndarray]]], backends: tuple[str, ...] = ("cpu", "wasm"),
                  repeat: int = 1, work_root: Path | None = None,
                  budget_s: float | None = None,
                  session: NodeSession | None = None) -> list[dict[str, dict[str, np.ndarray] | ExportError] | BridgeError]:
    """Run many (model_dir, inputs) requests in one Node process; each model is loaded once per backend.

    A model_dir may appear in several requests (one per input set). Returns, in
    request order, {backend: {output_name: array} or the ExportError of that
    backend}, or, for a request that could not be sent (bad inputs, no
    model.json), the error run_tfjs would raise. Inputs are treated as in run_tfjs.
    ``repeat`` runs each request that many times (each result's ``.ms`` lists the times).
    ``work_root``: where the exchange folder goes (default: the system's temporary folder).
    ``budget_s``: per model and backend, the first request always runs and each later one only if the
    seconds spent so far plus its predicted seconds (the previous run's time per input element) fit;
    one left out is ``OVER_BUDGET`` in place of its outputs. Give the requests cheapest first.
    ``session``: a ``NodeSession`` started ahead for these ``backends`` (one), used instead of a new process.
    Raises ExportError only when node itself is not usable.
    """
    reason = node_status()
    if reason:
        raise ExportError(f"cannot run the tfjs model: {reason}")
    results: list = [None] * len(requests)
    with tempfile.TemporaryDirectory(prefix="bridge-tfjs-", dir=work_root) as tmp:
        work = Path(tmp)
        models: dict[Path, dict | ExportError] = {}
        for i, (model_dir, inputs) in enumerate(requests):
            try:
                model = _model_request(models, Path(model_dir).resolve())
                model["runs"].append({"id": i, "repeat": repeat, "inputs": write_inputs(
                    work, inputs, model["input_nodes"], model["graph_nodes"],
                    input_dtypes=model["input_dtypes"], prefix=f"r{i}_")})
            except BridgeError as e:
                results[i] = e
        sent = [m for m in models.values() if isinstance(m, dict) and m["runs"]]
        if sent:
            try:
                lines, crash, stderr = _run_node(work, sent, backends, budget_s, session)
            finally:
                if session is not None:
                    session.close()  # a no-op once sent
            for m in sent:
                for run in m["runs"]:
                    results[run["id"]] = {b: _backend_result(work, lines.get((run["id"], b)), crash, stderr, b)
                                          for b in backends}
        elif session is not None:
            session.close()
        for i, (_, inputs) in enumerate(requests):  # say why, instead of the backend's bare trap
            for b in backends:
                why = zero_size_problem(inputs, b)
                if why and isinstance(results[i], dict):
                    results[i][b] = ExportError(why, details={"error": why, "stderr": ""})
    return results


def _model_request(models: dict[Path, dict | ExportError], model_dir: Path) -> dict:
    """The runner's entry for model_dir, read once per batch; raises its ExportError for every request."""
    if model_dir not in models:
        try:
            models[model_dir] = _read_model(model_dir)
        except ExportError as e:
            models[model_dir] = e
    entry = models[model_dir]
    if isinstance(entry, ExportError):
        raise entry
    return entry


def _read_model(model_dir: Path) -> dict:
    if not (model_dir / "model.json").is_file():
        raise ExportError(f"no tfjs model at {model_dir} (model.json is missing)")
    model_json = json.loads((model_dir / "model.json").read_text())
    bridge = bridge_metadata(model_json)
    return {
        "model_dir": str(model_dir), "runs": [],
        "outputs": [{"name": k, "node": v} for k, v in bridge["output_nodes"].items()],
        "input_nodes": bridge["input_nodes"], "graph_nodes": graph_nodes(model_json),
        "input_dtypes": input_dtypes(model_json),
    }


class NodeSession:
    """run.mjs started ahead for one backend (``--wait``): Node starts, loads tfjs and initialises the
    backend while the model is still being written, then waits on stdin for the request. ``send`` hands
    it over (once); ``close`` ends a session that was never sent. The process dies with this one."""

    def __init__(self, backend: str):
        self.backend = (backend,)
        self._proc = subprocess.Popen(["node", "--expose-gc", str(RUNNER), "--wait", str(js_dir().resolve()), backend],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, preexec_fn=dies_with_parent)

    def send(self, request_path: Path) -> subprocess.Popen:
        proc, self._proc = self._proc, None
        try:
            proc.stdin.write(f"{request_path}\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it already died: its exit code and stderr say why
        proc.stdin = None  # communicate() must not touch the closed pipe
        return proc

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            proc.stdin.close()  # no request: the runner exits
        proc.stdin = None  # communicate() must not touch the closed pipe
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _run_node(work: Path, models: list[dict], backends: tuple[str, ...],
              budget_s: float | None = None, session: NodeSession | None = None) -> tuple[dict, str | None, str]:
    """Run the Node runner over the models: ({(run id, backend): result line}, crash or None, stderr tail)."""
    budget_ms = None if budget_s is None else round(budget_s * 1000)
    request = {"js_dir": str(js_dir().resolve()), "work_dir": str(work), "backends": list(backends),
               "models": [{**{k: m[k] for k in ("model_dir", "outputs", "runs")}, "budget_ms": budget_ms}
                          for m in models]}
    (work / "request.json").write_text(json.dumps(request))
    timeout = RUN_TIMEOUT_S + RUN_TIMEOUT_PER_MODEL_S * (len(models) - 1)
    crash = None
    if session is not None and session.backend == tuple(backends):
        proc = session.send(work / "request.json")
    else:
        proc = subprocess.Popen(["node", "--expose-gc", str(RUNNER), str(work / "request.json")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=dies_with_parent)
    try:
        faults.fault("node")  # a kill while Node runs (the crash tests)
        _, stderr = _wait_counting(proc, work / "result.jsonl", sum(len(m["runs"]) for m in models) * len(backends),
                                   timeout)
        if proc.returncode != 0:
            crash = f"the tfjs runner failed (exit code {proc.returncode}):\n{tail(stderr)}"
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        crash = f"the tfjs runner did not finish within {timeout} s"
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    result_path = work / "result.jsonl"
    lines = [json.loads(s) for s in result_path.read_text().splitlines()] if result_path.is_file() else []
    return {(r["id"], r["backend"]): r for r in lines}, crash, tail(stderr)


def _wait_counting(proc, lines_file: Path, expected: int, timeout: float) -> tuple[str, str]:
    """``proc.communicate(timeout)``, advancing a progress bar by the result lines Node appends."""
    deadline = time.monotonic() + timeout
    with progress.task("tfjs in node: input sets x backends", total=expected) as advance:
        seen = 0
        while True:
            try:
                return proc.communicate(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise
                done = lines_file.read_bytes().count(b"\n") if lines_file.is_file() else 0
                advance(done - seen)
                seen = done


def _backend_result(work: Path, line: dict | None, crash: str | None, stderr: str,
                    backend: str) -> dict[str, np.ndarray] | ExportError:
    if line is None:
        error = crash or "the tfjs runner wrote no result for this run"
    elif line.get("over_budget"):
        return OVER_BUDGET
    elif not line["ok"]:
        error = line["error"] or "(no message)"
    else:
        return Outputs({o["name"]: read_array(work / o["file"], o) for o in line["outputs"]}, line.get("ms", []))
    return ExportError(f"the tfjs model failed on {backend}: {error.splitlines()[0]}",
                       details={"error": error, "stderr": stderr})


OVER_BUDGET = "over budget"  # run_many_tfjs: a request its budget left out (not run)


class Outputs(dict):
    """{output_name: array} of one run on one backend, with ``ms``: the milliseconds of each execution
    (the first includes kernel set-up; more with ``repeat``), outputs read back included."""

    def __init__(self, arrays: dict, ms: list[float]):
        super().__init__(arrays)
        self.ms = list(ms)


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
