"""Nothing the user had is lost: kills at every write step, --force replacement,
recovery of what a killed run left, determinism, and refusing non-finite weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT

EXAMPLE = ROOT / "models" / "two_layer"


def convert(out, *extra, fault=None, check=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("BRIDGE_FAULT", None)
    if fault:
        env["BRIDGE_FAULT"] = fault
    proc = subprocess.run([sys.executable, "-m", "bridge.cli", "convert", str(EXAMPLE), "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("point", ["model_tf", "savedmodel", "tfjs", "report"])
def test_kill_while_writing_leaves_no_partial_export(tmp_path, point):
    out = tmp_path / "net"
    proc = convert(out, *(["--no-tfjs"] if point != "tfjs" else []), fault=point, check=False)
    assert proc.returncode == -9  # SIGKILL
    assert not out.exists()
    assert leftovers(tmp_path)  # a killed process cannot clean up ...
    convert(out, "--no-tfjs")  # ... so the next run does, then writes normally
    assert leftovers(tmp_path) == []
    assert (out / "report.json").is_file()


def _running_under(folder) -> list[str]:
    """Command lines of live processes that name ``folder`` (a runner a killed conversion left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmd and proc.name != str(os.getpid()):
            found.append(cmd)
    return found


@pytest.mark.node
@pytest.mark.parametrize("point", ["shard", "node", "browser"])
def test_kill_inside_a_step_leaves_no_partial_export_and_no_runner(tmp_path, point, node_or_skip, request):
    """Kills in the middle of a shard, while Node verifies and while the browser verifies."""
    if point == "browser":
        request.getfixturevalue("browser_or_skip")
    out = tmp_path / "net"
    proc = convert(out, *([] if point == "browser" else ["--browser", ""]), fault=point, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not out.exists() and leftovers(tmp_path)
    if point == "shard":  # the converter had written half of a shard into the temporary folder
        assert any(p.stat().st_size > 0 for p in tmp_path.glob(".net.tmp-*/**/group1-shard1of1.bin"))
    for _ in range(100):  # the runner gets SIGTERM when its parent dies (PR_SET_PDEATHSIG)
        if not _running_under(tmp_path):
            break
        time.sleep(0.1)
    assert _running_under(tmp_path) == []
    convert(out, "--browser", "")
    assert leftovers(tmp_path) == []
    assert json.loads((out / "report.json").read_text())["parity"]["ok"]


def test_kill_after_the_final_rename_keeps_the_new_export(tmp_path):
    out = tmp_path / "net"
    convert(out, "--no-tfjs")
    (out / "mine.txt").write_text("user file, replaced on purpose by --force")
    proc = convert(out, "--no-tfjs", "--force", fault="replaced", check=False)
    assert proc.returncode == -9
    assert (out / "report.json").is_file() and not (out / "mine.txt").exists()  # the new export is complete
    assert [n.split("-")[0] for n in leftovers(tmp_path)] == [".net.old"]  # the old one was not removed yet
    proc = convert(out, "--no-tfjs", check=False)  # the next run removes it, then refuses without --force
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert leftovers(tmp_path) == [] and (out / "report.json").is_file()


def test_kill_during_force_replace_restores_the_old_export(tmp_path):
    out = tmp_path / "net"
    convert(out, "--no-tfjs")
    before = (out / "report.json").read_bytes()
    (out / "mine.txt").write_text("user file")
    proc = convert(out, "--no-tfjs", "--force", fault="replace", check=False)
    assert proc.returncode == -9
    assert not out.exists()  # killed between the two renames
    proc = convert(out, "--no-tfjs", check=False)  # recovery puts the old export back, then refuses without --force
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert (out / "mine.txt").read_text() == "user file"
    assert (out / "report.json").read_bytes() == before
    assert leftovers(tmp_path) == []


def test_failed_conversion_leaves_nothing(tmp_path, monkeypatch):
    """An error in the middle (here: the tfjs converter rejects the graph) removes the temp folder."""
    from bridge.errors import ExportError
    from bridge.export import save as save_mod

    def broken(*args, **kwargs):
        raise ExportError("injected converter failure")

    monkeypatch.setattr(save_mod.tfjs, "convert_to_tfjs", broken)
    from bridge.cli import main

    assert main(["convert", str(EXAMPLE), "--out", str(tmp_path / "net")]) == 5
    assert list(tmp_path.iterdir()) == []


@pytest.mark.node
def test_same_checkpoint_gives_byte_identical_tfjs(tmp_path, node_or_skip):
    a, b = tmp_path / "a", tmp_path / "b"
    convert(a)
    convert(b)
    shards_a = sorted(p.name for p in (a / "tfjs").glob("*.bin"))
    assert shards_a and shards_a == sorted(p.name for p in (b / "tfjs").glob("*.bin"))
    for name in shards_a:
        assert (a / "tfjs" / name).read_bytes() == (b / "tfjs" / name).read_bytes()
    assert (a / "tfjs" / "model.json").read_bytes() == (b / "tfjs" / "model.json").read_bytes()


def test_nonfinite_weights_are_refused_unless_allowed(tmp_path):
    sd = torch.load(EXAMPLE / "two_layer.pt", weights_only=True)
    sd["hidden.weight"][0, 0] = float("nan")
    sd["out.bias"][1] = float("inf")
    bad = tmp_path / "bad.pt"
    torch.save(sd, bad)
    proc = convert(tmp_path / "x", "--weights", str(bad), "--no-tfjs", check=False)
    assert proc.returncode == 2
    assert "hidden.weight" in proc.stderr and "out.bias" in proc.stderr
    assert not (tmp_path / "x").exists()
    proc = convert(tmp_path / "y", "--weights", str(bad), "--no-tfjs", "--allow-nonfinite", check=False)
    # accepted, but NaN propagates: torch and TF must agree on where the NaNs are
    assert proc.returncode in (0, 4), proc.stderr[-1000:]


class _Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _drifted_port():
    import bridge

    torch.manual_seed(0)
    port = bridge.convert(_Small(), (torch.randn(1, 2, 5, 5),))
    port.tf_model.bn.gamma.assign(port.tf_model.bn.gamma * 1.5)  # a port that drifted at bn
    return port


def test_parity_failure_writes_nothing_and_names_the_module(tmp_path):
    from bridge.errors import ParityError

    port = _drifted_port()
    with pytest.raises(ParityError) as info:
        port.save(tmp_path / "net", tfjs=False)
    assert "first diverging module: bn" in info.value.message
    assert info.value.report.first_divergence == "bn"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.node
def test_write_failing_marks_the_artifacts(tmp_path, node_or_skip):
    port = _drifted_port()
    report = port.save(tmp_path / "net", write_failing=True, browser_backends=())
    assert report["parity"]["ok"] is False and report["parity"]["first_divergence"] == "bn"
    meta = json.loads((tmp_path / "net" / "tfjs" / "model.json").read_text())["userDefinedMetadata"]["bridge"]
    assert meta["parity"]["ok"] is False and meta["parity"]["first_divergence"] == "bn"
    assert meta["parity"]["runtimes"]["tfjs-wasm"]["ok"] is False


@pytest.mark.node
@pytest.mark.browser
def test_two_conversions_at_once_into_sibling_folders(tmp_path, browser_or_skip):
    """CI often runs several conversions on one machine: no shared temporary paths, npm or browser state."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("BRIDGE_FAULT", None)
    procs = [subprocess.Popen([sys.executable, "-m", "bridge.cli", "convert", str(EXAMPLE), "--out", str(tmp_path / name)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("a", "b")]
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:] + out[-2000:]
    reports = [json.loads((tmp_path / name / "report.json").read_text()) for name in ("a", "b")]
    for report in reports:
        runtimes = {r["runtime"]: r for r in report["parity"]["runtimes"]}
        assert {"tfjs-cpu", "tfjs-wasm", "browser-webgl"} <= set(runtimes)
        assert all(r["ok"] and r["skipped"] is None for r in runtimes.values())
    a, b = (sorted((tmp_path / name / "tfjs").iterdir()) for name in ("a", "b"))
    assert [p.name for p in a] == [p.name for p in b] and all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))
    assert leftovers(tmp_path) == []
