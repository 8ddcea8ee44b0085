"""bridge.overlap: torch-side work in a forked child beside the TF import, with every failure falling back."""

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bridge import api, overlap
from bridge.errors import UnsupportedError

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


def test_result_comes_from_the_child_while_meanwhile_runs_here():
    seen = []
    result, forked = overlap.beside(lambda: (os.getpid(), torch.ones(3).sum().item()),
                                    lambda: seen.append(os.getpid()))
    assert forked and seen == [os.getpid()]
    assert result[0] != os.getpid() and result[1] == 3.0


def test_the_works_exception_is_raised_here():
    def work():
        raise UnsupportedError([])

    with pytest.raises(UnsupportedError):
        overlap.beside(work, lambda: None)


class _Unpicklable:
    def __reduce__(self):
        if os.getpid() != HERE:
            raise TypeError("not in the child")
        return (_Unpicklable, ())


HERE = os.getpid()


@pytest.mark.parametrize("case", ["unpicklable", "child dies"])
def test_a_child_that_cannot_deliver_means_the_work_runs_here(case):
    def work():
        if os.getpid() != HERE and case == "child dies":
            os._exit(3)
        return _Unpicklable(), os.getpid()

    (value, pid), forked = overlap.beside(work, lambda: None)
    assert not forked and pid == HERE and isinstance(value, _Unpicklable)


def test_a_stalled_child_is_killed_and_the_work_runs_here(monkeypatch):
    monkeypatch.setattr(overlap, "STALL_S", 1.5)

    def work():
        if os.getpid() != HERE:
            time.sleep(60)  # no CPU time: what a child deadlocked on a lock held at fork looks like
        return os.getpid()

    t0 = time.monotonic()
    pid, forked = overlap.beside(work, lambda: None)
    assert not forked and pid == HERE and time.monotonic() - t0 < 20


def test_torch_runs_in_the_child_after_the_parent_used_its_thread_pool():
    """libgomp's pool does not survive fork; the child runs on one thread, so this returns instead of hanging."""
    a = torch.randn(512, 512)
    (a @ a).sum()
    result, forked = overlap.beside(lambda: float((a @ a).sum()), lambda: None)
    assert forked and result == pytest.approx(float((a @ a).sum()), rel=1e-4)


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 5))


@pytest.mark.parametrize("limit", [api.OVERLAP_MAX_BYTES, 0])  # 0: too big to fork, traced here after meanwhile
def test_convert_beside_meanwhile_builds_the_same_port(monkeypatch, limit):
    monkeypatch.setattr(api, "OVERLAP_MAX_BYTES", limit)
    x = torch.randn(1, 3, 8, 8)
    plain = api.convert(_net(), (x,))
    ran = []
    beside = api.convert(_net(), (x,), meanwhile=lambda: ran.append(1))
    assert ran == [1]
    assert beside.source == plain.source
    assert [(b.access, b.keys) for b in beside.bindings] == [(b.access, b.keys) for b in plain.bindings]
    assert ("trace_overlapped_s" in beside.timings) == (limit > 0)
    assert beside.parity().ok
    for a, b in zip(beside.tf_model.variables, plain.tf_model.variables, strict=True):
        assert a.name == b.name and (a.numpy() == b.numpy()).all()


def test_convert_beside_meanwhile_reports_unsupported_parts_all_at_once():
    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.special.zeta(x, x) + torch.special.polygamma(2, x)

    x = torch.rand(1, 3) + 1
    with pytest.raises(UnsupportedError) as plain:
        api.convert(Odd(), (x,))
    with pytest.raises(UnsupportedError) as beside:
        api.convert(Odd(), (x,), meanwhile=lambda: None)
    assert str(beside.value) == str(plain.value) and len(beside.value.items) >= 2
    back = pickle.loads(pickle.dumps(plain.value))  # how the child's error reaches the parent
    assert type(back) is UnsupportedError and back.items == plain.value.items and back.to_dict() == plain.value.to_dict()


def _cli(*args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "bridge.cli", "convert", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_the_cli_traces_beside_its_tf_import(tmp_path):
    """A fresh `bridge convert` has not imported TF yet: the trace runs in the forked child."""
    proc = _cli(str(ROOT / "models" / "two_layer"), "--out", str(tmp_path / "out"), "--no-tfjs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    timings = json.loads((tmp_path / "out" / "report.json").read_text())["timings"]
    assert timings["trace_overlapped_s"] == timings["trace_s"] > 0


def test_the_cli_lists_every_unsupported_part_from_the_child(tmp_path):
    (tmp_path / "odd.py").write_text(
        "import torch\n\n"
        "class Odd(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.special.zeta(x, x) + torch.special.polygamma(2, x)\n")
    proc = _cli(f"{tmp_path / 'odd.py'}:Odd", "--input", "1x3", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "zeta" in proc.stderr + proc.stdout and "polygamma" in proc.stderr + proc.stdout
    assert not (tmp_path / "out").exists()


def test_a_killed_parent_leaves_no_child_tracing(tmp_path):
    """SIGKILL cannot clean up; the kernel ends the child with its parent (Linux, PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    pid_file = tmp_path / "child.pid"
    script = (
        "import os, signal, time\n"
        "from pathlib import Path\n"
        "from bridge import overlap\n"
        f"pid_file = Path({str(pid_file)!r})\n"
        "def work():\n"
        "    pid_file.write_text(str(os.getpid()))\n"
        "    while True:\n"
        "        sum(range(1000))\n"
        "def meanwhile():\n"
        "    while not pid_file.exists():\n"
        "        time.sleep(0.05)\n"
        "    time.sleep(0.2)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "overlap.beside(work, meanwhile)\n")
    proc = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert proc.returncode == -9
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False
