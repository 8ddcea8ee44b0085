"""Large-model paths (issue 8) on small models: the streamed tfjs writer against the converter, checkpoints
mapped instead of read, the SavedModel verified with one copy at a time.

The real large runs (GPT-2-medium, 355M parameters) are benchmarks, not tests: scripts/memory_breakdown.py
prints the memory per pipeline step and scripts/compare_tfjs_stream.py the two tfjs writers side by side.
Tests that need node skip without it, except under CI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch
from torch import nn

import bridge
from bridge.checkpoint import _map_safetensors, load_checkpoint, page_out
from bridge.errors import BadInputError
from bridge.export import savedmodel, tfjs, tfjs_stream

TOL = 1e-5  # TF and tfjs float32 kernels differ by about 1e-6 on these sizes (TOOLCHAIN-NOTES)


class Table(tf.Module):
    """An embedding lookup (a ResourceGather of the variable) and a projection: int32 ids in."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.table = tf.Variable(rng.standard_normal((50, 16)).astype(np.float32), name="table")
        self.proj = tf.Variable(rng.standard_normal((16, 7)).astype(np.float32), name="proj")
        self.bias = tf.Variable(rng.standard_normal(7).astype(np.float32), name="bias")

    @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.int32, name="ids")])
    def __call__(self, ids):
        return {"y": tf.nn.relu(tf.matmul(tf.gather(self.table, ids), self.proj) + self.bias)}


class SmallCNN(nn.Module):
    """Conv + BatchNorm + ReLU twice, pooled, then a Linear: BatchNorm is what the converter folds."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, 5)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def _saved(tmp_path_factory, module: tf.Module, name: str) -> Path:
    """``module`` as a SavedModel whose serving signature is its ``__call__``."""
    out = tmp_path_factory.mktemp(name) / "saved_model"
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.__call__.get_concrete_function()})
    return out


@pytest.fixture(scope="module")
def table_saved(tmp_path_factory) -> Path:
    return _saved(tmp_path_factory, Table(), "table")


@pytest.fixture(scope="module")
def cnn_port():
    return bridge.convert(SmallCNN(), (torch.randn(1, 3, 12, 12),))


@pytest.fixture(scope="module")
def cnn_saved(tmp_path_factory, cnn_port) -> Path:
    out = tmp_path_factory.mktemp("cnn") / "saved_model"
    savedmodel.save_savedmodel(cnn_port, out)
    return out


def _both(saved: Path, tmp: Path, **stream_kwargs) -> tuple[dict, dict, Path, Path]:
    a = tfjs.convert_to_tfjs(saved, tmp / "converter", metadata={}, stream=False)
    b = tfjs_stream.convert_to_tfjs_streamed(saved, tmp / "streamed", metadata={}, **stream_kwargs)
    return a, b, tmp / "converter", tmp / "streamed"


def _weights(model_dir: Path) -> dict[str, np.ndarray]:
    """Every weight of a tfjs model by name, read back from the shards as tfjs would."""
    model = json.loads((model_dir / "model.json").read_text())
    out = {}
    for group in model["weightsManifest"]:
        data = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        at = 0
        for w in group["weights"]:
            dtype = np.dtype({"float32": "<f4", "int32": "<i4", "bool": "u1"}[w["dtype"]])
            n = int(np.prod(w["shape"], dtype=np.int64)) * dtype.itemsize
            out[w["name"]] = np.frombuffer(data[at:at + n], dtype=dtype).reshape(w["shape"])
            at += n
        assert at == len(data)
    return out


# ---------------------------------------------------------------- the streamed writer


def test_streamed_graph_and_weights_equal_the_converters_on_a_gather_model(table_saved, tmp_path):
    a, b, conv, stream = _both(table_saved, tmp_path, inline_bytes=0)  # every variable streamed
    assert b["writer"] == "streamed" and b["streamed_weights"] == 3
    assert a["op_counts"] == b["op_counts"] and a["weights_bytes"] == b["weights_bytes"]
    wa, wb = _weights(conv), _weights(stream)
    assert sorted(x.shape for x in wa.values()) == sorted(x.shape for x in wb.values())
    table = next(v for v in wb.values() if v.shape == (50, 16))
    np.testing.assert_array_equal(table, Table().table.numpy())  # the bytes are the variable's, exactly


def test_batchnorm_folds_as_in_the_converter_when_small_variables_are_inlined(cnn_saved, tmp_path):
    a, b, _, _ = _both(cnn_saved, tmp_path)  # default INLINE_BYTES: this model's variables are all small
    assert a["op_counts"] == b["op_counts"] and "Rsqrt" not in b["op_counts"]  # scale folded into a constant
    c = tfjs_stream.convert_to_tfjs_streamed(cnn_saved, tmp_path / "all", metadata={}, inline_bytes=0)
    assert c["op_counts"]["Rsqrt"] == 2  # every variable a placeholder: the BatchNorm math stays in the graph


def test_streamed_model_matches_the_converters_in_node(cnn_port, cnn_saved, tmp_path, node_or_skip):
    _, _, conv, stream = _both(cnn_saved, tmp_path, inline_bytes=0, shard_bytes=500)  # many small shards
    assert len(json.loads((stream / "model.json").read_text())["weightsManifest"][0]["paths"]) > 10
    x = np.random.default_rng(1).standard_normal((2, 3, 12, 12)).astype(np.float32)
    feeds = savedmodel.feeds_for(cnn_port, (torch.from_numpy(x),))
    got = tfjs.run_many_tfjs([(conv, feeds), (stream, feeds)], ("cpu", "wasm"))
    ref = cnn_port.torch_outputs((torch.from_numpy(x),))[0][1]
    for backend in ("cpu", "wasm"):
        (name, y_conv), = got[0][backend].items()
        y_stream = got[1][backend][name]
        assert np.max(np.abs(y_stream - ref)) <= TOL * max(1.0, float(np.max(np.abs(ref))))
        assert np.max(np.abs(y_stream - y_conv)) <= TOL


WEIGHT_STREAM_CHECK = """
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
const [io, jsDir, specsJson, ...shardFiles] = process.argv.slice(2);
const { weightStream } = await import(pathToFileURL(io).href);
const tf = createRequire(jsDir + '/package.json')('@tensorflow/tfjs');
const fs = await import('node:fs');
const specs = JSON.parse(specsJson);
const shards = Object.fromEntries(shardFiles.map((p) => [p, fs.readFileSync(p)]));
const read = async (p) => { const b = shards[p]; return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength); };
const all = Buffer.concat(shardFiles.map((p) => shards[p]));
const want = tf.io.decodeWeights(all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength), specs);
const got = await tf.io.decodeWeightsStream(weightStream(specs, shardFiles, read), specs);
const out = {};
for (const s of specs) out[s.name] = [Array.from(got[s.name].dataSync()), Array.from(want[s.name].dataSync()), got[s.name].shape];
const reader = weightStream(specs, shardFiles, read).getReader();
const chunks = [];
for (let r = await reader.read(); !r.done; r = await reader.read()) chunks.push(r.value.byteLength);
console.log(JSON.stringify({ out, chunks }));
"""


@pytest.mark.parametrize("shard_bytes", [3, 7, 64, 10_000])
def test_the_weight_stream_cuts_one_chunk_per_weight_across_any_shards(tmp_path, node_or_skip, shard_bytes):
    """tfjs_io.mjs's weightStream (what tfjs loads weights from, in Node and the page): weights that span
    shards, that end on a shard's edge, that are empty, and of every stored width decode as tfjs's
    whole-buffer decoder reads them."""
    import subprocess

    from bridge.export.exchange import JS_DIR, js_dir

    rng = np.random.default_rng(3)
    arrays = [("a", rng.standard_normal((3, 5)).astype("<f4")), ("empty", np.zeros((0, 4), "<f4")),
              ("ids", np.arange(-3, 6, dtype="<i4")), ("mask", np.array([1, 0, 1], np.uint8)),
              ("b", rng.standard_normal(9).astype("<f4")), ("last_empty", np.zeros((2, 0), "<f4"))]
    dtypes = {"float32": "float32", "int32": "int32", "uint8": "bool"}
    specs = [{"name": n, "shape": list(a.shape), "dtype": dtypes[a.dtype.name]} for n, a in arrays]
    data = b"".join(a.tobytes() for _, a in arrays)
    paths = []
    for k in range(0, len(data), shard_bytes):
        paths.append(str(tmp_path / f"shard{len(paths)}.bin"))
        Path(paths[-1]).write_bytes(data[k:k + shard_bytes])
    script = tmp_path / "check.mjs"
    script.write_text(WEIGHT_STREAM_CHECK)
    run = subprocess.run(["node", str(script), str(JS_DIR / "tfjs_io.mjs"), str(js_dir()), json.dumps(specs), *paths],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got.pop("chunks") == [a.nbytes for _, a in arrays if a.size]  # what keeps tfjs's decoder linear
    got = got["out"]
    for name, a in arrays:
        values, want, shape = got[name]
        assert shape == list(a.shape) and values == want == a.astype(np.float64).ravel().tolist()


class Reshaped(tf.Module):
    """A weight reshaped in the graph: a computation on a weight alone, which the converter folds and
    grappler cannot fold into its consumer (80 KB, above INLINE_BYTES: the streamed writer keeps it a
    placeholder). A Transpose before a MatMul would not do: grappler makes it the MatMul's transpose_b."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.arange(128 * 160, dtype=np.float32).reshape(128, 160) / 1e4, name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, 160], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.matmul(x, tf.reshape(self.w, [160, 128]))}


@pytest.fixture(scope="module")
def reshaped_saved(tmp_path_factory) -> Path:
    return _saved(tmp_path_factory, Reshaped(), "reshaped")


def test_convert_to_tfjs_streams_where_the_graph_is_the_converters(table_saved, reshaped_saved, tmp_path,
                                                                    monkeypatch):
    monkeypatch.delenv(tfjs_stream.ENV, raising=False)
    size = tfjs_stream.saved_model_weight_bytes(table_saved)
    assert size > 0
    assert tfjs_stream.mode(table_saved, threshold=size) == "stream"
    assert tfjs_stream.mode(table_saved, threshold=size + 1) == "prefer"
    assert tfjs_stream.mode(table_saved, quantization={"dtype": "uint8"}) is None
    assert tfjs_stream.mode(table_saved, stream=False) is None
    # below the threshold: streamed, since nothing in the graph computes on weights alone
    assert tfjs.convert_to_tfjs(table_saved, tmp_path / "a", metadata={}).get("writer") == "streamed"
    # a weight's Reshape: the converter folds it into a constant, so it writes this one
    b = tfjs.convert_to_tfjs(reshaped_saved, tmp_path / "b", metadata={})
    assert "writer" not in b and "Reshape" not in b["op_counts"]
    with pytest.raises(tfjs_stream.NotStreamable, match="computes on weights.*Reshape"):
        tfjs_stream.convert_to_tfjs_streamed(reshaped_saved, tmp_path / "c", metadata={}, same_graph=True)
    monkeypatch.setattr(tfjs_stream, "STREAM_ABOVE_BYTES", size)  # as if the model were past the 2 GB limit
    d = tfjs.convert_to_tfjs(reshaped_saved, tmp_path / "d", metadata={})
    assert d.get("writer") == "streamed" and d["op_counts"].get("Reshape") == 1  # streamed all the same
    monkeypatch.setenv(tfjs_stream.ENV, "0")
    assert "writer" not in tfjs.convert_to_tfjs(table_saved, tmp_path / "e", metadata={})
    monkeypatch.setenv(tfjs_stream.ENV, "1")
    assert tfjs_stream.wanted(table_saved)
    with pytest.raises(BadInputError):
        tfjs_stream.wanted(table_saved, quantization={"dtype": "uint8"})


class Wide(tf.Module):
    """One 1024 x 1024 float32 matmul: 4 MB of weight under a graph of a few hundred bytes."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal((1024, 1024), seed=(1, 2)), name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, 1024], tf.float32, name="x")])
    def __call__(self, x):
        return {"y": tf.matmul(x, self.w)}


def test_no_graph_holds_the_weights(tmp_path):
    """The graph handed to the converter's optimizer, and model.json, carry no weight bytes: what lets a
    model past protobuf's 2 GB convert (checked here without allocating 2 GB)."""
    module = Wide()
    saved = tmp_path / "saved_model"
    tf.saved_model.save(module, str(saved), signatures={"serving_default": module.__call__.get_concrete_function()})
    loaded = tf.saved_model.load(str(saved), options=tf.saved_model.LoadOptions(experimental_skip_checkpoint=True))
    graph_def, weights = tfjs_stream.weightless_graph(loaded.signatures["serving_default"])
    assert list(weights.values()) == ["w"] and all(n.op == "Placeholder" for n in graph_def.node if n.name in weights)
    assert tfjs_stream.saved_model_weight_bytes(saved) >= 4 * 2**20 and graph_def.ByteSize() < 20_000
    tfjs_stream.convert_to_tfjs_streamed(saved, tmp_path / "m", metadata={})
    model = json.loads((tmp_path / "m" / "model.json").read_text())
    assert len(json.dumps(model)) < 20_000 and len(model["weightsManifest"][0]["paths"]) == 1
    np.testing.assert_array_equal(_weights(tmp_path / "m")[model["weightsManifest"][0]["weights"][0]["name"]],
                                  module.w.numpy())


def test_shards_are_cut_at_the_size_given(tmp_path):
    entries = [tfjs_stream._Entry("a", [3, 5], np.float32, value=np.arange(15, dtype=np.float32).reshape(3, 5)),
               tfjs_stream._Entry("b", [7], np.int64, variable="v")]  # int64 written as int32, as tfjs reads it
    paths = tfjs_stream.write_shards(tmp_path, entries, lambda name: np.arange(7, dtype=np.int64), shard_bytes=16)
    assert paths == [f"group1-shard{k}of6.bin" for k in range(1, 7)]
    data = b"".join((tmp_path / p).read_bytes() for p in paths)
    assert [(tmp_path / p).stat().st_size for p in paths] == [16, 16, 16, 16, 16, 8]
    np.testing.assert_array_equal(np.frombuffer(data[:60], "<f4"), np.arange(15))
    np.testing.assert_array_equal(np.frombuffer(data[60:], "<i4"), np.arange(7))


# ---------------------------------------------------------------- checkpoints and the SavedModel check


def test_safetensors_load_is_a_map_of_the_file(tmp_path):
    from safetensors.torch import save_file

    state = {"w": torch.randn(64, 32), "b": torch.randn(32).half(), "n": torch.arange(5)}
    save_file(state, str(tmp_path / "m.safetensors"))
    mapped = _map_safetensors(tmp_path / "m.safetensors")
    assert mapped is not None
    for key, t in state.items():
        assert torch.equal(mapped[key], t)
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.state_dict["b"].dtype == torch.float32 and torch.equal(ckpt.state_dict["w"], state["w"])


def test_a_misaligned_safetensors_tensor_is_copied_out(tmp_path):
    value = np.arange(6, dtype="<f4")
    header = json.dumps({"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [1, 25]}}).encode()
    (tmp_path / "odd.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0"
                                               + value.tobytes())
    got = _map_safetensors(tmp_path / "odd.safetensors")
    np.testing.assert_array_equal(got["x"].numpy(), value.reshape(2, 3))


def test_a_header_that_does_not_fit_the_file_is_left_to_the_library(tmp_path):
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}).encode()  # 16 bytes needed
    (tmp_path / "bad.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(12))
    assert _map_safetensors(tmp_path / "bad.safetensors") is None


def test_paging_a_checkpoint_out_keeps_every_value(tmp_path):
    """page_out (MADV_PAGEOUT) hands mapped pages back to the file; a written page and plain memory stay."""
    from safetensors.torch import save_file

    save_file({"w": torch.randn(256, 1024)}, str(tmp_path / "m.safetensors"))
    w = load_checkpoint(tmp_path / "m.safetensors").state_dict["w"]
    before = w.clone()
    w[3, 7] = 5.0  # a copy-on-write page of the map
    plain = torch.randn(256, 1024)
    kept = plain.clone()
    assert page_out([w, plain]) > 0
    before[3, 7] = 5.0
    assert torch.equal(w, before) and torch.equal(plain, kept)


def test_savedmodel_many_matches_one_at_a_time(cnn_port, cnn_saved):
    sets = [savedmodel.feeds_for(cnn_port, inputs) for inputs in cnn_port.parity_inputs()[:2]]
    many = savedmodel.run_savedmodel_many(cnn_saved, sets)
    for feeds, got in zip(sets, many):
        one = savedmodel.run_savedmodel(cnn_saved, feeds)
        assert one.keys() == got.keys() and all(np.array_equal(one[k], got[k]) for k in one)
