"""Tolerances as data: precedence, declared mapping tolerances with reasons,
pyproject overrides, and the comparison rules (NaN/Inf masks first, integers exact).

Overrides are tested by the verdict they flip, through each public route (the
Python API, the CLI's --tolerance / --rtol, [tool.bridge.tolerance] in
pyproject.toml), for ``bridge convert`` and ``bridge check``: a case that fails
at the default bound passes with a looser override, and a case that passes fails
with a tighter one. (A bridge.json manifest has no tolerance key today.)
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import bridge
from bridge import parity
from bridge.api import Options
from bridge.cli import main
from bridge.errors import BadInputError
from bridge.registry import default_registry
from bridge.tolerances import DEFAULT, Tolerance, ToleranceConfig, from_pyproject, resolve

from conftest import ROOT


def test_precedence_path_then_type_then_mapping_then_default():
    layers = {"a": ("Conv2d", None), "b": ("Conv2d", Tolerance(5e-4, "declared")), "c": ("GELU", None),
              "d": ("Linear", Tolerance(1e-5, "tighter than default is ignored"))}
    cfg = ToleranceConfig.parse(["a=2e-3", "GELU=3e-4"])
    got = resolve(layers, cfg)
    assert got.per_module["a"].rtol == 2e-3 and "override for a" in got.per_module["a"].reason
    assert got.per_module["b"].rtol == 5e-4 and "declared" in got.per_module["b"].reason
    assert got.per_module["c"].rtol == 3e-4 and "override for GELU" in got.per_module["c"].reason
    assert got.per_module["d"] == DEFAULT
    assert got.output.rtol == 2e-3 and "from a" in got.output.reason  # the loosest applies, and says why


def test_declared_mapping_tolerance_reaches_the_report():
    from dataclasses import replace

    registry = default_registry()
    relu = registry.modules[nn.ReLU]
    registry.add(replace(relu, tolerance=Tolerance(3e-4, "test: a looser activation")))
    torch.manual_seed(0)
    port = bridge.convert(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), (torch.randn(2, 4),), registry=registry)
    report = port.parity()
    assert report.tolerance["rtol"] == 3e-4
    assert "ReLU mapping: test: a looser activation" in report.tolerance["reason"]
    assert report.runtime("tf").outputs[0].bound == pytest.approx(3e-4 * max(1.0, report.runtime("tf").outputs[0].bound / 3e-4))


def test_options_tolerance_overrides_per_type():
    torch.manual_seed(0)
    port = bridge.convert(nn.Sequential(nn.Linear(4, 4)), (torch.randn(2, 4),),
                          options=Options(tolerance=ToleranceConfig.parse(["Linear=1e-3"])))
    assert port.tolerance.per_module["0"].rtol == 1e-3


def test_pyproject_table(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.bridge.tolerance]\ndefault = 2e-4\n"features.3" = 1e-3\nConv2d = 5e-4\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    cfg = from_pyproject(sub)
    assert cfg.default == 2e-4 and cfg.by_path == {"features.3": 1e-3} and cfg.by_type == {"Conv2d": 5e-4}


@pytest.mark.parametrize("pairs", [["nokey"], ["x=abc"], ["x=-1"]])
def test_bad_tolerances_are_bad_input(pairs):
    with pytest.raises(BadInputError):
        ToleranceConfig.parse(pairs)


def test_bad_tolerance_on_the_cli_exits_2(tmp_path, capsys):
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    code = main(["convert", str(root / "models" / "two_layer"), "--out", str(tmp_path / "o"), "--tolerance", "x=abc"])
    assert code == 2 and "not a number" in capsys.readouterr().err


def test_nan_positions_compared_first():
    ref = np.array([1.0, np.nan, 3.0], np.float32)
    assert parity.compare("o", ref, np.array([1.0, np.nan, 3.0], np.float32)).ok
    moved = parity.compare("o", ref, np.array([np.nan, 2.0, 3.0], np.float32))
    assert not moved.ok and moved.problem == "NaN/Inf positions differ"
    inf = parity.compare("o", np.array([np.inf]), np.array([-np.inf]))
    assert not inf.ok


def test_integer_outputs_must_be_exact():
    ok = parity.compare("ids", np.array([1, 2, 3]), np.array([1, 2, 3], np.int32))
    bad = parity.compare("ids", np.array([1, 2, 3]), np.array([1, 2, 4], np.int32))
    assert ok.ok and ok.max_abs_error == 0
    assert not bad.ok and bad.problem == "1 integer values differ"


# ------------------------------------------------------------------ overrides flip verdicts

CANCEL = textwrap.dedent('''
    import torch
    from torch import nn


    class Cancel(nn.Module):
        """scale * (tanh(x) - tanh written with exp): zero in exact arithmetic. torch's and TF's float32
        tanh and exp differ by an ulp here and there (about 1.2e-7), and ``scale`` makes that difference
        the output: 1e4 puts the TF error (about 1.2e-3) above the default bound 1e-4 * max(1, max|torch|),
        1 leaves it (about 1.2e-7) below it."""

        def __init__(self, scale: float = 1e4):
            super().__init__()
            self.scale = scale
            self.act = nn.Tanh()

        def forward(self, x):
            e = torch.exp(2 * x)
            return self.scale * (self.act(x) - (e - 1) / (e + 1))
''')

DRIFT = textwrap.dedent('''
    import tensorflow as tf

    from port_tf import TwoLayerTF


    class DriftedTF(TwoLayerTF):
        """The two_layer port plus drift * max(1, max|y|): its error is exactly ``drift`` of the bound's scale."""

        def __init__(self, drift: float = 3e-4, **kwargs):
            super().__init__(**kwargs)
            self.drift = drift

        def call(self, x):
            y = super().call(x)
            return y + self.drift * tf.maximum(1.0, tf.reduce_max(tf.abs(y)))
''')

TWO = ROOT / "models" / "two_layer"
LOOSE, TIGHT = 1e-2, 1e-8  # for Cancel: above its 1.2e-3 error at scale 1e4, below its 1.2e-7 at scale 1


@pytest.fixture(scope="module")
def cancel_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cancel") / "cancel.py"
    path.write_text(CANCEL)
    spec = importlib.util.spec_from_file_location("cancel_tolerance", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module.Cancel


def _x():
    return torch.randn(4, 16, generator=torch.Generator().manual_seed(0))


def _convert(cancel, scale, pairs=None, **config):
    tolerance = ToleranceConfig.parse(pairs) if pairs is not None else ToleranceConfig(**config)
    return bridge.convert(cancel(scale), (_x(),), options=Options(tolerance=tolerance)).parity().runtime("tf")


@pytest.mark.parametrize("pairs", [["default=1e-2"], ["Tanh=1e-2"], ["act=1e-2"]], ids=["default", "type", "path"])
def test_python_api_looser_override_turns_a_failure_into_a_pass(cancel_file, pairs):
    _, cancel = cancel_file
    failing = _convert(cancel, 1e4)
    assert not failing.ok and failing.outputs[0].max_abs_error > failing.outputs[0].bound == pytest.approx(1e-4)
    passing = _convert(cancel, 1e4, pairs)
    assert passing.ok and passing.outputs[0].bound == pytest.approx(LOOSE)
    assert passing.outputs[0].max_abs_error == failing.outputs[0].max_abs_error  # same numbers, another verdict


def test_python_api_tighter_default_turns_a_pass_into_a_failure(cancel_file):
    _, cancel = cancel_file
    passing = _convert(cancel, 1.0)
    assert passing.ok and 0 < passing.outputs[0].max_abs_error <= 1e-5
    failing = _convert(cancel, 1.0, default=TIGHT)
    assert not failing.ok and failing.outputs[0].bound == pytest.approx(TIGHT)


def _cli_convert(cancel_path, scale, tmp_path, *extra):
    out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
    return main(["convert", f"{cancel_path}:Cancel", "--kwargs", json.dumps({"scale": scale}), "--input", "4x16",
                 "--no-tfjs", "--browser", "", "--out", str(out), *extra])


def test_cli_convert_tolerance_flag_flips_the_verdict_both_ways(cancel_file, tmp_path, capsys):
    path, _ = cancel_file
    assert _cli_convert(path, 1e4, tmp_path) == 4
    assert _cli_convert(path, 1e4, tmp_path, "--tolerance", "Tanh=1e-2") == 0
    assert _cli_convert(path, 1.0, tmp_path) == 0
    assert _cli_convert(path, 1.0, tmp_path, "--tolerance", f"default={TIGHT}") == 4
    assert "parity failed" in capsys.readouterr().err


@pytest.mark.parametrize("table,scale,code", [("act = 1e-2", 1e4, 0), (f"default = {TIGHT}", 1.0, 4)],
                         ids=["looser-path", "tighter-default"])
def test_pyproject_table_flips_the_convert_verdict(cancel_file, tmp_path, monkeypatch, table, scale, code):
    path, _ = cancel_file
    assert _cli_convert(path, scale, tmp_path) == 4 - code  # the verdict without the table
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(f"[tool.bridge.tolerance]\n{table}\n")
    monkeypatch.chdir(project)
    assert _cli_convert(path, scale, tmp_path) == code


@pytest.fixture(scope="module")
def drift_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drift")
    (folder / "drifted_tf.py").write_text(DRIFT)
    return folder / "drifted_tf.py"


@contextlib.contextmanager
def _two_layer_importable():
    """drifted_tf does ``from port_tf import TwoLayerTF``: the two_layer folder on sys.path, and no other
    models/ entry's ``port_tf`` (another test may have imported one) cached under that name."""
    sys.modules.pop("port_tf", None)
    sys.path.insert(0, str(TWO))
    try:
        yield
    finally:
        sys.path.remove(str(TWO))
        sys.modules.pop("port_tf", None)


def _check(drift_file, drift, *extra):
    with _two_layer_importable():
        return main(["check", f"{TWO}/model.py:TwoLayer", f"{drift_file}:DriftedTF", "--weights",
                     f"{TWO}/two_layer.pt", "--tf-kwargs", json.dumps({"drift": drift}), "--input", "4x3", *extra])


@pytest.mark.parametrize("flag", [["--rtol", "1e-3"], ["--tolerance", "default=1e-3"], ["--tolerance", "Linear=1e-3"],
                                  ["--tolerance", "out=1e-3"]], ids=["rtol", "default", "type", "path"])
def test_bridge_check_looser_override_turns_a_failure_into_a_pass(drift_file, flag):
    assert _check(drift_file, 3e-4) == 4
    assert _check(drift_file, 3e-4, *flag) == 0


def test_bridge_check_tighter_override_turns_a_pass_into_a_failure(drift_file, tmp_path, monkeypatch):
    assert _check(drift_file, 3e-6) == 0
    assert _check(drift_file, 3e-6, "--rtol", "1e-6") == 4
    assert _check(drift_file, 3e-6, "--tolerance", "default=1e-6") == 4
    (tmp_path / "pyproject.toml").write_text("[tool.bridge.tolerance]\ndefault = 1e-6\n")
    monkeypatch.chdir(tmp_path)
    assert _check(drift_file, 3e-6) == 4


def test_assert_parity_rtol_flips_the_verdict_both_ways(drift_file):
    from bridge.porting import load_torch_weights
    from bridge.target import load_class
    from bridge.testing import assert_parity

    with _two_layer_importable():
        spec = importlib.util.spec_from_file_location("drifted_tf_tolerance", drift_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    torch_model = load_class(f"{TWO}/model.py:TwoLayer")()
    inputs = (torch.randn(4, 3, generator=torch.Generator().manual_seed(0)),)
    for drift, loose_ok, default_ok, tight_ok in ((3e-4, True, False, False), (3e-6, True, True, False)):
        port = module.DriftedTF(drift)
        load_torch_weights(port, torch_model.state_dict())
        for rtol, ok in ((1e-3, loose_ok), (None, default_ok), (1e-6, tight_ok)):
            if ok:
                assert assert_parity(torch_model, port, inputs, rtol=rtol).ok
            else:
                with pytest.raises(AssertionError, match="FAIL"):
                    assert_parity(torch_model, port, inputs, rtol=rtol)


def test_tighter_type_override_flips_that_modules_verdict(cancel_file):
    """A module override tightens that module's own bound: its per-module check fails and names it.
    Outputs keep the loosest bound in force (the default here), as tolerances.resolve documents."""
    _, cancel = cancel_file
    port = bridge.convert(cancel(1.0), (_x(),), options=Options(tolerance=ToleranceConfig.parse([f"Tanh={TIGHT}"])))
    report = port.parity()
    act = next(d for d in report.per_module if d.name == "act")
    assert not act.ok and act.bound == pytest.approx(TIGHT) and act.max_abs_error > TIGHT
    assert report.first_divergence == "act"
    default = bridge.convert(cancel(1.0), (_x(),)).parity()
    assert default.first_divergence is None and all(d.ok for d in default.per_module)
