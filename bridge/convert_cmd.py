"""``bridge convert``: load -> trace/plan/build -> parity -> save -> verify,
with a progress line per step and a short summary table at the end."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from . import progress as bridge_progress
from .api import Options, convert
from .build import check_fits
from .checkpoint import load_checkpoint, page_out
from .errors import BadInputError, ParityError
from .export.quantize import parse as parse_quantize
from .export.swap import recover
from .preprocess import Processing
from .target import instantiate, load_npz_inputs, resolve
from .tolerances import ToleranceConfig, from_pyproject


def run_convert(console, *, target, weights, inputs, kwargs, inputs_npz, out, force, write_failing, tfjs,
                backends, allow_nonfinite, seed, tolerances=(), reports=None, per_module_tfjs=None,
                browser_backends=("webgl",), channels_last_io=False,
                source_imports_bridge=False, check_gradients=False, processing=None,
                onnx=False, onnx_strict=False, quantize=(), verify_budget_s=4.0, meanwhile=None) -> dict:
    """``verify_budget_s``: SaveOptions.verify_budget_s (not imported here: save.py pulls TF in).
    ``meanwhile``: slow work of this process (the CLI's TF import) to run beside the trace (api.convert)."""
    t = resolve(target, weights=weights, inputs=inputs, kwargs=kwargs)
    quantize = parse_quantize(quantize)  # a bad --quantize dtype fails before any slow work
    if processing is not None or t.processing is not None:  # CLI flags override the manifest field by field
        processing = (t.processing or Processing()).merged(processing or Processing())
    tolerance = from_pyproject().merged(ToleranceConfig.parse(tolerances))
    out = Path(out) if out else Path("exports") / t.name
    for line in recover(out):  # what a killed earlier run left behind
        console.print(f"[yellow]recovered:[/yellow] {line}")
    if out.exists() and not force:  # fail before any slow work
        raise BadInputError(f"{out} already exists; pass --force to replace it")
    total = 5 + (2 + bool(per_module_tfjs) if tfjs else 0) + 2 * bool(onnx)  # node and chromium run as one step
    with _steps(console, total) as status:
        module, ckpt, notes, load_s = _load(t, allow_nonfinite, status)
        gen = torch.Generator().manual_seed(seed)
        examples = tuple(spec.example(gen) for spec in t.inputs)
        status.update("tracing and building the TF model")
        port = convert(module, examples, options=Options(seed=seed, origin=t.origin, tolerance=tolerance,
                                                         channels_last_io=channels_last_io,
                                                         source_imports_bridge=source_imports_bridge),
                       meanwhile=meanwhile)
        from .export.save import SaveOptions  # imports TF: after the trace, which ran beside the TF import

        port.checkpoint, port.notes = ckpt, [*notes, *port.notes]  # keep what convert noted (fixed dims)
        if ckpt is not None:
            port.timings["checkpoint_load_s"] = load_s
        npz = inputs_npz or t.parity_inputs
        if npz:
            port.extra_inputs = _batched(load_npz_inputs(npz, port.input_names, examples), examples,
                                         port.dynamic_batch)
        try:
            report = port.save(out, options=SaveOptions(force=force, tfjs=tfjs, backends=backends,
                                                        verify_budget_s=verify_budget_s,
                                                        write_failing=write_failing,
                                                        per_module_tfjs=per_module_tfjs,
                                                        browser_backends=browser_backends,
                                                        onnx=onnx, onnx_strict=onnx_strict,
                                                        processing=processing, quantize=quantize,
                                                        check_gradients=check_gradients),
                               progress=_paging(status.update, ckpt))
        except ParityError as exc:  # CI still wants the reports that say where it diverged
            if exc.report is not None:
                write_reports({"parity": exc.report.to_dict()}, reports or {})
            raise
    _summary(console, report, out)
    write_reports(report, reports or {})
    return report


def _load(t, allow_nonfinite: bool, status):
    """The target's module with its checkpoint's weights: (module, checkpoint or None, notes, seconds)."""
    module = instantiate(t)
    if t.weights is None:
        return module, None, ["no --weights: the module's freshly initialized weights were converted"], 0.0
    status.update(f"reading {t.weights}")
    t_load = time.perf_counter()
    ckpt = load_checkpoint(t.weights, allow_nonfinite=allow_nonfinite)
    check_fits(module, ckpt.state_dict)
    # assign: the module takes the checkpoint's tensors (memory-mapped) instead of copying them
    module.load_state_dict(ckpt.state_dict, strict=True, assign=True)
    return module, ckpt, ckpt.notes(), time.perf_counter() - t_load


def _paging(update, ckpt):
    """Each save step starts with the checkpoint's mapped pages handed back to the file (checkpoint.page_out):
    torch's weights then cost RSS only in the steps that run torch, which read them back from the file."""
    if ckpt is None:
        return update
    tensors = list(ckpt.state_dict.values())

    def step(text: str) -> None:
        page_out(tensors)
        update(text)

    return step


def write_reports(report: dict, paths: dict) -> None:
    """The extra report files asked for on the command line (json, junit, markdown, html)."""
    from . import reports as render

    if paths.get("json"):
        Path(paths["json"]).write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    asked = {k: Path(v).resolve() for k, v in paths.items() if v and k != "json"}
    if asked:
        render.write_all(report, Path.cwd(), **asked)


class _Steps:
    """A rich progress bar over the named steps of a conversion; ``update(text)`` starts the next one.

    It is also the reporter of ``bridge.progress``: the long parts of a step (weights into TF, tfjs
    shards, the runners' input sets) get their own bar below it while they run.
    """

    def __init__(self, progress, task):
        self.progress, self.task, self.started = progress, task, False

    def update(self, text: str) -> None:
        self.progress.update(self.task, advance=1 if self.started else 0, description=text)
        self.started = True

    def start(self, description: str, total: float, unit: str):
        """A sub-bar, drawn once it has run for a second (short tasks would only flicker)."""
        sub = self.progress.add_task(f"  {description}", total=total, unit=unit, visible=False)
        t0 = time.monotonic()

        def advance(amount=1):
            self.progress.update(sub, advance=amount, visible=time.monotonic() - t0 > 1.0)

        return advance, lambda: self.progress.remove_task(sub)


class _Amount(ProgressColumn):
    """done/total: steps as counts, byte tasks in MB."""

    def render(self, task) -> Text:
        if task.fields.get("unit") == "B":
            return Text(f"{task.completed / 2**20:,.0f}/{task.total / 2**20:,.0f} MB")
        return Text(f"{task.completed:g}/{task.total:g}")


@contextlib.contextmanager
def _steps(console, total: int):
    columns = (SpinnerColumn(), TextColumn("{task.description:<44}"), BarColumn(), _Amount(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("loading", total=total)
        steps = _Steps(progress, task)
        with bridge_progress.active(steps):
            yield steps
        progress.update(task, completed=total)


def _batched(sets: list[tuple], examples: tuple, dynamic: bool) -> list[tuple]:
    """With a fixed batch size, split user inputs into chunks of the example's batch."""
    if dynamic:
        return sets
    b = examples[0].shape[0]
    out = []
    for inputs in sets:
        n = inputs[0].shape[0]
        out += [tuple(x[i:i + b] for x in inputs) for i in range(0, n - n % b, b)]
    return out


def _summary(console, report: dict, out: Path) -> None:
    for note in report["notes"]:
        console.print(f"[dim]note:[/dim] {note}")
    table = Table(title=f"parity vs torch ({report['parity']['n_inputs']} input sets)")
    for col in ("runtime", "output", "max abs error", "max rel error", "bound", "ok"):
        table.add_column(col)
    for r in report["parity"]["runtimes"]:
        if r["skipped"]:
            table.add_row(r["runtime"], "-", "-", "-", "-", f"[yellow]skipped: {r['skipped']}[/yellow]")
            continue
        for o in r["outputs"]:
            ok = "[green]yes[/green]" if o["ok"] else f"[red]NO[/red] {o['problem'] or ''}"
            table.add_row(r["runtime"], o["name"], f"{o['max_abs_error']:.3g}", f"{o['max_rel_error']:.3g}",
                          f"{o['bound']:.3g}", ok)
    console.print(table)
    tol = report["parity"].get("tolerance") or {}
    if tol:
        console.print(f"bound: {tol['rtol']:g} x max(1, max|torch|) ({tol['reason']})")
    first = report["parity"]["first_divergence"]
    if first:
        console.print(f"[red]first diverging module:[/red] {first}")
    keys = report["keys"]
    console.print(f"weights: {len(keys['used'])} keys used, {len(keys['ignored'])} ignored on purpose"
                  + (f", [yellow]{len(keys['unused'])} unused by forward(): {', '.join(keys['unused'])}[/yellow]"
                     if keys["unused"] else ""))
    grads = report.get("gradients")
    if grads:
        worst = max(grads["keys"], key=lambda k: k["max_abs_error"] / k["bound"], default=None)
        console.print(f"gradients (eval mode): {len(grads['keys'])} parameters compared, max abs error "
                      f"{grads['max_abs_error']:.3g}" + (f" (worst {worst['key']}, bound {worst['bound']:.3g})"
                                                         if worst else "")
                      + ("" if grads["ok"] else " [red]FAILING[/red]"))
    if report.get("tfjs"):
        console.print(f"tfjs graph: {sum(report['tfjs']['op_counts'].values())} nodes, "
                      f"{report['tfjs']['transpose_count']} Transpose ops")
    if report.get("latency"):  # ms: the first (cold) run / the median warm run, where measured
        console.print("tfjs latency (ms, first/warm): " + ", ".join(
            f"{k} {v['first_ms']:.3g}/" + ("-" if v["warm_ms"] is None else f"{v['warm_ms']:.3g}")
            + (" (a smaller input)" if v.get("set") == "smaller" else "")
            for k, v in report["latency"].items() if v["first_ms"] is not None))
    _quantization_summary(console, report.get("quantization"))
    status = "[green]verified[/green]" if report["parity"]["ok"] else "[red]FAILING (written on request)[/red]"
    written = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir())) if out.is_dir() else ""
    console.print(f"wrote {out}/ ({written}): {status}")


def _quantization_summary(console, q: dict | None) -> None:
    """--quantize: what was quantized, the weight bytes before and after, and the measured cost."""
    if not q:
        return
    console.print(f"tfjs weights quantized to {q['dtype']}: {q['weights_quantized']} of {q['weights_float32']} "
                  f"float32 weights, {q['weight_bytes_before']:,} -> {q['weight_bytes_after']:,} bytes "
                  f"({q['weight_bytes_before'] / max(q['weight_bytes_after'], 1):.2f}x smaller)")
    for runtime, c in q["cost"].items():
        if "skipped" in c:
            continue
        top1 = "; ".join(f"top-1 agreement {t['agree']}/{t['rows']}" for t in c["top1"].values())
        console.print(f"  cost in {runtime}: max abs error {c['max_abs_error']:.3g}, max rel error "
                      f"{c['max_rel_error']:.3g}" + (f", {top1}" if top1 else "") + ("" if c["ok"] else
                                                                                     " [red]over the bound[/red]"))
    console.print(f"  accepted at {q['acceptance']['rtol']:g} x max(1, max|torch|) in the tfjs runtimes "
                  f"(quantized), not at the float bound; tf and savedmodel stay float32 at the float bound")
