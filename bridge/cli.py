"""The command line: ``bridge convert`` and ``bridge inspect``.

``build_parser()`` is kept apart from ``main(argv) -> int`` so the CLI can be
tested in-process. Errors print one clear line (``--debug`` adds the
traceback) and exit with the code of their class (see bridge/errors.py and the
README's table).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path

import click

from .errors import EXIT_BAD_INPUT, EXIT_INTERNAL, BadInputError, BridgeError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bridge")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def build_parser(ctx, debug):
    """Port trained PyTorch models to TensorFlow SavedModel and tfjs, with measured parity."""
    ctx.obj = {"debug": debug}


def _processing_options(command):
    """convert's pre/post-processing flags (bridge/preprocess.py); they override the manifest's fields."""
    flags = [
        click.option("--input-scale", metavar="S", help="Preprocessing: x = (raw * S - mean) / std; raw is "
                     "0..255 for images, e.g. 1/255. Stored in the tfjs metadata for pages (bridge serve)."),
        click.option("--mean", metavar="M[,M..]", help="Preprocessing mean: one value or one per channel."),
        click.option("--std", metavar="S[,S..]", help="Preprocessing std (> 0): one value or one per channel."),
        click.option("--image-layout", type=click.Choice(["NCHW", "NHWC", "NHW"]),
                     help="How the input holds an image (default: the input's layout when it is rank 4); "
                          "NHW: a grey image read row by row by a sequence model."),
        click.option("--labels", metavar="A,B,..|@FILE", help="Class names of the output's last dim "
                     "(a comma list, or a file with one a line)."),
        click.option("--output-activation", type=click.Choice(["softmax", "sigmoid", "none"]),
                     help="What turns the output into scores in a page."),
    ]
    for flag in reversed(flags):
        command = flag(command)
    return command


def _parse_processing(flags: dict):
    from .preprocess import CLI_NAMES, parse

    return parse(scale=flags.get("input_scale"), mean=flags.get("mean"), std=flags.get("std"),
                 image_layout=flags.get("image_layout"), labels=flags.get("labels"),
                 activation=flags.get("output_activation"), names=CLI_NAMES)


@build_parser.command()
@click.argument("target")
@click.option("--weights", help="Checkpoint: .pt/.pth/.bin (loaded with weights_only) or .safetensors; a sharded "
              "one by its *.index.json (or the folder holding it).")
@click.option("--input", "inputs", multiple=True, metavar="SHAPE[:DTYPE[:HIGH]]",
              help="Example input, e.g. 1x3x64x64 or 1x16:int64:30522 (ids in [0, HIGH)). Repeat per input.")
@click.option("--kwargs", help="Constructor kwargs as JSON, or @file.json.")
@click.option("--inputs", "inputs_npz", metavar="FILE.npz", help="Your own parity inputs, keyed by input name.")
@click.option("--out", type=click.Path(path_type=Path), help="Output folder (default: exports/<name>).")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--write-failing", is_flag=True, help="Write artifacts even if parity fails (marked failing).")
@click.option("--no-tfjs", is_flag=True, help="Skip the tfjs export and its verification.")
@click.option("--backends", default="cpu,wasm", show_default=True, help="tfjs backends to verify in node.")
@click.option("--verify-budget", default="4", show_default=True, metavar="SECONDS|all",
              help="Seconds each tfjs backend (Node: CPU time; the browser: its page's time) may spend on parity "
                   "input sets after its cheapest one (sets run cheapest first; what is left out is noted). 'all' "
                   "runs every set on every Node backend and the first two in the browser.")
@click.option("--allow-nonfinite", is_flag=True, help="Accept NaN/Inf in the checkpoint's weights.")
@click.option("--seed", default=0, show_default=True, help="Seed for example and parity inputs.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="KEY=RTOL",
              help="Parity bound override: default=1e-4, a module path (features.3=1e-3) or a layer type "
                   "(Conv2d=1e-3). Also read from [tool.bridge.tolerance] in pyproject.toml.")
@click.option("--browser", "browser_backends", default="webgl", show_default=True,
              help="tfjs backends to verify in headless chromium (comma list of webgl,wasm,cpu; '' to skip).")
@click.option("--channels-last-io", is_flag=True,
              help="Image inputs NHWC (as tf.browser.fromPixels gives) and feature-map outputs NHWC: "
                   "no transpose at the model's boundary.")
@click.option("--source-imports-bridge", is_flag=True,
              help="model_tf.py imports bridge.layers instead of the bridge_layers.py written beside it.")
@click.option("--per-module-tfjs/--no-per-module-tfjs", default=None,
              help="Compare every module's output inside tfjs too (a second, throw-away conversion). "
                   "Default: only when a tfjs runtime misses its bound, to name the module that diverged there.")
@click.option("--check-gradients", is_flag=True,
              help="Also compare every trainable variable's gradient with torch's (eval mode; report.json "
                   "'gradients'); a failure exits with 4.")
@click.option("--onnx", is_flag=True,
              help="Also write model.onnx (torch.onnx.export) and verify it in onnxruntime and onnxruntime-web "
                   "(wasm, in node); a model torch cannot export is noted and its ONNX runtimes skipped.")
@click.option("--onnx-strict", is_flag=True, help="As --onnx, but a model torch cannot export fails (exit 5).")
@click.option("--quantize", "quantize", multiple=True, metavar="DTYPE[:PATTERN,..]",
              help="Quantize the tfjs weights: float16 or uint8, all of them or those of torch module paths / "
                   "state_dict key globs (uint8:features.*). The SavedModel stays float32; the cost against "
                   "torch is measured and reported (report.json 'quantization').")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write report.json here.")
@click.option("--junit", type=click.Path(path_type=Path), help="Write a JUnit XML parity report (for CI).")
@click.option("--markdown", type=click.Path(path_type=Path), help="Write a Markdown summary (for PR comments).")
@click.option("--html", type=click.Path(path_type=Path), help="Write an HTML report with a per-module error plot.")
@_processing_options
def convert(target, weights, inputs, kwargs, inputs_npz, out, force, write_failing, no_tfjs, backends,
            verify_budget, allow_nonfinite, seed, tolerances, browser_backends, channels_last_io, source_imports_bridge,
            per_module_tfjs, check_gradients, json_path, junit, markdown, html, onnx, onnx_strict, quantize,
            **processing):
    """Convert TARGET (a models/ folder, module:Class or file.py:Class) and verify it end to end."""
    from rich.console import Console

    from .convert_cmd import run_convert

    console = Console(stderr=False)
    started = time.perf_counter()
    report = run_convert(console, target=target, weights=weights, inputs=list(inputs), kwargs=kwargs,
                         inputs_npz=inputs_npz, out=out, force=force, write_failing=write_failing,
                         tfjs=not no_tfjs, backends=tuple(b for b in backends.split(",") if b),
                         verify_budget_s=_parse_budget(verify_budget),
                         allow_nonfinite=allow_nonfinite, seed=seed, tolerances=list(tolerances),
                         per_module_tfjs=per_module_tfjs, channels_last_io=channels_last_io,
                         source_imports_bridge=source_imports_bridge,
                         check_gradients=check_gradients, onnx=onnx or onnx_strict, onnx_strict=onnx_strict,
                         browser_backends=tuple(b for b in browser_backends.split(",") if b),
                         processing=_parse_processing(processing), quantize=list(quantize),
                         reports={"json": json_path, "junit": junit, "markdown": markdown, "html": html},
                         meanwhile=_tf_import())
    console.print(f"done in {time.perf_counter() - started:.1f} s")
    gradients_ok = (report.get("gradients") or {}).get("ok", True)
    return 0 if report["parity"]["ok"] and gradients_ok else 4


def _parse_budget(text: str) -> float | None:
    """--verify-budget: seconds (>= 0) or 'all' (None: no budget)."""
    if text.strip().lower() == "all":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise BadInputError(f"bad --verify-budget {text!r}: expected seconds (>= 0) or 'all'")
    return value


@build_parser.command()
@click.argument("export", type=click.Path(path_type=Path))
@click.option("--port", default=0, show_default=True, help="Port to listen on (0: a free one, printed).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
def serve(export, port, host):
    """Serve a demo page for EXPORT (a bridge convert output folder): the model run in the browser on
    each tfjs backend, its error vs torch, latency and download size. Ctrl-C stops it."""
    from .serve import serve as run_server

    return run_server(export, host=host, port=port, echo=click.echo)


@build_parser.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect(path, as_json):
    """Show a checkpoint's keys, shapes, dtypes, prefixes and parameter count."""
    from rich.console import Console

    from .checkpoint import inspect_checkpoint, render_inspect

    info = inspect_checkpoint(path)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        render_inspect(info, Console())
    return 0


@build_parser.command()
@click.argument("torch_spec")
@click.argument("tf_spec")
@click.option("--weights", help="Checkpoint of TORCH_SPEC: .pt/.pth/.bin (loaded with weights_only) or .safetensors.")
@click.option("--kwargs", help="TORCH_SPEC constructor kwargs as JSON, or @file.json.")
@click.option("--tf-kwargs", help="TF_SPEC constructor kwargs as JSON, or @file.json.")
@click.option("--input", "inputs", multiple=True, metavar="SHAPE[:DTYPE[:HIGH]]",
              help="Example input in torch layout, e.g. 1x3x64x64. Repeat per input. "
                   "Default: the shapes the TF port declares.")
@click.option("--load-weights/--no-load-weights", default=None,
              help="Fill the TF port from the torch weights (default: yes, except for a SavedModel folder).")
@click.option("--rtol", type=float, help="Bound = RTOL * max(1, max|torch|) per output (default 1e-4).")
@click.option("--atol", type=float, help="An absolute floor under that bound.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Write the parity report here.")
@click.option("--seed", default=0, show_default=True, help="Seed for the parity inputs.")
@click.option("--junit", type=click.Path(path_type=Path), help="Write a JUnit XML parity report (for CI).")
@click.option("--markdown", type=click.Path(path_type=Path), help="Write a Markdown summary (for PR comments).")
@click.option("--html", type=click.Path(path_type=Path), help="Write an HTML report with a per-module error plot.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="KEY=RTOL",
              help="Bound override per module path or layer type (as for convert); also [tool.bridge.tolerance].")
def check(torch_spec, tf_spec, weights, kwargs, tf_kwargs, inputs, load_weights, rtol, atol, json_path, seed,
          junit, markdown, html, tolerances):
    """Check a hand-written TF port (TF_SPEC: file.py:Class, module:Class or a SavedModel folder)
    against its torch original (TORCH_SPEC). Exit 0: parity holds; 4: it does not; 2: bad input."""
    from rich.console import Console

    from .check_cmd import CheckOptions, run_check

    run_check(Console(), CheckOptions(torch_spec, tf_spec, weights, kwargs, tf_kwargs, tuple(inputs), load_weights,
                                      rtol, atol, json_path, seed, junit, markdown, html, tuple(tolerances)))
    return 0


@build_parser.command()
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the support matrix as Markdown.")
def support(as_markdown):
    """Every torch.nn module class and its verdict: mapped, decompose or not supported."""
    from rich.console import Console
    from rich.table import Table

    from .support import counts, markdown, support_rows

    rows = support_rows()
    if as_markdown:
        click.echo(markdown(rows), nl=False)
        return 0
    table = Table()
    for name in ("class", "verdict", "family"):
        table.add_column(name, no_wrap=True)
    table.add_column("notes")
    for r in rows:
        table.add_row(r["class"], r["verdict"], r["family"], r["notes"])
    console = Console()
    console.print(table)
    console.print(", ".join(f"{k}: {n}" for k, n in counts(rows).items()) + f" (of {len(rows)})")
    return 0


def _tf_import():
    """convert's import of TF, to run beside its trace; None once TF is in (in-process callers, tests)."""
    if "tensorflow" in sys.modules:
        return None
    return _import_tensorflow if os.environ.get("BRIDGE_DEBUG") else _import_tensorflow_quietly


def _import_tensorflow() -> None:
    import tensorflow  # noqa: F401


def _import_tensorflow_quietly() -> None:
    """TF's C++ start-up writes CUDA-registration noise straight to fd 2 (no env var silences it).

    Importing it once with fd 2 pointed at /dev/null keeps error output to the one line we print.
    The device scan (on a machine without a GPU, its "failed call to cuInit" line) runs then too.
    """
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow

            tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "2")  # --debug shows TF's native logs
    # before TF is imported: no oneDNN-only fused ops, so the tfjs converter can run in this process
    # (bridge.export.tfjs.in_process_problem) instead of a second Python that imports TF again
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if debug:
        os.environ["BRIDGE_DEBUG"] = "1"  # the converter's and the runners' own output is shown
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so temporary folders are removed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not debug and "check" in argv:  # convert imports TF beside its trace (run_convert's meanwhile)
        _import_tensorflow_quietly()
    try:
        result = build_parser.main(args=argv, prog_name="bridge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except BridgeError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error [{exc.code}]: {exc.message}", err=True)
        return exc.exit_code
    except Exception as exc:  # a bug of ours: say so briefly
        if debug:
            traceback.print_exc()
        click.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


def entry() -> None:
    """The ``bridge`` command: ``main()``, then the process ends without tearing TF and torch down.

    Everything is written, installed and flushed by then, and the runner processes are closed; the
    interpreter's own shutdown (TF's and torch's thread pools and objects) took 2 s after a ResNet-18
    conversion, for nothing the OS does not do anyway.
    """
    try:
        code = main()
    except SystemExit as exc:  # SIGTERM, after the temporary folders were removed on the way out
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
