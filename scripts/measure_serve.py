"""The `bridge serve` demo page's numbers for every models/ entry, as a Markdown table.

Converts each models/ entry (``--onnx`` adds model.onnx and the onnxruntime-web row), serves each export
with `bridge serve`, opens every page in one headless Chromium (bridge/export/js/demo/drive.mjs) and prints,
per runtime and backend: max abs / rel error vs torch, first-run and warm latency (median of --runs) and the
download bytes. ``--screenshot PATH`` also saves digits_cnn's page with a digit drawn by mouse strokes.

    .venv/bin/python scripts/measure_serve.py [--onnx] [--runs 10] [--screenshot demo.png] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "bridge" / "export" / "js" / "demo" / "drive.mjs"
# a "7" drawn as two strokes, in canvas coordinates 0..1
SEVEN = [[[0.22, 0.2], [0.78, 0.2]], [[0.78, 0.2], [0.62, 0.5], [0.48, 0.82]]]


def convert(name: str, out: Path, onnx: bool) -> None:
    args = [sys.executable, "-m", "bridge.cli", "convert", str(ROOT / "models" / name), "--out", str(out),
            "--no-per-module-tfjs", "--browser", "", "--force"] + (["--onnx"] if onnx else [])
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


@contextlib.contextmanager
def serving(export: Path):
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", str(export)], stdout=subprocess.PIPE,
                            text=True)
    try:
        line = proc.stdout.readline()
        yield line.split(" at ", 1)[1].split()[0]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)


def fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 1e3 else f"{x:.0f}"


def table(name: str, results: dict) -> list[str]:
    rows = []
    for key in results["order"]:
        r = results["backends"][key]
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        rows.append(f"| {name} | {r['runtime']} | {r['backend']} | {fmt(r.get('max_abs_error'))} | "
                    f"{fmt(r.get('max_rel_error'))} | {fmt(r.get('first_ms'))} | {fmt(r.get('warm_ms'))} | "
                    f"{r.get('bytes', '-'):,} | {status} |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--onnx", action="store_true", help="convert with --onnx (adds the onnxruntime-web row)")
    ap.add_argument("--runs", type=int, default=10, help="warm runs per backend")
    ap.add_argument("--screenshot", type=Path, help="save digits_cnn's page, with a drawn 7, here")
    ap.add_argument("--keep", type=Path, help="convert into this folder and keep the exports")
    args = ap.parse_args()
    from bridge.export.browser import _chromium

    names = sorted(p.name for p in (ROOT / "models").iterdir() if (p / "bridge.json").is_file())
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for name in names:
            print(f"converting {name}", file=sys.stderr)
            convert(name, base / name, args.onnx)
        with contextlib.ExitStack() as stack:
            urls = {n: stack.enter_context(serving(base / n)) for n in names}
            pages = []
            for n, url in urls.items():
                spec = {"url": f"{url}?runs={args.runs}"}
                if n == "digits_cnn" and args.screenshot:
                    spec.update(strokes=SEVEN, screenshot=str(args.screenshot.resolve()))
                pages.append(spec)
            request = {"js_dir": str(DRIVER.parents[1]), "chromium": _chromium(), "timeout_s": 300,
                       "out": str(Path(tmp) / "out.json"), "pages": pages}
            (Path(tmp) / "request.json").write_text(json.dumps(request))
            subprocess.run(["node", str(DRIVER), str(Path(tmp) / "request.json")], check=True)
        result = json.loads((Path(tmp) / "out.json").read_text())
    print(f"Chromium {result['browser']}, warm = median of {args.runs} runs\n")
    print("| model | runtime | backend | max abs error | max rel error | first run ms | warm ms | bytes | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n, page in zip(names, result["pages"]):
        if not page["ok"]:
            print(f"| {n} | page failed: {page.get('error', '').splitlines()[0]} |||||||")
            continue
        print("\n".join(table(n, page["results"])))
        if page.get("stroked"):
            s = page["stroked"]
            print(f"\n{n}: the drawn 7 is predicted as {s['label']} ({s['top'][0]['score']:.3f}) on {s['backend']}\n",
                  file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
