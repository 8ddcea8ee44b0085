"""Every models/ entry, from its checkpoint file to tfjs running in node on cpu and wasm.

This goes through the CLI exactly as a user would (`bridge convert models/<name>`)
and reads the report it writes.
"""

from __future__ import annotations

import json

import pytest

from bridge.cli import main

from conftest import MODELS, ROOT

# float32 target: max abs error <= 1e-5 relative to the output's scale (max |torch output|, at least 1)
TARGET = 1e-5


@pytest.mark.node
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.browser
def test_model_converts_and_matches_in_every_runtime(name, tmp_path, browser_or_skip):
    out = tmp_path / name
    asked = name == "digits_cnn"  # per-module parity inside tfjs runs by default only when tfjs misses its bound
    assert main(["convert", str(ROOT / "models" / name), "--out", str(out), *(["--per-module-tfjs"] if asked else [])]) == 0
    report = json.loads((out / "report.json").read_text())
    runtimes = {r["runtime"]: r for r in report["parity"]["runtimes"]}
    assert set(runtimes) == {"tf", "savedmodel", "tfjs-cpu", "tfjs-wasm", "browser-webgl"}
    for r in runtimes.values():
        assert r["skipped"] is None and r["ok"], r
        for o in r["outputs"]:
            scale = o["bound"] / 1e-4  # bound = 1e-4 * max(1, max|torch|)
            assert o["max_abs_error"] <= TARGET * scale, (r["runtime"], o)
    assert report["parity"]["first_divergence"] is None
    per_module = report["parity"]["per_module_runtimes"]
    assert set(per_module) == ({"tf", "tfjs-cpu", "tfjs-wasm"} if asked else {"tf"})
    assert all(d["ok"] for v in per_module.values() for d in v)
    assert report["checkpoint"]["sha256"] and len(report["checkpoint"]["sha256"]) == 64
    assert report["keys"]["unused"] == [] and report["keys"]["shared"] == {}
    meta = json.loads((out / "tfjs" / "model.json").read_text())["userDefinedMetadata"]["bridge"]
    assert meta["checkpoint_sha256"] == report["checkpoint"]["sha256"]
    assert meta["parity"]["runtimes"]["tfjs-wasm"]["ok"] is True
    assert [i["name"] for i in meta["inputs"]] == [i["name"] for i in report["inputs"]]
    assert set(meta["output_nodes"]) == set(report["outputs"])
    assert (out / "model_tf.py").read_text().startswith('"""TF port of')
    assert (out / "saved_model" / "saved_model.pb").is_file()


def test_digits_cnn_uses_one_transpose_and_folds_flatten(tmp_path):
    """NCHW -> NHWC once at the input; the flatten before the Linear costs no transpose."""
    out = tmp_path / "d"
    assert main(["convert", str(ROOT / "models" / "digits_cnn"), "--out", str(out), "--no-tfjs"]) == 0
    source = (out / "model_tf.py").read_text()
    assert source.count("tf.transpose(") == 1
    report = json.loads((out / "report.json").read_text())
    assert report["keys"]["used"]["classifier.2.weight"] == "linear_kernel_folded_flatten"
    assert report["dynamic_batch"] is True
    assert report["parity"]["n_inputs"] == 5  # example, 2 random, a batch of 3, the real digits


@pytest.mark.node
def test_per_module_tfjs_names_the_first_diverging_module_when_the_end_outputs_miss(tmp_path, node_or_skip):
    """By default the per-module tfjs graph is built only to localise a miss. A mapping override maps
    Tanh to a sigmoid: the end outputs miss in tfjs, so the per-module graph runs and names module 1."""
    from dataclasses import replace

    import torch
    from torch import nn

    import bridge
    from bridge.mappings._util import stateless
    from bridge.registry import default_registry

    registry = default_registry()
    registry.add(replace(registry.modules[nn.Tanh], plan=lambda module, call: stateless("Sigmoid", call)))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    port = bridge.convert(model, (torch.randn(2, 3),), registry=registry)
    report = port.save(tmp_path / "out", browser_backends=(), write_failing=True)
    parity = report["parity"]
    assert not parity["ok"] and not {r["runtime"]: r for r in parity["runtimes"]}["tfjs-wasm"]["ok"]
    assert "tfjs_per_module_s" in report["timings"]  # not asked for: the miss triggered it
    for runtime in ("tfjs-cpu", "tfjs-wasm"):
        modules = parity["per_module_runtimes"][runtime]
        assert [m["name"] for m in modules if not m["ok"]][:1] == ["1"], modules
        assert modules[0]["name"] == "0" and modules[0]["ok"]  # the Linear before it still matches
    assert parity["first_divergence"] == "1"
    clean = bridge.convert(nn.Sequential(nn.Linear(3, 4)).eval(), (torch.randn(2, 3),))
    clean_report = clean.save(tmp_path / "clean", browser_backends=())
    assert set(clean_report["parity"]["per_module_runtimes"]) == {"tf"}  # nothing missed: no per-module graph
    assert "tfjs_per_module_s" not in clean_report["timings"]
