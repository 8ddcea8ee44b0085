"""What --quantize costs on the models/ classifiers: bytes, error and top-1 agreement against torch, held-out accuracy.

For each model: `bridge convert` float32, --quantize float16 and --quantize uint8 (every weight), each
verified in Node (cpu, wasm) and, unless --browser '' is given, in chromium; then the three tfjs models
run the model folder's held-back data (heldout.npz, or train.py's test split) in one Node process.
Prints a Markdown table; --json FILE also writes the numbers.

    .venv/bin/python scripts/measure_quantize.py [--models digits_cnn,digits_lstm] [--browser webgl]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.cli import main as bridge  # noqa: E402
from bridge.export import quantize  # noqa: E402

VARIANTS = {"float32": [], "float16": ["--quantize", "float16"], "uint8": ["--quantize", "uint8"]}


def measure(model: str, browser: str, work: Path) -> list[dict]:
    reports, folders = {}, {}
    for variant, flags in VARIANTS.items():
        out = work / f"{model}-{variant}"
        code = bridge(["convert", str(ROOT / "models" / model), "--out", str(out), "--browser", browser,
                       "--no-per-module-tfjs", *flags])
        if code != 0:
            raise SystemExit(f"bridge convert {model} {variant} exited {code}")
        reports[variant] = json.loads((out / "report.json").read_text())
        folders[variant] = out / "tfjs"
    x, y = quantize.load_heldout(ROOT / "models" / model)
    accuracy = quantize.heldout_accuracy({v: (f, x, y) for v, f in folders.items()})
    rows = []
    for variant, report in reports.items():
        q = report["quantization"]
        runtimes = {r["runtime"]: r for r in report["parity"]["runtimes"] if r["skipped"] is None}
        tfjs_runtimes = {k: v for k, v in runtimes.items() if k.startswith(("tfjs-", "browser-"))}
        cost = q["cost"] if q else {}
        top1 = {rt: t for rt, c in cost.items() if "top1" in c for t in c["top1"].values()}
        changed = sum(a != b for a, b in zip(accuracy[variant]["predictions"], accuracy["float32"]["predictions"]))
        h = {k: v for k, v in accuracy[variant].items() if k != "predictions"}
        rows.append({
            "model": model, "variant": variant,
            "bytes_before": q["weight_bytes_before"] if q else report["tfjs"]["weights_bytes"],
            "bytes_after": report["tfjs"]["weights_bytes"],
            "max_abs_error": max(r["max_abs_error"] for r in tfjs_runtimes.values()),
            "max_rel_error": max(r["max_rel_error"] for r in tfjs_runtimes.values()),
            "runtimes": sorted(tfjs_runtimes),
            "top1": ", ".join(f"{rt} {t['agree']}/{t['rows']}" for rt, t in top1.items()) or "-",
            "heldout_changed_vs_float32": changed,
            "bound_rtol": q["acceptance"]["rtol"] if q else report["parity"]["tolerance"]["rtol"],
            "heldout": h,
        })
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | weights | bytes | max abs error vs torch | max rel error | top-1 agreement (parity rows) "
             "| bound (rtol) | held-out accuracy (tfjs wasm) | held-out predictions changed vs float32 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        h = r["heldout"]
        ratio = r["bytes_before"] / r["bytes_after"]
        lines.append(f"| {r['model']} | {r['variant']} | {r['bytes_after']:,} ({ratio:.2f}x"
                     f" smaller) | {r['max_abs_error']:.3g} | {r['max_rel_error']:.3g} | {r['top1']} | "
                     f"{r['bound_rtol']:g} | {h['accuracy']:.4f} ({h['correct']}/{h['n']}) | "
                     f"{r['heldout_changed_vs_float32']}/{h['n']} |")
    return "\n".join(lines)


def run(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits_cnn,digits_lstm")
    parser.add_argument("--browser", default="webgl", help="chromium backends ('' to skip)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bridge-quantize-") as tmp:
        rows = [r for m in args.models.split(",") if m for r in measure(m, args.browser, Path(tmp))]
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run())
