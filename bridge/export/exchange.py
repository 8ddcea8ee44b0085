"""How arrays and model metadata cross between Python and the JS runners (Node and the browser).

Arrays go as raw little-endian files next to a JSON request, which is exact for float32 and int32
(bool as uint8). tfjs has no int64: integer inputs (token ids) cross as int32 after ``checked_int32``,
which names an id outside int32 instead of wrapping it. The tfjs runners feed and fetch by graph node
name, through the maps bridge writes into model.json's ``userDefinedMetadata["bridge"]``
(``bridge_metadata``). The Node runner (tfjs.py), the browser runner (browser.py), the ONNX web runner
and the parity samples all use these helpers, so every route exchanges arrays the same way.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from bridge.errors import BadInputError, ExportError

JS_DIR = Path(__file__).resolve().parent / "js"

MIN_NODE_MAJOR = 18
# Files that must exist under the npm package directory for the runner to work.
NPM_FILES = (
    "node_modules/@tensorflow/tfjs/package.json",
    "node_modules/@tensorflow/tfjs-backend-wasm/package.json",
    "node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm",
)

EXCHANGE_DTYPES = {"float32": "<f4", "int32": "<i4", "bool": "u1"}
# What tfjs makes of a graph placeholder's dtype (tfjs has no int64 and no float64).
TFJS_DTYPES = {"DT_FLOAT": "float32", "DT_DOUBLE": "float32", "DT_INT32": "int32", "DT_INT64": "int32",
                "DT_INT16": "int32", "DT_INT8": "int32", "DT_UINT8": "int32", "DT_BOOL": "bool"}



def js_dir() -> Path:
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
    js = js_dir()
    if not all((js / f).is_file() for f in NPM_FILES):
        return f"npm packages missing: run `npm ci --prefix {js}`"
    return None



def text(output) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""



def graph_nodes(model_json: dict) -> set[str]:
    return {n["name"] for n in model_json["modelTopology"].get("node", [])}



def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])



def bridge_metadata(model_json: dict) -> dict:
    bridge = model_json.get("userDefinedMetadata", {}).get("bridge", {})
    if "output_nodes" not in bridge or "input_nodes" not in bridge:
        raise ExportError("model.json has no bridge node maps (userDefinedMetadata.bridge.output_nodes); "
                          "convert it with bridge.export.tfjs.convert_to_tfjs")
    return bridge


def input_dtypes(model_json: dict) -> dict[str, str]:
    """{placeholder node: dtype tfjs gives it}; tfjs loads an int64 placeholder as int32."""
    out = {}
    for node in model_json["modelTopology"].get("node", []):
        if node["op"] == "Placeholder":
            dtype = TFJS_DTYPES.get(node.get("attr", {}).get("dtype", {}).get("type"))
            if dtype:
                out[node["name"]] = dtype
    return out


def write_inputs(work: Path, inputs: dict, input_nodes: dict, graph_nodes: set, *,
                  input_dtypes: dict | None = None, prefix: str = "") -> list[dict]:
    """Write each input as a raw little-endian file; inputs the graph pruned are not sent.

    ``input_dtypes`` ({node: tfjs dtype}, see input_dtypes), when given, is
    checked against each array. Integer arrays are sent as int32 (checked_int32).
    """
    if set(inputs) != set(input_nodes):
        raise ExportError(f"inputs {sorted(inputs)} do not match the signature's inputs {sorted(input_nodes)}")
    specs = []
    for i, (name, node) in enumerate(sorted(input_nodes.items())):
        if node not in graph_nodes:
            continue  # unused by every output: the converter dropped its placeholder
        array, dtype = exchangeable(name, np.asarray(inputs[name]), (input_dtypes or {}).get(node))
        file = f"{prefix}in_{i}.bin"
        array.astype(EXCHANGE_DTYPES[dtype]).tofile(work / file)
        specs.append({"node": node, "dtype": dtype, "shape": list(array.shape), "file": file})
    return specs


def exchangeable(name: str, array: np.ndarray, want: str | None = None) -> tuple[np.ndarray, str]:
    if array.dtype.kind in "iu":
        array, dtype = checked_int32(name, array), "int32"
    else:
        dtype = {np.dtype(np.float32): "float32", np.dtype(bool): "bool"}.get(array.dtype)
    if dtype is None:
        raise ExportError(f"input {name!r} has dtype {array.dtype}; tfjs takes float32, int32 or bool")
    if want is not None and dtype != want:
        raise ExportError(f"input {name!r} is {array.dtype} but the tfjs model takes {want}")
    return array, dtype


def checked_int32(name: str, array: np.ndarray) -> np.ndarray:
    """An integer array (e.g. int64 token ids) as int32; BadInputError if a value does not fit.

    tfjs has no int64 (an int64 placeholder is an int32 tensor there), so ids
    are fed as int32. A silent cast would wrap 2**31 to -2**31; this names the
    input and the first offending value instead.
    """
    array = np.asarray(array)
    info = np.iinfo(np.int32)
    outside = (array < info.min) | (array > info.max)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        index = [int(k) for k in np.unravel_index(first, array.shape)]
        value = int(array.reshape(-1)[first])
        raise BadInputError(
            f"input {name!r} has {int(outside.sum())} value(s) outside int32, the first is {value} at index "
            f"{index}; tfjs has no int64, so integer inputs such as token ids must lie in "
            f"[{info.min}, {info.max}]",
            details={"input": name, "value": value, "index": index, "count": int(outside.sum()),
                     "dtype": str(array.dtype)})
    return array.astype(np.int32)



def read_array(path: Path, spec: dict) -> np.ndarray:
    array = np.fromfile(path, dtype=EXCHANGE_DTYPES[spec["dtype"]]).reshape(spec["shape"])
    return array.astype(bool) if spec["dtype"] == "bool" else array


def dies_with_parent() -> None:
    """``preexec_fn`` for the runner processes: SIGTERM them when this process dies, even by SIGKILL.

    A killed conversion must not leave Node (or the chromium playwright drives, which playwright closes
    on SIGTERM) running; Linux only (prctl PR_SET_PDEATHSIG), a no-op elsewhere.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
        except OSError:
            pass
