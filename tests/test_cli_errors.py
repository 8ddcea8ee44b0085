"""Error paths of `bridge convert` / `bridge inspect`: each gives one clear line,
a documented exit code, and writes nothing."""

from __future__ import annotations

import os
import pickle
import textwrap

import pytest
import torch

from bridge.cli import main

from conftest import ROOT

NET = textwrap.dedent('''
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width=4):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3)
            self.fc = nn.Linear(width, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

    class Bad(nn.Module):
        def __init__(self):
            super().__init__()
            self.loss = nn.MSELoss(reduction="none")  # refused for good: a training loss
            self.pool = nn.FractionalMaxPool2d(1, output_size=1)  # refused for good: random regions
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            y = torch.cumprod(self.fc(x), dim=1)
            return self.loss(y, y) + self.pool(x[:, None, None]).flatten(1)
''')


@pytest.fixture
def netfile(tmp_path):
    path = tmp_path / "nets.py"
    path.write_text(NET)
    return path


def run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_unsupported_parts_are_listed_together_exit_3(netfile, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run(["convert", f"{netfile}:Bad", "--input", "2x4", "--out", out, "--no-tfjs"], capsys)
    assert code == 3
    assert "loss: torch.nn.modules.loss.MSELoss - a training loss" in err
    assert "pool: torch.nn.modules.pooling.FractionalMaxPool2d - random pooling regions" in err
    assert "aten.cumprod" in err and "nets.py:" in err
    assert not out.exists()


def test_bad_keys_are_listed_together_exit_2(netfile, tmp_path, capsys):
    net_sd = {"conv.weight": torch.zeros(4, 3, 3, 3), "conv.bias": torch.zeros(4),
              "fc.weight": torch.zeros(2, 5), "extra.weight": torch.zeros(1)}  # fc.bias missing
    ckpt = tmp_path / "bad.pt"
    torch.save(net_sd, ckpt)
    out = tmp_path / "out"
    code, _, err = run(["convert", f"{netfile}:Net", "--weights", ckpt, "--input", "1x3x8x8", "--out", out], capsys)
    assert code == 2
    assert "missing     fc.bias" in err
    assert "unexpected  extra.weight" in err
    assert "mismatched  fc.weight  expected [2, 4], found [2, 5]" in err
    assert not out.exists()


def test_missing_checkpoint_exit_2(netfile, tmp_path, capsys):
    code, _, err = run(["convert", f"{netfile}:Net", "--weights", tmp_path / "nope.pt", "--input", "1x3x8x8",
                        "--out", tmp_path / "out"], capsys)
    assert code == 2 and "nope.pt" in err and err.count("\n") <= 3
    assert not (tmp_path / "out").exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_runs_nothing(netfile, tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"conv.weight": _Payload(marker)}, ckpt)
    legacy = tmp_path / "evil.pkl"
    legacy.write_bytes(pickle.dumps(_Payload(marker)))
    for path in (ckpt, legacy):
        code, _, err = run(["convert", f"{netfile}:Net", "--weights", path, "--input", "1x3x8x8",
                            "--out", tmp_path / "out"], capsys)
        assert code == 2 and "unsafe_checkpoint" in err and path.name in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_force(netfile, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, err = run(["convert", f"{netfile}:Net", "--input", "1x3x8x8", "--out", out, "--no-tfjs"], capsys)
    assert code == 2 and "--force" in err
    assert (out / "keep.txt").read_text() == "mine"
    code, _, _ = run(["convert", f"{netfile}:Net", "--input", "1x3x8x8", "--out", out, "--no-tfjs", "--force"],
                     capsys)
    assert code == 0
    assert not (out / "keep.txt").exists() and (out / "report.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp folders left


@pytest.mark.parametrize("args, needle", [
    (["--input", "1x3xx8"], "bad --input"),
    (["--input", "1x3x8x8:float99"], "unknown dtype"),
    (["--input", "1x3x8x8", "--kwargs", "{not json"], "not valid JSON"),
    (["--input", "1x3x8x8", "--kwargs", '{"nope": 1}'], "check --kwargs"),
    (["--input", "1x3x8x8", "--verify-budget", "soon"], "bad --verify-budget"),
    (["--input", "1x3x8x8", "--verify-budget", "-1"], "bad --verify-budget"),
    (["--input", "1x3x8x8", "--verify-budget", "inf"], "bad --verify-budget"),
])
def test_bad_cli_values_exit_2(netfile, tmp_path, capsys, args, needle):
    code, _, err = run(["convert", f"{netfile}:Net", *args, "--out", tmp_path / "o"], capsys)
    assert code == 2 and needle in err


@pytest.mark.parametrize("spec, needle", [
    ("no_such_pkg_xyz:Net", "cannot import"),
    ("{file}:Missing", "has no attribute"),
    ("{dir}/absent.py:Net", "not found"),
    ("justtext", "neither a folder"),
])
def test_bad_import_specs_exit_2(netfile, tmp_path, capsys, spec, needle):
    spec = spec.format(file=netfile, dir=tmp_path)
    code, _, err = run(["convert", spec, "--input", "1x3x8x8", "--out", tmp_path / "o"], capsys)
    assert code == 2 and needle in err


def test_inspect_lists_keys_and_counts(capsys):
    code, out, _ = run(["inspect", ROOT / "models" / "digits_cnn" / "digits_cnn.pt"], capsys)
    assert code == 0
    assert "features.0.weight" in out and "classifier.5.bias" in out
    sd = torch.load(ROOT / "models" / "digits_cnn" / "digits_cnn.pt", weights_only=True)
    floats = sum(v.numel() for v in sd.values() if v.is_floating_point())
    assert f"{floats:,}" in out


def test_convert_with_kwargs_weights_and_inputs(netfile, tmp_path, capsys):
    torch.manual_seed(0)
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("nets_for_test", netfile)
    mod = module_from_spec(spec)
    spec.loader.exec_module(mod)
    ckpt = tmp_path / "w.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in mod.Net(width=6).state_dict().items()}}, ckpt)
    out = tmp_path / "out"
    code, text, err = run(["convert", f"{netfile}:Net", "--kwargs", '{"width": 6}', "--weights", ckpt,
                           "--input", "2x3x9x9", "--out", out, "--no-tfjs"], capsys)
    assert code == 0, err
    assert "under 'state_dict'" in text and "module." in text


def test_user_parity_inputs_from_npz(tmp_path, capsys):
    import json

    import numpy as np

    np.savez(tmp_path / "mine.npz", x=np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32))
    out = tmp_path / "out"
    code, _, err = run(["convert", ROOT / "models" / "two_layer", "--inputs", tmp_path / "mine.npz",
                        "--out", out, "--no-tfjs"], capsys)
    assert code == 0, err
    assert json.loads((out / "report.json").read_text())["parity"]["n_inputs"] == 5  # 4 seeded + the user's
    np.savez(tmp_path / "wrong.npz", y=np.zeros((5, 3), np.float32), z=np.zeros((5, 3), np.float32))
    code, _, err = run(["convert", ROOT / "models" / "two_layer", "--inputs", tmp_path / "wrong.npz",
                        "--out", tmp_path / "out2", "--no-tfjs"], capsys)
    assert code == 2 and "no array for input 'x'" in err
    np.savez(tmp_path / "shape.npz", x=np.zeros((5, 4), np.float32))
    code, _, err = run(["convert", ROOT / "models" / "two_layer", "--inputs", tmp_path / "shape.npz",
                        "--out", tmp_path / "out3", "--no-tfjs"], capsys)
    assert code == 2 and "expected [batch, 3]" in err
