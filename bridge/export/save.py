"""save: write every artifact into a temporary folder next to the target,
verify the artifacts themselves, and only then move the folder into place.

Layout of ``out/``::

    saved_model/   serving_default signature, torch layout at the boundary
    checkpoint/    ckpt.index + ckpt.data-*: tf.train.Checkpoint(model=<the port>), the variable
                   values only, restorable into the class in model_tf.py with plain TensorFlow
    tfjs/          model.json + shards; userDefinedMetadata["bridge"] has names,
                   shapes, dtypes, layouts, node maps, checkpoint sha256, version
                   and the measured parity
    model_tf.py    the generated TF source the model was built from
    bridge_layers.py  the TF layers model_tf.py imports (bridge/layers in one file): it needs only TensorFlow
                   (absent with source_imports_bridge, where it imports the bridge package)
    report.json    everything measured

An existing ``out`` is never replaced without ``force``. A failure (or an
interrupt) at any point leaves ``out`` as it was and removes the temporary folder.
A hard kill cannot clean up after itself, so every save first recovers what a
killed run left beside ``out``: stale temporary folders are removed, and an old
export moved aside for ``--force`` is put back if the new one never arrived.

``BRIDGE_FAULT=<point>`` kills the process (SIGKILL) at a named point; the tests
use it to prove the above. The points are listed in ``faults.py``: after each step,
in the middle of a weight shard, while Node or the browser runs, and on each side
of the final rename.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, codegen, parity
from ..errors import BadInputError, ExportError, ParityError
from . import browser, permodule, quantize, runners, samples, savedmodel, tfjs
from .faults import fault
from .swap import recover, replace_with
from . import onnx as onnx_route  # not `onnx`: the name stays free for the onnx package


@dataclass(frozen=True)
class SaveOptions:
    force: bool = False
    tfjs: bool = True
    backends: tuple[str, ...] = ("cpu", "wasm")
    # seconds each Node tfjs backend may spend on parity sets after its cheapest one (None: every set);
    # see runners.NodeTfjsRunner. Each backend runs at least one set; what was left out is a note.
    verify_budget_s: float | None = 4.0
    write_failing: bool = False  # write artifacts even when parity fails (marked failing)
    require_node: bool = False  # a missing node is an error instead of a skip
    # locate the first diverging module inside tfjs (permodule.py, a second, throw-away conversion):
    # None runs it only when a tfjs runtime misses its bound, True always, False never
    per_module_tfjs: bool | None = None
    browser_backends: tuple[str, ...] = ("webgl",)  # checked in headless chromium; () to skip
    browser_sets: int = 2  # parity input sets run in the browser (each browser launch costs seconds)
    check_gradients: bool = False  # also compare gradients with torch's (bridge.gradients), in the report
    processing: object = None  # bridge.preprocess.Processing: declared pre/post-processing, into the metadata
    onnx: bool = False  # also write model.onnx and verify it in onnxruntime and onnxruntime-web (export/onnx.py)
    onnx_strict: bool = False  # a model torch cannot export to ONNX is an ExportError instead of a note
    quantize: object = None  # export/quantize.py: a QuantizeSpec or "uint8[:patterns]"; tfjs weights, cost measured


def save(port, out, options: SaveOptions | None = None, progress=None, **kwargs) -> dict:
    """Write and verify all artifacts; returns the report dict (also written as report.json)."""
    options = options or SaveOptions(**kwargs)
    step = progress or (lambda message: None)
    out = Path(out)
    recover(out)
    if out.exists() and not options.force:
        raise BadInputError(f"{out} already exists; pass --force (force=True) to replace it")
    quantize.request(port, options)  # a bad --quantize pattern fails before any slow work
    step("parity: TF vs torch")
    report = port.parity()
    if not report.ok and not options.write_failing:
        raise ParityError(_parity_message(report), report)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    try:
        result = _write_all(port, tmp, options, step)
        if not result["parity"]["ok"] and not options.write_failing:
            raise ParityError(_parity_message(result["_report"]), result["_report"])
        result.pop("_report")
        (tmp / "report.json").write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
        fault("report")
        replace_with(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def _write_all(port, tmp: Path, options: SaveOptions, step) -> dict:
    """Write and check every artifact in ``tmp`` (see ``_Export``)."""
    return _Export(port, tmp, options, step).run()


class _Export:
    """One save: writes the artifacts in ``tmp`` and checks each with its runner (runners.py).

    The port is not changed: the runtimes, notes and per-module results found here go into this
    export's copy of the port's parity report, its own notes and the returned report dict, so
    saving twice records each runtime once per save.
    """

    def __init__(self, port, tmp: Path, options: SaveOptions, step):
        self.port, self.tmp, self.options, self.step = port, tmp, options, step
        base = port.parity()
        self.report = parity.ParityReport(list(base.runtimes), base.per_module, base.n_inputs, base.tolerance,
                                          dict(base.per_module_runtimes), base.per_module_inputs)
        self.notes = list(port.notes)
        self.timings: dict[str, float] = {}
        self.latency: dict[str, list] = {}  # runtime -> ms per execution, per set (tfjs and browser)
        self.seen: dict[str, list] = {}  # runtime -> [(torch outputs, its outputs)], for quantize's top-1

    def verify(self, runner, refs, rtol: float, timing: str, required: bool | None = None) -> None:
        """Check one runner's runtimes (required: a runner that cannot run is an error, not a skip)."""
        self.record(self.check(runner, refs, rtol, required), timing)

    def check(self, runner, refs, rtol: float, required: bool | None = None):
        """(runners.Checked, seconds); changes nothing here, so two checks may run at once."""
        t = time.perf_counter()
        required = self.options.require_node if required is None else required
        return runners.check(runner, refs, rtol, required=required), time.perf_counter() - t

    def record(self, checked_and_seconds, timing: str, first: bool = False) -> None:
        """Add one check's results (``first``: right after the port's own "tf", whenever it finished)."""
        checked, seconds = checked_and_seconds
        at = len(self.port.parity().runtimes) if first else len(self.report.runtimes)
        self.report.runtimes[at:at] = checked.results
        self.notes.extend(n for n in checked.notes if n not in self.notes)
        self.latency.update({k: v for k, v in checked.latency.items() if k.startswith(("tfjs-", "browser-"))})
        self.seen.update(checked.pairs)
        self.timings[timing] = seconds

    def run(self) -> dict:
        processing = _processing(self.port, self.options)  # checked against the model before anything slow
        in_browser = node = None
        if self.options.tfjs:  # Node and chromium start while the SavedModel and tfjs are written
            node = runners.NodeTfjsRunner(self.tmp / "tfjs", self.options.backends, work_root=self.tmp,
                                          budget_s=self.options.verify_budget_s)
            weights = sum(v.shape.num_elements() * v.dtype.size for v in self.port.tf_model.variables)
            if weights < runners.NodeTfjsRunner.PARALLEL_MAX_BYTES:  # large models: seconds in minutes, and
                node.start()  # idle Node processes would only add to the peak memory
        if self.options.tfjs and self.options.browser_backends:
            in_browser = runners.BrowserTfjsRunner(self.tmp / "tfjs", self.options.browser_backends,
                                                   repeat=browser.LATENCY_RUNS, work_root=self.tmp,
                                                   budget_s=self.options.verify_budget_s)
            in_browser.start()
        try:
            return self._run(processing, node, in_browser)
        finally:
            for runner in (node, in_browser):
                if runner is not None:
                    runner.close()

    def _run(self, processing: dict, node, in_browser) -> dict:
        port, tmp, options, step, timings = self.port, self.tmp, self.options, self.step, self.timings
        t = time.perf_counter()
        (tmp / "model_tf.py").write_text(port.source)
        if codegen.STANDALONE_IMPORT in port.source:
            (tmp / codegen.LAYERS_FILE).write_text(codegen.standalone_layers())
        fault("model_tf")
        step("writing SavedModel")
        savedmodel.save_savedmodel(port, tmp / "saved_model")
        write_tf_checkpoint(port, tmp / "checkpoint")
        fault("savedmodel")
        timings["savedmodel_s"] = time.perf_counter() - t
        refs = [(savedmodel.feeds_for(port, inputs), port.torch_outputs(inputs, boundary=True))
                for inputs in port.parity_inputs()]
        samples.write_samples(tmp / samples.FOLDER, refs[: samples.MAX_SETS],  # for `bridge serve`, at tfjs's bound
                              quantize.tfjs_rtol(port, options))
        saved = runners.SavedModelRunner(tmp / "saved_model")
        if not options.tfjs:
            self._verify_savedmodel(saved, refs)
        onnx_info = (onnx_route.write_and_verify(port, tmp, self.report, options, step, self.notes)
                     if options.onnx else None)
        tfjs_info, quantized = self._tfjs(processing, refs, saved, node, in_browser) if options.tfjs else (None, None)
        gradients = None
        if options.check_gradients:
            t = time.perf_counter()
            gradients = port.gradient_parity().to_dict()
            timings["gradients_s"] = time.perf_counter() - t
        return {**_report_dict(port, self.report, tfjs_info, timings, gradients, self.notes), **processing,
                "quantization": quantized, "latency": _latency_summary(self.latency), "onnx": onnx_info}

    def _verify_savedmodel(self, saved, refs) -> None:
        self.step("verifying the SavedModel")
        self.verify(saved, refs, self.port.tolerance.output.rtol, "savedmodel_verify_s", required=True)

    def _tfjs(self, processing: dict, refs, saved, node, in_browser) -> tuple[dict, dict | None]:
        """Convert to tfjs and check it in Node and chromium (and the SavedModel beside them, for small
        models); returns (tfjs info, quantization section)."""
        port, tmp, options, step, timings = self.port, self.tmp, self.options, self.step, self.timings
        t = time.perf_counter()
        step("converting to tfjs")
        tfjs_info = tfjs.convert_to_tfjs(tmp / "saved_model", tmp / "tfjs",
                                         metadata={**_metadata(port, self.report), **processing},
                                         quantization=quantize.request(port, options))
        fault("tfjs")
        timings["tfjs_convert_s"] = time.perf_counter() - t
        rtol = quantize.tfjs_rtol(port, options)
        # Small models: the SavedModel is checked here while Node and chromium run theirs. Large ones:
        # first, so its copy of the weights is gone before Node loads its own (the peak-memory bound).
        beside = node.weight_bytes() < runners.NodeTfjsRunner.PARALLEL_MAX_BYTES
        if not beside:
            self._verify_savedmodel(saved, refs)
        browser_refs = _browser_sets(refs, options)
        step(("verifying the SavedModel, " if beside else "verifying ") +
             "tfjs in node (" + ", ".join(options.backends) + ")" +
             (" and chromium (" + ", ".join(options.browser_backends) + ")" if in_browser else ""))
        with ThreadPoolExecutor(max_workers=2) as pool:  # Node and the browser are processes of their own
            in_chromium = pool.submit(self.check, in_browser, browser_refs, rtol) if in_browser else None
            in_node = pool.submit(self.check, node, refs, rtol)
            if beside:
                self.record(self.check(saved, refs, port.tolerance.output.rtol, required=True),
                            "savedmodel_verify_s", first=True)
            self.record(in_node.result(), "tfjs_verify_s")
            if _per_module_wanted(options, self.report) and tfjs.node_status() is None:
                t = time.perf_counter()
                step("per-module parity in tfjs")
                self.report.per_module_runtimes.update(_per_module_tfjs(port, options, self.notes))
                timings["tfjs_per_module_s"] = time.perf_counter() - t
            if in_chromium is not None:
                self.record(in_chromium.result(), "browser_verify_s")
                if self.report.runtime(in_browser.names[0]).skipped is None:
                    ran = sum(bool(ms) for ms in self.latency.get(in_browser.names[0], []))
                    self.notes.append(f"browser checked on {ran} of {len(refs)} parity input sets")
        quantized = quantize.report_section(port, options, tfjs_info, self.report, self.seen, self.notes)
        _update_metadata(tmp / "tfjs" / "model.json", {"parity": _parity_summary(self.report),
                                                       **quantize.metadata_patch(quantized)})
        return tfjs_info, quantized


def _browser_sets(refs: list, options: SaveOptions) -> list:
    """The parity sets offered to the browser, in their own order: the first ``browser_sets``, or with a verify
    budget the ``browser_sets`` cheapest (fewest input elements), of which the budget may run fewer."""
    if options.verify_budget_s is None:
        return refs[: options.browser_sets]
    size = [runners.elements(feeds) for feeds, _ in refs]
    return [refs[i] for i in sorted(sorted(range(len(refs)), key=lambda i: size[i])[: options.browser_sets])]


def _processing(port, options: SaveOptions) -> dict:
    """{"preprocess": .., "postprocess": ..} as declared, checked against the model (bridge/preprocess.py)."""
    from .. import preprocess

    meta = _metadata(port, port.parity())
    for entry, x in zip(meta["inputs"], port.boundary_inputs(port.example_inputs)):
        entry["example_shape"] = list(x.shape)  # the traced size of free dims (an image's rows)
    return preprocess.resolve(options.processing, meta["inputs"], meta["outputs"])


def _latency_summary(latency: dict) -> dict:
    """{runtime: [ms per execution, per input set ([] where not run)]} -> first-run and warm milliseconds
    (outputs read back included) of the example set (set 0), or of the smallest set that ran when a verify
    budget left the example out ("set": "smaller"). A runner loads the model once per backend, so a set's
    first execution is cold only when it ran first; warm: the set's later executions, else every other
    set's."""
    import statistics

    out = {}
    for runtime, runs in latency.items():
        ran = [i for i, ms in enumerate(runs) if ms]
        if not ran:
            out[runtime] = {"where": "chromium" if runtime.startswith("browser-") else "node", "first_ms": None,
                            "warm_ms": None, "n_sets": 0, "n_warm": 0, "set": None}
            continue
        main = 0 if 0 in ran else max(ran, key=lambda i: len(runs[i]))  # the cheapest ran twice
        warm = runs[main][1:] or [t for i in ran if i != main for t in runs[i]]
        out[runtime] = {"where": "chromium" if runtime.startswith("browser-") else "node",
                        "first_ms": runs[main][0], "warm_ms": statistics.median(warm) if warm else None,
                        "n_sets": len(ran), "n_warm": len(warm), "set": "example" if main == 0 else "smaller"}
    return out


CHECKPOINT_PREFIX = "ckpt"


def write_tf_checkpoint(port, folder: Path) -> Path:
    """``folder/ckpt.*``: a ``tf.train.Checkpoint(model=port.tf_model)``; returns the prefix to restore from."""
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    return Path(tf.train.Checkpoint(model=port.tf_model).write(str(folder / CHECKPOINT_PREFIX)))


def _per_module_wanted(options: SaveOptions, report) -> bool:
    """Per-module parity inside tfjs when asked for, or (by default) when tfjs missed its bound."""
    if options.per_module_tfjs is not None:
        return bool(options.per_module_tfjs)
    return any(r.runtime.startswith("tfjs-") and r.skipped is None and not r.ok for r in report.runtimes)


def _per_module_tfjs(port, options: SaveOptions, notes: list) -> dict:
    """Per-module errors in tfjs; a failure here is reported, it does not fail the export."""
    try:
        return permodule.per_module_tfjs(port, options.backends)
    except ExportError as exc:
        notes.append(f"per-module tfjs parity not measured: {exc.message.splitlines()[0]}")
        return {}


def _metadata(port, report) -> dict:
    ckpt = port.checkpoint
    layouts = [_layout_name(x.dim(), lo) for x, lo in zip(port.example_inputs, port.plan.input_layouts)]
    specs = savedmodel.input_specs(port)
    outs = port.torch_outputs(port.example_inputs, boundary=True)
    out_layouts = [_layout_name(a.ndim, lo) for (_, a), lo in zip(outs, port.plan.output_layouts)]
    return {
        "bridge_version": __version__,
        "source": port.plan.class_name,
        "checkpoint_sha256": getattr(ckpt, "sha256", None),
        "inputs": [{"name": s.name, "shape": s.shape.as_list(), "dtype": s.dtype.name, "layout": lo,
                    "torch_dtype": str(x.dtype).replace("torch.", "")}
                   for s, lo, x in zip(specs, layouts, port.example_inputs)],
        "outputs": [{"name": n, "shape": [None if port.dynamic_batch and i == 0 else d for i, d in enumerate(a.shape)],
                     "dtype": str(a.dtype), "layout": lo} for (n, a), lo in zip(outs, out_layouts)],
        "parity": _parity_summary(report),
    }


def _layout_name(rank: int, layout) -> str:
    """'NCHW'/'NHWC' for images, 'NCL'/'NLC' and 'NCDHW'/'NDHWC' likewise; 'torch' for any other tensor."""
    names = {3: ("NCL", "NLC"), 4: ("NCHW", "NHWC"), 5: ("NCDHW", "NDHWC")}
    if layout.is_identity:
        return "NCHW" if rank == 4 else "torch"  # torch order as it is: (N, T, F) for a sequence
    return names[rank][1]


def _parity_summary(report) -> dict:
    return {"ok": report.ok, "max_abs_error": report.max_abs_error, "max_rel_error": report.max_rel_error,
            "first_divergence": report.first_divergence,
            "runtimes": {r.runtime: ({"skipped": r.skipped} if r.skipped else
                                     {"ok": r.ok, "max_abs_error": r.max_abs_error, "max_rel_error": r.max_rel_error})
                         for r in report.runtimes}}


def _update_metadata(model_json: Path, patch: dict) -> None:
    data = json.loads(model_json.read_text())
    data["userDefinedMetadata"]["bridge"].update(patch)
    model_json.write_text(json.dumps(data, sort_keys=True))


def _report_dict(port, report, tfjs_info, timings, gradients=None, notes=None) -> dict:
    from ..build import variable_summary

    ckpt = port.checkpoint
    return {
        "bridge_version": __version__,
        "model": port.plan.class_name,
        "checkpoint": None if ckpt is None else {"path": str(ckpt.path), "sha256": ckpt.sha256,
                                                 "format": ckpt.format},
        "notes": list(port.notes if notes is None else notes),
        "inputs": [{"name": n, "shape": list(x.shape), "dtype": str(x.dtype).replace("torch.", ""),
                    "free_dims": sorted(free),  # non-batch dims the exported model accepts at any size
                    "layout": _layout_name(x.dim(), lo),  # NHWC with --channels-last-io
                    "boundary_shape": list(lo.tf_shape(list(x.shape)))}  # as the SavedModel and tfjs take it
                   for n, x, free, lo in zip(port.input_names, port.example_inputs,
                                             port.dynamic_dims or [()] * len(port.example_inputs),
                                             port.plan.input_layouts)],
        "dynamic_batch": port.dynamic_batch,
        "channels_last_io": port.channels_last_io,
        "outputs": port.output_names,
        "parity": report.to_dict(),
        "keys": port.keys.to_dict(),
        "variables": variable_summary(port.tf_model, port.bindings, port.module),
        "tf_checkpoint": f"checkpoint/{CHECKPOINT_PREFIX}",  # tf.train.Checkpoint(model=...).read(<out>/this)
        "gradients": gradients,  # bridge.gradients report with check_gradients, else None
        "tfjs": tfjs_info,
        "timings": {**getattr(port, "timings", {}), **timings},  # convert's steps, then save's
        "_report": report,
    }


def _parity_message(report) -> str:
    bad = [f"{r.runtime}: " + "; ".join(f"{d.name}: {d.problem}" for d in r.outputs if d.structural)
           if any(d.structural for d in r.outputs) else f"{r.runtime}: max abs error {r.max_abs_error:.3g}"
           for r in report.runtimes if r.skipped is None and not r.ok]
    where = f"; first diverging module: {report.first_divergence}" if report.first_divergence else ""
    return "parity failed (" + ", ".join(bad) + ")" + where + ". Nothing was written (--write-failing writes anyway)."
