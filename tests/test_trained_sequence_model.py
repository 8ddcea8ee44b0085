"""models/digits_lstm, a real trained LSTM: its held-back accuracy measured in torch and in the exported
tfjs model (cpu and wasm in Node) on the same 450 digits must agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bridge.cli import main
from bridge.export.tfjs import run_tfjs
from bridge.target import from_manifest, instantiate

from conftest import ROOT

ENTRY = ROOT / "models" / "digits_lstm"


@pytest.mark.node
def test_heldout_accuracy_is_the_same_in_torch_and_tfjs(tmp_path, node_or_skip):
    out = tmp_path / "digits_lstm"
    assert main(["convert", str(ENTRY), "--out", str(out), "--browser", "", "--no-per-module-tfjs"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["inputs"][0]["free_dims"] == [1]  # the sequence length stays free in the export

    data = np.load(ENTRY / "heldout.npz", allow_pickle=False)
    x, y = data["x"], data["y"]
    target = from_manifest(ENTRY)
    model = instantiate(target).eval()
    model.load_state_dict(torch.load(target.weights, weights_only=True))
    with torch.no_grad():
        torch_pred = model(torch.from_numpy(x)).argmax(-1).numpy()
    torch_acc = float((torch_pred == y).mean())
    assert torch_acc == pytest.approx(0.973333, abs=1e-6)  # the manifest's recorded figure

    results = run_tfjs(out / "tfjs", {"x": x}, ("cpu", "wasm"))
    for backend, outputs in results.items():
        pred = outputs["output_0"].argmax(-1)
        assert (pred == torch_pred).all(), f"{backend}: {(pred != torch_pred).sum()} of {len(y)} predictions differ"
        assert float((pred == y).mean()) == torch_acc
