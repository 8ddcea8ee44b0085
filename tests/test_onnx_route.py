"""`bridge convert --onnx`: model.onnx beside the SavedModel, verified in onnxruntime (Python) and
onnxruntime-web (wasm, in node) against torch on the same parity inputs and bounds.

Every models/ entry goes through the CLI once (module-scoped, --no-tfjs: the tfjs route has its own
tests); the other tests reuse those exports, except the two that need models of their own (an op
torch's exporter cannot translate, int64 token ids).
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bridge.checkpoint import load_checkpoint
from bridge.cli import main
from bridge.export import onnx as onnx_route
from bridge.target import instantiate, resolve

from conftest import MODELS, ROOT

# float32 target: max abs error <= 1e-5 x max(1, max|torch|), as for tfjs in test_models_e2e
TARGET = 1e-5
RUNTIMES = {"onnxruntime", "onnxruntime-web-wasm"}

NETS = textwrap.dedent('''
    import torch
    from torch import nn

    class Hypot(nn.Module):
        """torch.hypot converts to TF, but torch.onnx has no translation for prims.hypot."""
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.fc(x)
            return torch.hypot(y, 2 * y + 1)

    class Ids(nn.Module):
        """int64 token ids in, float logits and the int64 argmax out."""
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 6)
            self.fc = nn.Linear(6, 4)

        def forward(self, ids):
            h = self.fc(self.emb(ids)).mean(1)
            return h, h.argmax(-1)
''')


@pytest.fixture(scope="module", params=MODELS)
def converted(request, tmp_path_factory):
    """(name, export folder, report) of `bridge convert models/<name> --onnx --no-tfjs`."""
    name = request.param
    out = tmp_path_factory.mktemp("onnx") / name
    assert main(["convert", str(ROOT / "models" / name), "--out", str(out), "--onnx", "--no-tfjs"]) == 0
    return name, out, json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx_nets") / "nets.py"
    path.write_text(NETS)
    return path


def _scale(report, output) -> float:
    """max(1, max|torch|) of an output, read back from its bound (bound = rtol x that)."""
    return output["bound"] / report["parity"]["tolerance"]["rtol"]


def _assert_onnx_runtimes_ok(report):
    runtimes = {r["runtime"]: r for r in report["parity"]["runtimes"]}
    assert RUNTIMES <= set(runtimes)
    for name in RUNTIMES:
        r = runtimes[name]
        assert r["skipped"] is None and r["ok"], r
        assert r["outputs"], r
        for o in r["outputs"]:
            assert o["max_abs_error"] <= TARGET * _scale(report, o), (name, o)


@pytest.mark.node
def test_every_model_matches_torch_in_both_onnx_runtimes(converted, node_or_skip):
    name, out, report = converted
    _assert_onnx_runtimes_ok(report)
    assert report["parity"]["ok"]
    section = report["onnx"]
    assert section["skipped"] is None and section["file"] == "model.onnx"
    assert section["bytes"] == (out / "model.onnx").stat().st_size > 0
    assert section["parity"]["onnxruntime-web-wasm"]["ok"] is True
    for runtime in RUNTIMES:
        latency = section["runtimes"][runtime]
        assert latency["n_warm"] == onnx_route.WARM_RUNS and latency["warm_ms"] > 0
    assert section["runtimes"]["onnxruntime-web-wasm"]["versions"]["web"] == "1.30.0"


def test_model_onnx_is_valid_and_named_like_the_savedmodel(converted):
    name, out, report = converted
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    section = report["onnx"]
    assert section["opset"] == onnx_route.OPSET == next(o.version for o in model.opset_import if o.domain == "")
    assert sum(section["op_counts"].values()) == section["node_count"] >= len(model.graph.node) > 0
    assert [i.name for i in model.graph.input] == [i["name"] for i in report["inputs"]]
    assert [o.name for o in model.graph.output] == report["outputs"]
    for declared, info in zip(section["inputs"], report["inputs"]):
        assert declared["dtype"] == info["dtype"]
        assert len(declared["shape"]) == len(info["shape"])  # torch's layout, whatever the SavedModel's
        assert (declared["shape"][0] == "batch") == report["dynamic_batch"]
        for d, size in enumerate(declared["shape"][1:], start=1):
            assert isinstance(size, str) if d in info["free_dims"] else size == info["shape"][d], (d, declared)


def test_dynamic_batch_of_three_runs_in_both_runtimes(converted, node_or_skip):
    name, out, report = converted
    if not report["dynamic_batch"]:
        pytest.skip(f"{name} has a fixed batch")
    t = resolve(str(ROOT / "models" / name), weights=None, inputs=[], kwargs=None)
    module = instantiate(t)
    module.load_state_dict(load_checkpoint(t.weights).state_dict)
    module.eval()
    gen = torch.Generator().manual_seed(7)
    x = torch.randn((3, *t.inputs[0].shape[1:]), generator=gen)
    with torch.no_grad():
        want = module(x).numpy()
    feeds = {"x": x.numpy()}
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got_py,) = session.run(None, feeds)
    [got_web], _ = onnx_route.run_ort_web(out / "model.onnx", [feeds], report["outputs"])
    for got in (got_py, got_web[report["outputs"][0]]):
        assert got.shape == want.shape == (3, *want.shape[1:])
        assert np.max(np.abs(got - want)) <= TARGET * max(1.0, float(np.max(np.abs(want))))


def test_an_op_the_exporter_cannot_translate_is_reported_not_a_crash(nets, tmp_path):
    out = tmp_path / "hypot"
    assert main(["convert", f"{nets}:Hypot", "--input", "2x4", "--out", str(out), "--onnx", "--no-tfjs"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert not (out / "model.onnx").exists()
    section = report["onnx"]
    assert section["file"] is None and "prims.hypot" in section["skipped"]
    assert section["error"]["code"] == "onnx_export_failed"
    runtimes = {r["runtime"]: r for r in report["parity"]["runtimes"]}
    for name in RUNTIMES:
        assert runtimes[name]["skipped"] == section["skipped"]
    assert runtimes["savedmodel"]["ok"] and report["parity"]["ok"]  # the TF route is unaffected
    assert any(n.startswith("ONNX not written: torch.onnx.export could not export") for n in report["notes"])


def test_onnx_strict_makes_an_unexportable_model_exit_5_and_write_nothing(nets, tmp_path, capsys):
    out = tmp_path / "hypot"
    code = main(["convert", f"{nets}:Hypot", "--input", "2x4", "--out", str(out), "--onnx-strict", "--no-tfjs"])
    assert code == 5
    assert "prims.hypot" in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []  # the temporary folder went too


@pytest.mark.node
def test_int64_ids_stay_int64_in_onnx(nets, tmp_path, node_or_skip):
    out = tmp_path / "ids"
    assert main(["convert", f"{nets}:Ids", "--input", "2x5:int64:10", "--out", str(out), "--onnx",
                 "--no-tfjs"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["onnx"]["inputs"][0]["dtype"] == "int64"  # the SavedModel takes int32; ONNX keeps torch's
    assert [o["dtype"] for o in report["onnx"]["outputs"]] == ["float32", "int64"]
    _assert_onnx_runtimes_ok(report)
    web = next(r for r in report["parity"]["runtimes"] if r["runtime"] == "onnxruntime-web-wasm")
    argmax = next(o for o in web["outputs"] if o["name"] == "output_1")
    assert argmax["max_abs_error"] == 0 and argmax["note"] is None  # int64 compared exactly, not as int32


@pytest.mark.node
def test_onnx_takes_torch_layout_even_with_channels_last_io(tmp_path, node_or_skip):
    out = tmp_path / "nhwc"
    assert main(["convert", str(ROOT / "models" / "digits_cnn"), "--out", str(out), "--onnx", "--no-tfjs",
                 "--channels-last-io"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"][0]["layout"] == "NHWC" and report["inputs"][0]["boundary_shape"] == [1, 8, 8, 1]
    assert report["onnx"]["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    _assert_onnx_runtimes_ok(report)


def test_input_sets_a_fixed_size_export_cannot_take_are_named_not_run():
    """When torch could only export a fixed batch (export_onnx's fallback), the batch-of-3 set is noted."""
    from types import SimpleNamespace

    sets = [(torch.zeros(1, 3),), (torch.zeros(3, 3),)]
    port = SimpleNamespace(input_names=["x"], parity_inputs=lambda: sets)
    notes = []
    kept = onnx_route._fitting_sets(port, [{"name": "x", "dtype": "float32", "shape": [1, 3]}], notes)
    assert [k for k, _ in kept] == [0]
    assert notes == ["ONNX: parity input set 1 not checked: x has shape [3, 3], model.onnx takes [1, 3]"]
    notes.clear()
    kept = onnx_route._fitting_sets(port, [{"name": "x", "dtype": "float32", "shape": ["batch", 3]}], notes)
    assert [k for k, _ in kept] == [0, 1] and notes == []


def test_two_exports_are_the_same_bytes_without_debug_info(tmp_path):
    """model.onnx carries no stack traces (local paths) or fx text, so exporting again gives the same file."""
    import bridge

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.ReLU(),
                              torch.nn.Linear(4, 2)).eval()
    port = bridge.convert(net, (torch.randn(2, 3),))
    first, second = tmp_path / "a.onnx", tmp_path / "b.onnx"
    info = onnx_route.export_onnx(port, first)
    onnx_route.export_onnx(port, second)
    assert first.read_bytes() == second.read_bytes()
    model = onnx.load(str(first))
    assert not any(n.metadata_props or n.doc_string for n in model.graph.node)
    assert not model.graph.metadata_props
    assert info["metadata"]["bridge.source"] == port.plan.class_name and "bridge.version" in info["metadata"]
    assert info["bytes"] == first.stat().st_size


@pytest.mark.node
def test_a_file_onnxruntime_web_cannot_load_fails_each_run_with_the_reason(tmp_path, node_or_skip):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not an onnx model")
    feeds = {"x": np.zeros((1, 3), np.float32)}
    results, versions = onnx_route.run_ort_web(bad, [feeds, feeds], ["output_0"])
    assert versions["web"] == "1.30.0"
    assert len(results) == 2 and all(isinstance(r, onnx_route.ExportError) for r in results)
    assert all(r.message for r in results)


RUN_OFFLINE = textwrap.dedent('''
    import sys
    import numpy as np
    from pathlib import Path
    from bridge.export import onnx as onnx_route
    x = np.array([[-1.0, 0.0, 2.0]], np.float32)
    [got], _ = onnx_route.run_ort_web(Path(sys.argv[1]), [{"x": x}], ["y"])
    assert not isinstance(got, Exception), got.message
    assert got["y"].tolist() == [[0.0, 0.0, 2.0]], got["y"]
    print("offline ok")
''')


@pytest.mark.node
def test_onnxruntime_web_runs_with_no_network(tmp_path, node_or_skip):
    """The wasm binary loads from node_modules: the runner works in a network namespace with no interfaces."""
    import shutil
    import subprocess
    import sys

    from onnx import TensorProto, helper

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("cannot cut the network here (unshare -n needs root)")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_route.OPSET)]), str(path))
    script = tmp_path / "offline.py"
    script.write_text(RUN_OFFLINE)
    proc = subprocess.run(["unshare", "-n", sys.executable, str(script), str(path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "offline ok" in proc.stdout, proc.stderr[-2000:]
