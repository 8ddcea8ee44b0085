"""bridge.checkpoint: safe reading, unwrapping, casting, refusals, and `bridge inspect` data."""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import pickle
import random

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import save_file

from bridge.checkpoint import (
    Checkpoint,
    inspect_checkpoint,
    load_checkpoint,
    normalize_state_dict,
    render_inspect,
)
from bridge.errors import CheckpointError, NonFiniteWeightsError, UnsafeCheckpointError


def small_state_dict() -> dict[str, torch.Tensor]:
    return {
        "fc.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4,
        "fc.bias": torch.tensor([0.5, -0.25]),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
    }


def assert_same_tensors(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key], value), key


# --------------------------------------------------------------------------- malicious pickles


class SystemPayload:
    """Unpickling this runs `touch marker` through os.system."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class OpenPayload:
    """Unpickling this creates the marker file through builtins.open."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def write_torch_zip(path, obj):
    torch.save(obj, path)


def write_torch_legacy(path, obj):
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def pickle_writer(protocol):
    def write(path, obj):
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=protocol)
    return write


WRITERS = {
    "torch-zip": write_torch_zip,
    "torch-legacy": write_torch_legacy,
    "pickle-p0": pickle_writer(0),
    "pickle-p2": pickle_writer(2),
    "pickle-default": pickle_writer(pickle.DEFAULT_PROTOCOL),
}
PAYLOADS = {"os.system": SystemPayload, "builtins.open": OpenPayload}


def test_payloads_are_live_when_unpickled_unsafely(tmp_path):
    # Control: plain pickle.loads really does run both payloads, so the marker checks below mean something.
    for name, payload in PAYLOADS.items():
        marker = tmp_path / f"ran-{name}"
        result = pickle.loads(pickle.dumps(payload(marker)))
        if hasattr(result, "close"):
            result.close()
        assert marker.exists(), name


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "inside-state-dict"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, writer, payload, wrapped):
    marker = tmp_path / "PWNED"
    evil = PAYLOADS[payload](marker)
    obj = {"fc.weight": torch.ones(2, 2), "extra": evil} if wrapped else evil
    path = tmp_path / "evil.pt"
    WRITERS[writer](path, obj)

    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)

    message = str(info.value)
    assert str(path) in message
    assert "refused" in message and "import or call code" in message
    assert "state_dict" in message and "safetensors" in message
    assert info.value.to_dict()["code"] == "unsafe_checkpoint"
    # The import the pickle asked for is named: posix.system / builtins.open (or io.open).
    assert any(name.endswith((".system", ".open")) for name in info.value.details["imports"])
    assert not marker.exists()


def test_inspect_refuses_malicious_pickle_too(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.bin"
    torch.save({"w": torch.ones(1), "x": SystemPayload(marker)}, path)
    with pytest.raises(UnsafeCheckpointError):
        inspect_checkpoint(path)
    assert not marker.exists()


def test_whole_pickled_module_says_save_state_dict(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU()), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "torch.save(model)" in message and "model.state_dict()" in message
    assert "torch.nn.modules.container.Sequential" in info.value.details["imports"]


def test_plain_pickle_dump_of_tensors_is_refused(tmp_path):
    # pickle.dump of tensors rebuilds storages via torch.storage._load_from_bytes, which is an
    # unrestricted torch.load: refused like any other code import.
    path = tmp_path / "weights.pkl"
    with open(path, "wb") as f:
        pickle.dump(small_state_dict(), f)
    with pytest.raises(UnsafeCheckpointError, match="pickle.dump of tensors"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- corrupt / wrong files


def test_missing_path_lists_checkpoints_nearby(tmp_path):
    torch.save(small_state_dict(), tmp_path / "real.pt")
    missing = tmp_path / "typo.pt"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(missing)
    assert f"checkpoint not found: {missing}" in str(info.value)
    assert "real.pt" in str(info.value)


def test_directory_lists_checkpoint_files(tmp_path):
    folder = tmp_path / "hf_model"
    folder.mkdir()
    save_file(small_state_dict(), folder / "model.safetensors")
    (folder / "config.json").write_text("{}")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    assert f"{folder} is a directory" in str(info.value)
    assert "model.safetensors" in str(info.value) and "config.json" not in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\)") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_zip(tmp_path, keep):
    path = tmp_path / "cut.pt"
    torch.save({"w": torch.zeros(1000)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="truncated or corrupt zip") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_truncated_legacy_file(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save({"w": torch.zeros(1000)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_checkpoint(path)
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert str(path) in str(info.value)


def test_pickle_without_torch_header(tmp_path):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="pickle that torch.save did not write") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_whitespace_only_text_file(tmp_path):
    path = tmp_path / "blank.pt"
    path.write_text("   \n")
    with pytest.raises(CheckpointError, match="is a text file") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_random_garbage(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes([0x13]) + random.Random(0).randbytes(8191))
    with pytest.raises(CheckpointError, match="match no known checkpoint format") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "13 " in str(info.value)  # the first bytes, in hex


def test_json_file(tmp_path):
    path = tmp_path / "config.pt"
    path.write_text(json.dumps({"hidden_size": 64, "num_layers": 2}))
    with pytest.raises(CheckpointError, match="JSON/text file") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "hidden_size" in str(info.value)


def test_git_lfs_pointer(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 1234\n")
    with pytest.raises(CheckpointError, match="git lfs pull"):
        load_checkpoint(path)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_archive(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(CheckpointError, match="TorchScript archive") as info:
        load_checkpoint(path)
    assert "state_dict()" in str(info.value)


def test_zip_that_is_not_torch(tmp_path):
    path = tmp_path / "arrays.pt"
    with open(path, "wb") as f:
        np.savez(f, w=np.ones(3))
    with pytest.raises(CheckpointError, match="not a torch.save checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "obj, expected",
    [
        ([torch.ones(2), torch.zeros(2)], "holds a list"),
        (torch.ones(3), "single tensor"),
        (42, "holds a int"),
    ],
    ids=["list", "tensor", "int"],
)
def test_top_level_not_a_dict(tmp_path, obj, expected):
    path = tmp_path / "odd.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=expected) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "state_dict()" in str(info.value)


def test_dict_without_tensors(tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1, "model": {"name": "resnet"}}, path)
    with pytest.raises(CheckpointError, match="holds no tensors") as info:
        load_checkpoint(path)
    assert "'epoch' (int)" in str(info.value) and "'model' (dict)" in str(info.value)


def test_in_memory_module_is_rejected():
    with pytest.raises(CheckpointError, match=r"whole model \(Linear\).*model.state_dict\(\)"):
        normalize_state_dict(torch.nn.Linear(2, 2), "mine")


def test_complex_tensor_is_rejected():
    with pytest.raises(CheckpointError, match=r"z \(complex\)"):
        normalize_state_dict({"z": torch.ones(2, dtype=torch.complex64)}, "mine")


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_plain_torch_state_dict(tmp_path, legacy):
    path = tmp_path / "plain.pth"
    torch.save(small_state_dict(), path, _use_new_zipfile_serialization=not legacy)
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint)
    assert ckpt.format == ("torch-legacy" if legacy else "torch-zip")
    assert ckpt.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ckpt.unwrapped == () and ckpt.casts == () and ckpt.notes() == []
    assert_same_tensors(ckpt.state_dict, small_state_dict())


def test_safetensors_round_trip(tmp_path):
    original = small_state_dict() | {"emb": torch.tensor([[1.0, 2.0]], dtype=torch.float16)}
    path = tmp_path / "model.safetensors"
    save_file(original, path)
    ckpt = load_checkpoint(path)
    assert ckpt.format == "safetensors"
    assert ckpt.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ckpt.casts == (("emb", "float16"),)
    expected = small_state_dict() | {"emb": torch.tensor([[1.0, 2.0]])}
    assert_same_tensors(dict(sorted(ckpt.state_dict.items())), dict(sorted(expected.items())))


def test_safetensors_named_pt(tmp_path):
    path = tmp_path / "model.pt"
    save_file(small_state_dict(), path)
    ckpt = load_checkpoint(path)
    assert ckpt.format == "safetensors"
    assert_same_tensors(dict(sorted(ckpt.state_dict.items())), dict(sorted(small_state_dict().items())))


def test_torch_zip_named_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save(small_state_dict(), path)
    ckpt = load_checkpoint(path)
    assert ckpt.format == "torch-zip"
    assert_same_tensors(ckpt.state_dict, small_state_dict())


def test_truncated_safetensors_header(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(small_state_dict(), path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="truncated safetensors") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_truncated_safetensors_data(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt safetensors") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- unwrapping


WRAPPED = {
    "state_dict": (lambda sd: {"state_dict": sd, "epoch": 3, "optimizer": {"lr": 0.1}}, "under 'state_dict'"),
    "model": (lambda sd: {"model": sd}, "under 'model'"),
    "model_state_dict": (lambda sd: {"model_state_dict": sd, "epoch": 1}, "under 'model_state_dict'"),
    "nested": (lambda sd: {"model": {"state_dict": sd, "step": 9}, "epoch": 2}, "under 'model' -> 'state_dict'"),
    "module": (lambda sd: {f"module.{k}": v for k, v in sd.items()}, "prefix 'module.' stripped"),
    "compiled": (lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()}, "prefix '_orig_mod.' stripped"),
}


@pytest.mark.parametrize("kind", sorted(WRAPPED))
def test_wrappers_are_unwrapped_and_reported(tmp_path, kind):
    wrap, note = WRAPPED[kind]
    path = tmp_path / f"{kind}.pt"
    torch.save(wrap(small_state_dict()), path)
    ckpt = load_checkpoint(path)
    assert note in ckpt.unwrapped
    assert note in ckpt.notes()
    assert_same_tensors(ckpt.state_dict, small_state_dict())


def test_ignored_entries_are_named():
    wrapped = {"state_dict": small_state_dict(), "epoch": 3, "optimizer": {"lr": 0.1}}
    _, unwrapped, _ = normalize_state_dict(wrapped, "mem")
    assert unwrapped == ("under 'state_dict'", "ignored 2 non-tensor entries: epoch (int), optimizer (dict)")


def test_nested_wrapper_names_entries_at_each_level():
    wrapped = {"model": {"state_dict": small_state_dict(), "step": 9}, "epoch": 2}
    _, unwrapped, _ = normalize_state_dict(wrapped, "mem")
    assert unwrapped == ("under 'model' -> 'state_dict'", "ignored 2 non-tensor entries: epoch (int), model/step (int)")


def test_ddp_checkpoint_under_state_dict():
    sd = {f"module.{k}": v for k, v in small_state_dict().items()}
    state_dict, unwrapped, _ = normalize_state_dict({"state_dict": sd, "epoch": 1}, "mem")
    assert unwrapped[0] == "under 'state_dict'" and unwrapped[-1] == "prefix 'module.' stripped"
    assert_same_tensors(state_dict, small_state_dict())


def test_prefix_on_some_keys_only_is_kept():
    sd = {"module.a": torch.ones(1), "b": torch.ones(1)}
    state_dict, unwrapped, _ = normalize_state_dict(sd, "mem")
    assert list(state_dict) == ["module.a", "b"] and unwrapped == ()


# --------------------------------------------------------------------------- casting


def test_half_bfloat_double_cast_to_float32(tmp_path):
    half = torch.tensor([0.5, -1.25, 3.0, 1024.0], dtype=torch.float16)
    bf16 = torch.tensor([0.5, -1.5, 3.0, 256.0], dtype=torch.bfloat16)
    f64 = torch.tensor([0.1, 1e-3], dtype=torch.float64)
    path = tmp_path / "mixed.pt"
    torch.save({"h1": half, "h2": half * 2, "b": bf16, "d": f64, "steps": torch.tensor(5),
                "mask": torch.tensor([True, False])}, path)
    ckpt = load_checkpoint(path)

    assert ckpt.casts == (("h1", "float16"), ("h2", "float16"), ("b", "bfloat16"), ("d", "float64"))
    assert all(ckpt.state_dict[k].dtype == torch.float32 for k in ("h1", "h2", "b", "d"))
    assert torch.equal(ckpt.state_dict["h1"], torch.tensor([0.5, -1.25, 3.0, 1024.0]))
    assert torch.equal(ckpt.state_dict["h2"], torch.tensor([1.0, -2.5, 6.0, 2048.0]))
    assert torch.equal(ckpt.state_dict["b"], torch.tensor([0.5, -1.5, 3.0, 256.0]))
    assert torch.equal(ckpt.state_dict["d"], torch.tensor([0.1, 1e-3], dtype=torch.float32))
    assert ckpt.state_dict["steps"].dtype == torch.int64 and int(ckpt.state_dict["steps"]) == 5
    assert ckpt.state_dict["mask"].dtype == torch.bool
    assert ckpt.notes() == ["2 tensors cast from float16 to float32", "1 tensor cast from bfloat16 to float32",
                            "1 tensor cast from float64 to float32"]


# --------------------------------------------------------------------------- non-finite


def test_nonfinite_refused_with_every_key(tmp_path):
    path = tmp_path / "diverged.pt"
    torch.save({
        "ok": torch.ones(4),
        "a.weight": torch.tensor([1.0, float("nan"), float("nan"), 2.0]),
        "b.bias": torch.tensor([float("inf"), 0.0, float("-inf")], dtype=torch.float16),
        "count": torch.tensor(3),
    }, path)
    with pytest.raises(NonFiniteWeightsError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "2 tensor(s)" in message
    assert "a.weight: 2 of 4 values non-finite (2 NaN, 0 Inf)" in message
    assert "b.bias: 2 of 3 values non-finite (0 NaN, 2 Inf)" in message
    assert "ok:" not in message
    assert [d["key"] for d in info.value.details["tensors"]] == ["a.weight", "b.bias"]

    ckpt = load_checkpoint(path, allow_nonfinite=True)
    assert int(torch.isnan(ckpt.state_dict["a.weight"]).sum()) == 2
    assert int(torch.isinf(ckpt.state_dict["b.bias"]).sum()) == 2


def test_float64_overflow_is_explained(tmp_path):
    path = tmp_path / "big.pt"
    torch.save({"w": torch.tensor([1e300, 1.0], dtype=torch.float64)}, path)
    with pytest.raises(NonFiniteWeightsError, match="w: 1 of 2 values non-finite.*beyond float32 range"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- inspect


def inspect_fixture(path):
    sd = {
        "backbone.conv.weight": torch.ones(8, 3, 3, 3, dtype=torch.float16),
        "backbone.conv.bias": torch.zeros(8),
        "backbone.bn.running_mean": torch.zeros(8),
        "backbone.bn.num_batches_tracked": torch.tensor(10),
        "head.weight": torch.ones(10, 8, dtype=torch.bfloat16),
        "head.bias": torch.zeros(10),
    }
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 4}, path)
    return sd


def test_inspect_numbers(tmp_path):
    path = tmp_path / "net.pt"
    sd = inspect_fixture(path)
    info = inspect_checkpoint(path)

    floating = [t for t in sd.values() if t.is_floating_point()]
    assert info["parameter_count"] == sum(t.numel() for t in floating) == 216 + 8 + 8 + 80 + 10
    assert info["total_bytes"] == sum(t.numel() * t.element_size() for t in sd.values())
    assert info["tensor_count"] == 6
    assert info["format"] == "torch-zip"
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["file_bytes"] == path.stat().st_size
    rows = {t["key"]: t for t in info["tensors"]}
    assert list(rows) == list(sd)
    assert rows["backbone.conv.weight"]["shape"] == [8, 3, 3, 3]
    assert rows["backbone.conv.weight"]["dtype"] == "float16"
    assert rows["head.weight"]["dtype"] == "bfloat16"
    assert rows["backbone.bn.num_batches_tracked"]["dtype"] == "int64"
    assert info["prefixes"] == [{"prefix": "backbone.", "keys": 4}, {"prefix": "head.", "keys": 2}]
    assert info["common_prefix"] == ""
    assert info["unwrapped"] == ["under 'model'", "ignored 1 non-tensor entry: epoch (int)",
                                 "prefix 'module.' stripped"]
    assert "1 tensor cast from float16 to float32" in info["notes"]
    assert info["nonfinite"] == []
    json.dumps(info)  # JSON-ready for --json output


def test_inspect_common_prefix_and_nonfinite_reported(tmp_path):
    path = tmp_path / "net.safetensors"
    save_file({"model.enc.w": torch.tensor([float("nan"), 1.0]), "model.dec.w": torch.ones(2)}, path)
    info = inspect_checkpoint(path)
    assert info["common_prefix"] == "model."
    assert info["nonfinite"] == [{"key": "model.enc.w", "nan": 1, "inf": 0, "numel": 2}]


def test_render_inspect_lists_every_key(tmp_path):
    path = tmp_path / "net.pt"
    sd = inspect_fixture(path)
    info = inspect_checkpoint(path)
    console = Console(file=io.StringIO(), width=200, record=True)
    render_inspect(info, console)
    text = console.export_text()
    for key in sd:
        assert key in text
    assert "(8, 3, 3, 3)" in text and "float16" in text and "216" in text
    assert "6 tensors, 322 parameters" in text
    assert "prefix 'module.' stripped" in text


# --------------------------------------------------------------------------- sharded checkpoints


def write_shards(folder, sd: dict, n: int, kind: str) -> str:
    """``sd`` split into n shards the way transformers saves them; returns the index file name."""
    keys = list(sd)
    parts = [keys[i::n] for i in range(n)]
    ext, index = ("safetensors", "model.safetensors.index.json") if kind == "safetensors" else (
        "bin", "pytorch_model.bin.index.json")
    weight_map = {}
    for i, part in enumerate(parts):
        name = f"model-{i + 1:05d}-of-{n:05d}.{ext}" if kind == "safetensors" else \
            f"pytorch_model-{i + 1:05d}-of-{n:05d}.bin"
        shard = {k: sd[k].contiguous() for k in part}
        save_file(shard, str(folder / name)) if kind == "safetensors" else torch.save(shard, folder / name)
        weight_map.update({k: name for k in part})
    (folder / index).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return index


@pytest.mark.parametrize("kind", ["safetensors", "bin"])
def test_a_sharded_checkpoint_loads_as_one(tmp_path, kind):
    sd = small_state_dict()
    index = write_shards(tmp_path, sd, 3, kind)
    by_index = load_checkpoint(tmp_path / index)
    assert_same_tensors(by_index.state_dict, {k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
    assert by_index.format == ("sharded-safetensors" if kind == "safetensors" else "sharded-torch-zip")
    assert by_index.notes()[0] == f"3 shards read through {index}" and len(by_index.sha256) == 64
    by_folder = load_checkpoint(tmp_path)  # the folder that holds the index
    assert by_folder.sha256 == by_index.sha256 and set(by_folder.state_dict) == set(sd)


def test_sharded_checkpoint_problems_are_named(tmp_path):
    sd = small_state_dict()
    index = tmp_path / write_shards(tmp_path, sd, 2, "safetensors")
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        load_checkpoint(index)
    write_shards(tmp_path, sd, 2, "safetensors")
    data = json.loads(index.read_text())
    key = next(iter(data["weight_map"]))
    other = "model-00002-of-00002.safetensors" if data["weight_map"][key].startswith("model-00001") else \
        "model-00001-of-00002.safetensors"
    data["weight_map"][key] = other
    index.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="not in the shard the index names"):
        load_checkpoint(index)
    index.write_text("{}")
    with pytest.raises(CheckpointError, match="not a shard index"):
        load_checkpoint(index)


def test_convert_reads_a_sharded_checkpoint(tmp_path):
    """The CLI takes the index as --weights, and the report names the sharded format."""
    from bridge.cli import main

    from conftest import ROOT

    sd = torch.load(ROOT / "models" / "two_layer" / "two_layer.pt", weights_only=True)
    write_shards(tmp_path, sd, 2, "safetensors")
    out = tmp_path / "out"
    assert main(["convert", str(ROOT / "models" / "two_layer" / "model.py") + ":TwoLayer",
                 "--kwargs", json.dumps(json.loads((ROOT / "models" / "two_layer" / "bridge.json").read_text())
                                        .get("kwargs", {})),
                 "--weights", str(tmp_path / "model.safetensors.index.json"), "--input", "1x3",
                 "--out", str(out), "--no-tfjs"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["checkpoint"]["format"] == "sharded-safetensors" and report["parity"]["ok"]
