"""Running the exported tfjs model in headless Chromium (webgl, wasm, cpu) to check it where it ships.

Why the pieces look the way they do:

- The browser is Debian's ``chromium`` (``/usr/bin/chromium``, or
  ``$BRIDGE_CHROMIUM``), driven from Node by ``playwright-core``, which never
  downloads a browser. ``setup.sh`` installs chromium when it runs as root.
- Node runs ``js/browser.mjs``: it serves the page, the tfjs bundles, the model
  and the exchange files on a random loopback port and drives one page per
  backend, which loads the model once and runs every input set. Arrays cross as
  raw little-endian files (written and read by ``bridge.export.exchange``, as for
  ``bridge.export.tfjs.run_tfjs``), so float32 and int32 are exact on the way in
  and out; the page loads and runs the model with ``js/tfjs_io.mjs``, the code
  the Node runner uses.
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
from bridge.export import faults

# the same exchange helpers as the Node runner: arrays and graph nodes cross the same way
from bridge.export.exchange import JS_DIR, bridge_metadata, dies_with_parent, graph_nodes, js_dir, node_status, read_array, tail, write_inputs

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
LATENCY_RUNS = 3  # executions of the first input set when bridge convert measures browser latency (1 cold + 2 warm)
WARM_BUDGET_MS = 1000  # warm runs stop once they took this long together (big models on SwiftShader)
OVER_BUDGET = "over budget"  # run_browser_many: in place of a backend's outputs for a set its budget left out


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
    js = js_dir()
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
    ``repeat`` executes the model up to that many times per backend (outputs are from the
    first; ``.ms`` has every time; warm runs stop after WARM_BUDGET_MS). The batch of one of
    ``run_browser_many``, where only the first set repeats.
    """
    return run_browser_many(model_dir, [inputs], backends, repeat)[0]


def run_browser_many(model_dir: Path, input_sets: list[dict[str, np.ndarray]],
                     backends: tuple[str, ...] = BACKENDS, repeat: int = 1,
                     work_root: Path | None = None, session: "BrowserSession | None" = None,
                     budget_s: float | None = None) -> list[BrowserOutputs]:
    """Every input set in one browser launch: each backend's page loads the model once and runs them all.

    ``work_root``: where the exchange folder goes (default: the system's temporary folder).
    ``session``: a BrowserSession started earlier (its chromium already launched and its pages
    initialised while the model was being written); by default one is started here.
    Returns one BrowserOutputs per input set, in order (``info`` and ``browser`` are the launch's).
    ``budget_s``: per backend, the first set always runs and each later one only if the page's time so far
    plus its predicted time fits (give the sets cheapest first); a set left out has ``OVER_BUDGET`` in
    place of that backend's outputs.
    """
    if session is None:
        _check_runnable(backends)
    model_dir = Path(model_dir).resolve()
    if not (model_dir / "model.json").is_file():
        raise ExportError(f"no tfjs model at {model_dir} (model.json is missing)")
    model_json = json.loads((model_dir / "model.json").read_text())
    bridge = bridge_metadata(model_json)
    nodes = graph_nodes(model_json)
    own = session is None
    session = BrowserSession(backends, work_root) if own else session
    try:
        with tempfile.TemporaryDirectory(prefix="bridge-browser-", dir=work_root) as tmp:
            work = Path(tmp)
            request = {
                "js_dir": str(js_dir().resolve()), "model_dir": str(model_dir), "work_dir": str(work),
                "backends": list(backends), "repeat": max(1, int(repeat)), "warm_budget_ms": WARM_BUDGET_MS,
                "timeouts_s": {"backend": BACKEND_TIMEOUT_S, "total": RUN_TIMEOUT_S},
                "budget_ms": None if budget_s is None else round(budget_s * 1000),
                "runs": [{"id": i, "inputs": write_inputs(work, inputs, bridge["input_nodes"], nodes, prefix=f"r{i}_")}
                         for i, inputs in enumerate(input_sets)],
                "outputs": [{"name": k, "node": v} for k, v in bridge["output_nodes"].items()],
            }
            (work / "request.json").write_text(json.dumps(request))
            stderr = session.send(work / "request.json")
            return _read_results(work, stderr, len(input_sets))
    finally:
        if own:
            session.close()


def _check_runnable(backends: tuple[str, ...]) -> None:
    """ExportError for an unknown backend or a machine that cannot run the browser, before anything starts."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ExportError(f"browser backends must be some of {list(BACKENDS)}, got {list(backends)}")
    reason = browser_status()
    if reason:
        raise ExportError(f"cannot run the tfjs model in a browser: {reason}")


class BrowserSession:
    """browser.mjs, started ahead: it launches chromium and opens one initialised page per backend at once,
    then waits (on stdin) for the request naming the model. ``send`` runs it; ``close`` ends a session
    that was never sent (the export stopped first). The process dies with this one (dies_with_parent)."""

    def __init__(self, backends: tuple[str, ...], work_root: Path | None = None):
        _check_runnable(backends)
        self._dir = tempfile.TemporaryDirectory(prefix="bridge-browser-session-", dir=work_root)
        folder = Path(self._dir.name)
        prepare = {"js_dir": str(js_dir().resolve()), "chromium": _chromium(), "backends": list(backends),
                   "timeouts_s": {"launch": LAUNCH_TIMEOUT_S, "backend": BACKEND_TIMEOUT_S}}
        (folder / "prepare.json").write_text(json.dumps(prepare))
        self._stderr = open(folder / "stderr.txt", "w+")  # a file, not a pipe: nobody reads it until the end
        self._proc = subprocess.Popen(["node", str(RUNNER), str(folder / "prepare.json")], stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._stderr, text=True,
                                      preexec_fn=dies_with_parent)

    def send(self, request_path: Path) -> str:
        """Hand over the request and wait for the result; returns the runner's stderr. On our own timeout,
        SIGTERM first so playwright can close the browser."""
        proc = self._proc
        try:
            proc.stdin.write(f"{request_path}\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it already died; its exit code and stderr say why
        try:
            faults.fault("browser")  # a kill while the browser runs (the crash tests)
            proc.wait(timeout=RUN_TIMEOUT_S + _KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=_KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise ExportError(f"the browser runner did not finish within {RUN_TIMEOUT_S} s") from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        self._stderr.seek(0)
        stderr = self._stderr.read()
        if proc.returncode != 0:
            raise ExportError(f"the browser runner failed (exit code {proc.returncode}):\n{tail(stderr)}",
                              details={"stderr": stderr})
        return stderr

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._proc.stdin.close()  # no request: the runner closes its browser and exits
            except OSError:
                pass
            try:
                self._proc.wait(timeout=_KILL_GRACE_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()
        self._dir.cleanup()


def _read_results(work: Path, stderr: str, n_sets: int) -> list[BrowserOutputs]:
    result = json.loads((work / "result.json").read_text())
    backends = result["backends"]
    failed = {b: r for b, r in backends.items() if not r["ok"]}
    if failed:
        raise _failure(failed, result["browser"], stderr)
    info = {b: r["info"] for b, r in backends.items()}
    runs = {b: {run["id"]: run for run in r["runs"]} for b, r in backends.items()}
    out = []
    for i in range(n_sets):
        arrays = {b: OVER_BUDGET if runs[b][i].get("over_budget") else
                  {o["name"]: read_array(work / o["file"], o) for o in runs[b][i]["outputs"]} for b in backends}
        out.append(BrowserOutputs(arrays, info, result["browser"], {b: runs[b][i].get("ms", []) for b in backends}))
    return out


def _failure(failed: dict, browser: str, stderr: str) -> ExportError:
    """One ExportError naming, per failed backend, the JS error and the page's last console lines."""
    lines = []
    for backend, r in failed.items():
        lines.append(f"  {backend}: {(r['error'].splitlines() or ['(no message)'])[0]}")
        lines += [f"    {c}" for c in r["console"][-_CONSOLE_LINES_IN_MESSAGE:]]
    return ExportError(
        f"the tfjs model failed in Chromium {browser} on {len(failed)} backend(s):\n" + "\n".join(lines),
        details={"errors": {b: r["error"] for b, r in failed.items()},
                 "console": {b: r["console"] for b, r in failed.items()}, "stderr": tail(stderr)},
    )
