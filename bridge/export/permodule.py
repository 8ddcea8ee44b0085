"""Per-module parity inside tfjs.

The shipped tfjs model only exposes the model outputs. To say which torch
module diverges first *in tfjs*, a second, throw-away graph is exported whose
outputs are every layer's output (recorded by the layer taps while the
``tf.function`` is traced), converted the same way, run in Node on each
backend, and compared with torch's forward-hook outputs.

Caveat, stated in the report: exposing intermediate values can keep the
converter from fusing ops across them, so this graph is a close sibling of the
shipped one, not the same graph. Model outputs are always checked on the
shipped graph itself.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import tensorflow as tf

from .. import parity
from ..layers import record_outputs
from . import runners, savedmodel, tfjs


def _debug_module(port):
    """A tf.Module holding the model and a signature that returns every layer output."""
    paths: list[tuple[str, tuple]] = []

    def serve(*args):
        seen = []
        with record_outputs(lambda path, index, out: seen.append((path, index, out))):
            port.tf_model(*args)
        paths[:] = [(p, i) for p, i, _ in seen]
        return {f"m{i:04d}": tf.identity(out) for i, (_, _, out) in enumerate(seen)}

    fn = tf.function(serve, input_signature=savedmodel.input_specs(port), autograph=False)
    concrete = fn.get_concrete_function()
    holder = tf.Module()
    holder.model = port.tf_model
    return holder, concrete, list(paths)


def per_module_tfjs(port, backends: tuple[str, ...]) -> dict[str, list[parity.Diff]]:
    """{"tfjs-<backend>": [Diff per module call]} over all parity inputs."""
    if not port.plan.module_paths:  # a model of plain ops has no modules to compare
        return {f"tfjs-{b}": [] for b in backends}
    holder, concrete, paths = _debug_module(port)
    layouts = port.plan.module_layouts()
    rtols = {p: t.rtol for p, t in port.tolerance.per_module.items()}

    def compare(torch_seen, run, _runtime):
        # a layer output tfjs did not return stays unpaired, and per_module_diffs reports it missing
        tf_seen = [(p, index, run.outputs[f"m{i:04d}"]) for i, (p, index) in enumerate(paths)
                   if f"m{i:04d}" in run.outputs]
        return parity.per_module_diffs(torch_seen, tf_seen, layouts, rtols)

    sets = port.parity_inputs()
    with tempfile.TemporaryDirectory(prefix="bridge-permodule-") as tmp:
        saved = Path(tmp) / "saved_model"
        tf.saved_model.save(holder, str(saved), signatures={"serving_default": concrete})
        tfjs.convert_to_tfjs(saved, Path(tmp) / "tfjs", metadata={"purpose": "bridge per-module parity"})
        runs = runners.NodeTfjsRunner(Path(tmp) / "tfjs", backends).run(
            [savedmodel.feeds_for(port, inputs) for inputs in sets])  # zero-size sets skipped; save.py notes them
    expected = [parity.torch_module_outputs(port.module, inputs, port.plan.module_paths)[1] for inputs in sets]
    return runners.collect(runs, expected, compare)
