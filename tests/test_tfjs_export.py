"""tfjs export: conversion, name maps, determinism, and parity with TF in Node (cpu, wasm).

Tiny SavedModels are built here with tf.Module + tf.function (None batch dim),
converted once per module run, and compared output by output, by name, with TF.
Tests that need node are marked `node`: they skip when node or the npm packages
are missing, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bridge.errors import BadInputError, ExportError
from bridge.export.tfjs import (
    convert_many_to_tfjs,
    convert_to_tfjs,
    node_status,
    run_many_tfjs,
    run_tfjs,
)

# TF and tfjs float32 kernels differ by about 1e-6 on these sizes (TOOLCHAIN-NOTES).
TOL = 1e-5
BATCH = 3  # not the traced size: proves the None batch dim survives conversion


# ---------------------------------------------------------------- tiny models


class Dense(tf.Module):
    """relu(x @ W + b): matmul, bias and activation, which the converter fuses."""

    def __init__(self, rng):
        super().__init__()
        self.w = tf.Variable(rng.standard_normal((8, 5)).astype(np.float32))
        self.b = tf.Variable(rng.standard_normal(5).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.nn.relu(tf.matmul(x, self.w) + self.b)}


class TwoSameShape(tf.Module):
    """Two inputs and two outputs, all of one shape: the case where the converter's names break."""

    def __init__(self, rng):
        super().__init__()

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="a"),
                                  tf.TensorSpec([None, 4], tf.float32, name="b")])
    def __call__(self, a, b):
        # Keys sort in the opposite order to how the outputs are built.
        return {"z_twice": a * 2.0, "a_plus_one": b + 1.0}


class Embedding(tf.Module):
    """int32 ids gathered from a table, plus an int32 output."""

    def __init__(self, rng):
        super().__init__()
        self.table = tf.Variable(rng.standard_normal((10, 6)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.int32, name="ids")])
    def __call__(self, ids):
        emb = tf.gather(self.table, ids)
        return {"emb": emb, "top": tf.argmax(tf.reduce_sum(emb, -1), axis=-1, output_type=tf.int32)}


class Embedding64(tf.Module):
    """A token model as TF writes it: int64 ids in the signature, gathered, and echoed back."""

    def __init__(self, rng):
        super().__init__()
        self.table = tf.Variable(rng.standard_normal((10, 6)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.int64, name="input_ids")])
    def __call__(self, input_ids):
        return {"emb": tf.gather(self.table, tf.math.floormod(input_ids, 10)), "echo": tf.identity(input_ids)}


class Mlp(tf.Module):
    """Several weights of several shapes, for the byte-identical conversion test."""

    def __init__(self, rng):
        super().__init__()
        self.ws = [tf.Variable(rng.standard_normal(s).astype(np.float32)) for s in ((16, 32), (32, 32), (32, 4))]
        self.bs = [tf.Variable(rng.standard_normal(s[1]).astype(np.float32)) for s in ((16, 32), (32, 32), (32, 4))]

    @tf.function(input_signature=[tf.TensorSpec([None, 16], tf.float32, name="x")])
    def __call__(self, x):
        for w, b in zip(self.ws, self.bs):
            x = tf.tanh(tf.matmul(x, w) + b)
        return {"y": tf.nn.softmax(x)}


class EinsumModel(tf.Module):
    """Einsum converts and runs on cpu, but the wasm backend has no Einsum kernel."""

    def __init__(self, rng):
        super().__init__()
        self.w = tf.Variable(rng.standard_normal((4, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.einsum("bi,ij->bj", x, self.w)}


class ErfcModel(tf.Module):
    """Erfc is not in tfjs's op list: conversion must fail and name it."""

    def __init__(self, rng):
        super().__init__()

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.math.erfc(x)}


MODELS = {"dense": Dense, "two_same_shape": TwoSameShape, "embedding": Embedding, "embedding64": Embedding64,
          "mlp": Mlp, "einsum": EinsumModel, "erfc": ErfcModel}
CONVERTIBLE = [n for n in MODELS if n != "erfc"]


def _inputs(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if name == "two_same_shape":
        return {"a": rng.standard_normal((BATCH, 4)).astype(np.float32),
                "b": rng.standard_normal((BATCH, 4)).astype(np.float32)}
    if name == "embedding":
        return {"ids": rng.integers(0, 10, (BATCH, 3)).astype(np.int32)}
    if name == "embedding64":  # ids at both ends of int32, as int64 (what a tokenizer gives)
        ids = rng.integers(0, 50_000, (BATCH, 4))
        ids[0, :2] = [2**31 - 1, -(2**31)]
        return {"input_ids": ids.astype(np.int64)}
    width = {"dense": 8, "mlp": 16}.get(name, 4)
    return {"x": rng.standard_normal((BATCH, width)).astype(np.float32)}


# ---------------------------------------------------------------- fixtures


@dataclass
class Exported:
    saved_model: Path
    tfjs_dir: Path
    stats: dict


def save_model(name: str, path: Path) -> Path:
    module = MODELS[name](np.random.default_rng(0))
    tf.saved_model.save(module, str(path), signatures=module.__call__.get_concrete_function())
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> Exported: every convertible model saved, then converted in one converter process."""
    root = tmp_path_factory.mktemp("exported")
    saved = {n: save_model(n, root / n / "saved_model") for n in CONVERTIBLE}
    stats = convert_many_to_tfjs([(saved[n], root / n / "tfjs", {"model": n}) for n in CONVERTIBLE])
    assert all(isinstance(s, dict) for s in stats), stats
    return {n: Exported(saved[n], root / n / "tfjs", s) for n, s in zip(CONVERTIBLE, stats)}.__getitem__


@pytest.fixture
def node_ready():
    reason = node_status()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"node tests must run in CI: {reason}")
    pytest.skip(reason)


def tf_outputs(saved_model: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    fn = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def max_abs_err(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


# ---------------------------------------------------------------- conversion (no node needed)


def test_convert_reports_ops_weights_and_name_maps(exported):
    import json

    dense = exported("dense")
    assert dense.stats["weights_bytes"] == (8 * 5 + 5) * 4
    assert dense.stats["transpose_count"] == 0
    assert dense.stats["op_counts"].get("_FusedMatMul", 0) + dense.stats["op_counts"].get("MatMul", 0) == 1
    bridge_meta = json.loads((dense.tfjs_dir / "model.json").read_text())["userDefinedMetadata"]["bridge"]
    assert bridge_meta["model"] == "dense"
    assert set(bridge_meta["output_nodes"]) == {"y"} and set(bridge_meta["input_nodes"]) == {"x"}


def test_two_same_shape_outputs_get_distinct_nodes(exported):
    import json

    model_json = json.loads((exported("two_same_shape").tfjs_dir / "model.json").read_text())
    nodes = model_json["userDefinedMetadata"]["bridge"]["output_nodes"]
    assert set(nodes) == {"z_twice", "a_plus_one"}
    assert len(set(nodes.values())) == 2


def test_conversion_is_byte_identical(exported, tmp_path):
    """convert_to_tfjs alone gives the same bytes as the batch conversion in the fixture."""
    first = exported("mlp")
    second = convert_to_tfjs(first.saved_model, tmp_path / "again", metadata={"model": "mlp"})
    assert second == first.stats
    files = sorted(p.name for p in first.tfjs_dir.iterdir())
    assert files == sorted(p.name for p in (tmp_path / "again").iterdir())
    assert "model.json" in files and len(files) >= 2
    for name in files:
        assert (first.tfjs_dir / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_converting_into_a_used_dir_replaces_model_and_shards_only(exported, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.json").write_text("{}")
    (out / "group1-shard9of9.bin").write_bytes(b"stale")
    (out / "README").write_text("kept")
    convert_to_tfjs(exported("dense").saved_model, out, metadata={"model": "dense"})
    assert sorted(p.name for p in out.iterdir()) == ["README", "group1-shard1of1.bin", "model.json"]
    assert (out / "model.json").read_bytes() == (exported("dense").tfjs_dir / "model.json").read_bytes()


def test_unsupported_op_raises_export_error_naming_it(tmp_path):
    saved = save_model("erfc", tmp_path / "saved_model")
    with pytest.raises(ExportError) as info:
        convert_to_tfjs(saved, tmp_path / "tfjs", metadata={})
    assert "Erfc" in info.value.message
    assert info.value.details["unsupported_ops"] == ["Erfc"]
    assert not (tmp_path / "tfjs" / "model.json").exists()


def test_converter_subprocess_runs_with_onednn_off(exported, tmp_path, monkeypatch):
    """oneDNN fusions write ops tfjs cannot run; the converter's process must have them off."""
    import json
    import subprocess

    import bridge.export.tfjs as tfjs_mod

    seen = {}

    def fake_run(cmd, **kwargs):
        seen.update(kwargs)
        Path(cmd[-1]).write_text(json.dumps({"ok": False, "error": "ValueError: stopped by the test"}) + "\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    monkeypatch.setenv("BRIDGE_TFJS_SUBPROCESS", "1")  # as when this process runs TF with oneDNN on
    monkeypatch.setattr(tfjs_mod.subprocess, "run", fake_run)
    with pytest.raises(ExportError, match="stopped by the test"):
        convert_to_tfjs(exported("dense").saved_model, tmp_path / "tfjs", metadata={})
    assert seen["env"]["TF_ENABLE_ONEDNN_OPTS"] == "0"


def test_bad_arguments_raise_export_error(exported, tmp_path):
    with pytest.raises(ExportError, match="no SavedModel"):
        convert_to_tfjs(tmp_path / "nothing", tmp_path / "tfjs", metadata={})
    with pytest.raises(ExportError, match="JSON"):
        convert_to_tfjs(exported("dense").saved_model, tmp_path / "tfjs", metadata={"bad": object()})
    with pytest.raises(ExportError, match="signature 'nope' not found"):
        convert_to_tfjs(exported("dense").saved_model, tmp_path / "tfjs", metadata={}, signature="nope")


def test_convert_many_reports_each_job_and_converts_the_rest(exported, tmp_path):
    """Bad jobs (no SavedModel, unsupported op, bad metadata, a repeated out_dir) fail alone."""
    erfc = save_model("erfc", tmp_path / "erfc_saved")
    dense = exported("dense").saved_model
    jobs = [(tmp_path / "nothing", tmp_path / "a", {}), (erfc, tmp_path / "b", {}),
            (dense, tmp_path / "c", {"model": "dense"}), (dense, tmp_path / "d", {"bad": object()}),
            (dense, tmp_path / "c", {})]
    results = convert_many_to_tfjs(jobs)
    assert [type(r).__name__ for r in results] == ["ExportError", "ExportError", "dict", "ExportError", "ExportError"]
    assert "no SavedModel" in results[0].message
    assert results[1].details["unsupported_ops"] == ["Erfc"]
    assert "JSON" in results[3].message and "two jobs write to" in results[4].message
    assert results[2] == exported("dense").stats
    assert (tmp_path / "c" / "model.json").read_bytes() == (exported("dense").tfjs_dir / "model.json").read_bytes()
    assert not (tmp_path / "b" / "model.json").exists()


def test_convert_many_uses_one_subprocess_with_onednn_off(exported, tmp_path, monkeypatch):
    import bridge.export.tfjs as tfjs_mod

    real_run, envs = tfjs_mod.subprocess.run, []

    def counting_run(cmd, **kwargs):
        envs.append(kwargs["env"]["TF_ENABLE_ONEDNN_OPTS"])
        return real_run(cmd, **kwargs)

    monkeypatch.setenv("BRIDGE_TFJS_SUBPROCESS", "1")
    monkeypatch.setattr(tfjs_mod.subprocess, "run", counting_run)
    names = ["dense", "mlp", "two_same_shape"]
    results = convert_many_to_tfjs([(exported(n).saved_model, tmp_path / n, {"model": n}) for n in names])
    assert envs == ["0"]
    assert results == [exported(n).stats for n in names]


def test_converter_runs_in_process_when_onednn_is_off_with_the_same_bytes(exported, tmp_path, monkeypatch):
    """The tests (like the CLI) import TF with oneDNN off: no worker is started, and the result is the
    worker's, byte for byte."""
    import bridge.export.tfjs as tfjs_mod

    assert tfjs_mod.in_process_problem() is None
    started = []
    monkeypatch.setattr(tfjs_mod, "_run_worker", lambda *a: started.append(a))
    names = ["dense", "mlp"]
    results = convert_many_to_tfjs([(exported(n).saved_model, tmp_path / n, {"model": n}) for n in names])
    assert started == [] and results == [exported(n).stats for n in names]
    monkeypatch.undo()
    monkeypatch.setenv("BRIDGE_TFJS_SUBPROCESS", "1")
    assert "BRIDGE_TFJS_SUBPROCESS" in tfjs_mod.in_process_problem()
    convert_many_to_tfjs([(exported("mlp").saved_model, tmp_path / "worker", {"model": "mlp"})])
    for f in sorted((tmp_path / "mlp").iterdir()):
        assert f.read_bytes() == (tmp_path / "worker" / f.name).read_bytes(), f.name


def test_a_crashed_converter_fails_one_job_and_the_rest_are_retried(exported, tmp_path, monkeypatch):
    """The worker dies on job 2 of 4 (after writing job 1's line): job 2 gets the crash, 3 and 4 run again."""
    import json
    import subprocess

    import bridge.export.tfjs as tfjs_mod

    real_run, calls = tfjs_mod.subprocess.run, []

    def crash_once(cmd, **kwargs):
        calls.append(len(json.loads(Path(cmd[-2]).read_text())["jobs"]))
        if len(calls) > 1:
            return real_run(cmd, **kwargs)
        Path(cmd[-1]).write_text(json.dumps({"ok": True}) + "\n")  # as if job 1 was done (it was not)
        return subprocess.CompletedProcess(cmd, -11, "", "Segmentation fault")

    monkeypatch.setenv("BRIDGE_TFJS_SUBPROCESS", "1")
    monkeypatch.setattr(tfjs_mod.subprocess, "run", crash_once)
    names = ["dense", "mlp", "dense", "mlp"]
    results = convert_many_to_tfjs([(exported(n).saved_model, tmp_path / str(i), {}) for i, n in enumerate(names)])
    assert calls == [4, 2]
    assert isinstance(results[0], ExportError) and "wrote no model.json" in results[0].message
    assert isinstance(results[1], ExportError) and "crashed (exit code -11)" in results[1].message
    assert "Segmentation fault" in results[1].details["log"]
    assert results[2] == exported("dense").stats and results[3] == exported("mlp").stats


def test_node_status_names_missing_packages(monkeypatch, tmp_path):
    monkeypatch.setenv("BRIDGE_JS_DIR", str(tmp_path))
    if node_status() == "node not found on PATH":
        pytest.skip("node not on PATH: the package check is never reached")
    assert node_status() == f"npm packages missing: run `npm ci --prefix {tmp_path}`"
    with pytest.raises(ExportError, match="npm packages missing"):
        run_tfjs(tmp_path, {})
    monkeypatch.setenv("PATH", str(tmp_path))
    assert node_status() == "node not found on PATH"


# ---------------------------------------------------------------- running in Node


@pytest.mark.node
@pytest.mark.parametrize("name", ["dense", "two_same_shape", "embedding", "mlp"])
def test_tfjs_matches_tf_on_cpu_and_wasm(name, node_ready, exported):
    model = exported(name)
    inputs = _inputs(name, np.random.default_rng(1))
    expected = tf_outputs(model.saved_model, inputs)
    got = run_tfjs(model.tfjs_dir, inputs)
    assert set(got) == {"cpu", "wasm"}
    for backend, outputs in got.items():
        assert set(outputs) == set(expected), backend
        for out_name, want in expected.items():
            err = max_abs_err(outputs[out_name], want)
            print(f"{name}/{out_name} on {backend}: max abs err {err:.3g}")
            assert err <= TOL, (backend, out_name, err)
            if want.dtype.kind in "iu":
                assert err == 0.0, (backend, out_name)


@pytest.mark.node
def test_same_shape_outputs_are_not_swapped(node_ready, exported):
    model = exported("two_same_shape")
    inputs = _inputs("two_same_shape", np.random.default_rng(2))
    expected = tf_outputs(model.saved_model, inputs)
    # The two outputs differ a lot, so a swap (of outputs or of inputs) cannot pass.
    assert max_abs_err(expected["z_twice"], expected["a_plus_one"]) > 0.5
    for backend, outputs in run_tfjs(model.tfjs_dir, inputs).items():
        assert max_abs_err(outputs["z_twice"], inputs["a"] * 2.0) <= TOL, backend
        assert max_abs_err(outputs["a_plus_one"], inputs["b"] + 1.0) <= TOL, backend


@pytest.mark.node
def test_int64_inputs_are_cast_and_range_checked(node_ready, exported):
    model = exported("embedding")
    ids = np.random.default_rng(3).integers(0, 10, (BATCH, 3))
    expected = tf_outputs(model.saved_model, {"ids": ids.astype(np.int32)})
    got = run_tfjs(model.tfjs_dir, {"ids": ids.astype(np.int64)}, backends=("cpu",))
    assert max_abs_err(got["cpu"]["emb"], expected["emb"]) <= TOL
    assert got["cpu"]["top"].dtype == np.int32
    with pytest.raises(BadInputError, match="outside int32"):
        run_tfjs(model.tfjs_dir, {"ids": np.full((1, 3), 2**40, np.int64)})


@pytest.mark.node
def test_wrong_inputs_raise_export_error(node_ready, exported):
    model = exported("dense")
    with pytest.raises(ExportError, match="do not match the signature"):
        run_tfjs(model.tfjs_dir, {"wrong": np.zeros((1, 8), np.float32)})
    with pytest.raises(ExportError, match="float64"):
        run_tfjs(model.tfjs_dir, {"x": np.zeros((1, 8))})


@pytest.mark.node
def test_missing_wasm_kernel_is_reported_per_backend(node_ready, exported):
    model = exported("einsum")
    inputs = _inputs("einsum", np.random.default_rng(4))
    assert model.stats["op_counts"].get("Einsum") == 1
    with pytest.raises(ExportError) as info:
        run_tfjs(model.tfjs_dir, inputs)
    assert "wasm" in info.value.message and "Einsum" in info.value.message
    assert set(info.value.details["errors"]) == {"wasm"}
    cpu = run_tfjs(model.tfjs_dir, inputs, backends=("cpu",))["cpu"]
    assert max_abs_err(cpu["y"], tf_outputs(model.saved_model, inputs)["y"]) <= TOL


@pytest.mark.node
def test_run_many_matches_run_tfjs_and_keeps_errors_per_request(node_ready, exported, tmp_path):
    """Several models, several input sets each, one bad request and one missing model: one Node process."""
    names = ["dense", "mlp", "embedding", "dense"]
    inputs = [_inputs(n, np.random.default_rng(10 + i)) for i, n in enumerate(names)]
    requests = [(exported(n).tfjs_dir, x) for n, x in zip(names, inputs)]
    requests.insert(1, (exported("dense").tfjs_dir, {"x": np.zeros((1, 8))}))  # float64: refused
    requests.append((tmp_path / "missing", {"x": np.zeros((1, 4), np.float32)}))
    results = run_many_tfjs(requests)
    assert isinstance(results[1], ExportError) and "float64" in results[1].message
    assert isinstance(results[-1], ExportError) and "model.json is missing" in results[-1].message
    for (model_dir, x), got in zip(requests[:1] + requests[2:-1], results[:1] + results[2:-1]):
        assert set(got) == {"cpu", "wasm"}
        single = run_tfjs(model_dir, x)
        for backend, outputs in got.items():
            assert set(outputs) == set(single[backend])
            for k, v in outputs.items():  # same process or not: the same bytes
                assert v.dtype == single[backend][k].dtype and np.array_equal(v, single[backend][k]), (backend, k)


@pytest.mark.node
def test_run_many_reports_a_failing_backend_per_request(node_ready, exported):
    x = _inputs("einsum", np.random.default_rng(5))
    dense_x = _inputs("dense", np.random.default_rng(5))
    einsum, dense = run_many_tfjs([(exported("einsum").tfjs_dir, x), (exported("dense").tfjs_dir, dense_x)])
    assert isinstance(einsum["wasm"], ExportError) and "Einsum" in einsum["wasm"].details["error"]
    assert max_abs_err(einsum["cpu"]["y"], tf_outputs(exported("einsum").saved_model, x)["y"]) <= TOL
    assert all(isinstance(dense[b], dict) for b in ("cpu", "wasm"))


def test_int64_placeholder_is_int32_in_tfjs(exported):
    """The converter keeps DT_INT64 in model.json; tfjs loads it as int32, and that is what we send."""
    import json

    from bridge.export.exchange import input_dtypes as _input_dtypes

    model_json = json.loads((exported("embedding64").tfjs_dir / "model.json").read_text())
    assert model_json["signature"]["inputs"]["input_ids"]["dtype"] == "DT_INT64"
    nodes = model_json["userDefinedMetadata"]["bridge"]["input_nodes"]
    assert _input_dtypes(model_json)[nodes["input_ids"]] == "int32"


@pytest.mark.node
def test_int64_ids_run_exactly_on_cpu_and_wasm(node_ready, exported):
    model = exported("embedding64")
    inputs = _inputs("embedding64", np.random.default_rng(6))
    expected = tf_outputs(model.saved_model, inputs)
    assert expected["echo"].dtype == np.int64
    for backend, got in run_tfjs(model.tfjs_dir, inputs).items():
        assert got["echo"].dtype == np.int32, backend  # tfjs has no int64: int64 outputs come back int32
        assert np.array_equal(got["echo"].astype(np.int64), inputs["input_ids"]), backend
        assert max_abs_err(got["emb"], expected["emb"]) == 0.0, backend  # a gather is exact


@pytest.mark.node
@pytest.mark.parametrize("bad", [2**31, -(2**31) - 1])
def test_an_id_outside_int32_is_refused_naming_input_and_value(node_ready, exported, bad):
    model = exported("embedding64")
    ids = np.arange(8, dtype=np.int64).reshape(2, 4)
    ids[1, 2] = bad
    for run in (lambda: run_tfjs(model.tfjs_dir, {"input_ids": ids}),
                lambda: run_many_tfjs([(model.tfjs_dir, {"input_ids": ids})])[0]):
        try:
            result = run()
        except BadInputError as e:
            result = e
        assert isinstance(result, BadInputError)
        assert "input 'input_ids'" in result.message and str(bad) in result.message and "[1, 2]" in result.message
        assert result.details == {"input": "input_ids", "value": bad, "index": [1, 2], "count": 1, "dtype": "int64"}
        assert result.exit_code == 2


@pytest.mark.node
def test_float_fed_to_an_id_input_is_refused(node_ready, exported):
    with pytest.raises(ExportError, match="'input_ids' is float32 but the tfjs model takes int32"):
        run_tfjs(exported("embedding64").tfjs_dir, {"input_ids": np.zeros((1, 4), np.float32)})
