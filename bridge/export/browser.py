"""Running the exported tfjs model in headless Chromium (webgl, wasm, cpu) to check it where it ships.

Why the pieces look the way they do:

- The browser is Debian's ``chromium`` (``/usr/bin/chromium``, or
  ``$BRIDGE_CHROMIUM``), driven from Node by ``playwright-core``, which never
  downloads a browser. ``setup.sh`` installs chromium when it runs as root.
- Node runs ``js/browser.mjs``: it serves the page, the tfjs bundles, the model
  and the exchange files on a random loopback port and drives one page per
  backend. Arrays cross as raw little-endian files (the same files, written and
  read by the same helpers, as ``bridge.export.tfjs.run_tfjs``), so float32 and
  int32 are exact on the way in and out.
- WebGL runs on SwiftShader. tfjs renders to float32 textures there; where it
  could only use float16 textures the error grows to about 1e-3, so every run
  reports ``float32_textures`` for webgl in ``BrowserOutputs.info``.
- Time is bounded twice: browser.mjs gives up (and closes the browser) after
  RUN_TIMEOUT_S, and this side terminates Node a little later if it did not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bridge.errors import ExportError

# Private helpers of tfjs.py, imported on purpose: the browser runner must
# exchange arrays and pick graph nodes exactly as the Node runner does.
from bridge.export.tfjs import (
    JS_DIR,
    _bridge_metadata,
    _graph_nodes,
    _js_dir,
    _read_array,
    _tail,
    _write_inputs,
    node_status,
)

RUNNER = JS_DIR / "browser.mjs"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
BACKENDS = ("webgl", "wasm", "cpu")
MIN_NODE_MAJOR = 20  # playwright-core 1.65 needs node >= 20
LAUNCH_TIMEOUT_S = 60
BACKEND_TIMEOUT_S = 300  # first webgl run compiles every shader on a software GPU
RUN_TIMEOUT_S = 600
_KILL_GRACE_S = 30  # how long after RUN_TIMEOUT_S this side stops waiting for Node
_CONSOLE_LINES_IN_MESSAGE = 8
_PLAYWRIGHT_FILE = "node_modules/playwright-core/package.json"
LATENCY_RUNS = 5  # executions per input set when bridge convert measures browser latency (1 cold + 4 warm)


class BrowserOutputs(dict):
    """{backend: {output_name: array}}, plus what the run found out about each backend.

    ``info[backend]`` holds e.g. ``{"float32_textures": True, "webgl_version": 2,
    "renderer": ...}`` for webgl and ``{"simd": True, "threads": True, ...}`` for
    wasm; ``browser`` is the Chromium version. ``ms[backend]`` lists the
    milliseconds of each execution (execute plus reading every output back); the
    first is the cold run (shader compiles, wasm set-up), the rest warm.
    """

    def __init__(self, outputs: dict, info: dict, browser: str, ms: dict | None = None):
        super().__init__(outputs)
        self.info = info
        self.browser = browser
        self.ms = ms or {}


# ---------------------------------------------------------------- status


def _chromium() -> str:
    """The chromium executable: $BRIDGE_CHROMIUM (a path or a name on PATH), else /usr/bin/chromium."""
    wanted = os.environ.get("BRIDGE_CHROMIUM") or DEFAULT_CHROMIUM
    return shutil.which(wanted) or wanted


def browser_status() -> str | None:
    """None if chromium, node (>= 20) and playwright-core are usable, else a one-line reason."""
    reason = node_status()
    if reason:
        return reason
    version = subprocess.run(["node", "--version"], check=False, capture_output=True, text=True,
                             timeout=30).stdout.strip()
    major = re.match(r"v(\d+)", version)
    if not major or int(major.group(1)) < MIN_NODE_MAJOR:
        return f"node {version} is too old: playwright-core needs node >= {MIN_NODE_MAJOR}"
    js = _js_dir()
    if not (js / _PLAYWRIGHT_FILE).is_file():
        return f"playwright-core missing: run `npm ci --prefix {js}`"
    chromium = _chromium()
    if not (os.path.isfile(chromium) and os.access(chromium, os.X_OK)):
        return f"chromium not found at {chromium}: run ./setup.sh as root (Debian's chromium) or set $BRIDGE_CHROMIUM"
    try:
        proc = subprocess.run([chromium, "--version"], check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"chromium at {chromium} does not start: {e}"
    if proc.returncode != 0 or not re.search(r"Chrom(e|ium) \d+", proc.stdout):
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"chromium at {chromium} does not start (exit code {proc.returncode}): {last}"
    return None


# ---------------------------------------------------------------- running


def run_browser(model_dir: Path, inputs: dict[str, np.ndarray],
                backends: tuple[str, ...] = BACKENDS, repeat: int = 1) -> BrowserOutputs:
    """Run the tfjs model in headless Chromium on each backend; returns {backend: {output_name: array}}.

    Inputs are keyed by signature input name, as for ``run_tfjs``: float32,
    int32 and bool go as they are, int64 is cast to int32 after a range check.
    Raises ExportError, with the page's error and console, if a backend fails.
    ``repeat`` executes the model that many times per backend (outputs are from the
    first; ``.ms`` has every time).
    """
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ExportError(f"browser backends must be some of {list(BACKENDS)}, got {list(backends)}")
    reason = browser_status()
    if reason:
        raise ExportError(f"cannot run the tfjs model in a browser: {reason}")
    model_dir = Path(model_dir).resolve()
    if not (model_dir / "model.json").is_file():
        raise ExportError(f"no tfjs model at {model_dir} (model.json is missing)")
    model_json = json.loads((model_dir / "model.json").read_text())
    bridge = _bridge_metadata(model_json)
    with tempfile.TemporaryDirectory(prefix="bridge-browser-") as tmp:
        work = Path(tmp)
        request = {
            "js_dir": str(_js_dir().resolve()), "model_dir": str(model_dir), "work_dir": str(work),
            "backends": list(backends), "chromium": _chromium(), "repeat": max(1, int(repeat)),
            "timeouts_s": {"launch": LAUNCH_TIMEOUT_S, "backend": BACKEND_TIMEOUT_S, "total": RUN_TIMEOUT_S},
            "inputs": _write_inputs(work, inputs, bridge["input_nodes"], _graph_nodes(model_json)),
            "outputs": [{"name": k, "node": v} for k, v in bridge["output_nodes"].items()],
        }
        (work / "request.json").write_text(json.dumps(request))
        stderr = _run_node(work / "request.json")
        return _read_results(work, stderr)


def _run_node(request_path: Path) -> str:
    """Run browser.mjs; on our own timeout, SIGTERM first so playwright can close the browser."""
    proc = subprocess.Popen(["node", str(RUNNER), str(request_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT_S + _KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.communicate(timeout=_KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise ExportError(f"the browser runner did not finish within {RUN_TIMEOUT_S} s") from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise ExportError(f"the browser runner failed (exit code {proc.returncode}):\n{_tail(stderr)}",
                          details={"stderr": stderr})
    return stderr


def _read_results(work: Path, stderr: str) -> BrowserOutputs:
    result = json.loads((work / "result.json").read_text())
    backends = result["backends"]
    failed = {b: r for b, r in backends.items() if not r["ok"]}
    if failed:
        raise _failure(failed, result["browser"], stderr)
    outputs = {b: {o["name"]: _read_array(work / o["file"], o) for o in r["outputs"]} for b, r in backends.items()}
    return BrowserOutputs(outputs, {b: r["info"] for b, r in backends.items()}, result["browser"],
                          {b: r.get("ms", []) for b, r in backends.items()})


def _failure(failed: dict, browser: str, stderr: str) -> ExportError:
    """One ExportError naming, per failed backend, the JS error and the page's last console lines."""
    lines = []
    for backend, r in failed.items():
        lines.append(f"  {backend}: {(r['error'].splitlines() or ['(no message)'])[0]}")
        lines += [f"    {c}" for c in r["console"][-_CONSOLE_LINES_IN_MESSAGE:]]
    return ExportError(
        f"the tfjs model failed in Chromium {browser} on {len(failed)} backend(s):\n" + "\n".join(lines),
        details={"errors": {b: r["error"] for b, r in failed.items()},
                 "console": {b: r["console"] for b, r in failed.items()}, "stderr": _tail(stderr)},
    )
