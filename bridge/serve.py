"""``bridge serve EXPORT``: a demo page for an export folder, served on loopback.

The page (``bridge/export/js/demo/``: plain HTML and JS, no build step) loads
the tfjs model, runs the stored parity inputs (``parity_samples/``, written by
``bridge convert``) on each browser backend and shows, per backend, the max
error against torch's stored outputs, the first-run and warm latency and the
model's download size; for image models with declared pre/post-processing
(bridge/preprocess.py) it also classifies a drawing or a picture. Results are
written into the page's table and into ``window.bridgeResults`` (for tests).

Why it looks like this:

- tfjs and its backends come from the package's own node_modules
  (bridge/export/js, installed by ./setup.sh), never a CDN; the page can reach
  only this server.
- Every URL maps to one known file (a fixed table built at start), so no path
  from a request ever reaches the file system.
- COOP/COEP headers make the page cross-origin isolated, so the wasm backend
  can use threads (SharedArrayBuffer).
- Only verified exports are served: one without bridge metadata, without
  parity samples, or marked failing (``--write-failing``) is refused (exit 2).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .errors import BadInputError

JS_DIR = Path(__file__).resolve().parent / "export" / "js"
DEMO_DIR = JS_DIR / "demo"
DEMO_FILES = ("index.html", "demo.js", "demo.css")
WARM_RUNS = 10  # executions after the first, per backend and input set (the page's ?runs=N overrides)
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs":
         "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".json": "application/json",
         ".wasm": "application/wasm", ".onnx": "application/octet-stream", ".bin": "application/octet-stream",
         ".png": "image/png"}
# URL -> path below node_modules: the tfjs bundles the page loads with <script>, and the wasm binaries
_TFJS = {"tfjs/tf.min.js": "@tensorflow/tfjs/dist/tf.min.js",
         "tfjs/tf-backend-wasm.min.js": "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js",
         **{f"tfjs/tfjs-backend-wasm{v}.wasm": f"@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm{v}.wasm"
            for v in ("", "-simd", "-threaded-simd")}}
_WEBGPU = {"tfjs/tf-backend-webgpu.min.js": "@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js"}
# onnxruntime-web, when installed beside tfjs and the export has model.onnx (bridge convert --onnx)
_ORT = "onnxruntime-web/dist"


@dataclass
class Site:
    """What the server serves: {url path: file}, plus generated JSON documents."""

    export: Path
    files: dict[str, Path] = field(default_factory=dict)
    documents: dict[str, bytes] = field(default_factory=dict)
    config: dict = field(default_factory=dict)


# ---------------------------------------------------------------- the export


def read_export(export: Path) -> tuple[dict, dict]:
    """(bridge metadata, samples.json) of a verified export; BadInputError naming what is missing or failing."""
    export = Path(export)
    if not export.is_dir():
        raise BadInputError(f"{export} is not an export folder (bridge convert writes one)")
    model_json = export / "tfjs" / "model.json"
    if not model_json.is_file():
        raise BadInputError(f"{export} has no tfjs/model.json: convert it without --no-tfjs")
    try:
        meta = json.loads(model_json.read_text())["userDefinedMetadata"]["bridge"]
    except (ValueError, KeyError, TypeError):
        raise BadInputError(f"{model_json} has no bridge metadata (userDefinedMetadata.bridge): "
                            "serve an export written by bridge convert") from None
    parity = meta.get("parity")
    if not isinstance(parity, dict) or "ok" not in parity:
        raise BadInputError(f"{model_json}: the bridge metadata has no parity result; convert the model again")
    if parity["ok"] is not True:
        failing = [k for k, r in (parity.get("runtimes") or {}).items() if r.get("ok") is False]
        raise BadInputError(f"{export} is marked failing (parity failed on {', '.join(failing) or 'a runtime'}; "
                            "it was written with --write-failing): bridge serve shows verified exports only")
    for key in ("input_nodes", "output_nodes", "inputs", "outputs"):
        if key not in meta:
            raise BadInputError(f"{model_json}: the bridge metadata lacks {key!r}; convert the model again")
    from .export.samples import FOLDER, read_samples

    try:
        samples = read_samples(export / FOLDER)
    except (OSError, ValueError):
        raise BadInputError(f"{export} has no readable {FOLDER}/samples.json (parity inputs and torch outputs "
                            "for the page): convert it again with this bridge version") from None
    sets = samples.get("sets") if isinstance(samples, dict) else None
    if not sets or not all(isinstance(x, dict) and x.get("inputs") and x.get("outputs") for x in sets):
        raise BadInputError(f"{export}/{FOLDER}/samples.json lists no input sets: convert the model again")
    return meta, samples


def build_site(export: Path) -> Site:
    """The URL table for one export; BadInputError when the export or the npm packages are not usable."""
    from .export.samples import FOLDER

    export = Path(export).resolve()
    meta, samples = read_export(export)
    site = Site(export)
    modules = JS_DIR / "node_modules"
    missing = [p for p in _TFJS.values() if not (modules / p).is_file()]
    if missing:
        raise BadInputError(f"tfjs is not installed in {modules} (missing {missing[0]}): run ./setup.sh "
                            "(npm ci --prefix bridge/export/js)")
    for name in DEMO_FILES:
        site.files[name] = DEMO_DIR / name
    site.files.update({url: modules / p for url, p in _TFJS.items()})
    backends = ["webgl", "wasm", "cpu"]
    if all((modules / p).is_file() for p in _WEBGPU.values()):
        site.files.update({url: modules / p for url, p in _WEBGPU.items()})
        backends.append("webgpu")
    tfjs = export / "tfjs"
    model_json = json.loads((tfjs / "model.json").read_text())
    site.files["model/model.json"] = tfjs / "model.json"
    for group in model_json.get("weightsManifest", []):
        for path in group["paths"]:
            shard = tfjs / Path(path).name
            if not shard.is_file():
                raise BadInputError(f"{export}: weight shard {path} of tfjs/model.json is missing")
            site.files[f"model/{Path(path).name}"] = shard
    site.files["samples/samples.json"] = export / FOLDER / "samples.json"
    for s in samples["sets"]:
        for spec in (*s["inputs"], *s["outputs"]):
            site.files[f"samples/{spec['file']}"] = export / FOLDER / Path(spec["file"]).name
    if (export / "report.json").is_file():
        site.files["report.json"] = export / "report.json"
    site.config = {"name": export.name, "backends": backends, "warm_runs": WARM_RUNS,
                   "onnx": _onnx_files(site, export, modules)}
    site.documents["config.json"] = json.dumps(site.config).encode()
    return site


def _onnx_files(site: Site, export: Path, modules: Path) -> dict | None:
    """The onnxruntime-web column's files when the export has model.onnx and onnxruntime-web is installed.

    The page runs the same parity samples through it (by input/output name) when this is not None.
    """
    onnx = export / "model.onnx"
    dist = modules / _ORT
    if not onnx.is_file() or not (dist / "ort.min.js").is_file():
        return None
    site.files["onnx/model.onnx"] = onnx
    site.files["ort/ort.min.js"] = dist / "ort.min.js"
    for wasm in sorted(dist.glob("ort-wasm*.wasm")) + sorted(dist.glob("ort-wasm*.mjs")):
        site.files[f"ort/{wasm.name}"] = wasm
    return {"model": "onnx/model.onnx", "script": "ort/ort.min.js", "wasm_prefix": "ort/"}


# ---------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    site: Site  # set on the subclass made per server
    server_version = "bridge-serve"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._reply(head=False)

    def do_HEAD(self):  # noqa: N802
        self._reply(head=True)

    def _reply(self, head: bool) -> None:
        path = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/") or "index.html"
        if path in self.site.documents:
            body = self.site.documents[path]
            self._headers(HTTPStatus.OK, TYPES[".json"], len(body))
            if not head:
                self.wfile.write(body)
            return
        file = self.site.files.get(path)
        if file is None or not file.is_file():
            body = b"not found\n"
            self._headers(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", len(body))
            if not head:
                self.wfile.write(body)
            return
        self._headers(HTTPStatus.OK, TYPES.get(file.suffix, "application/octet-stream"), file.stat().st_size)
        if not head:
            with file.open("rb") as f:
                shutil.copyfileobj(f, self.wfile)

    def _headers(self, status: HTTPStatus, content_type: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")  # with COEP: wasm threads
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.end_headers()

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        pass  # one line per request would drown the URL line; errors reach the page

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser closed a connection mid-file (a reload): nothing to do


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # Ctrl-C does not wait for a browser's keep-alive connections
    allow_reuse_address = True


def make_server(export: Path, host: str = "127.0.0.1", port: int = 0) -> _Server:
    """A bound (not yet serving) server for ``export``; port 0 picks a free port."""
    site = build_site(export)
    handler = type("Handler", (_Handler,), {"site": site})
    server_class = type("Server6", (_Server,), {"address_family": socket.AF_INET6}) if ":" in host else _Server
    try:
        server = server_class((host, port), handler)
    except OSError as exc:
        raise BadInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.site = site
    return server


def url_of(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(export: Path, host: str = "127.0.0.1", port: int = 0, echo=print) -> int:
    """Serve until Ctrl-C (or SIGTERM); returns 0."""
    server = make_server(export, host, port)
    if threading.current_thread() is threading.main_thread():
        # a shell starts background jobs with SIGINT ignored; `kill -INT` should still stop the server
        signal.signal(signal.SIGINT, signal.default_int_handler)
    echo(f"serving {server.site.export} at {url_of(server)}  (Ctrl-C to stop)")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        echo("stopped")
    finally:
        server.server_close()
    return 0
