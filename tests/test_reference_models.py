"""Reference vision and audio models (examples/vision.py), converted as users convert them.

Each is written from its published architecture, with seeded weights and randomized BatchNorm
statistics. From the CLI: parity in TF, the SavedModel and tfjs on cpu and wasm (bound 1e-4 x
max(1, max|torch|), target 1e-5), and the exact number of Transpose ops in the tfjs graph.
With ``channels_last_io`` (one tfjs batch for all of them) the boundary transposes go too: the
graph has none.

Inputs are smaller than the published 224x224 (32x32 for the deepest nets: tfjs-cpu is plain JS)
so the suite stays fast; the architectures are whole, down to a 1x1 final map. scripts/bench_reference.py converts them at the published sizes.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from bridge import convert
from bridge.api import Options
from bridge.cli import main

from _tfjs_batch import TfjsBatch
from conftest import ROOT

sys.path.insert(0, str(ROOT / "examples"))
import vision  # noqa: E402

TARGET = 1e-5  # float32 target, relative to max(1, max|torch|); every model below meets it

# name -> (test input shape, Transposes in the default tfjs graph, dims the exported input leaves free)
CASES = {
    "resnet50": ((1, 3, 32, 32), 1, [2, 3]),            # NCHW -> NHWC at the input; logits need none
    "mobilenet_v2": ((1, 3, 32, 32), 1, [2, 3]),
    "mobilenet_v3_small": ((1, 3, 64, 64), 1, [2, 3]),
    "efficientnet_b0": ((1, 3, 32, 32), 1, [2, 3]),
    "unet": ((1, 3, 64, 64), 2, []),                     # and NHWC -> NCHW for the map; torch itself
                                                          # refuses sizes that are not multiples of 16
    "convnext": ((1, 3, 64, 64), 1, [2, 3]),
    "vit": ((1, 3, 64, 64), 1, [2, 3]),                  # any size with 4x4 patches (64..79) runs
    "audio_cnn": ((1, 1, 8000), 1, [2]),
}


def _shape_arg(shape) -> str:
    return "x".join(map(str, shape))


@pytest.mark.node
@pytest.mark.parametrize("name", CASES)
def test_reference_model_from_the_cli(name, tmp_path):
    shape, transposes, free = CASES[name]
    out = tmp_path / name
    argv = ["convert", f"{ROOT}/examples/vision.py:{name}", "--input", _shape_arg(shape), "--out", str(out),
            "--browser", "", "--no-per-module-tfjs"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    runtimes = {r["runtime"]: r for r in report["parity"]["runtimes"]}
    assert set(runtimes) == {"tf", "savedmodel", "tfjs-cpu", "tfjs-wasm"}
    for r in runtimes.values():
        assert r["skipped"] is None and r["ok"], r
        for o in r["outputs"]:
            assert o["max_abs_error"] <= TARGET * o["bound"] / 1e-4, (r["runtime"], o)
    assert report["tfjs"]["transpose_count"] == transposes
    assert report["dynamic_batch"] is True and report["inputs"][0]["free_dims"] == free
    assert report["keys"]["unused"] == []


BATCH = TfjsBatch()


def _port(name: str, shape, channels_last_io: bool, parity_sets: int = 2):
    torch.manual_seed(0)
    options = Options(channels_last_io=channels_last_io, n_random_inputs=parity_sets)
    return convert(getattr(vision, name)(), (torch.randn(*shape),), options=options)


@BATCH.parametrize("name", list(CASES))
def test_channels_last_io(name):
    """NHWC (NLC) in, NHWC out for maps: torch's numbers with the input and output permuted."""
    shape = CASES[name][0]
    if len(shape) == 4 and name != "vit":  # smaller maps keep the tfjs batch quick; ViT's size is fixed
        shape = (*shape[:2], 32, 32)
    port = _port(name, shape, channels_last_io=True, parity_sets=1)
    assert port.source.count("tf.transpose(") == 0
    assert [lo.describe() for lo in port.plan.input_layouts] == ["channels_last"]
    assert port.parity().ok, port.parity().to_dict()
    assert port.parity().max_abs_error <= TARGET * max(1.0, max(abs(a).max() for _, a in port.torch_outputs(
        port.example_inputs)))
    return port


@pytest.mark.node
def test_channels_last_io_in_tfjs(node_or_skip):
    result = BATCH.assert_all_within()
    assert len(result.rows) == len(CASES)
    assert all(r.transposes == 0 for r in result.rows), [(r.row_id, r.transposes) for r in result.rows]


@pytest.mark.node
def test_channels_last_io_from_the_cli(tmp_path):
    """--channels-last-io: the SavedModel and tfjs take NHWC and return the NHWC map; the report says so."""
    out = tmp_path / "unet"
    argv = ["convert", f"{ROOT}/examples/vision.py:unet", "--input", "1x3x32x32", "--out", str(out),
            "--browser", "", "--no-per-module-tfjs", "--channels-last-io"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["parity"]["ok"] and report["channels_last_io"] is True
    assert report["tfjs"]["transpose_count"] == 0
    assert report["inputs"][0]["layout"] == "NHWC" and report["inputs"][0]["boundary_shape"] == [1, 32, 32, 3]
    meta = json.loads((out / "tfjs" / "model.json").read_text())["userDefinedMetadata"]["bridge"]
    assert meta["inputs"][0]["layout"] == "NHWC" and meta["inputs"][0]["shape"][-1] == 3
    assert meta["outputs"][0]["layout"] == "NHWC" and meta["outputs"][0]["shape"][-1] == 2
    assert "arrive channels-last" in (out / "model_tf.py").read_text()
