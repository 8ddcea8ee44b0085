#!/usr/bin/env python3
"""Benchmark (not a test): what `bridge convert` costs against the floor of a bare TF export (issue 8).

    scripts/bench.py [--models digits_cnn,resnet18,resnet50] [--runs floor,convert,browser]
                     [--image-size 224] [--repeat N] [--timeout S] [--max-rss GB] [--json FILE] [--dry-run]
    scripts/bench.py --scale [--sizes 10M,40M,120M,350M] [--seq 32] [--no-floor] [--timeout S] [--json FILE]

Everything measured runs in a fresh subprocess (no import cache helps; this process imports neither torch
nor TF), and its wall time and peak RSS are measured from here. Peak RSS is the maximum over time of the
*sum* of the RSS of the whole process tree (the CLI, its tfjs-converter Python, Node, chromium and its
helpers), sampled every 50 ms with psutil (or /proc when psutil is missing). Pages shared between
processes (chromium's) are counted once per process, so the sum overstates what the tree really holds.

Per model (--models), three runs:

- floor: scripts/bench_models/floor.py, one process that imports torch, TF and the tfjs converter, builds
  the same network written directly in TF (tf.nn ops in a tf.Module, random weights of the torch shapes,
  no bridge code), writes a SavedModel and converts it to tfjs in-process (TF_ENABLE_ONEDNN_OPTS=0).
  Per step: seconds and peak RSS of that process.
- convert: `bridge convert` with its default verification but the browser off (`--browser ''`): TF parity,
  SavedModel, tfjs conversion, tfjs in Node on cpu and wasm.
- browser: `bridge convert` as the CLI defaults (the same plus headless chromium on webgl).

For both convert runs the per-step seconds are the export's report.json "timings"; "rest" is the wall time
not covered by them (interpreter start, imports, loading, tracing, building the TF model, TF parity).
"x floor" is wall / floor wall. The models: models/digits_cnn (its manifest) and examples/vision.py's
ResNet-18 and ResNet-50 (scripts/bench_models/torch_nets.py), whose seeded weights are first written to
a temporary .pt state_dict (untimed) and converted with `--weights`, input 1x3xSxS (S = --image-size).

--scale converts a GPT-2 decoder (transformers.GPT2Model from a config, seeded random weights, saved as
.safetensors, untimed) at about 10M, 40M, 120M and 350M parameters (350M is GPT-2-medium's config), input
ids and attention mask of 1xSEQ int64, browser off; it prints seconds and peak RSS per size (and the
floor's, unless --no-floor) and the growth exponents: least-squares slopes of log(seconds) and
log(peak RSS) against log(parameters). A conversion that fails, times out (--timeout) or goes over
--max-rss (the tree is killed) is a row with its reason.

The machine is shared: figures are noisy. --repeat N keeps the fastest of N runs (all are in --json).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_VENV = ROOT / ".venv"
if ((_VENV / "bin" / "python").exists() and Path(sys.prefix).resolve() != _VENV.resolve()
        and not os.environ.get("BRIDGE_BENCH_NO_REEXEC")):  # run with the project's venv (rich, psutil)
    os.execv(str(_VENV / "bin" / "python"), [str(_VENV / "bin" / "python"), str(Path(__file__).resolve()),
                                             *sys.argv[1:]])

import argparse
import json
import math
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

try:
    import psutil
except ImportError:  # fall back to /proc
    psutil = None

from rich.console import Console
from rich.table import Table

PY = sys.executable
BRIDGE = [str(Path(PY).parent / "bridge")] if (Path(PY).parent / "bridge").exists() else [PY, "-m", "bridge.cli"]
NETS = ROOT / "scripts" / "bench_models" / "torch_nets.py"
FLOOR = ROOT / "scripts" / "bench_models" / "floor.py"
MODELS = ("digits_cnn", "resnet18", "resnet50")
RUNS = ("floor", "convert", "browser")
VOCAB, POSITIONS = 50257, 1024
SCALE = {  # GPT2Model configs; all with GPT-2's vocabulary and 1024 positions
    "10M": {"n_embd": 192, "n_layer": 2, "n_head": 6},
    "40M": {"n_embd": 512, "n_layer": 4, "n_head": 8},
    "120M": {"n_embd": 768, "n_layer": 12, "n_head": 12},   # GPT-2 small (124M)
    "350M": {"n_embd": 1024, "n_layer": 24, "n_head": 16},  # GPT-2 medium (355M)
}
console = Console()


def gpt2_params(n_embd: int, n_layer: int, n_head: int) -> int:
    d = n_embd
    return VOCAB * d + POSITIONS * d + n_layer * (12 * d * d + 13 * d) + 2 * d


# ---------------------------------------------------------------- process-tree sampling


def _kind(cmdline: list[str], name: str, is_root: bool) -> str:
    text = " ".join(cmdline)
    if "bridge.export.tfjs" in text:
        return "tfjs-converter"
    if "bridge.export" in text and "python" in (cmdline[0] if cmdline else ""):
        return "python-worker"
    if is_root:
        return "main"
    base = Path(cmdline[0]).name if cmdline else name
    if base.startswith("node") or name == "node":
        return "node"
    if ("chrom" in base or "chrom" in name or "headless_shell" in name
            or any(a.startswith("--type=") for a in cmdline)):  # chromium's helpers run as /proc/self/exe
        return "chromium"
    if "python" in base:  # name it by what it runs
        rest = cmdline[1:]
        if "-c" in rest:
            what = "-c"
        elif "-m" in rest[:-1]:
            what = rest[rest.index("-m") + 1]
        else:
            what = next((Path(a).name for a in rest if not a.startswith("-")), "?")
        return f"python {what}"
    return base or name


class TreeSampler:
    """Sum of RSS over a process and all its descendants, now; and the peak of that sum (also per kind).

    A child whose command line is still its parent's is a fork that has not exec'd yet: its pages are
    the parent's (copy-on-write), so it is left out of the sum instead of counting the parent twice.
    Command lines are read at every sample, since an exec keeps the pid.
    """

    def __init__(self, pid: int):
        self.pid, self.peak, self.peak_by_kind, self.commands = pid, 0, {}, {}
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._root = psutil.Process(pid) if psutil else None

    def _procs(self) -> list[tuple[int, int, int, list[str], str]]:
        """[(pid, ppid, rss bytes, cmdline, name)] of the tree."""
        if psutil:
            try:
                procs = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                return []
            out = []
            for p in procs:
                try:
                    out.append((p.pid, p.ppid(), p.memory_info().rss, p.cmdline(), p.name()))
                except psutil.Error:
                    pass
            return out
        return self._proc_fs()

    def _proc_fs(self) -> list[tuple[int, int, int, list[str], str]]:
        children: dict[int, list[int]] = {}
        parent: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
            parent[int(entry)] = ppid
        out, stack = [], [self.pid]
        while stack:
            pid = stack.pop()
            stack += children.get(pid, [])
            try:
                with open(f"/proc/{pid}/statm") as f:
                    rss = int(f.read().split()[1]) * self._page
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
                with open(f"/proc/{pid}/comm") as f:
                    name = f.read().strip()
            except OSError:
                continue
            out.append((pid, parent.get(pid, 0), rss, cmd, name))
        return out

    def sample(self) -> int:
        procs = self._procs()
        cmdlines = {pid: cmd for pid, _, _, cmd, _ in procs}
        total, by_kind = 0, {}
        for pid, ppid, rss, cmd, name in procs:
            if pid != self.pid and cmd == cmdlines.get(ppid):
                continue  # forked, not exec'd yet
            k = _kind(cmd, name, pid == self.pid)
            self.commands.setdefault(k, " ".join(cmd)[:300])
            total += rss
            by_kind[k] = by_kind.get(k, 0) + rss
        self.peak = max(self.peak, total)
        for k, v in by_kind.items():
            self.peak_by_kind[k] = max(self.peak_by_kind.get(k, 0), v)
        return total

    def pids(self) -> list[int]:
        return [p[0] for p in self._procs()]


@dataclass
class Measured:
    cmd: list[str]
    rc: int | None = None
    wall_s: float | None = None
    peak_rss: int = 0
    peak_by_kind: dict = field(default_factory=dict)
    commands: dict = field(default_factory=dict)  # kind -> the first command line seen of that kind
    reason: str | None = None  # why it failed, or None
    stdout: str = ""
    stderr_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


def run_measured(cmd: list[str], *, work: Path, label: str, timeout: float, max_rss: int,
                 env: dict | None = None, interval: float = 0.05) -> Measured:
    """Run cmd as a fresh process (its own session), sampling its tree; kill the tree on timeout / max_rss."""
    m = Measured(cmd)
    out_path, err_path = work / f"{label}.stdout", work / f"{label}.stderr"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=env, start_new_session=True)
        sampler, killed = TreeSampler(proc.pid), None
        while proc.poll() is None:
            try:
                total = sampler.sample()
            except Exception:  # noqa: BLE001 - a process vanished mid-read
                total = 0
            elapsed = time.perf_counter() - started
            if elapsed > timeout:
                killed = f"timeout: killed after {timeout:.0f} s"
            elif total > max_rss:
                killed = f"over --max-rss: tree at {_gb(total)}, killed"
            if killed:
                _kill_tree(proc, sampler)
                break
            time.sleep(interval)
        proc.wait()
        m.wall_s = time.perf_counter() - started
    m.rc, m.peak_rss, m.peak_by_kind = proc.returncode, sampler.peak, dict(sampler.peak_by_kind)
    m.commands = dict(sampler.commands)
    m.stdout = out_path.read_text(errors="replace")
    err_text = err_path.read_text(errors="replace")
    m.stderr_tail = "\n".join(err_text.strip().splitlines()[-15:])
    if killed:
        m.reason = killed
    elif proc.returncode != 0:
        m.reason = _failure(proc.returncode, err_text + m.stdout)
    return m


def _kill_tree(proc: subprocess.Popen, sampler: TreeSampler) -> None:
    """SIGKILL the process this script started and every descendant of it (by pid)."""
    pids = sampler.pids()
    for pid in reversed(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session this script started for it
    except OSError:
        pass


def _failure(rc: int, text: str) -> str:
    if rc == -signal.SIGKILL:
        return "killed by SIGKILL (the kernel's OOM killer?)"
    if "MemoryError" in text or "std::bad_alloc" in text or "out of memory" in text.lower():
        return f"out of memory (exit {rc})"
    if rc < 0:
        return f"killed by signal {-rc}"
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.lower().startswith(("error", "bad input", "internal error"))
              or "Error" in ln.split(":")[0]]
    return f"exit {rc}: {(errors or lines or [''])[-1][:200]}"


def _gb(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


# ---------------------------------------------------------------- what to run


@dataclass
class Plan:
    name: str
    prepare: list[str] | None  # writes the checkpoint (untimed)
    floor: list[str]
    convert: list[str]  # without the browser flag
    params_hint: int | None = None


def model_plan(name: str, work: Path, size: int) -> Plan:
    out = work / name
    floor = [PY, str(FLOOR), name, str(out / "floor"), "--image-size", str(size)]
    if name == "digits_cnn":
        return Plan(name, None, floor, [*BRIDGE, "convert", "models/digits_cnn"])
    ckpt = out / f"{name}.pt"
    return Plan(name, [PY, str(NETS), "save", name, str(ckpt)], floor,
                [*BRIDGE, "convert", f"{NETS}:{name}", "--weights", str(ckpt), "--input", f"1x3x{size}x{size}"])


def scale_plan(size: str, work: Path, seq: int) -> Plan:
    config = SCALE[size]
    kwargs = json.dumps({**config, "vocab_size": VOCAB, "n_positions": POSITIONS})
    out = work / f"gpt2-{size}"
    ckpt = out / "gpt2.safetensors"
    return Plan(f"gpt2-{size}", [PY, str(NETS), "save", "gpt2", str(ckpt), "--kwargs", kwargs],
                [PY, str(FLOOR), "gpt2", str(out / "floor"),
                 "--kwargs", json.dumps({**json.loads(kwargs), "seq": seq})],
                [*BRIDGE, "convert", f"{NETS}:gpt2", "--kwargs", kwargs, "--weights", str(ckpt),
                 "--input", f"1x{seq}:int64:{VOCAB}", "--input", f"1x{seq}:int64:2"],
                gpt2_params(**config))


def convert_cmd(plan: Plan, work: Path, run: str) -> list[str]:
    cmd = [*plan.convert, "--out", str(work / plan.name / run), "--force"]
    return cmd + ["--browser", ""] if run == "convert" else cmd  # "browser": the CLI's default (webgl)


FLOOR_ENV = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")


# ---------------------------------------------------------------- running


def measure_run(plan: Plan, run: str, work: Path, args) -> dict:
    """One measured run (floor, convert or browser), the fastest of --repeat; a dict for the tables/JSON."""
    attempts = []
    for i in range(args.repeat):
        label = f"{plan.name}-{run}-{i}"
        cmd = plan.floor if run == "floor" else convert_cmd(plan, work, run)
        console.print(f"[dim]{time.strftime('%H:%M:%S')} running {label}: {shlex.join(cmd)}[/dim]")
        code = code_id()
        m = run_measured(cmd, work=work, label=label, timeout=args.timeout, max_rss=int(args.max_rss * 1e9),
                         env=FLOOR_ENV if run == "floor" else None)
        if run != "floor" and code_id() != code:
            code += "+changed-during-run"
        row = {"model": plan.name, "run": run, "code": code, "cmd": cmd, "ok": m.ok, "reason": m.reason, "rc": m.rc,
               "wall_s": m.wall_s, "peak_rss": m.peak_rss, "peak_rss_by_process": m.peak_by_kind,
               "process_commands": m.commands}
        if run == "floor" and m.ok:
            line = [ln for ln in m.stdout.splitlines() if ln.startswith("BENCH_FLOOR ")]
            floor = json.loads(line[-1][len("BENCH_FLOOR "):]) if line else {}
            row["steps"] = floor.get("seconds", {})
            row["step_peak_rss"] = floor.get("peak_rss", {})
            row["floor"] = {k: floor.get(k) for k in ("params", "buffers", "tracked", "tfjs_weight_bytes",
                                                       "total_s")}
        elif m.ok:
            report = json.loads((work / plan.name / run / "report.json").read_text())
            steps = dict(report.get("timings") or {})
            beside = {}
            if steps.pop("trace_overlapped_s", None) is not None:  # ran in a child beside the TF import:
                beside["trace_beside_tf_import"] = steps.pop("trace_s")  # shown, not part of the sum
            row["steps"] = {**{k.removesuffix("_s"): v for k, v in steps.items()}, **beside}
            row["steps"]["rest"] = m.wall_s - sum(steps.values())
            row["parity_ok"] = report.get("parity", {}).get("ok")
            row["tfjs_weight_bytes"] = (report.get("tfjs") or {}).get("weights_bytes")
            shutil.rmtree(work / plan.name / run, ignore_errors=True)  # exports can be GBs (the 350M decoder)
        else:
            row["stderr_tail"] = m.stderr_tail
        attempts.append(row)
        _status(row)
        if not m.ok:
            break
    ok = [a for a in attempts if a["ok"]]
    best = dict(min(ok, key=lambda a: a["wall_s"]) if ok else attempts[-1])
    best["attempts"] = [{"wall_s": a["wall_s"], "peak_rss": a["peak_rss"], "ok": a["ok"]} for a in attempts]
    return best


def _status(row: dict) -> None:
    if row["ok"]:
        console.print(f"  {row['model']} {row['run']}: {row['wall_s']:.1f} s, peak RSS {_gb(row['peak_rss'])}")
    else:
        console.print(f"  [red]{row['model']} {row['run']}: {row['reason']}[/red]")


def prepare(plan: Plan, work: Path, args) -> dict | None:
    if plan.prepare is None:
        return None
    (work / plan.name).mkdir(parents=True, exist_ok=True)
    console.print(f"[dim]{time.strftime('%H:%M:%S')} preparing {plan.name}: {shlex.join(plan.prepare)}[/dim]")
    m = run_measured(plan.prepare, work=work, label=f"{plan.name}-prepare", timeout=args.timeout,
                     max_rss=int(args.max_rss * 1e9))
    if not m.ok:
        return {"ok": False, "reason": f"writing the checkpoint failed: {m.reason}", "stderr_tail": m.stderr_tail}
    info = json.loads(m.stdout.strip().splitlines()[-1])
    return {"ok": True, "wall_s": m.wall_s, "peak_rss": m.peak_rss, **info}


# ---------------------------------------------------------------- tables


STEP_ORDER = ("imports", "build", "savedmodel", "tfjs_convert", "tfjs_verify", "tfjs_per_module", "browser_verify",
              "gradients")


def _steps_text(steps: dict | None, peaks: dict | None = None) -> str:
    if not steps:
        return "-"
    parts = []
    order = {k: i for i, k in enumerate(STEP_ORDER)}
    for k, v in sorted(steps.items(), key=lambda kv: (kv[0] == "rest", order.get(kv[0], len(order)), kv[0])):
        parts.append(f"{k} {v:.1f}" + (f" ({_gb(peaks[k])})" if peaks and k in peaks else ""))
    return ", ".join(parts)


def _by_process(peaks: dict) -> str:
    """Per kind of process, the peak of their summed RSS (kinds under 20 MB left out)."""
    return ", ".join(f"{k} {_gb(v)}" for k, v in sorted(peaks.items(), key=lambda kv: -kv[1]) if v >= 20e6)


def models_table(results: list[dict]) -> Table:
    table = Table(title="bridge convert vs the floor (wall s; x floor = wall / floor wall; peak RSS of the "
                        "process tree)", show_lines=True)
    for col in ("model", "run", "wall s", "x floor", "peak RSS", "steps, s (floor: step peak RSS)",
                "peak RSS by process"):
        table.add_column(col, overflow="fold")
    for r in results:
        floor = next((x for x in results if x["model"] == r["model"] and x["run"] == "floor" and x["ok"]), None)
        if not r["ok"]:
            table.add_row(r["model"], r["run"], "-", "-", _gb(r["peak_rss"]), f"[red]{r['reason']}[/red]", "")
            continue
        ratio = f"{r['wall_s'] / floor['wall_s']:.1f}" if floor and r["run"] != "floor" else ""
        table.add_row(r["model"], r["run"], f"{r['wall_s']:.1f}", ratio, _gb(r["peak_rss"]),
                      _steps_text(r.get("steps"), r.get("step_peak_rss")), _by_process(r["peak_rss_by_process"]))
    return table


def fit_exponent(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) against log(x)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y]
    if len(pts) < 2:
        return None
    mx, my = sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def scale_table(rows: list[dict]) -> Table:
    table = Table(title="--scale: GPT2Model, browser off (bridge convert --browser '')", show_lines=True)
    for col in ("size", "params", "checkpoint", "run", "wall s", "x floor", "peak RSS", "steps, s",
                "peak RSS by process"):
        table.add_column(col, overflow="fold")
    for r in rows:
        for run in ("floor", "convert"):
            m = r.get(run)
            if m is None:
                continue
            ckpt = _gb(r.get("checkpoint_bytes")) if run == "convert" else ""
            if not m["ok"]:
                table.add_row(r["size"], f"{r['params'] / 1e6:.1f}M", ckpt, run, "-", "-", _gb(m.get("peak_rss")),
                              f"[red]{m['reason']}[/red]", "")
                continue
            floor = r.get("floor")
            ratio = f"{m['wall_s'] / floor['wall_s']:.1f}" if run == "convert" and floor and floor["ok"] else ""
            table.add_row(r["size"], f"{r['params'] / 1e6:.1f}M", ckpt, run, f"{m['wall_s']:.1f}", ratio,
                          _gb(m["peak_rss"]), _steps_text(m.get("steps"), m.get("step_peak_rss")),
                          _by_process(m.get("peak_rss_by_process", {})))
    return table


def exponents(rows: list[dict], run: str) -> dict:
    ok = [r for r in rows if r.get(run) and r[run]["ok"]]
    xs = [r["params"] for r in ok]
    return {"n_points": len(ok), "seconds": fit_exponent(xs, [r[run]["wall_s"] for r in ok]),
            "peak_rss": fit_exponent(xs, [r[run]["peak_rss"] for r in ok])}


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    ap.add_argument("--image-size", type=int, default=224, help="ResNet input 1x3xSxS (default 224)")
    ap.add_argument("--scale", action="store_true", help="the GPT-2 scaling run instead of --models")
    ap.add_argument("--sizes", default=",".join(SCALE), help=f"--scale sizes, of {', '.join(SCALE)}")
    ap.add_argument("--seq", type=int, default=32, help="--scale sequence length (input 1xSEQ ids + mask)")
    ap.add_argument("--no-floor", action="store_true", help="--scale without the floor runs")
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is shown")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per measured process (default 3600)")
    ap.add_argument("--max-rss", type=float, default=14, help="GB: kill a process tree above this (default 14)")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    ap.add_argument("--workdir", type=Path, help="keep checkpoints and logs here (default: a temp dir, removed)")
    ap.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    args = ap.parse_args()

    own_work = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="bridge-bench-")) if own_work else args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        if args.scale:
            sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
            bad = [s for s in sizes if s not in SCALE]
            if bad:
                ap.error(f"unknown --sizes {', '.join(bad)} (known: {', '.join(SCALE)})")
            plans = [scale_plan(s, work, args.seq) for s in sizes]
            runs = ["convert"] if args.no_floor else ["floor", "convert"]
        else:
            names = [m.strip() for m in args.models.split(",") if m.strip()]
            runs = [r.strip() for r in args.runs.split(",") if r.strip()]
            bad = [m for m in names if m not in MODELS] + [r for r in runs if r not in RUNS]
            if bad:
                ap.error(f"unknown --models/--runs value(s): {', '.join(bad)}")
            plans = [model_plan(n, work, args.image_size) for n in names]
        if args.dry_run:
            dry_run(plans, runs, work, args)
            return
        sampler = f"psutil {psutil.__version__}" if psutil else "psutil missing: sampling /proc"
        console.print(f"bridge at {_git()} (bridge/ sources {code_id()}); {sampler}; "
                      f"{os.cpu_count()} cpus; work dir {work}; the machine may be shared (noisy figures)")
        (scale if args.scale else models)(plans, runs, work, args)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


def dry_run(plans: list[Plan], runs: list[str], work: Path, args) -> None:
    console.print(f"dry run: nothing is executed; work dir {work} (removed); each line runs as a fresh process, "
                  f"its tree sampled every 50 ms (timeout {args.timeout:.0f} s, max RSS {args.max_rss:g} GB)")
    for plan in plans:
        console.print(f"[bold]{plan.name}[/bold]" + (f" (~{plan.params_hint / 1e6:.1f}M parameters)"
                                                     if plan.params_hint else ""))
        if plan.prepare:
            console.print(f"  prepare (untimed): {shlex.join(plan.prepare)}", soft_wrap=True)
        for run in runs:
            cmd = plan.floor if run == "floor" else convert_cmd(plan, work, run)
            env = "TF_ENABLE_ONEDNN_OPTS=0 " if run == "floor" else ""
            console.print(f"  {run}: {env}{shlex.join(cmd)}", soft_wrap=True)


def models(plans: list[Plan], runs: list[str], work: Path, args) -> None:
    results = []
    for plan in plans:
        prep = prepare(plan, work, args)
        if prep is not None and not prep["ok"]:
            results += [{"model": plan.name, "run": run, "ok": False, "reason": prep["reason"], "peak_rss": 0}
                        for run in runs]
            continue
        for run in runs:
            results.append(measure_run(plan, run, work, args))
    console.print(models_table(results))
    _code_warning(results)
    console.print("steps: floor = its own timers; convert/browser = report.json timings, rest = wall minus those "
                  "(interpreter start, imports, checkpoint load, TF parity; and the TF import, beside which the "
                  "trace ran when it says trace_beside_tf_import). Peak RSS sums the "
                  "tree's RSS (shared pages counted per process).")
    _write_json(args, {"kind": "models", "image_size": args.image_size, "results": results})


def scale(plans: list[Plan], runs: list[str], work: Path, args) -> None:
    rows = []
    for plan, size in zip(plans, [p.name.removeprefix("gpt2-") for p in plans]):
        row = {"size": size, "config": SCALE[size], "params": plan.params_hint}
        prep = prepare(plan, work, args)
        if not prep["ok"]:
            row["convert"] = {"ok": False, "reason": prep["reason"], "peak_rss": None}
        else:
            row.update(params=prep["params"], checkpoint_bytes=prep["checkpoint_bytes"],
                       prepare={"wall_s": prep["wall_s"], "peak_rss": prep["peak_rss"]})
            for run in runs:
                row[run] = measure_run(plan, run, work, args)
        for f in (work / plan.name).glob("*.safetensors"):
            f.unlink()  # the 350M checkpoint is 1.4 GB
        shutil.rmtree(work / plan.name / "floor", ignore_errors=True)
        rows.append(row)
    console.print(scale_table(rows))
    _code_warning([r["convert"] for r in rows if r.get("convert")])
    console.print("rest = wall minus report.json timings (interpreter start, imports, checkpoint load, trace, TF "
                  "build, TF parity); floor steps are its own timers, with each step's peak RSS.")
    fits = {run: exponents(rows, run) for run in runs}
    for run, e in fits.items():
        if e["seconds"] is None:
            console.print(f"{run}: growth exponent needs two sizes that converted (have {e['n_points']})")
        else:
            console.print(f"{run}: growth exponent over {e['n_points']} sizes (least squares, log-log): "
                          f"seconds ~ params^{e['seconds']:.2f}, peak RSS ~ params^{e['peak_rss']:.2f}"
                          + (" (two points: exact, not a fit)" if e["n_points"] == 2 else ""))
    _write_json(args, {"kind": "scale", "seq": args.seq, "rows": rows, "exponents": fits})


def code_id() -> str:
    """A hash of bridge/'s sources (.py, .mjs) now: tells apart runs of a working tree that changed mid-bench."""
    import hashlib

    h = hashlib.sha1()
    for f in sorted((ROOT / "bridge").rglob("*")):
        if f.suffix in (".py", ".mjs") and "node_modules" not in f.parts:
            h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:8]


def _git() -> str:
    """The commit measured, with "+dirty" when the working tree differs from it."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=False).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=False).stdout
        return rev.strip() + ("+dirty" if dirty.strip() else "")
    except OSError:
        return "?"


def _code_warning(runs: list[dict]) -> None:
    """bridge convert runs that ran different bridge/ sources (the working tree changed during the bench)."""
    codes = {r.get("model", "?") + " " + r.get("run", ""): r["code"]
             for r in runs if r.get("code") and r.get("run") != "floor"}
    if len(set(codes.values())) > 1 or any("changed" in c for c in codes.values()):
        console.print("[yellow]warning: bridge/ changed during the bench; sources per run: "
                      + ", ".join(f"{k} {v}" for k, v in codes.items()) + "[/yellow]")


def _write_json(args, data: dict) -> None:
    if args.json:
        data = {**data, "cpus": os.cpu_count(), "git": _git(),
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "sampler": "psutil" if psutil else "/proc"}
        args.json.write_text(json.dumps(data, indent=2, default=str))
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
