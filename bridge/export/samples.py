"""``parity_samples/``: the first parity input sets and torch's outputs for them, for pages that check the model.

``bridge serve`` feeds these inputs to the tfjs model in the browser and
compares with the stored torch outputs. Arrays are raw little-endian files
(float32, int32, bool as uint8: what tfjs takes; int64 ids are range-checked
into int32 as for the Node runner), described by ``samples.json``::

    {"rtol": 1e-4, "sets": [{"inputs":  [{"name", "dtype", "shape", "file"}],
                             "outputs": [{"name", "dtype", "shape", "file", "max_abs"}]}]}

Inputs and outputs are in the exported model's layout (NHWC with
``--channels-last-io``), keyed by signature input and output name. Small on
purpose: at most MAX_SETS sets, and only the first once the files pass
MAX_BYTES.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .exchange import exchangeable as _exchangeable

FOLDER = "parity_samples"
MAX_SETS = 2
MAX_BYTES = 8 * 2**20  # a second set is dropped past this (big image models)
_FILE_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.uint8}


def write_samples(folder: Path, sets: list[tuple[dict, list]], rtol: float) -> dict:
    """Write ``sets`` ([(feeds {input: array}, [(output, torch array)])]) into ``folder``; returns samples.json."""
    folder.mkdir(parents=True, exist_ok=True)
    described, total = [], 0
    for i, (feeds, outputs) in enumerate(sets[:MAX_SETS]):
        entry = {"inputs": [], "outputs": []}
        for kind, items in (("inputs", sorted(feeds.items())), ("outputs", outputs)):
            for j, (name, array) in enumerate(items):
                array = np.asarray(array)
                array, dtype = _exchangeable(name, array.astype(np.float32) if array.dtype.kind == "f" else array)
                file = f"set{i}_{kind[:-1]}{j}.bin"
                data = np.ascontiguousarray(array.astype(_FILE_DTYPES[dtype]))
                total += data.nbytes
                data.tofile(folder / file)
                spec = {"name": name, "dtype": dtype, "shape": list(array.shape), "file": file}
                if kind == "outputs":
                    spec["max_abs"] = float(np.max(np.abs(array))) if array.size and dtype != "bool" else 0.0
                entry[kind].append(spec)
        described.append(entry)
        if total > MAX_BYTES:
            break
    info = {"rtol": rtol, "sets": described,
            "about": "parity inputs and torch's outputs, raw little-endian arrays; see bridge/export/samples.py"}
    (folder / "samples.json").write_text(json.dumps(info, indent=1, sort_keys=True))
    return info


def read_samples(folder: Path) -> dict:
    """samples.json of ``folder`` (raises OSError / ValueError when it is missing or unreadable)."""
    return json.loads((Path(folder) / "samples.json").read_text())
