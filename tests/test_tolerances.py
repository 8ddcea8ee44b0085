"""Tolerances as data: precedence, declared mapping tolerances with reasons,
pyproject overrides, and the comparison rules (NaN/Inf masks first, integers exact)."""

from __future__ import annotations

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
