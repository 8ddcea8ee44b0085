"""Where the memory of a `bridge convert` goes: RSS of the whole process tree over time, per pipeline step.

    # a checkpoint to convert (safetensors; --shards N writes N files and a model.safetensors.index.json)
    python scripts/memory_breakdown.py make /tmp/gpt2-50m --model gpt2 --kwargs '{"n_layer": 8, "n_embd": 512}'
    # convert it, sampling RSS of bridge and every child (tfjs converter, node, chromium) every 0.2 s
    python scripts/memory_breakdown.py run --model gpt2 --kwargs '{"n_layer": 8, "n_embd": 512}' \
        --weights /tmp/gpt2-50m/model.safetensors --out /tmp/gpt2-50m/export -- --no-per-module-tfjs

The conversion runs in a child Python that wraps the pipeline's functions (checkpoint load, trace, TF build,
weight assignment, parity, SavedModel write/verify, tfjs conversion, Node) so each one writes a start and an
end marker; the parent samples /proc and prints, per phase in time order: seconds, bridge's RSS at the end
of the phase (anonymous and file-backed: an mmap'ed checkpoint is file-backed), the peak of bridge alone,
of each kind of child, and of the whole tree. A benchmark, not a test: it prints figures and asserts nothing.
Browser checks are off unless you pass `--browser webgl` after `--`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "scripts" / "large_models.py"
INPUTS = {"gpt2": ["--input", "1x16:int64:{vocab}", "--input", "1x16:int64:2"],
          "linear_stack": ["--input", "1x{width}"]}
MB = 1 << 20


# ------------------------------------------------------------------ make a checkpoint


def make(args) -> None:
    import importlib.util

    from safetensors.torch import save_file

    spec = importlib.util.spec_from_file_location("large_models", MODELS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    module = getattr(mod, args.model)(**json.loads(args.kwargs or "{}"))
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    out = Path(args.folder)
    out.mkdir(parents=True, exist_ok=True)
    seen, unique = set(), {}
    for k, v in state.items():  # safetensors refuses shared storage (GPT-2 ties nothing here, but be safe)
        unique[k] = v.clone() if v.data_ptr() in seen else v
        seen.add(v.data_ptr())
    nbytes = sum(v.numel() * v.element_size() for v in unique.values())
    if args.shards <= 1:
        save_file(unique, str(out / "model.safetensors"))
        path = out / "model.safetensors"
    else:
        keys = list(unique)
        per = -(-len(keys) // args.shards)
        weight_map = {}
        for i in range(args.shards):
            name = f"model-{i + 1:05d}-of-{args.shards:05d}.safetensors"
            part = {k: unique[k] for k in keys[i * per:(i + 1) * per]}
            if part:
                save_file(part, str(out / name))
                weight_map.update({k: name for k in part})
        (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": nbytes},
                                                                      "weight_map": weight_map}))
        path = out / "model.safetensors.index.json"
    print(json.dumps({"checkpoint": str(path), "parameters": sum(v.numel() for v in state.values()),
                      "float32_bytes": nbytes}))


# ------------------------------------------------------------------ the child: the CLI with markers


def child(markers: str, argv: list[str]) -> int:
    """Run `bridge convert argv` with start/end markers written to ``markers`` (one JSON line each)."""
    log = open(markers, "a", buffering=1)  # noqa: SIM115 - open for the whole run

    def mark(label, phase):
        log.write(json.dumps({"t": time.time(), "label": label, "phase": phase}) + "\n")

    def wrap(owner, name, label=None):
        original = getattr(owner, name)

        def wrapper(*a, **k):
            mark(label or name, "start")
            try:
                return original(*a, **k)
            finally:
                mark(label or name, "end")

        setattr(owner, name, wrapper)

    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # as bridge.cli.main does, before TF is imported
    import bridge.convert_cmd as cmd
    from bridge import api
    from bridge.export import save, savedmodel, tfjs

    original_update = cmd._Steps.update

    def update(self, text):
        mark(text, "step")
        original_update(self, text)

    cmd._Steps.update = update
    wrap(cmd, "load_checkpoint")
    wrap(cmd, "check_fits")
    wrap(cmd, "instantiate", "torch module init")
    wrap(api, "trace", "torch.export trace")
    wrap(api, "record", "record (torch run)")
    wrap(api, "free_dims", "free_dims (torch runs)")
    wrap(api, "instantiate", "TF model init")
    wrap(api, "load_weights", "weights -> TF variables")
    wrap(api, "_confirm_free_dims", "confirm free dims (TF retrace)")
    wrap(api.Port, "_run_parity", "parity TF vs torch")
    wrap(savedmodel, "save_savedmodel", "SavedModel write")
    wrap(save, "write_tf_checkpoint", "tf.train.Checkpoint write")
    wrap(savedmodel, "run_savedmodel", "SavedModel verify (load+run)")
    wrap(tfjs, "convert_to_tfjs", "tfjs conversion")
    wrap(tfjs, "run_tfjs", "node run (tfjs)")
    try:
        from bridge.export import tfjs_stream

        wrap(tfjs_stream, "convert_streamed", "tfjs streamed writer")
    except ImportError:
        pass
    from bridge.cli import main as cli_main

    mark("start", "step")
    try:
        return cli_main(["convert", *argv])
    finally:
        mark("done", "step")


# ------------------------------------------------------------------ sampling /proc


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += _children(p)
    return seen


def _status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS", "RssAnon", "RssFile", "RssShmem")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0]) * 1024
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            out["cmd"] = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return {}
    return out


def _kind(cmd: str) -> str:
    if "bridge.export.tfjs" in cmd:
        return "tfjs converter"
    if "run.mjs" in cmd:
        return "node run.mjs"
    if "browser.mjs" in cmd or "chrom" in cmd:
        return "chromium"
    if "node" in cmd:
        return "node (other)"
    return "other child"


class Sampler(threading.Thread):
    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self.stop = pid, every, [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            t = time.time()
            row = {"t": t, "main": 0, "main_anon": 0, "main_file": 0, "kinds": {}}
            for p in _tree(self.pid):
                s = _status(p)
                if not s or p == self.pid and "memory_breakdown.py _child" not in s["cmd"]:
                    continue  # /usr/bin/time itself
                if "memory_breakdown.py _child" in s["cmd"]:
                    row["main"], row["main_anon"], row["main_file"] = (s.get("VmRSS", 0), s.get("RssAnon", 0),
                                                                      s.get("RssFile", 0))
                else:
                    k = _kind(s["cmd"])
                    row["kinds"][k] = row["kinds"].get(k, 0) + s.get("VmRSS", 0)
            row["total"] = row["main"] + sum(row["kinds"].values())
            self.samples.append(row)
            self.stop.wait(self.every)


def _phases(markers: list[dict], t0: float, t1: float) -> list[tuple[str, float, float]]:
    """(label, start, end) intervals: the innermost open marker, else the current CLI step."""
    events = sorted(markers, key=lambda m: m["t"])
    out, stack, step, last = [], [], "start", t0
    for e in events:
        label = stack[-1] if stack else step
        if e["t"] > last:
            out.append((label, last, e["t"]))
        last = max(last, e["t"])
        if e["phase"] == "step":
            step = e["label"]
        elif e["phase"] == "start":
            stack.append(e["label"])
        elif stack and stack[-1] == e["label"]:
            stack.pop()
    out.append((stack[-1] if stack else step, last, t1))
    merged = []
    for label, a, b in out:
        if merged and merged[-1][0] == label:
            merged[-1] = (label, merged[-1][1], b)
        elif b - a > 0.05 or not merged:
            merged.append((label, a, b))
    return merged


def run(args) -> int:
    kwargs = json.loads(args.kwargs or "{}")
    fill = {"vocab": kwargs.get("vocab_size", 50257), "width": kwargs.get("width", 2048)}
    argv = [f"{MODELS}:{args.model}", "--kwargs", json.dumps(kwargs), "--out", args.out, "--force",
            "--browser", "", *[a.format(**fill) for a in INPUTS[args.model]]]
    if args.weights:
        argv += ["--weights", args.weights]
    argv += args.extra
    markers = Path(args.out + ".markers.jsonl")
    markers.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, "_child", str(markers), "--", *argv]
    if args.time_v:
        cmd = ["/usr/bin/time", "-v", *cmd]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid, args.every)
    sampler.start()
    output = proc.stdout.read()
    rc = proc.wait()
    sampler.stop.set()
    sampler.join()
    t1 = time.time()
    print(output[-6000:])
    marks = [json.loads(s) for s in markers.read_text().splitlines()] if markers.is_file() else []
    table = _table(sampler.samples, _phases(marks, t0, t1), args.weights_mb)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps({"rc": rc, "wall_s": t1 - t0, "samples": sampler.samples,
                                               "markers": marks}, default=str))
    return rc


def _table(samples: list[dict], phases, weights_mb: float | None) -> str:
    if not samples:
        return "(no samples)"
    kinds = sorted({k for s in samples for k in s["kinds"]})
    head = ["phase", "s", "bridge end MB", "(anon", "file)", "bridge peak MB", *[f"{k} peak MB" for k in kinds],
            "tree peak MB"]
    rows = []
    for label, a, b in phases:
        inside = [s for s in samples if a <= s["t"] <= b] or [min(samples, key=lambda s: abs(s["t"] - b))]
        end = inside[-1]
        rows.append([label[:46], f"{b - a:.1f}", f"{end['main'] / MB:.0f}", f"{end['main_anon'] / MB:.0f}",
                     f"{end['main_file'] / MB:.0f}", f"{max(s['main'] for s in inside) / MB:.0f}",
                     *[f"{max(s['kinds'].get(k, 0) for s in inside) / MB:.0f}" for k in kinds],
                     f"{max(s['total'] for s in inside) / MB:.0f}"])
    peak = max(samples, key=lambda s: s["total"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    lines.append(f"\npeak tree RSS {peak['total'] / MB:.0f} MB (bridge {peak['main'] / MB:.0f} MB, children "
                 + ", ".join(f"{k} {v / MB:.0f} MB" for k, v in peak["kinds"].items()) + ")"
                 + (f"; float32 weights {weights_mb:.0f} MB, bound 3 x weights + 1536 = {3 * weights_mb + 1536:.0f} MB"
                    if weights_mb else ""))
    lines.append(f"wall {samples[-1]['t'] - samples[0]['t']:.1f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_child":
        return child(argv[1], argv[3:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write a seeded model's state_dict as safetensors")
    m.add_argument("folder")
    m.add_argument("--model", default="gpt2", choices=sorted(INPUTS))
    m.add_argument("--kwargs")
    m.add_argument("--shards", type=int, default=1)
    r = sub.add_parser("run", help="convert with the RSS sampler")
    r.add_argument("--model", default="gpt2", choices=sorted(INPUTS))
    r.add_argument("--kwargs")
    r.add_argument("--weights")
    r.add_argument("--out", required=True)
    r.add_argument("--every", type=float, default=0.2)
    r.add_argument("--weights-mb", type=float)
    r.add_argument("--json")
    r.add_argument("--time-v", action="store_true", help="run under /usr/bin/time -v")
    r.add_argument("extra", nargs="*", help="more bridge convert options, after --")
    args = p.parse_args(argv)
    if args.cmd == "make":
        make(args)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
