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
from . import savedmodel, tfjs


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
    merged: dict[str, dict[str, list]] = {f"tfjs-{b}": {} for b in backends}
    order: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bridge-permodule-") as tmp:
        saved = Path(tmp) / "saved_model"
        tf.saved_model.save(holder, str(saved), signatures={"serving_default": concrete})
        tfjs.convert_to_tfjs(saved, Path(tmp) / "tfjs", metadata={"purpose": "bridge per-module parity"})
        for inputs in port.parity_inputs():
            _, torch_seen = parity.torch_module_outputs(port.module, inputs, port.plan.module_paths)
            feeds = savedmodel.feeds_for(port, inputs)
            runnable = tuple(b for b in backends if tfjs.zero_size_problem(feeds, b) is None)  # save.py notes it
            results = tfjs.run_tfjs(Path(tmp) / "tfjs", feeds, runnable) if runnable else {}
            for backend, outs in results.items():
                # a layer output tfjs did not return stays unpaired, and per_module_diffs reports it missing
                tf_seen = [(p, index, outs[f"m{i:04d}"]) for i, (p, index) in enumerate(paths) if f"m{i:04d}" in outs]
                for d in parity.per_module_diffs(torch_seen, tf_seen, layouts, rtols):
                    if d.name not in order:
                        order.append(d.name)
                    merged[f"tfjs-{backend}"].setdefault(d.name, []).append(d)
    return {rt: [parity.merge(n, by_name[n]) for n in order if n in by_name] for rt, by_name in merged.items()}
