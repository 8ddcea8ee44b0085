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
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from bridge.errors import ExportError

JS_DIR = Path(__file__).resolve().parent / "js"
RUNNER = JS_DIR / "run.mjs"
CONVERT_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 600
MIN_NODE_MAJOR = 18
# Files that must exist under the npm package directory for the runner to work.
_NPM_FILES = (
    "node_modules/@tensorflow/tfjs/package.json",
    "node_modules/@tensorflow/tfjs-backend-wasm/package.json",
    "node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
)
_SHARD_RE = re.compile(r"group\d+-shard\d+of\d+\.bin")
_UNSUPPORTED_RE = re.compile(r"Unsupported Ops in the model (before|after) optimization\n(.*)", re.S)
_EXCHANGE_DTYPES = {"float32": "<f4", "int32": "<i4", "bool": "u1"}


# ---------------------------------------------------------------- node status


def _js_dir() -> Path:
    """Where the npm packages live: $BRIDGE_JS_DIR, else next to this file."""
    return Path(os.environ.get("BRIDGE_JS_DIR") or JS_DIR)


def node_status() -> str | None:
    """None if ``node`` and the npm packages under JS_DIR (or $BRIDGE_JS_DIR) are usable, else why not."""
    node = shutil.which("node")
    if node is None:
        return "node not found on PATH"
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major = re.match(r"v(\d+)", version)
    if not major or int(major.group(1)) < MIN_NODE_MAJOR:
        return f"node {version or '(unknown version)'} is too old: tfjs needs node >= {MIN_NODE_MAJOR}"
    js = _js_dir()
    if not all((js / f).is_file() for f in _NPM_FILES):
        return f"npm packages missing: run `npm ci --prefix {js}`"
    return None


# ---------------------------------------------------------------- conversion


def convert_to_tfjs(saved_model_dir: Path, out_dir: Path, *, metadata: dict,
                    signature: str = "serving_default") -> dict:
    """Convert the SavedModel's signature to a tfjs graph model in out_dir (model.json + shards).

    ``metadata`` goes into model.json's userDefinedMetadata under "bridge", with
    "input_nodes" and "output_nodes" (signature name -> graph node) added.
    Returns {"op_counts", "transpose_count", "weights_bytes"}. Raises ExportError.
    """
    saved_model_dir, out_dir = Path(saved_model_dir).resolve(), Path(out_dir)
    if not (saved_model_dir / "saved_model.pb").is_file():
        raise ExportError(f"no SavedModel at {saved_model_dir} (saved_model.pb is missing)")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as e:
        raise ExportError(f"metadata must be JSON-serialisable, it goes into model.json: {e}") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tfjs-", dir=out_dir.parent) as tmp:
        staged = Path(tmp) / "model"
        request = {"saved_model_dir": str(saved_model_dir), "out_dir": str(staged),
                   "signature": signature, "metadata": metadata}
        _run_converter(request, Path(tmp))
        model_json = _canonicalize(staged / "model.json")
        _check_node_maps(model_json)
        _install(staged, out_dir)
    return _stats(model_json, out_dir)


def _run_converter(request: dict, tmp: Path) -> None:
    """Run this module's worker in a fresh Python with oneDNN off; raise ExportError on failure."""
    req_path, res_path = tmp / "request.json", tmp / "result.json"
    req_path.write_text(json.dumps(request))
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "bridge.export.tfjs", str(req_path), str(res_path)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExportError(f"the tfjs converter did not finish within {CONVERT_TIMEOUT_S} s") from None
    log = _tail(proc.stdout + proc.stderr)
    if not res_path.is_file():
        raise ExportError(f"the tfjs converter crashed (exit code {proc.returncode})", details={"log": log})
    result = json.loads(res_path.read_text())
    if not result["ok"]:
        raise _converter_error(result["error"], log)


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


def _graph_nodes(model_json: dict) -> set[str]:
    return {n["name"] for n in model_json["modelTopology"].get("node", [])}


def _check_node_maps(model_json: dict) -> None:
    """Our output nodes must be exactly the converter's outputs, and every node must exist."""
    bridge = model_json["userDefinedMetadata"]["bridge"]
    ours = {_tensor_name(n) for n in bridge["output_nodes"].values()}
    theirs = {o["name"] for o in model_json["signature"]["outputs"].values()}
    if ours != theirs:
        raise ExportError(f"output node map {sorted(ours)} does not match the converted graph's outputs "
                          f"{sorted(theirs)}; refusing to guess names")
    missing = {n.split(":")[0] for n in bridge["output_nodes"].values()} - _graph_nodes(model_json)
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


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------- worker (runs in the subprocess)


def _worker(request_path: str, result_path: str) -> None:
    """Entry point of the converter subprocess: convert, and report ok/error as JSON."""
    request = json.loads(Path(request_path).read_text())
    try:
        from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_conv

        node_maps = _signature_node_maps(request["saved_model_dir"], request["signature"])
        metadata = {"bridge": {**request["metadata"], **node_maps}}
        tfjs_conv.convert_tf_saved_model(request["saved_model_dir"], request["out_dir"],
                                         signature_def=request["signature"], metadata=metadata)
        result = {"ok": True}
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises ExportError
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    Path(result_path).write_text(json.dumps(result))


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

    Inputs are keyed by signature input name; float32, int32 and bool go as they
    are, int64 is cast to int32 (tfjs has no int64) after a range check.
    """
    reason = node_status()
    if reason:
        raise ExportError(f"cannot run the tfjs model: {reason}")
    model_dir = Path(model_dir).resolve()
    model_json = json.loads((model_dir / "model.json").read_text())
    bridge = _bridge_metadata(model_json)
    with tempfile.TemporaryDirectory(prefix="bridge-tfjs-") as tmp:
        work = Path(tmp)
        request = {
            "js_dir": str(_js_dir().resolve()), "model_dir": str(model_dir), "work_dir": str(work),
            "backends": list(backends),
            "inputs": _write_inputs(work, inputs, bridge["input_nodes"], _graph_nodes(model_json)),
            "outputs": [{"name": k, "node": v} for k, v in bridge["output_nodes"].items()],
        }
        (work / "request.json").write_text(json.dumps(request))
        stderr = _run_node(work / "request.json")
        return _read_results(work, stderr)


def _bridge_metadata(model_json: dict) -> dict:
    bridge = model_json.get("userDefinedMetadata", {}).get("bridge", {})
    if "output_nodes" not in bridge or "input_nodes" not in bridge:
        raise ExportError("model.json has no bridge node maps (userDefinedMetadata.bridge.output_nodes); "
                          "convert it with bridge.export.tfjs.convert_to_tfjs")
    return bridge


def _write_inputs(work: Path, inputs: dict, input_nodes: dict, graph_nodes: set) -> list[dict]:
    """Write each input as a raw little-endian file; inputs the graph pruned are not sent."""
    if set(inputs) != set(input_nodes):
        raise ExportError(f"inputs {sorted(inputs)} do not match the signature's inputs {sorted(input_nodes)}")
    specs = []
    for i, (name, node) in enumerate(sorted(input_nodes.items())):
        if node not in graph_nodes:
            continue  # unused by every output: the converter dropped its placeholder
        array, dtype = _exchangeable(name, np.asarray(inputs[name]))
        file = f"in_{i}.bin"
        array.astype(_EXCHANGE_DTYPES[dtype]).tofile(work / file)
        specs.append({"node": node, "dtype": dtype, "shape": list(array.shape), "file": file})
    return specs


def _exchangeable(name: str, array: np.ndarray) -> tuple[np.ndarray, str]:
    if array.dtype == np.int64:
        info = np.iinfo(np.int32)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ExportError(f"input {name!r} is int64 with values outside int32; tfjs has no int64")
        return array.astype(np.int32), "int32"
    dtype = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(bool): "bool"}.get(array.dtype)
    if dtype is None:
        raise ExportError(f"input {name!r} has dtype {array.dtype}; tfjs takes float32, int32 or bool")
    return array, dtype


def _run_node(request_path: Path) -> str:
    cmd = ["node", str(RUNNER), str(request_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ExportError(f"the tfjs runner did not finish within {RUN_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise ExportError(f"the tfjs runner failed (exit code {proc.returncode}):\n{_tail(proc.stderr)}",
                          details={"stderr": proc.stderr})
    return proc.stderr


def _read_results(work: Path, stderr: str) -> dict[str, dict[str, np.ndarray]]:
    results = json.loads((work / "result.json").read_text())["backends"]
    failed = {b: r["error"] for b, r in results.items() if not r["ok"]}
    if failed:
        lines = "\n".join(f"  {b}: {err.splitlines()[0] if err else '(no message)'}" for b, err in failed.items())
        raise ExportError(f"the tfjs model failed on {len(failed)} backend(s):\n{lines}",
                          details={"errors": failed, "stderr": _tail(stderr)})
    return {b: {o["name"]: _read_array(work / o["file"], o) for o in r["outputs"]} for b, r in results.items()}


def _read_array(path: Path, spec: dict) -> np.ndarray:
    array = np.fromfile(path, dtype=_EXCHANGE_DTYPES[spec["dtype"]]).reshape(spec["shape"])
    return array.astype(bool) if spec["dtype"] == "bool" else array


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
