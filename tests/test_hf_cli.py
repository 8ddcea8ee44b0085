"""HF transformers models through the CLI, as a user runs them (examples/hf_tiny.py): BERT as a
mean-pooled sentence encoder, GPT-2 and a Llama-style decoder, verified in TF, the SavedModel and
tfjs cpu+wasm, with the sequence length left free in the export."""

from __future__ import annotations

import json

import pytest

from bridge.cli import main

from conftest import ROOT

TARGET = 1e-5  # float32: max abs error <= 1e-5 * max(1, max|torch|) on every runtime


@pytest.mark.node
@pytest.mark.parametrize("factory", ["bert_sentence_encoder", "gpt2", "llama"])
def test_hf_model_converts_from_the_cli(factory, tmp_path, node_or_skip):
    out = tmp_path / factory
    argv = ["convert", f"{ROOT}/examples/hf_tiny.py:{factory}", "--input", "2x16:int64:100",
            "--input", "2x16:int64:2", "--out", str(out), "--browser", "", "--no-per-module-tfjs"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    runtimes = {r["runtime"]: r for r in report["parity"]["runtimes"]}
    assert set(runtimes) == {"tf", "savedmodel", "tfjs-cpu", "tfjs-wasm"}
    for r in runtimes.values():
        assert r["ok"], r
        for o in r["outputs"]:
            assert o["max_abs_error"] <= TARGET * o["bound"] / 1e-4, (r["runtime"], o)
    assert [i["free_dims"] for i in report["inputs"]] == [[1], [1]]
    assert report["parity"]["n_inputs"] == 6  # example, 2 random, a batch of 3, and sequences of 19 and 4
    model_json = json.loads((out / "tfjs" / "model.json").read_text())
    shapes = [i["shape"] for i in model_json["userDefinedMetadata"]["bridge"]["inputs"]]
    assert shapes == [[None, None], [None, None]]
