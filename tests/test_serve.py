"""`bridge serve` and its demo page, and the pre/post-processing metadata it applies.

Every models/ entry is converted once (module fixture, through the CLI), served
by `bridge serve` (one server process each) and opened in ONE headless
Chromium (bridge/export/js/demo/drive.mjs); the tests then assert on what the
pages measured (window.bridgeResults): the error of every backend against
torch's stored outputs, the download size, and, for the digit models, that a
real test digit put on the drawing canvas comes out as its label through the
declared preprocessing.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from bridge.cli import main
from bridge.errors import BadInputError
from bridge.export.browser import LATENCY_RUNS
from bridge.preprocess import Processing, from_manifest, parse, resolve

from conftest import MODELS, ROOT

DRIVER = ROOT / "bridge" / "export" / "js" / "demo" / "drive.mjs"
JS_DIR = ROOT / "bridge" / "export" / "js"
# float32 target in the browser: max abs error <= 1e-5 * max(1, max|torch|), as for Node in test_models_e2e
TARGET = 1e-5
REQUIRED_BACKENDS = ("webgl", "wasm", "cpu")
DIGITS = ("digits_cnn", "digits_lstm")
BROWSER_CHECKED = "webgl,wasm"  # bridge convert's own browser check, for one model (two_layer)
ONNX_MODEL = "two_layer"  # converted with --onnx too
START_TIMEOUT_S = 60
browser = pytest.mark.browser


# ---------------------------------------------------------------- fixtures


def _require_browser() -> None:
    """The browser_or_skip fixture's rule, for module-scoped fixtures: skip, or fail under CI."""
    from bridge.export.browser import browser_status

    reason = browser_status()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)


RGB_NET = '''
import torch
from torch import nn

class RGBNet(nn.Module):
    """conv -> relu -> global mean -> linear: a 3-class RGB classifier at any image size"""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
'''
RGB_FLAGS = ["--channels-last-io", "--input-scale", "1/255", "--mean", "0.485,0.456,0.406", "--std",
             "0.229,0.224,0.225", "--labels", "red,green,blue", "--output-activation", "softmax"]
RGB_SIZE = 16


def _rgb_net(folder: Path):
    """An RGB model declared entirely by CLI flags, NHWC at the boundary (--channels-last-io); its weights."""
    import torch

    folder.mkdir()
    (folder / "rgb_net.py").write_text(RGB_NET)
    sys.path.insert(0, str(folder))
    try:
        from rgb_net import RGBNet
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    module = RGBNet().eval()
    torch.save(module.state_dict(), folder / "rgb_net.pt")
    return module


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    """Every models/ entry converted once (no per-module tfjs, no browser check: the page is the browser check),
    plus rgb_net (an NHWC RGB model with per-channel normalization declared by flags)."""
    _require_browser()
    root = tmp_path_factory.mktemp("serve")
    out = {}
    src = root / "rgb_src"
    _rgb_net(src)
    out["rgb_net"] = root / "rgb_net"
    assert main(["convert", f"{src / 'rgb_net.py'}:RGBNet", "--weights", str(src / "rgb_net.pt"), "--input",
                 f"1x3x{RGB_SIZE}x{RGB_SIZE}", "--out", str(out["rgb_net"]), "--no-per-module-tfjs", "--browser", "",
                 *RGB_FLAGS]) == 0
    for name in MODELS:
        out[name] = root / name
        args = ["convert", str(ROOT / "models" / name), "--out", str(out[name]), "--no-per-module-tfjs",
                "--browser", BROWSER_CHECKED if name == "two_layer" else ""]  # one model: report.json's latency
        if name == ONNX_MODEL:
            args.append("--onnx")  # model.onnx: the page adds an onnxruntime-web row
        assert main(args) == 0, name
    return out


@contextlib.contextmanager
def serving(export: Path, *extra: str):
    """`bridge serve EXPORT` in a subprocess; yields (url, process); stops it with SIGINT and checks exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", str(export), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _first_line(proc)
        assert " at http://127.0.0.1:" in line, line
        url = line.split(" at ", 1)[1].split()[0]
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


def _first_line(proc: subprocess.Popen) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=START_TIMEOUT_S):
            raise AssertionError(f"bridge serve printed nothing within {START_TIMEOUT_S} s")
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"bridge serve exited ({proc.wait()}): {proc.stderr.read()}")
    return line


def _digit(name: str) -> tuple[np.ndarray, int]:
    """The first real test digit of a models/ entry as 8x8 grey levels 0..255, and its label."""
    data = np.load(ROOT / "models" / name / "sample_inputs.npz")
    return np.asarray(data["x"][0], np.float64).reshape(8, 8) * 255.0, int(data["y"][0])


@pytest.fixture(scope="module")
def pages(exports, tmp_path_factory) -> dict[str, dict]:
    """Each export's page, opened in one Chromium: {name: the driver's page record}."""
    work = tmp_path_factory.mktemp("pages")
    with contextlib.ExitStack() as stack:
        urls = {name: stack.enter_context(serving(path))[0] for name, path in exports.items()}
        specs = []
        for name, url in urls.items():
            spec = {"url": url + "?runs=3"}
            if name in DIGITS:
                grey, _ = _digit(name)
                spec["grey"] = {"pixels": np.round(grey).astype(int).reshape(-1).tolist(), "h": 8, "w": 8}
                spec["screenshot"] = str(work / f"{name}.png")
            if name == "digits_cnn":  # the same digit as a picture file (a 256x256 PNG), through the file input
                picture = work / "digit.png"
                picture.write_bytes(_png_grey(np.kron(np.round(_digit(name)[0]), np.ones((32, 32)))))
                spec["picture"] = str(picture)
            if name == "rgb_net":
                spec["grey"] = {"pixels": _rgb_pixels().reshape(-1).tolist(), "h": RGB_SIZE, "w": RGB_SIZE}
            specs.append(spec)
        request = {"js_dir": str(JS_DIR), "chromium": _chromium(), "timeout_s": 180, "out": str(work / "out.json"),
                   "pages": specs}
        (work / "request.json").write_text(json.dumps(request))
        proc = subprocess.run(["node", str(DRIVER), str(work / "request.json")], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr
    result = json.loads((work / "out.json").read_text())
    return dict(zip(urls, result["pages"]))


def _png_grey(pixels: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of ``pixels`` (0..255)."""
    import struct
    import zlib

    rows = np.asarray(pixels, np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", rows.shape[1], rows.shape[0], 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _rgb_pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (RGB_SIZE, RGB_SIZE))


def _chromium() -> str:
    from bridge.export.browser import _chromium

    return _chromium()


# ---------------------------------------------------------------- the page, per models/ entry


@browser
@pytest.mark.parametrize("name", MODELS)
def test_page_matches_torch_on_every_backend(name, pages, exports):
    page = pages[name]
    assert page["ok"], (page.get("error"), page["console"][-8:])
    results = page["results"]
    assert results["done"] and results["error"] is None, results.get("error")
    assert results["sets"] >= 1
    backends = results["backends"]
    assert set(REQUIRED_BACKENDS) <= set(backends), sorted(backends)
    for b, row in backends.items():
        if b == "webgpu" and row["status"] != "ok":
            # not required: skipped without an adapter; graphs that read tensors synchronously (the LSTM's
            # while loop) fail in headless chromium here. Then the page must say why.
            assert row["status"] in ("skipped", "error") and row["error"], row
            continue
        assert row["status"] == "ok", (b, row.get("error"))
        n_outputs = len(json.loads((exports[name] / "parity_samples" / "samples.json").read_text())["sets"][0][
            "outputs"])
        assert len(row["outputs"]) == n_outputs * results["sets"]
        for o in row["outputs"]:
            assert o["problem"] is None, (b, o)
            assert o["max_abs_error"] <= TARGET * max(1.0, o["max_abs_torch"]), (b, o)
        assert row["first_ms"] > 0 and row["warm_ms"] > 0 and len(row["warm_ms_all"]) == 3
    assert backends["webgl"]["info"]["float32_textures"] is True


@browser
@pytest.mark.parametrize("name", MODELS)
def test_page_download_size_is_model_json_plus_shards(name, pages, exports):
    tfjs = exports[name] / "tfjs"
    model_json = json.loads((tfjs / "model.json").read_text())
    shards = sum((tfjs / p).stat().st_size for g in model_json["weightsManifest"] for p in g["paths"])
    assert pages[name]["results"]["bytes"] == {"model_json": (tfjs / "model.json").stat().st_size,
                                               "shards": shards,
                                               "total": (tfjs / "model.json").stat().st_size + shards}
    assert all(r["bytes"] == shards + (tfjs / "model.json").stat().st_size
               for r in pages[name]["results"]["backends"].values() if r["runtime"] == "tfjs")


@browser
@pytest.mark.parametrize("name", DIGITS)
def test_drawn_digit_goes_through_the_declared_preprocessing(name, pages):
    """A real test digit, block-upscaled onto the canvas, reaches the model as pixels/16 and gets its label."""
    grey, label = _digit(name)
    drawn = pages[name]["drawn"]
    assert drawn is not None, pages[name].get("results", {}).get("demo_error")
    # the canvas holds whole grey levels: the model sees round(255 * x) / 255, within half a level of x
    seen = np.asarray(drawn["input"]).reshape(8, 8)
    assert np.max(np.abs(seen - grey / 255.0)) <= 0.5 / 255 + 1e-6
    assert drawn["label"] == str(label) and drawn["index"] == label
    assert abs(sum(drawn["scores"]) - 1.0) < 1e-5  # softmax, as declared
    assert drawn["backend"] in REQUIRED_BACKENDS
    if name == "digits_cnn":  # the picture file: the same pixels through createImageBitmap + drawImage
        picked = pages[name]["picked"]
        assert picked["label"] == str(label)
        np.testing.assert_allclose(picked["input"], drawn["input"], atol=1e-6)


@browser
def test_page_runs_onnxruntime_web_beside_tfjs_when_the_export_has_model_onnx(pages, exports):
    for name, page in pages.items():
        backends = page["results"]["backends"]
        if name != ONNX_MODEL:
            assert "ort-wasm" not in backends, name
            continue
        row = backends["ort-wasm"]
        assert row["runtime"] == "onnxruntime-web" and row["status"] == "ok", row.get("error")
        assert row["bytes"] == (exports[name] / "model.onnx").stat().st_size
        assert row["outputs"] and all(o["max_abs_error"] <= TARGET * max(1.0, o["max_abs_torch"])
                                      for o in row["outputs"]), row["outputs"]
        assert row["first_ms"] > 0 and row["warm_ms"] > 0


@browser
def test_rgb_picture_goes_through_per_channel_normalization_in_nhwc(pages, exports, tmp_path_factory):
    """rgb_net (--channels-last-io, mean/std per channel, labels by flag): the page feeds NHWC pixels normalized
    per channel, and its logits are torch's on exactly that input."""
    import torch

    page = pages["rgb_net"]
    assert page["ok"] and all(page["results"]["backends"][b]["status"] == "ok" for b in REQUIRED_BACKENDS)
    meta = page["results"]["meta"]
    assert meta["inputs"][0]["layout"] == "NHWC" and meta["preprocess"]["image_layout"] == "NHWC"
    assert meta["preprocess"]["image_size"] == [RGB_SIZE, RGB_SIZE] and meta["preprocess"]["channels"] == 3
    drawn = page["drawn"]
    x = np.asarray(drawn["input"], np.float32).reshape(1, RGB_SIZE, RGB_SIZE, 3)
    grey = _rgb_pixels()[..., None] / 255.0  # a grey picture: R = G = B
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x[0], (grey - mean) / std, atol=1e-5)
    module = _rgb_net(tmp_path_factory.mktemp("rgb_again") / "src")  # the same seeded weights
    with torch.no_grad():
        logits = module(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()[0]
    np.testing.assert_allclose(drawn["logits"], logits, atol=1e-4)
    assert drawn["label"] == ["red", "green", "blue"][int(np.argmax(logits))]


@browser
def test_pages_without_declared_preprocessing_show_no_demo(pages):
    for name in set(MODELS) - set(DIGITS):
        results = pages[name]["results"]
        assert results["meta"]["preprocess"] is None and results["prediction"] is None, name
        assert pages[name].get("drawn") is None


# ---------------------------------------------------------------- the server itself


@browser
def test_serve_serves_page_model_and_samples_then_stops_on_sigint(exports):
    export = exports["two_layer"]
    with serving(export) as (url, proc):
        html, headers = _get(url)
        assert b"demo.js" in html and b"tfjs/tf.min.js" in html
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert _get(url + "model/model.json")[0] == (export / "tfjs" / "model.json").read_bytes()
        shard = json.loads((export / "tfjs" / "model.json").read_text())["weightsManifest"][0]["paths"][0]
        assert _get(url + f"model/{shard}")[0] == (export / "tfjs" / shard).read_bytes()
        assert _get(url + "samples/samples.json")[0] == (export / "parity_samples" / "samples.json").read_bytes()
        assert _get(url + "tfjs/tfjs-backend-wasm-simd.wasm")[1]["Content-Type"] == "application/wasm"
        config = json.loads(_get(url + "config.json")[0])
        assert config["name"] == "two_layer" and {"webgl", "wasm", "cpu"} <= set(config["backends"])
        for bad in ("../report.json", "model/../../report.json", "model_tf.py", "saved_model/saved_model.pb",
                    "%2e%2e/report.json"):
            with pytest.raises(urllib.error.HTTPError) as err:
                _get(url + bad)
            assert err.value.code == 404, bad
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        rest = proc.stdout.read()
        assert rest.strip() == "stopped" and "Traceback" not in proc.stderr.read()


def _get(url: str) -> tuple[bytes, dict]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read(), dict(r.headers)


@browser
def test_serve_refuses_failing_or_incomplete_exports(exports, tmp_path, capsys):
    good = exports["two_layer"]
    failing = tmp_path / "failing"
    shutil.copytree(good, failing)
    model_json = failing / "tfjs" / "model.json"
    data = json.loads(model_json.read_text())
    data["userDefinedMetadata"]["bridge"]["parity"]["ok"] = False
    data["userDefinedMetadata"]["bridge"]["parity"]["runtimes"]["tfjs-wasm"]["ok"] = False
    model_json.write_text(json.dumps(data))
    no_meta = tmp_path / "no_meta"
    shutil.copytree(good, no_meta)
    data = json.loads((no_meta / "tfjs" / "model.json").read_text())
    del data["userDefinedMetadata"]
    (no_meta / "tfjs" / "model.json").write_text(json.dumps(data))
    no_samples = tmp_path / "no_samples"
    shutil.copytree(good, no_samples)
    shutil.rmtree(no_samples / "parity_samples")
    empty_samples = tmp_path / "empty_samples"
    shutil.copytree(good, empty_samples)
    (empty_samples / "parity_samples" / "samples.json").write_text(json.dumps({"rtol": 1e-4, "sets": []}))
    no_tfjs = tmp_path / "no_tfjs"
    no_tfjs.mkdir()
    cases = {failing: "marked failing (parity failed on tfjs-wasm", no_meta: "has no bridge metadata",
             no_samples: "has no readable parity_samples/samples.json", no_tfjs: "has no tfjs/model.json",
             empty_samples: "samples.json lists no input sets", tmp_path / "absent": "is not an export folder"}
    for path, expected in cases.items():
        capsys.readouterr()
        assert main(["serve", str(path)]) == 2, path
        err = capsys.readouterr().err
        assert err.startswith("error [bad_input]: ") and expected in err and "Traceback" not in err, err
    # and as a process: exit 2 and one line, before anything listens
    proc = subprocess.run([sys.executable, "-m", "bridge.cli", "serve", str(failing)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---------------------------------------------------------------- the metadata in the export


@browser
def test_export_stores_samples_processing_and_latency(exports):
    for name, export in exports.items():
        report = json.loads((export / "report.json").read_text())
        meta = json.loads((export / "tfjs" / "model.json").read_text())["userDefinedMetadata"]["bridge"]
        samples = json.loads((export / "parity_samples" / "samples.json").read_text())
        assert 1 <= len(samples["sets"]) <= 2 and samples["rtol"] == report["parity"]["tolerance"]["rtol"]
        first = samples["sets"][0]
        x = np.fromfile(export / "parity_samples" / first["inputs"][0]["file"], np.float32)
        assert x.size == np.prod(first["inputs"][0]["shape"])
        assert {o["name"] for o in first["outputs"]} == set(meta["output_nodes"])
        node = {"tfjs-cpu", "tfjs-wasm"}
        browser_runs = {f"browser-{b}" for b in BROWSER_CHECKED.split(",")} if name == "two_layer" else set()
        assert set(report["latency"]) == node | browser_runs
        for runtime, v in report["latency"].items():
            assert v["first_ms"] > 0 and v["n_sets"] >= 1, (runtime, v)
            # one model load per backend. Node runs each set once, the cheapest twice under the verify budget;
            # warm: the example set's later executions, else the other sets'
            if runtime in node:
                assert v["where"] == "node" and v["set"] == "example" and v["n_warm"] >= 1 and v["warm_ms"] > 0
            else:  # the browser repeats the first set (LATENCY_RUNS executions, within the warm budget)
                assert v["where"] == "chromium" and 1 <= v["n_warm"] <= LATENCY_RUNS - 1 + v["n_sets"] - 1
                assert v["warm_ms"] > 0
        if name == "rgb_net":
            assert meta["preprocess"]["std"] == [0.229, 0.224, 0.225]
            assert meta["postprocess"]["labels"] == ["red", "green", "blue"]
        elif name in DIGITS:
            pre, post = meta["preprocess"], meta["postprocess"]
            assert report["preprocess"] == pre and report["postprocess"] == post
            assert pre["scale"] == pytest.approx(1 / 255) and pre["mean"] == [0.0] and pre["std"] == [1.0]
            assert pre["image_layout"] == ("NCHW" if name == "digits_cnn" else "NHW") and pre["channels"] == 1
            assert pre["image_size"] == [8, 8]  # digits_lstm's row count is free: the traced size
            assert post == {"output": meta["outputs"][0]["name"], "activation": "softmax",
                            "labels": [str(i) for i in range(10)]}
        else:
            assert "preprocess" not in meta and "postprocess" not in report


# ---------------------------------------------------------------- declaring pre/post-processing


IMG = [{"name": "x", "shape": [None, 3, 32, 32], "layout": "NCHW"}]
IMG_NHWC = [{"name": "x", "shape": [None, 32, 32, 3], "layout": "NHWC"}]
SEQ = [{"name": "x", "shape": [None, 8, 8], "layout": "torch"}]
LOGITS = [{"name": "logits", "shape": [None, 3], "layout": "torch"}]


@pytest.mark.parametrize("fields, expected", [
    ({"std": "0.5,0,1"}, "std must be > 0 for every channel"),
    ({"std": -1}, "std must be > 0"),
    ({"scale": "0"}, "scale must be > 0"),
    ({"scale": "1/0"}, "must be a number or a fraction like 1/255"),
    ({"scale": "abc"}, "must be a number or a fraction"),
    ({"mean": "nan"}, "must be finite"),
    ({"mean": "1,2", "std": "1,2,3"}, "mean has 2 values and std 3"),
    ({"mean": "1,,2"}, "one number or a comma list"),
    ({"activation": "relu"}, "must be one of softmax, sigmoid, none"),
    ({"image_layout": "HWC"}, "must be one of NCHW, NHWC, NHW"),
    ({"labels": ""}, "must be non-empty names"),
    ({"labels": "@/nonexistent/labels.txt"}, "file /nonexistent/labels.txt not found"),
])
def test_bad_declarations_are_refused(fields, expected):
    with pytest.raises(BadInputError, match=expected.replace("(", r"\(")):
        parse(**fields)


@pytest.mark.parametrize("proc, inputs, outputs, expected", [
    (Processing(labels=("a", "b")), IMG, LOGITS, "2 labels given, but output 'logits' has 3 classes"),
    (Processing(mean=(0.1, 0.2)), IMG, LOGITS, "mean has 2 values but input 'x' has 3 channel"),
    (Processing(std=(0.1, 0.2, 0.3)), SEQ, LOGITS, "is not an image with channels"),
    (Processing(image_layout="NHW"), IMG, LOGITS, "image_layout NHW is for a rank-3 input"),
    (Processing(image_layout="NHWC"), IMG, LOGITS, "use --channels-last-io"),
    (Processing(input="y", scale=1.0), IMG, LOGITS, "names input 'y', but the model's inputs are x"),
    (Processing(output="probs", activation="softmax"), IMG, LOGITS, "names output 'probs'"),
])
def test_declarations_that_do_not_fit_the_model_are_refused(proc, inputs, outputs, expected):
    with pytest.raises(BadInputError, match=expected):
        resolve(proc, inputs, outputs)


def test_resolved_metadata():
    got = resolve(parse(scale="1/255", mean="0.485,0.456,0.406", std="0.229,0.224,0.225", labels="a,b,c",
                        activation="softmax"), IMG_NHWC, LOGITS)
    assert got["preprocess"]["image_layout"] == "NHWC" and got["preprocess"]["channels"] == 3
    assert got["preprocess"]["scale"] == pytest.approx(1 / 255) and got["preprocess"]["std"][2] == 0.225
    assert got["preprocess"]["image_size"] == [32, 32]
    assert got["postprocess"] == {"output": "logits", "activation": "softmax", "labels": ["a", "b", "c"]}
    assert resolve(Processing(), IMG, LOGITS) == {}  # nothing declared: nothing stored, nothing guessed
    seq = resolve(parse(scale=0.5, image_layout="NHW"), SEQ, LOGITS)["preprocess"]
    assert seq["image_layout"] == "NHW" and seq["channels"] == 1 and seq["mean"] == [0.0]
    assert "postprocess" not in resolve(parse(scale=0.5, image_layout="NHW"), SEQ, LOGITS)
    free_rows = [{"name": "x", "shape": [None, None, 8], "layout": "torch", "example_shape": [1, 8, 8]}]
    assert resolve(parse(image_layout="NHW"), free_rows, LOGITS)["preprocess"]["image_size"] == [8, 8]
    assert resolve(parse(scale=1), SEQ, LOGITS)["preprocess"]["image_layout"] is None  # a sequence, not an image


def test_cli_flags_override_the_manifest_field_by_field(tmp_path):
    manifest = json.loads((ROOT / "models" / "digits_cnn" / "bridge.json").read_text())
    declared = from_manifest(manifest, Path("bridge.json"))
    flags = parse(labels="zero,one,two,three,four,five,six,seven,eight,nine", activation="none")
    merged = declared.merged(flags)
    assert merged.labels[1] == "one" and merged.activation == "none"
    assert merged.scale == pytest.approx(1 / 255) and merged.std == (1.0,)
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n\n")
    assert parse(labels=f"@{labels}").labels == ("cat", "dog")
    with pytest.raises(BadInputError, match=r'unknown "preprocess" key\(s\) stdev'):
        from_manifest({"preprocess": {"stdev": 1}}, Path("m/bridge.json"))


def test_convert_refuses_labels_that_do_not_fit_before_writing(tmp_path, capsys):
    out = tmp_path / "tl"
    code = main(["convert", str(ROOT / "models" / "two_layer"), "--out", str(out), "--no-tfjs",
                 "--labels", "a,b,c,d,e,f,g"])
    err = capsys.readouterr().err
    assert code == 2 and "7 labels given, but output" in err and "--input-scale" not in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir()]
    code = main(["convert", str(ROOT / "models" / "two_layer"), "--out", str(out), "--no-tfjs", "--std", "0"])
    assert code == 2 and "--std must be > 0" in capsys.readouterr().err
