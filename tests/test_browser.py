"""tfjs in a real browser: the converted model run in headless Chromium (webgl, wasm, cpu) against TF.

Two tiny SavedModels are built here (a NHWC conv net with a dense head, and a
model with two same-shape inputs and two same-shape outputs), converted once
per module and run once per module on all three backends; the tests then
assert on those runs. Tests marked `browser` skip when chromium, node or
playwright-core is missing, except under CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bridge.errors import ExportError
from bridge.export.browser import BACKENDS, browser_status, run_browser
from bridge.export.tfjs import convert_to_tfjs

# TF and tfjs float32 kernels differ by about 1e-6 (TOOLCHAIN-NOTES), on webgl
# too as long as it renders to float32 textures. Scaled by the output's size.
REL_TOL = 1e-5
BATCH = 2
# Taken once: pytest warns on each use of a mark that pyproject does not list.
browser = pytest.mark.browser


# ---------------------------------------------------------------- tiny models


class ConvNet(tf.Module):
    """NHWC conv -> relu -> strided conv -> global mean -> dense: the usual image-classifier tail."""

    def __init__(self, rng):
        super().__init__()
        self.k1 = tf.Variable(rng.standard_normal((3, 3, 3, 8)).astype(np.float32) * 0.3)
        self.b1 = tf.Variable(rng.standard_normal(8).astype(np.float32) * 0.1)
        self.k2 = tf.Variable(rng.standard_normal((3, 3, 8, 16)).astype(np.float32) * 0.2)
        self.w = tf.Variable(rng.standard_normal((16, 10)).astype(np.float32) * 0.3)
        self.b = tf.Variable(rng.standard_normal(10).astype(np.float32) * 0.1)

    @tf.function(input_signature=[tf.TensorSpec([None, 16, 16, 3], tf.float32, name="image")])
    def __call__(self, image):
        x = tf.nn.relu(tf.nn.conv2d(image, self.k1, 1, "SAME") + self.b1)
        x = tf.nn.relu6(tf.nn.conv2d(x, self.k2, 2, "VALID"))
        x = tf.reduce_mean(x, axis=[1, 2])
        return {"logits": tf.matmul(x, self.w) + self.b}


class TwoHeads(tf.Module):
    """Two inputs of one shape and two outputs of one shape, plus an int32 output.

    The output keys sort in the opposite order to how they are built, so a swap
    of names (of inputs or of outputs) shows up as a large error.
    """

    def __init__(self, rng):
        super().__init__()
        self.w1 = tf.Variable(rng.standard_normal((6, 4)).astype(np.float32))
        self.w2 = tf.Variable(rng.standard_normal((6, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="a"),
                                  tf.TensorSpec([None, 6], tf.float32, name="b")])
    def __call__(self, a, b):
        z_head = tf.tanh(tf.matmul(a, self.w1))
        a_head = tf.sigmoid(tf.matmul(b, self.w2)) * 3.0
        return {"z_head": z_head, "a_head": a_head,
                "top": tf.argmax(a_head - z_head, axis=-1, output_type=tf.int32)}


MODELS = {"conv_net": ConvNet, "two_heads": TwoHeads}


def _inputs(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if name == "conv_net":
        return {"image": rng.standard_normal((BATCH, 16, 16, 3)).astype(np.float32)}
    return {"a": rng.standard_normal((BATCH, 6)).astype(np.float32),
            "b": rng.standard_normal((BATCH, 6)).astype(np.float32)}


def tf_outputs(saved_model: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def max_abs_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def bound(ref: np.ndarray) -> float:
    return REL_TOL * max(1.0, float(np.max(np.abs(ref), initial=0.0)))


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def browser_ready():
    reason = browser_status()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (saved_model dir, tfjs dir), each saved and converted once per module."""
    cache: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in cache:
            root = tmp_path_factory.mktemp(name)
            module = MODELS[name](np.random.default_rng(0))
            tf.saved_model.save(module, str(root / "saved_model"),
                                signatures=module.__call__.get_concrete_function())
            convert_to_tfjs(root / "saved_model", root / "tfjs", metadata={"model": name})
            cache[name] = (root / "saved_model", root / "tfjs")
        return cache[name]

    return get


@pytest.fixture(scope="module")
def browser_run(browser_ready, exported):
    """name -> (inputs, TF outputs, run_browser result on all backends), run once per module."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            saved, tfjs_dir = exported(name)
            inputs = _inputs(name, np.random.default_rng(1))
            cache[name] = (inputs, tf_outputs(saved, inputs), run_browser(tfjs_dir, inputs))
        return cache[name]

    return get


# ---------------------------------------------------------------- tests


@browser
@pytest.mark.parametrize("name", sorted(MODELS))
def test_browser_matches_tf_on_every_backend(name, browser_run):
    _, expected, got = browser_run(name)
    assert set(got) == set(BACKENDS)
    assert got.info["webgl"]["float32_textures"] is True, got.info["webgl"]  # else REL_TOL does not hold
    for backend, outputs in got.items():
        assert set(outputs) == set(expected), backend
        for out_name, want in expected.items():
            err = max_abs_err(outputs[out_name], want)
            print(f"{name}/{out_name} on {backend}: max abs err {err:.3g} (bound {bound(want):.3g})")
            assert outputs[out_name].dtype == want.dtype, (backend, out_name)
            assert err <= bound(want), (backend, out_name, err)
            if want.dtype.kind in "iu":
                assert err == 0.0, (backend, out_name)


@browser
def test_backends_report_what_they_ran_on(browser_run):
    _, _, got = browser_run("conv_net")
    assert got.browser.split(".")[0].isdigit()
    assert got.info["webgl"]["webgl_version"] == 2
    assert "SwiftShader" in got.info["webgl"]["renderer"]
    assert got.info["wasm"]["simd"] is True
    assert all(info["tfjs_version"] == "4.22.0" for info in got.info.values())


@browser
def test_same_shape_inputs_and_outputs_are_not_swapped(browser_run, exported):
    inputs, expected, got = browser_run("two_heads")
    # Swapping the outputs, or the inputs, changes the result a lot: a swap cannot pass.
    assert max_abs_err(expected["z_head"], expected["a_head"]) > 0.5
    crossed = tf_outputs(exported("two_heads")[0], {"a": inputs["b"], "b": inputs["a"]})
    assert min(max_abs_err(crossed[k], expected[k]) for k in ("z_head", "a_head")) > 0.1
    for backend, outputs in got.items():
        for out_name in ("z_head", "a_head"):
            err = max_abs_err(outputs[out_name], expected[out_name])
            assert err <= bound(expected[out_name]), (backend, out_name, err)


@browser
def test_js_error_surfaces_as_export_error(browser_ready, exported, tmp_path):
    """An op tfjs does not know makes loadGraphModel throw in the page; the error must reach Python."""
    broken = tmp_path / "broken"
    shutil.copytree(exported("conv_net")[1], broken)
    model_json = json.loads((broken / "model.json").read_text())
    node = next(n for n in model_json["modelTopology"]["node"] if n["op"] not in ("Placeholder", "Const"))
    node["op"] = "BridgeNoSuchOp"
    (broken / "model.json").write_text(json.dumps(model_json))
    inputs = _inputs("conv_net", np.random.default_rng(2))
    with pytest.raises(ExportError) as info:
        run_browser(broken, inputs, backends=("cpu",))
    assert "cpu: " in info.value.message and "BridgeNoSuchOp" in info.value.message
    assert set(info.value.details["errors"]) == {"cpu"}
    assert "BridgeNoSuchOp" in info.value.details["errors"]["cpu"]


def test_bad_backend_raises_before_any_browser_starts(tmp_path):
    with pytest.raises(ExportError, match="browser backends must be some of"):
        run_browser(tmp_path, {}, backends=("webgpu",))


def test_browser_status_names_a_missing_chromium(monkeypatch, tmp_path):
    reason = browser_status()
    if reason is not None and not reason.startswith("chromium"):
        pytest.skip(f"node or playwright-core is not usable, the chromium check is never reached: {reason}")
    monkeypatch.setenv("BRIDGE_CHROMIUM", str(tmp_path / "no-chromium"))
    reason = browser_status()
    assert reason is not None and reason.startswith(f"chromium not found at {tmp_path / 'no-chromium'}")
    with pytest.raises(ExportError, match="cannot run the tfjs model in a browser: chromium not found"):
        run_browser(tmp_path, {})
