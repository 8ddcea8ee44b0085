"""`bridge check TORCH_SPEC TF_SPEC`: exit 0 when a hand-written port matches, 4 when it drifted
(with the first diverging submodule named, in the table and the JSON), 2 for bad input."""

from __future__ import annotations

import json
import textwrap

import pytest

from bridge.cli import main

from conftest import ROOT

TWO = ROOT / "models" / "two_layer"
LIN = ROOT / "models" / "linear_regression"
TWO_ARGS = [f"{TWO}/model.py:TwoLayer", f"{TWO}/port_tf.py:TwoLayerTF", "--weights", f"{TWO}/two_layer.pt"]
TOL = 1e-5  # float32: the ports do the same arithmetic as torch


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_two_layer_port_passes_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "check.json"
    code, stdout, _ = run(["check", *TWO_ARGS, "--input", "1x3", "--json", out], capsys)
    assert code == 0
    assert "4 tensors loaded" in stdout and "parity: ok" in stdout
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["first_divergence"] is None
    assert report["n_inputs"] == 3  # the --input example plus two seeded random sets
    assert [r["runtime"] for r in report["runtimes"]] == ["tf"]
    assert report["max_abs_error"] <= TOL
    assert [m["name"] for m in report["per_module"]] == ["hidden", "act", "out"]
    assert set(report) >= {"ok", "max_abs_error", "max_rel_error", "first_divergence", "n_inputs", "runtimes",
                           "per_module"}


def test_linear_regression_port_passes_with_inputs_from_its_signature(tmp_path, capsys):
    out = tmp_path / "check.json"
    code, stdout, _ = run(["check", f"{LIN}/model.py:LinearRegression", f"{LIN}/port_tf.py:LinearRegressionTF",
                           "--weights", f"{LIN}/linear_regression.pt", "--json", out], capsys)
    assert code == 0, stdout
    report = json.loads(out.read_text())
    assert report["ok"] and report["n_inputs"] == 2
    assert report["runtimes"][0]["outputs"][0]["shape"] == [2, 1]
    assert report["max_abs_error"] <= TOL


DRIFTED = textwrap.dedent('''
    import tensorflow as tf

    class Drifted(tf.keras.Model):
        """The two_layer port after someone 'simplified' the activation."""

        def __init__(self):
            super().__init__()
            self.hidden = tf.keras.layers.Dense(3, name="hidden")
            self.act = tf.keras.layers.Activation("tanh", name="act")
            self.out = tf.keras.layers.Dense(2, name="out")

        def call(self, x):
            return self.out(self.act(self.hidden(x)))

    class Broken(tf.keras.Model):
        def __init__(self):
            super().__init__()
            raise ValueError("port needs a config file")
''')


def test_a_drifted_port_exits_4_and_names_the_first_diverging_submodule(tmp_path, capsys):
    (tmp_path / "drifted.py").write_text(DRIFTED)
    out = tmp_path / "check.json"
    code, stdout, err = run(["check", TWO_ARGS[0], f"{tmp_path}/drifted.py:Drifted", *TWO_ARGS[2:],
                             "--input", "4x3", "--json", out], capsys)
    assert code == 4
    assert "first diverging submodule: act" in stdout.replace("\n", " ")
    assert "error [parity_failed]" in err and "first diverging submodule: act (ReLU -> Activation" in err
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["first_divergence"] == "act"
    assert report["runtimes"][0]["outputs"][0]["max_abs_error"] > report["runtimes"][0]["outputs"][0]["bound"]
    assert [m["ok"] for m in report["per_module"]][:2] == [True, False]


def test_a_port_whose_constructor_fails_exits_2(tmp_path, capsys):
    (tmp_path / "drifted.py").write_text(DRIFTED)
    code, _, err = run(["check", TWO_ARGS[0], f"{tmp_path}/drifted.py:Broken", "--input", "1x3"], capsys)
    assert code == 2
    assert "drifted.py:Broken failed: ValueError: port needs a config file" in err


def test_no_load_weights_checks_the_port_as_it_is(tmp_path, capsys):
    code, _, err = run(["check", *TWO_ARGS, "--input", "1x3", "--no-load-weights"], capsys)
    assert code == 4  # freshly initialized Keras weights are not the checkpoint's
    assert "first diverging submodule: hidden" in err


def test_tolerance_options_are_applied(tmp_path, capsys):
    out = tmp_path / "check.json"
    code, _, _ = run(["check", *TWO_ARGS, "--input", "1x3", "--rtol", "1e-3", "--atol", "0.5", "--json", out],
                     capsys)
    assert code == 0
    report = json.loads(out.read_text())
    assert report["runtimes"][0]["outputs"][0]["bound"] == 0.5
    assert report["tolerance"]["rtol"] == 1e-3 and report["tolerance"]["atol"] == 0.5


def test_a_saved_model_is_checked_as_saved_with_its_own_weights(tmp_path, capsys):
    import sys

    import tensorflow as tf

    from bridge.checkpoint import load_checkpoint
    from bridge.porting import load_torch_weights

    sys.path.insert(0, str(LIN))
    try:
        from port_tf import LinearRegressionTF
    finally:
        sys.path.remove(str(LIN))
        sys.modules.pop("port_tf", None)  # other tests import another models/ entry's port_tf
    port = LinearRegressionTF()
    load_torch_weights(port, load_checkpoint(LIN / "linear_regression.pt"))
    tf.saved_model.save(port, str(tmp_path / "good"))
    port.intercept.assign(port.intercept + 0.1)
    tf.saved_model.save(port, str(tmp_path / "drifted"))
    torch_args = [f"{LIN}/model.py:LinearRegression", "--weights", f"{LIN}/linear_regression.pt"]

    code, stdout, _ = run(["check", torch_args[0], tmp_path / "good", *torch_args[1:]], capsys)
    assert code == 0 and "tensors loaded" not in stdout  # a SavedModel keeps its own weights by default
    code, _, err = run(["check", torch_args[0], tmp_path / "drifted", *torch_args[1:]], capsys)
    assert code == 4 and "max abs error 0.1" in err


@pytest.mark.parametrize("args, message", [
    (["check", f"{TWO}/model.py:TwoLayer", f"{TWO}/port_tf.py:Nope", "--input", "1x3"], "has no attribute 'Nope'"),
    (["check", f"{TWO}/model.py:TwoLayer", "missing/port_tf.py:TwoLayerTF", "--input", "1x3"], "not found"),
    (["check", f"{TWO}/model.py:TwoLayer", f"{TWO}/port_tf.py:TwoLayerTF", "--weights", "missing.pt"], "missing.pt"),
    (["check", f"{TWO}/model.py:TwoLayer", str(TWO)], "without saved_model.pb"),
    (["check", f"{TWO}/model.py:TwoLayer", f"{TWO}/port_tf.py:TwoLayerTF", "--input", "1xq"], "bad --input"),
    (["check", f"{TWO}/model.py:TwoLayer", f"{TWO}/port_tf.py:TwoLayerTF", "--rtol", "tight"], "tight"),
])
def test_bad_input_exits_2(args, message, capsys):
    code, _, err = run(args, capsys)
    assert code == 2
    assert message in err


def test_a_port_that_does_not_fit_the_weights_lists_every_key_and_exits_2(capsys):
    code, _, err = run(["check", *TWO_ARGS, "--input", "1x3", "--tf-kwargs", '{"hidden_features": 4}'], capsys)
    assert code == 2
    assert "error [key_mismatch]" in err
    assert "mismatched  hidden.weight -> hidden.kernel" in err and "mismatched  out.weight -> out.kernel" in err
    assert "mismatched  hidden.bias -> hidden.bias" in err


def test_tolerance_override_per_module_path(tmp_path):
    """--tolerance PATH=RTOL loosens one module's bound; the outputs use the loosest, and the report says why."""
    import json as _json

    from bridge.cli import main as _main

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = tmp_path / "r.json"
    code = _main(["check", f"{root}/models/two_layer/model.py:TwoLayer", f"{root}/models/two_layer/port_tf.py:TwoLayerTF",
                  "--weights", f"{root}/models/two_layer/two_layer.pt", "--input", "1x3",
                  "--tolerance", "hidden=2e-3", "--json", str(out)])
    assert code == 0
    tol = _json.loads(out.read_text())["tolerance"]
    assert tol["rtol"] == 2e-3 and "hidden" in tol["reason"]
    assert tol["per_module"] == {"act": 1e-4, "out": 1e-4}
