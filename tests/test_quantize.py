"""`bridge convert --quantize`: float16/uint8 tfjs weights, which weights (torch key patterns), and the cost.

Each model is converted once per variant (module-scoped, through the CLI as a user would):
digits_cnn float32, float16 and uint8 (every weight); digits_lstm float32, float16 and
uint8:lstm.* (only the LSTM's weights). The float32 exports are there for the held-out accuracy
comparison, which runs all six tfjs models in one Node process.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bridge.cli import main
from bridge.errors import BadInputError
from bridge.export import quantize

from conftest import ROOT

pytestmark = pytest.mark.node

VARIANTS = {
    ("digits_cnn", "float32"): [],
    ("digits_cnn", "float16"): ["--quantize", "float16"],
    ("digits_cnn", "uint8"): ["--quantize", "uint8"],
    ("digits_lstm", "float32"): [],
    ("digits_lstm", "float16"): ["--quantize", "float16"],
    ("digits_lstm", "uint8:lstm.*"): ["--quantize", "uint8:lstm.*"],
}
FAST = ["--browser", "", "--no-per-module-tfjs"]
BROWSER_VARIANT = ("digits_cnn", "uint8")  # the one also checked in chromium (webgl), when it is there
# parity rows: the example, 2 random, a batch of 3 and the 8 sample digits; the LSTM adds two sets at
# other sequence lengths (its time dim is free: + 3 and a quarter)
ROWS = {"digits_cnn": 1 + 2 + 3 + 8, "digits_lstm": 1 + 2 + 3 + 8 + 2}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from bridge.export.tfjs import node_status

    reason = node_status()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"node tests must run in CI: {reason}")
        pytest.skip(reason)
    from bridge.export.browser import browser_status

    no_browser = browser_status()
    if no_browser and os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {no_browser}")
    root = tmp_path_factory.mktemp("quantize")
    out = {"no_browser": no_browser}
    for (model, variant), flags in VARIANTS.items():
        folder = root / f"{model}-{variant.replace(':', '_').replace('*', 'all')}"
        browser = ["--browser", "webgl"] if (model, variant) == BROWSER_VARIANT and not no_browser else []
        assert main(["convert", str(ROOT / "models" / model), "--out", str(folder), *FAST, *browser, *flags]) == 0
        out[model, variant] = (folder, json.loads((folder / "report.json").read_text()),
                               json.loads((folder / "tfjs" / "model.json").read_text()))
    return out


def _runtimes(report):
    return {r["runtime"]: r for r in report["parity"]["runtimes"]}


@pytest.mark.parametrize("model", ["digits_cnn", "digits_lstm"])
def test_cost_is_measured_and_plausible(exports, model):
    _, f16, _ = exports[model, "float16"]
    u8 = exports[model, "uint8" if model == "digits_cnn" else "uint8:lstm.*"][1]
    for report in (f16, u8):
        q = report["quantization"]
        assert {"tfjs-cpu", "tfjs-wasm"} <= set(q["cost"]) <= {"tfjs-cpu", "tfjs-wasm", "browser-webgl"}
        for runtime, c in q["cost"].items():
            assert c["ok"] and 0 < c["max_abs_error"] and c["rtol"] == q["acceptance"]["rtol"]
            top1 = c["top1"]["output_0"]
            rows = 2 if runtime.startswith("browser-") else ROWS[model]  # the browser runs the first 2 sets
            assert top1["rows"] == rows and top1["rate"] == top1["agree"] / top1["rows"]
            # the runtime's parity entry is the same measurement, at the quantization's bound
            entry = _runtimes(report)[runtime]
            assert entry["ok"] and entry["max_abs_error"] == c["max_abs_error"]
            bound = entry["outputs"][0]["bound"]  # rtol * max(1, max|torch|) of the worst input set
            assert bound >= c["rtol"] and c["max_abs_error"] <= bound
        # tf and the SavedModel are float32 and keep the float bound
        for runtime in ("tf", "savedmodel"):
            r = _runtimes(report)[runtime]
            assert r["ok"] and r["max_rel_error"] < 1e-5
            assert r["outputs"][0]["bound"] < _runtimes(report)["tfjs-cpu"]["outputs"][0]["bound"]
    f16_cost, u8_cost = f16["quantization"]["cost"]["tfjs-wasm"], u8["quantization"]["cost"]["tfjs-wasm"]
    assert f16_cost["max_rel_error"] < 2e-3  # float16 weights: about 1e-4 measured
    assert f16_cost["max_rel_error"] < u8_cost["max_rel_error"] < 5e-2
    assert f16_cost["top1"]["output_0"]["rate"] == 1.0
    assert u8_cost["top1"]["output_0"]["rate"] >= 13 / 14
    assert f16["quantization"]["acceptance"]["rtol"] == 1e-2 and u8["quantization"]["acceptance"]["rtol"] == 1e-1


@pytest.mark.browser
def test_browser_is_held_to_the_quantized_bound(exports):
    if exports["no_browser"]:
        pytest.skip(exports["no_browser"])
    _, report, model_json = exports[BROWSER_VARIANT]
    webgl = report["quantization"]["cost"]["browser-webgl"]
    entry = _runtimes(report)["browser-webgl"]
    assert entry["ok"] and webgl["ok"] and webgl["max_abs_error"] == entry["max_abs_error"] > 1e-3
    assert webgl["rtol"] == 1e-1 and entry["outputs"][0]["bound"] >= 1e-1
    assert webgl["top1"]["output_0"] == {"agree": 2, "rows": 2, "rate": 1.0}
    assert model_json["userDefinedMetadata"]["bridge"]["quantization"]["cost"]["browser-webgl"] == webgl


def test_float_export_has_no_quantization(exports):
    for model in ("digits_cnn", "digits_lstm"):
        _, report, model_json = exports[model, "float32"]
        assert report["quantization"] is None
        assert "quantization" not in model_json["userDefinedMetadata"]["bridge"]
        assert not any(w.get("quantization") for g in model_json["weightsManifest"] for w in g["weights"])
        assert all(o["bound"] < 5e-3 for r in report["parity"]["runtimes"] for o in r["outputs"])


@pytest.mark.parametrize("model", ["digits_cnn", "digits_lstm"])
def test_weight_bytes_shrink(exports, model):
    float_bytes = exports[model, "float32"][1]["tfjs"]["weights_bytes"]
    f16 = exports[model, "float16"][1]["quantization"]
    assert f16["weight_bytes_before"] == float_bytes  # float32 bytes of the same weights
    assert f16["weight_bytes_after"] == exports[model, "float16"][1]["tfjs"]["weights_bytes"]
    assert 1.9 < float_bytes / f16["weight_bytes_after"] <= 2.0  # int32 constants (shapes, perms) stay 4 bytes
    assert f16["weights_quantized"] == f16["weights_float32"]
    if model == "digits_cnn":
        u8 = exports[model, "uint8"][1]["quantization"]
        assert 3.8 < float_bytes / u8["weight_bytes_after"] <= 4.0


def test_every_weight_is_traced_to_its_torch_keys(exports):
    """The weight-name mapping is exact: each float32 tfjs weight comes from the keys of one torch module,
    and together they use every bound key (BatchNorm's folded scale from weight + running_var)."""
    _, report, _ = exports["digits_cnn", "uint8"]
    weights = report["quantization"]["weights"]
    assert len(weights) == 20 and all(w["keys"] for w in weights) and report["quantization"]["untraced"] == []
    for w in weights:
        assert len({k.rsplit(".", 1)[0] for k in w["keys"]}) == 1, w  # one module per weight
    assert {k for w in weights for k in w["keys"]} == set(report["keys"]["used"])
    by_keys = {tuple(w["keys"]): w for w in weights}
    assert by_keys[("features.1.running_var", "features.1.weight")]["shape"] == [16]  # gamma * rsqrt(var + eps)
    assert by_keys[("classifier.2.weight",)]["shape"] == [128, 64]  # Linear kernel, rows permuted for NHWC


def test_pattern_quantizes_only_the_matched_weights(exports):
    folder, report, model_json = exports["digits_lstm", "uint8:lstm.*"]
    q = report["quantization"]
    assert q["rules"][0]["patterns"] == ["lstm.*"]
    manifest = {w["name"]: w for g in model_json["weightsManifest"] for w in g["weights"]}
    by_name = {w["name"]: w for w in q["weights"]}
    quantized = {n for n, w in manifest.items() if w.get("quantization")}
    lstm = {n for n, w in by_name.items() if w["keys"] and all(k.startswith("lstm.") for k in w["keys"])}
    assert quantized == lstm and len(lstm) == 3  # weight_ih, the summed biases, weight_hh (a loop input)
    assert all(manifest[n]["quantization"]["dtype"] == "uint8" for n in quantized)
    head = {n for n, w in by_name.items() if any(k.startswith("head.") for k in w["keys"])}
    assert len(head) == 2 and not head & quantized and all(manifest[n]["dtype"] == "float32" for n in head)
    assert q["weights_quantized"] == 3 and q["weight_bytes_after"] < q["weight_bytes_before"]
    # the zeros of the initial state come from no torch key: no pattern selects them
    assert q["untraced"] and not set(q["untraced"]) & quantized
    assert all(manifest[n]["shape"] == [] for n in q["untraced"])
    keys = {k for n in quantized for k in by_name[n]["keys"]}
    assert keys == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"}


@pytest.mark.parametrize("variant", [("digits_cnn", "uint8"), ("digits_lstm", "uint8:lstm.*")])
def test_metadata_carries_the_quantization_and_its_cost(exports, variant):
    _, report, model_json = exports[variant]
    meta = model_json["userDefinedMetadata"]["bridge"]["quantization"]
    q = report["quantization"]
    assert meta["dtype"] == "uint8" and meta["cost"] == q["cost"] and meta["acceptance"] == q["acceptance"]
    assert meta["weight_bytes_before"] == q["weight_bytes_before"]
    assert meta["weight_bytes_after"] == q["weight_bytes_after"]
    assert meta["rules"] == [{**r, "weights": len(r["weights"])} for r in q["rules"]]
    assert any("quantized" in n for n in report["notes"])


def test_heldout_accuracy_float_vs_quantized(exports):
    """The models/ classifiers on their held-back data (450 digits), float32 and quantized tfjs, one Node run."""
    runs = {}
    for (model, variant), (folder, _, _) in ((k, v) for k, v in exports.items() if k != "no_browser"):
        x, y = quantize.load_heldout(ROOT / "models" / model)
        runs[f"{model} {variant}"] = (folder / "tfjs", x, y)
    acc = quantize.heldout_accuracy(runs)
    for model in ("digits_cnn", "digits_lstm"):
        manifest = json.loads((ROOT / "models" / model / "bridge.json").read_text())
        expected = manifest["metrics"]["test_accuracy"]
        float_acc = acc[f"{model} float32"]
        assert float_acc["n"] == 450 and abs(float_acc["accuracy"] - expected) < 1 / 450 / 2  # as torch measured
        for label, a in acc.items():
            if label.startswith(model):
                assert abs(a["accuracy"] - float_acc["accuracy"]) <= 2 / 450, (label, a, float_acc)


def test_heldout_data_is_the_test_split():
    x, y = quantize.load_heldout(ROOT / "models" / "digits_cnn")  # sklearn's bundled digits, train.py's split
    assert x.shape == (450, 1, 8, 8) and x.dtype == np.float32 and y.shape == (450,)
    sample = np.load(ROOT / "models" / "digits_cnn" / "sample_inputs.npz")
    np.testing.assert_array_equal(x[:8], sample["x"])
    x2, y2 = quantize.load_heldout(ROOT / "models" / "digits_lstm")  # heldout.npz
    assert x2.shape == (450, 8, 8) and np.array_equal(y, y2)
    assert quantize.load_heldout(ROOT / "models" / "two_layer") is None


@pytest.mark.parametrize("flags, message", [
    (["--quantize", "int4"], "the dtype must be one of float16, uint8"),
    (["--quantize", "uint8:"], "no pattern after ':'"),
    (["--quantize", "uint8", "--quantize", "float16"], "at most one rule without patterns"),
    (["--quantize", "uint8:decoder.*"], "pattern 'decoder.*' matches no weight"),
    (["--quantize", "uint8:features.*", "--quantize", "float16:features.3"], "selected for both"),
    (["--quantize", "uint8", "--no-tfjs"], "cannot go with --no-tfjs"),
])
def test_bad_quantize_is_a_clear_error(tmp_path, capsys, flags, message):
    out = tmp_path / "x"
    assert main(["convert", str(ROOT / "models" / "digits_cnn"), "--out", str(out), *FAST, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_pattern_whose_keys_make_no_weight_is_refused(exports):
    """features.1.running_var matches a key, but no tfjs weight is made of it alone (the folded BatchNorm
    scale also needs features.1.weight): nothing would be quantized, so it is a BadInputError."""
    _, report, model_json = exports["digits_cnn", "float32"]
    attribution = {w["name"]: w["keys"] for w in exports["digits_cnn", "uint8"][1]["quantization"]["weights"]}
    floats = [w for g in model_json["weightsManifest"] for w in g["weights"] if w["dtype"] == "float32"]
    request = {"rules": [{"dtype": "uint8", "patterns": ["features.1.running_var"],
                          "keys": ["features.1.running_var"]}]}
    with pytest.raises(BadInputError, match="no tfjs weight is computed from those keys alone"):
        quantize._expected(floats, request, attribution)
    request["rules"][0].update(patterns=["features.1"], keys=sorted(k for k in report["keys"]["used"]
                                                                    if k.startswith("features.1.")))
    assert set(quantize._expected(floats, request, attribution)) == {
        n for n, keys in attribution.items() if keys[0].startswith("features.1.")}


def test_patterns_are_module_paths_or_key_globs():
    assert quantize.key_matches("features.3.weight", "features.3")
    assert quantize.key_matches("features.3.weight", "features.*")
    assert quantize.key_matches("classifier.5.bias", "*.bias")
    assert not quantize.key_matches("features.30.weight", "features.3")
    assert not quantize.key_matches("Features.3.weight", "features.3")
    spec = quantize.parse(["uint8:features.*,classifier.2", "float16"])
    assert [r.describe() for r in spec.rules] == ["uint8:features.*,classifier.2", "float16"]
    assert spec.rtol == 1e-1 and quantize.parse([]) is None
    from bridge.export.save import SaveOptions  # the Python API takes the CLI's text too

    assert quantize.spec_of(SaveOptions(quantize="float16:classifier.*")).rules == (
        quantize.Rule("float16", ("classifier.*",)),)
    assert quantize.spec_of(SaveOptions(quantize=spec)) is spec and quantize.spec_of(SaveOptions()) is None
