"""SavedModel export: one ``serving_default`` signature with named inputs.

Inputs keep torch's layout (NCHW stays NCHW at the boundary), unless the port was converted with
``channels_last_io``: then image inputs are NHWC and channels-last maps are returned NHWC. The batch dim is
``None`` when the torch model accepts other batch sizes, and so is every other
dim the port left free (a sequence length, see ``api.free_dims``). Integer inputs are
declared int32: tfjs has no int64, and our TF graph only uses ids for gathers.
Outputs are a flat dict ``{output_name: tensor}`` in the port's output order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import torch

from ..errors import ExportError
from ..parity import flatten_outputs
from .tfjs import checked_int32


def tf_dtype(dtype: torch.dtype) -> tf.DType:
    if dtype.is_floating_point:
        return tf.float32
    if dtype == torch.bool:
        return tf.bool
    return tf.int32


def input_specs(port) -> list[tf.TensorSpec]:
    specs = []
    free = port.dynamic_dims or [()] * len(port.example_inputs)
    for i, (name, x, dims) in enumerate(zip(port.input_names, port.example_inputs, free)):
        shape = [None if d in dims else n for d, n in enumerate(x.shape)]
        if port.dynamic_batch and shape:
            shape[0] = None
        specs.append(tf.TensorSpec(port.boundary_shape(i, shape), tf_dtype(x.dtype), name=name))
    return specs


def serving_function(port):
    """A tf.function with the port's input signature returning {output_name: tensor}."""
    model = port.tf_model

    def serve(*args):
        outs = flatten_outputs(model(*args))
        if len(outs) != len(port.output_names):  # never name outputs by a shortened zip
            raise ExportError(f"the TF port returned {len(outs)} output(s) but the plan names "
                              f"{len(port.output_names)}: {', '.join(port.output_names)}")
        return {name: tf.identity(t, name=name) for name, (_, t) in zip(port.output_names, outs)}

    # autograph off: the generated forward is straight-line TF, and its source is exec'd text
    return tf.function(serve, input_signature=input_specs(port), autograph=False)


def save_savedmodel(port, out_dir: Path) -> None:
    fn = port.serving_fn  # traced already when the free dims were checked (api._follows), if they were kept
    if fn is None or list(fn.input_signature) != input_specs(port):
        fn = serving_function(port)
    tf.saved_model.save(port.tf_model, str(out_dir), signatures={"serving_default": fn.get_concrete_function()})


def run_savedmodel(saved_dir: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Load the written SavedModel and run its signature: parity on the artifact itself."""
    return run_savedmodel_many(saved_dir, [feeds])[0]


def run_savedmodel_many(saved_dir: Path, feeds_list: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The SavedModel loaded once and run on every feed set; its variables (a copy of the weights) are
    released before this returns: the loaded objects hold reference cycles, so they are collected here
    instead of whenever Python's collector next runs."""
    import gc

    loaded = tf.saved_model.load(str(saved_dir))
    try:
        fn = loaded.signatures["serving_default"]
        results = []
        for feeds in feeds_list:
            out = fn(**{k: tf.constant(v) for k, v in feeds.items()})
            results.append({k: v.numpy() for k, v in out.items()})
        return results
    finally:
        del loaded
        fn = None
        gc.collect()


def feeds_for(port, inputs: tuple) -> dict[str, np.ndarray]:
    """Signature feeds for one parity input set.

    int64 ids become int32, as in the signature (tf_dtype) and as tfjs needs;
    an id outside int32 raises BadInputError naming it instead of wrapping.
    """
    out = {}
    for name, x in zip(port.input_names, port.boundary_inputs(inputs)):
        a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        if a.dtype.kind == "f":
            a = a.astype(np.float32)
        elif a.dtype.kind in "iu":
            a = checked_int32(name, a)
        out[name] = a
    return out
