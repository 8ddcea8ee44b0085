"""``bridge check``: does a hand-written TF port still match its torch original?

load the torch module (+ checkpoint) -> build the TF port (a class, or a
SavedModel folder) -> fill it with the torch weights (unless told not to) ->
parity, output by output, with the first diverging submodule named -> a short
table, and the ParityReport as JSON if asked. A failing check raises
ParityError (exit 4) after the table and the JSON are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from rich.table import Table

from .errors import BadInputError, ParityError
from .parity import make_inputs
from .target import Target, instantiate, load_class, parse_input, parse_kwargs

N_RANDOM = 2  # seeded input sets drawn besides the --input example


@dataclass(frozen=True)
class CheckOptions:
    torch_spec: str
    tf_spec: str
    weights: str | None = None
    kwargs: str | None = None
    tf_kwargs: str | None = None
    inputs: tuple[str, ...] = ()
    load_weights: bool | None = None  # None: load, unless TF_SPEC is a SavedModel (it holds its own weights)
    rtol: float | None = None
    atol: float | None = None
    json_path: Path | None = None
    seed: int = 0
    junit: Path | None = None
    markdown: Path | None = None
    html: Path | None = None
    tolerances: tuple[str, ...] = ()  # KEY=RTOL overrides, as for convert


def run_check(console, o: CheckOptions):
    """Returns the ParityReport of a passing check; raises ParityError (after reporting) for a failing one."""
    from .porting import load_torch_weights
    from .testing import run_parity

    module = _torch_module(o)
    examples = _examples(o)
    tf_model, is_saved_model = _tf_model(o.tf_spec, o.tf_kwargs)
    if o.load_weights if o.load_weights is not None else not is_saved_model:
        if examples is not None:
            _build(tf_model, examples)
        loaded = load_torch_weights(tf_model, module.state_dict())
        console.print(f"weights: {len(loaded.loaded)} tensors loaded into the TF port"
                      + (f", {len(loaded.ignored)} ignored on purpose" if loaded.ignored else ""))
    inputs = None if examples is None else make_inputs(examples, o.seed, N_RANDOM)
    options = _parity_options(o, module)
    run = run_parity(module, tf_model, inputs, options)
    _summary(console, run)
    from .convert_cmd import write_reports

    write_reports(run.report.to_dict(), {"json": o.json_path, "junit": o.junit, "markdown": o.markdown,
                                         "html": o.html})
    if not run.report.ok:
        raise ParityError(run.failure_message(), report=run.report)
    return run.report


def _parity_options(o: CheckOptions, module: torch.nn.Module):
    """Bounds from --rtol, --tolerance KEY=RTOL and [tool.bridge.tolerance], resolved per torch module."""
    from .testing import ParityOptions
    from .tolerances import ToleranceConfig, from_pyproject, resolve

    config = from_pyproject().merged(ToleranceConfig.parse(o.tolerances))
    if o.rtol is not None:
        config = config.merged(ToleranceConfig(default=o.rtol))
    leaves = {p: (type(m).__name__, None) for p, m in module.named_modules() if p and not list(m.children())}
    resolved = resolve(leaves, config)
    return ParityOptions(resolved.output.rtol, o.atol, "auto", o.seed,
                         module_rtols={p: t.rtol for p, t in resolved.per_module.items()},
                         reason=resolved.output.reason)


def _torch_module(o: CheckOptions) -> torch.nn.Module:
    from .build import check_fits
    from .checkpoint import load_checkpoint

    module = instantiate(Target(load_class(o.torch_spec), parse_kwargs(o.kwargs), origin=o.torch_spec))
    if o.weights is not None:
        ckpt = load_checkpoint(o.weights)
        check_fits(module, ckpt.state_dict)
        module.load_state_dict(ckpt.state_dict, strict=True)
    return module.eval()


def _examples(o: CheckOptions) -> tuple | None:
    if not o.inputs:
        return None
    gen = torch.Generator().manual_seed(o.seed)
    return tuple(parse_input(s).example(gen) for s in o.inputs)


def _tf_model(spec: str, tf_kwargs: str | None):
    """(the TF port, whether it is a SavedModel): a SavedModel folder, or module:Class / file.py:Class."""
    import tensorflow as tf

    path = Path(spec)
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise BadInputError(f"{spec} is a folder without saved_model.pb; pass a SavedModel folder or "
                                "path/to/port.py:Class")
        if tf_kwargs:
            raise BadInputError("--tf-kwargs has no meaning for a SavedModel folder")
        return tf.saved_model.load(str(path)), True
    if ":" not in spec:
        raise BadInputError(f"{spec!r} is neither a SavedModel folder nor a module:Class / file.py:Class spec")
    factory = load_class(spec)
    kwargs = parse_kwargs(tf_kwargs)
    try:
        return factory(**kwargs), False
    except TypeError as exc:
        raise BadInputError(f"constructing {spec} failed: {exc} (check --tf-kwargs)") from None
    except Exception as exc:  # the port's own constructor: its error, not ours
        raise BadInputError(f"constructing {spec} failed: {type(exc).__name__}: {exc}") from None


def _build(tf_model, examples: tuple) -> None:
    """Call an unbuilt Keras port once, in torch layout or else channels-last, so its layers get variables."""
    from .porting import collect_slots
    from .testing import to_tf_input

    if not collect_slots(tf_model)[1]:
        return
    errors = []
    for layout in ("torch", "channels_last"):
        try:
            tf_model(*[to_tf_input(x, layout) for x in examples])
            return
        except Exception as exc:  # the port's own code: the next layout may fit
            errors.append(f"{layout} layout: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}")
    raise BadInputError("the TF port is not built and calling it on the --input example failed, so it has no "
                        "variables to fill:\n  " + "\n  ".join(errors))


def _summary(console, run) -> None:
    report = run.report
    table = Table(title=f"TF port vs torch ({report.n_inputs} input sets, TF fed {run.layout} inputs)")
    for col in ("output", "shape", "max abs error", "max rel error", "bound", "ok"):
        table.add_column(col)
    for d in (d for r in report.runtimes for d in r.outputs):
        ok = "[green]yes[/green]" if d.ok else f"[red]NO[/red] {d.problem or ''}"
        table.add_row(d.name, str(d.shape), f"{d.max_abs_error:.3g}", f"{d.max_rel_error:.3g}", f"{d.bound:.3g}", ok)
    console.print(table)
    console.print(f"{len(report.per_module)} submodules compared: "
                  + ", ".join(f"{p}" + ("" if p == t else f" <-> {t}") for p, t in run.pairs.items())
                  if run.pairs else "no submodules paired by path")
    if report.first_divergence:
        console.print(f"[red]first diverging submodule:[/red] {report.first_divergence}")
    console.print("[green]parity: ok[/green]" if report.ok else "[red]parity: FAILED[/red]")
