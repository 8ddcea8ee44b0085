"""The streamed tfjs writer: model.json from the graph without its weights, the shards one weight at a time.

The tensorflowjs converter freezes the signature into one GraphDef with every weight as a constant, runs
grappler over copies of it and then stacks all weight bytes into one buffer before cutting the shards. That
holds several whole copies of the weights at once, and a GraphDef cannot pass protobuf's 2 GB limit. Here:

1. the SavedModel is loaded without its checkpoint (``experimental_skip_checkpoint``: its variables are
   created uninitialized, so nothing of their size is allocated) and the signature function is inlined
   with TF's own inliner, as the converter does before it freezes;
2. each variable becomes a Placeholder of its dtype and fully known shape, not a Const with its value
   (a ``ResourceGather`` of a variable, an embedding lookup, becomes a ``GatherV2`` of it);
3. the converter's own ``optimize_graph`` runs on that graph: its op checks before and after
   optimization (every unsupported op listed at once), both grappler passes and its fusions;
4. the weight Placeholders are written into model.json's topology as ``Const`` nodes with dtype and shape
   and no content, which is what the converter writes for every weight;
5. the shards get each weight's raw little-endian bytes in manifest order, read one variable at a time
   from the SavedModel's ``variables/`` bundle, and are cut into ``group1-shardKofN.bin`` files of 4 MB.

What it cannot do, by design: fold a computation on weights into a new constant (grappler cannot fold a
Placeholder), so ops that run on weights stay in the graph. For bridge's graphs the weights are already
in TF layout, so that is rare; and variables of at most INLINE_BYTES (biases, norm parameters) go in with
their values, so a BatchNorm's scale and shift fold as they do in the converter (digits_cnn, ResNet-18, a
GPT-2 and a Linear stack gave the converter's graph or a better one: scripts/compare_tfjs_stream.py). A variable used
by anything other than ``ReadVariableOp``/``ResourceGather`` (inside a While body, say) raises
``NotStreamable``, and the caller uses the converter instead.

When it runs (``mode``): always from STREAM_ABOVE_BYTES of weights, and below that wherever the optimized
graph has no computation on weights left (``weight_computations``), since then the converter would write
the same model.json, only slower (it freezes every weight into one GraphDef and re-imports it: ResNet-50
13.8 s against 3.8 s here); a graph with such computations goes to the converter, which folds them.

Memory: the graph without weights, plus one weight at a time. It runs in the calling process, which must run
TF with oneDNN off as the converter must (``tfjs.in_process_problem``); otherwise it raises NotStreamable.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from .. import progress
from ..errors import BadInputError, ExportError
from . import faults

SHARD_BYTES = 4 * 1024 * 1024  # the converter's default (the largest file browsers cache)
# variables up to this size go into the graph with their values (see weightless_graph): grappler then
# folds BatchNorm's scale and shift as the converter does; a few MB in all even for GPT-2-medium
INLINE_BYTES = 64 * 1024
# tfjs has no int64/float64: the converter writes them as int32/float32 (and says so); so do we
_AUTO_DTYPES = {np.dtype(np.int64): np.dtype(np.int32), np.dtype(np.float64): np.dtype(np.float32)}
_TFJS_WEIGHT_DTYPES = {"float32", "int32", "bool", "uint8", "float16", "uint16", "complex64"}


# stream from 256 MiB of variables whatever the graph. The converter's peak is about 18x the weights (3 GB more
# for a 160 MB Linear stack, 3.4 GB for GPT-2 at 196 MB): below this it stays a few GB, so where its graph would
# differ (it folds computations on weights) the converter writes it
STREAM_ABOVE_BYTES = 256 << 20
ENV = "BRIDGE_TFJS_STREAM"  # "1": always stream, "0": never, unset/"auto": by STREAM_ABOVE_BYTES


class NotStreamable(ExportError):
    """The graph uses a variable in a way the streamed writer does not rewrite; use the converter."""


def wanted(saved_model_dir: Path, stream: bool | None = None, quantization=None,
           threshold: int | None = None) -> bool:
    """Whether convert_to_tfjs must use this writer, whatever graph it gives (``mode`` is "stream")."""
    return mode(saved_model_dir, stream, quantization, threshold) == "stream"


def mode(saved_model_dir: Path, stream: bool | None = None, quantization=None,
         threshold: int | None = None) -> str | None:
    """How convert_to_tfjs writes the tfjs model:

    - "stream": this writer, whatever graph it gives: ``stream=True``, $BRIDGE_TFJS_STREAM=1, or the
      SavedModel's variables reach ``threshold`` (STREAM_ABOVE_BYTES: the converter's copies would not fit);
    - "prefer": this writer where it gives the converter's graph (no computation on weights to fold),
      else the converter: the same model.json in a third to a half of the converter's time, since
      nothing is frozen into one GraphDef and re-imported (ResNet-50: 3.8 s against 13.8 s);
    - None: the converter: ``stream=False``, $BRIDGE_TFJS_STREAM=0, or a quantized export (its
      quantization and bridge's checks of it), unless streaming is forced.
    """
    if stream is None:
        env = os.environ.get(ENV, "auto").strip().lower()
        stream = {"1": True, "true": True, "0": False, "false": False}.get(env)
    if stream is not None:
        if stream and quantization:
            raise BadInputError("the streamed tfjs writer does not quantize; drop --quantize or the forced stream")
        return "stream" if stream else None
    if quantization:
        return None
    limit = STREAM_ABOVE_BYTES if threshold is None else threshold
    return "stream" if saved_model_weight_bytes(saved_model_dir) >= limit else "prefer"


def convert_to_tfjs_streamed(saved_model_dir: Path, out_dir: Path, *, metadata: dict,
                             signature: str = "serving_default", shard_bytes: int = SHARD_BYTES,
                             inline_bytes: int = INLINE_BYTES, same_graph: bool = False) -> dict:
    """convert_to_tfjs's contract (staged, checked, installed; the same stats dict) with this writer."""
    from . import tfjs

    problem = tfjs.in_process_problem()  # grappler runs here: with oneDNN on it writes ops tfjs cannot run
    if problem:
        raise NotStreamable(f"the streamed writer runs grappler in this process, which it cannot here: {problem}")
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tfjs-", dir=out_dir.parent) as tmp:
        staged = Path(tmp) / "model"
        staged.mkdir()
        info = convert_streamed(Path(saved_model_dir).resolve(), staged, metadata=metadata, signature=signature,
                                shard_bytes=shard_bytes, inline_bytes=inline_bytes, same_graph=same_graph)
        result = tfjs._finish(staged, out_dir)
    if isinstance(result, Exception):
        raise result
    return {**result, "writer": "streamed", "streamed_weights": info["streamed"]}


def saved_model_weight_bytes(saved_model_dir: Path) -> int:
    """Bytes of the SavedModel's variable data files (what the converter would freeze into the graph)."""
    return sum(p.stat().st_size for p in (Path(saved_model_dir) / "variables").glob("variables.data-*"))


def convert_streamed(saved_model_dir: Path, out_dir: Path, *, metadata: dict, signature: str = "serving_default",
                     shard_bytes: int = SHARD_BYTES, node_maps: bool = True,
                     inline_bytes: int = INLINE_BYTES, same_graph: bool = False) -> dict:
    """Write model.json + shards for the SavedModel's signature into ``out_dir`` (which must exist).

    ``metadata`` goes into ``userDefinedMetadata["bridge"]``, with "input_nodes"/"output_nodes" added when
    ``node_maps`` (as bridge.export.tfjs does). Returns {"weights": n, "weight_bytes": bytes, "streamed": n
    of them read from the variables bundle}. Raises NotStreamable or ExportError (unsupported ops).
    ``same_graph``: raise NotStreamable where the converter would write a different graph (it folds
    computations on weights; ``weight_computations``).
    """
    saved_model_dir, out_dir = Path(saved_model_dir), Path(out_dir)
    gc.collect()  # a SavedModel loaded before (the verification) holds cycles: its weights go now, not later
    from . import tfjs

    try:
        with tfjs.quiet():  # grappler's session logs, as for the converter
            return _convert_streamed(saved_model_dir, out_dir, metadata, signature, shard_bytes, node_maps,
                                     inline_bytes, same_graph)
    finally:
        gc.collect()  # the weightless SavedModel and graphs of this conversion


def _convert_streamed(saved_model_dir, out_dir, metadata, signature, shard_bytes, node_maps, inline_bytes,
                      same_graph) -> dict:
    import tensorflow as tf

    from . import tfjs

    conv, import_error = tfjs._import_converter()  # quietly, and with the TFDF banner (IPython) off
    if conv is None:
        raise ExportError(import_error)
    loaded = tf.saved_model.load(str(saved_model_dir),
                                 options=tf.saved_model.LoadOptions(experimental_skip_checkpoint=True))
    if signature not in loaded.signatures:
        raise ExportError(f"signature {signature!r} not found; the SavedModel has {sorted(loaded.signatures)}")
    fn = loaded.signatures[signature]
    reader = _VariableReader(saved_model_dir)
    graph_def, weights = weightless_graph(fn, reader.read, inline_bytes)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    sig_def = conv._build_signature_def(graph, [t for t in fn.inputs if t.dtype != tf.resource], fn.outputs,
                                        conv._find_signature(str(saved_model_dir), "serve", signature))
    try:
        optimized = conv.optimize_graph(graph, sig_def)
    except ValueError as e:  # "Unsupported Ops in the model before/after optimization": the converter's error
        from . import tfjs

        raise tfjs._converter_error(f"{type(e).__name__}: {e}", "") from None
    if same_graph:  # after grappler, which folds some (a Transpose into its MatMul); what is left differs
        computed = weight_computations(optimized, weights)
        if computed:
            raise NotStreamable(f"the graph computes on weights ({len(computed)} ops, the first {computed[0][0]} "
                                f"{computed[0][1]}), which only the converter folds into constants")
    entries = _manifest_entries(optimized, weights)
    bridge = dict(metadata)
    if node_maps:
        bridge.update(_node_maps(saved_model_dir, signature, fn))
    paths = write_shards(out_dir, entries, reader.read, shard_bytes)
    model_json = {
        "format": "graph-model",
        "generatedBy": getattr(loaded, "tensorflow_version", tf.__version__),
        "convertedBy": _converted_by(),
        "signature": _message_to_dict(sig_def),
        "modelTopology": _message_to_dict(optimized),
        "userDefinedMetadata": {"bridge": bridge},
        "weightsManifest": [{"paths": paths, "weights": [e.manifest() for e in entries]}],
    }
    (out_dir / "model.json").write_text(json.dumps(model_json))
    return {"weights": len(entries), "weight_bytes": sum(e.nbytes for e in entries),
            "streamed": sum(e.variable is not None for e in entries)}


# ---------------------------------------------------------------- the graph without its weights


def weight_computations(graph_def, weights) -> list:
    """The nodes of ``graph_def`` computed from weights (``weights``' Placeholders) and constants alone, as
    (op, name): the converter folds them into new constants (a kernel's Reshape, say); here they stay in
    the graph and run on every call. Aliases of a weight (Identity) are not computations."""
    nodes = {n.name: n for n in graph_def.node}
    memo: dict[str, str] = {}  # name -> "weight" | "const" | "input"

    def kind(name: str) -> str:
        stack = [name]
        while stack:  # iterative post-order: graphs can be deep
            top = stack[-1]
            if top in memo:
                stack.pop()
                continue
            node = nodes.get(top)
            if node is None:
                memo[top] = "input"
                stack.pop()
                continue
            data = [i.split(":")[0].lstrip("^") for i in node.input if not i.startswith("^")]
            todo = [d for d in data if d not in memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            if top in weights:
                memo[top] = "weight"
            elif node.op == "Const":
                memo[top] = "const"
            elif not data or any(memo[d] == "input" for d in data) or node.op in _NOT_FOLDABLE:
                memo[top] = "input"
            else:
                memo[top] = "weight" if any(memo[d] == "weight" for d in data) else "const"
        return memo[name]

    return [(n.op, n.name) for n in graph_def.node
            if n.name not in weights and n.op != "Identity" and kind(n.name) == "weight"]


_NOT_FOLDABLE = {"Placeholder", "RandomUniform", "RandomStandardNormal", "StatelessRandomUniformV2",
                 "VarHandleOp", "NoOp"}


def weightless_graph(fn, read=None, inline_bytes: int = 0):
    """(GraphDef, {placeholder name: variable name}): ``fn`` inlined, each variable a shaped Placeholder.

    Variables of at most ``inline_bytes`` (biases, norm scales) become Consts with their value instead,
    read by ``read(variable name)``, so grappler folds what is computed from them alone (a BatchNorm's
    scale and shift) exactly as the converter does.
    """
    import tensorflow as tf
    from tensorflow.core.framework import attr_value_pb2, tensor_shape_pb2
    from tensorflow.python.framework import convert_to_constants as ctc

    graph_def = ctc._run_inline_graph_optimization(fn, lower_control_flow=True, aggressive_inlining=True)
    handles = {id(v.handle): v for v in fn.graph.variables}
    captured = {}  # internal placeholder name -> variable
    for external, internal in fn.graph.captures:
        var = handles.get(id(external))
        if var is not None:
            captured[internal.op.name] = var
        elif external.dtype == tf.resource:
            raise NotStreamable(f"the signature captures a resource that is not a variable ({internal.name})")
    weights = {}
    nodes = {n.name: n for n in graph_def.node}
    for name, var in captured.items():
        node = nodes.get(name)
        if node is None:  # pruned by the inliner: unused
            continue
        dtype = var.dtype.as_datatype_enum
        node.ClearField("attr")
        node.attr["dtype"].CopyFrom(attr_value_pb2.AttrValue(type=dtype))
        nbytes = var.shape.num_elements() * var.dtype.size
        if read is not None and nbytes <= inline_bytes:
            node.op = "Const"
            value = read(var.name.split(":")[0])
            node.attr["value"].CopyFrom(attr_value_pb2.AttrValue(tensor=tf.make_tensor_proto(value)))
        else:
            node.op = "Placeholder"
            shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d)
                                                           for d in var.shape.as_list()])
            node.attr["shape"].CopyFrom(attr_value_pb2.AttrValue(shape=shape))
        weights[name] = (var.name.split(":")[0], dtype)
    extra = []
    handles = {name: (name, dtype) for name, (_, dtype) in weights.items()}  # a weight's handle, and aliases
    done: set[str] = set()
    changed = True
    while changed:  # the inliner forwards each handle through Identity nodes (Func/.../input/_N) first
        changed = False
        for node in graph_def.node:
            if node.name in done or node.name in weights:
                continue
            fed = [handles[i.split(":")[0]] for i in node.input if not i.startswith("^") and i.split(":")[0] in handles]
            if not fed:
                continue
            weight, dtype = fed[0]
            done.add(node.name)
            changed = True
            if node.op == "Identity":  # an alias of the handle: now an alias of the value
                node.attr["T"].type = dtype
                handles[node.name] = (weight, dtype)
            elif node.op == "ReadVariableOp":
                node.op = "Identity"
                node.ClearField("attr")
                node.attr["T"].CopyFrom(attr_value_pb2.AttrValue(type=dtype))
            elif node.op == "ResourceGather":
                extra.append(_gather_of(node, attr_value_pb2, tf))
            else:
                raise NotStreamable(f"variable {weights[weight][0]!r} is used by a {node.op} op ({node.name}); "
                                    "only reads and gathers are rewritten")
    graph_def.node.extend(extra)
    for func in graph_def.library.function:
        if any(a.type == tf.resource.as_datatype_enum for a in func.signature.input_arg):
            raise NotStreamable(f"function {func.signature.name} takes a variable (control flow over weights)")
    return graph_def, {name: v for name, (v, _) in weights.items() if nodes[name].op == "Placeholder"}


def _gather_of(node, attr_value_pb2, tf):
    """ResourceGather(var, ids) -> GatherV2(var's placeholder, ids, axis 0), in place; returns the axis Const."""
    dtype, tindices = node.attr["dtype"].type, node.attr["Tindices"].type
    batch_dims = node.attr["batch_dims"].i if "batch_dims" in node.attr else 0
    axis = tf.compat.v1.NodeDef(name=f"{node.name}/axis", op="Const")
    axis.attr["dtype"].CopyFrom(attr_value_pb2.AttrValue(type=tf.int32.as_datatype_enum))
    axis.attr["value"].CopyFrom(attr_value_pb2.AttrValue(tensor=tf.make_tensor_proto(batch_dims, tf.int32)))
    node.op = "GatherV2"
    node.ClearField("attr")
    node.attr["Tparams"].CopyFrom(attr_value_pb2.AttrValue(type=dtype))
    node.attr["Tindices"].CopyFrom(attr_value_pb2.AttrValue(type=tindices))
    node.attr["Taxis"].CopyFrom(attr_value_pb2.AttrValue(type=tf.int32.as_datatype_enum))
    node.attr["batch_dims"].CopyFrom(attr_value_pb2.AttrValue(i=batch_dims))
    data = [i for i in node.input if not i.startswith("^")]
    control = [i for i in node.input if i.startswith("^")]
    del node.input[:]
    node.input.extend([*data[:2], axis.name, *control])
    return axis


# ---------------------------------------------------------------- the manifest


class _Entry:
    """One tfjs weight: a graph Const's value (small) or a variable read when its bytes are written."""

    def __init__(self, name: str, shape: list[int], dtype: np.dtype, value=None, variable: str | None = None):
        self.name, self.shape, self.value, self.variable = name, shape, value, variable
        self.source_dtype = np.dtype(dtype)
        self.dtype = _AUTO_DTYPES.get(self.source_dtype, self.source_dtype)
        if self.dtype.name not in _TFJS_WEIGHT_DTYPES:
            raise NotStreamable(f"weight {name} has dtype {self.dtype.name}, which the streamed writer does not "
                                "write (strings, resources)")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def manifest(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.name}

    def array(self, read) -> np.ndarray:
        a = self.value if self.variable is None else read(self.variable)
        a = np.asarray(a)
        if tuple(a.shape) != tuple(self.shape):
            raise ExportError(f"weight {self.name}: read shape {list(a.shape)}, the graph says {self.shape}")
        return np.ascontiguousarray(a, dtype=self.dtype.newbyteorder("<"))


def _manifest_entries(graph_def, weights: dict) -> list[_Entry]:
    """Every Const of the optimized graph (content moved out, as the converter does) and every weight
    Placeholder (turned into a content-less Const), in node order; function-library constants after."""
    import tensorflow as tf
    from tensorflowjs.converters import graph_rewrite_util
    from tensorflowjs.converters.tf_saved_model_conversion_v2 import (
        CLEARED_TENSOR_FIELDS,
    )

    entries = []

    def take(nodes):
        for node in nodes:
            if node.op == "Const":
                value = graph_rewrite_util.values_from_const(node)
                entries.append(_Entry(node.name, list(value.shape), value.dtype, value=value))
                for field in CLEARED_TENSOR_FIELDS:
                    node.attr["value"].tensor.ClearField(field)
            elif node.op == "Placeholder" and node.name in weights:
                dtype, shape = node.attr["dtype"].type, node.attr["shape"].shape
                dims = [d.size for d in shape.dim]
                node.op = "Const"
                node.ClearField("attr")
                node.attr["dtype"].type = dtype
                node.attr["value"].tensor.dtype = dtype
                node.attr["value"].tensor.tensor_shape.CopyFrom(shape)
                entries.append(_Entry(node.name, dims, tf.dtypes.as_dtype(dtype).as_numpy_dtype,
                                      variable=weights[node.name]))

    take(graph_def.node)
    for func in graph_def.library.function:
        nodes = graph_rewrite_util.rename_constants(func.node_def, func.signature.name)
        del func.node_def[:]
        func.node_def.extend(nodes)
        take(func.node_def)
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise NotStreamable("two weights share a node name")
    return entries


def write_shards(out_dir: Path, entries: list[_Entry], read, shard_bytes: int = SHARD_BYTES) -> list[str]:
    """Each entry's bytes in order, cut into ``group1-shardKofN.bin`` files of ``shard_bytes``; one entry in
    memory at a time (``read(variable name)`` gives a variable's value). Returns the file names."""
    total = sum(e.nbytes for e in entries)
    count = max(1, math.ceil(total / shard_bytes)) if total else 0
    names = [f"group1-shard{k + 1}of{count}.bin" for k in range(count)]
    if not names:
        return []
    index, room = 0, shard_bytes
    half = max(1, min(shard_bytes, total) // 2) if faults.armed("shard") else None  # of the first shard (faults.py)
    with contextlib.ExitStack() as files, progress.task("tfjs weight shards", total, "B") as advance:
        out = files.enter_context(open(out_dir / names[0], "wb"))  # one shard open at a time
        for e in entries:
            data = memoryview(e.array(read)).cast("B")
            at = 0
            while at < len(data):
                if room == 0:
                    out.close()
                    index += 1
                    out = files.enter_context(open(out_dir / names[index], "wb"))
                    room = shard_bytes
                n = min(room, len(data) - at)
                if half is not None:  # a kill with half of the first shard on disk
                    n = min(n, half - (shard_bytes - room))
                out.write(data[at:at + n])
                at, room = at + n, room - n
                if half is not None and shard_bytes - room >= half:
                    out.flush()
                    os.fsync(out.fileno())
                    faults.fault("shard")
            advance(len(data))
            del data
    if index != count - 1:
        raise ExportError(f"wrote {index + 1} shards, expected {count}")
    return names


# ---------------------------------------------------------------- reading variables one at a time


class _VariableReader:
    """A SavedModel variable's value by its name, read alone from the ``variables/`` bundle.

    The bundle is keyed by object path (``model/h/0/.../.ATTRIBUTES/VARIABLE_VALUE``). The SavedModel's
    object graph and the bundle's object graph number their nodes alike (TF's loader restores by that
    number), so a variable's name (SavedVariable.name) leads to its node and the node to its key.
    """

    def __init__(self, saved_model_dir: Path):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2, trackable_object_graph_pb2

        prefix = str(Path(saved_model_dir) / "variables" / "variables")
        self.reader = tf.train.load_checkpoint(prefix)
        saved = saved_model_pb2.SavedModel()
        saved.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
        objects = saved.meta_graphs[0].object_graph_def
        ckpt_graph = trackable_object_graph_pb2.TrackableObjectGraph()
        ckpt_graph.ParseFromString(self.reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
        self.keys: dict[str, str] = {}
        dup = set()
        for i, node in enumerate(objects.nodes):
            if node.WhichOneof("kind") != "variable" or i >= len(ckpt_graph.nodes):
                continue
            attrs = [a.checkpoint_key for a in ckpt_graph.nodes[i].attributes if a.name == "VARIABLE_VALUE"]
            if attrs:
                name = node.variable.name.split(":")[0]
                if name in self.keys:
                    dup.add(name)
                self.keys[name] = attrs[0]
        for name in dup:  # ambiguous by name: refuse rather than guess
            self.keys[name] = None

    def read(self, name: str) -> np.ndarray:
        key = self.keys.get(name)
        if key is None:
            raise NotStreamable(f"variable {name!r} is not (or not uniquely) in the SavedModel's variables bundle")
        return self.reader.get_tensor(key)


# ---------------------------------------------------------------- pieces shared with the converter's output


def _node_maps(saved_model_dir: Path, signature: str, fn) -> dict:
    """The {"input_nodes", "output_nodes"} maps bridge.export.tfjs writes, from the weightless function."""
    from . import tfjs

    meta_graph = tfjs._serving_meta_graph(Path(saved_model_dir))
    sig = meta_graph.signature_def[signature]
    call_op, out_index = tfjs._call_outputs(sig)
    in_index = tfjs._call_input_index(meta_graph.graph_def, call_op, sig)
    return {"input_nodes": {k: tfjs._checked(fn.inputs[i], sig.inputs[k], k) for k, i in sorted(in_index.items())},
            "output_nodes": {k: tfjs._checked(fn.outputs[i], sig.outputs[k], k)
                             for k, i in sorted(out_index.items())}}


def _converted_by() -> str:
    from tensorflowjs.converters import common

    return common.get_converted_by()


def _message_to_dict(message) -> dict:
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(message)
