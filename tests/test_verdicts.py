"""Every torch.nn module class has exactly one verdict, and every refusal says why."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bridge
from bridge.cli import main
from bridge.errors import UnsupportedError
from bridge.registry import Registry, Verdict, default_registry
from bridge.support import counts, support_rows, torch_nn_classes

from _parity import randn


def test_every_torch_nn_class_has_a_verdict_from_bridge():
    reg = default_registry()
    missing = [c.__name__ for c in torch_nn_classes() if reg.verdict(c).family == "unknown"]
    assert missing == [], f"torch.nn classes with no verdict: {missing}"


def test_no_class_is_listed_twice():
    """default_registry() raises on a class given two verdicts; this proves the check fires."""
    reg = Registry()
    reg.refuse(nn.ReLU6, "some reason")
    reg.decompose(nn.ReLU6, "now decomposed")
    assert reg.verdict(nn.ReLU6).verdict == Verdict.DECOMPOSE and nn.ReLU6 not in reg.refused
    default_registry()  # the shipped lists have one verdict per class, or this raises ValueError


def test_every_refusal_has_a_reason():
    rows = [r for r in support_rows() if r["verdict"] == "not supported"]
    assert rows and all(r["notes"].strip() for r in rows)
    with pytest.raises(ValueError, match="needs a reason"):
        Registry().refuse(nn.ReLU, "  ")


@pytest.mark.parametrize("cls, verdict", [
    (nn.Linear, Verdict.MAPPED), (nn.LazyLinear, Verdict.MAPPED), (nn.MultiheadAttention, Verdict.MAPPED),
    (nn.Sequential, Verdict.DECOMPOSE), (nn.TransformerEncoderLayer, Verdict.DECOMPOSE),
    (nn.CrossEntropyLoss, Verdict.NOT_SUPPORTED), (nn.FractionalMaxPool2d, Verdict.NOT_SUPPORTED),
])
def test_verdicts_of_known_classes(cls, verdict):
    assert default_registry().verdict(cls).verdict == verdict


def test_user_classes_are_decomposed_and_a_subclass_inherits_its_base_mapping():
    class Mine(nn.Module):
        pass

    class MyLinear(nn.Linear):
        pass

    reg = default_registry()
    assert reg.verdict(Mine).verdict == Verdict.DECOMPOSE
    assert reg.verdict(MyLinear).verdict == Verdict.MAPPED


def test_a_refused_module_is_reported_with_its_reason_before_anything_is_written():
    reg = default_registry()
    reg.refuse(nn.Tanh, "refused for this test: it has a reason")
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2), nn.Tanh()).eval()
    with pytest.raises(UnsupportedError) as info:
        bridge.convert(model, (randn(2, 3),), registry=reg)
    parts = info.value.details
    assert [p["where"] for p in parts] == ["1", "3"]  # all refused calls at once
    assert all("refused for this test" in p["why"] for p in parts)


def test_a_decomposed_builtin_is_traced_through_instead_of_mapped():
    reg = default_registry()
    reg.decompose(nn.Linear, "traced through for this test")
    model = nn.Sequential(nn.Linear(3, 4)).eval()
    port = bridge.convert(model, (randn(2, 3),), registry=reg)
    # a childless torch module that is traced through has no class of its own: its ops sit in the caller
    assert "L.Linear(" not in port.source and "class Linear" not in port.source and "L.matmul" in port.source
    assert port.parity().ok and port.parity().max_abs_error <= 1e-5


def test_bridge_support_prints_the_table_and_the_markdown_matrix(capsys):
    assert main(["support", "--markdown"]) == 0
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| `nn.")]
    assert len(rows) == len(torch_nn_classes())
    assert "| `nn.MultiheadAttention` | mapped |" in text and "| `nn.CrossEntropyLoss` | not supported |" in text
    assert main(["support"]) == 0
    summary = ", ".join(f"{k}: {n}" for k, n in counts(support_rows()).items())
    assert summary in capsys.readouterr().out


def test_the_committed_support_matrix_is_current():
    """docs/support.md is what `bridge support --markdown` prints (regenerate it when a verdict changes)."""
    from bridge.support import markdown

    from conftest import ROOT

    assert (ROOT / "docs" / "support.md").read_text() == markdown(support_rows())
