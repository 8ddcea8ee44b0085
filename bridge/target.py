"""What the user asked to convert: an import spec or a models/ folder, its
constructor kwargs, its checkpoint and its input shapes.

``module:attr`` imports a module; ``path/to/file.py:Class`` loads a file; a
folder with a ``bridge.json`` manifest names all of that itself (see models/).
Every mistake becomes one clear ``BadInputError`` line.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import BadInputError
from .preprocess import from_manifest as processing_from_manifest

_DTYPES = {"float32": torch.float32, "float": torch.float32, "float16": torch.float16, "float64": torch.float64,
           "int64": torch.int64, "long": torch.int64, "int32": torch.int32, "int": torch.int32, "bool": torch.bool}


@dataclass(frozen=True)
class InputSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    high: int = 2  # integer inputs are drawn from [0, high)
    name: str | None = None

    def example(self, gen: torch.Generator) -> torch.Tensor:
        if self.dtype.is_floating_point:
            return torch.randn(self.shape, generator=gen).to(self.dtype)
        if self.dtype == torch.bool:
            return torch.randint(0, 2, self.shape, generator=gen).bool()
        return torch.randint(0, self.high, self.shape, generator=gen, dtype=self.dtype)


def parse_input(text: str) -> InputSpec:
    """'1x3x64x64', '1x3x64x64:float32' or '2x16:int64:1000' (ids drawn from [0, 1000))."""
    parts = text.strip().split(":")
    if not re.fullmatch(r"\d+(x\d+)*", parts[0] or "-"):
        raise BadInputError(f"bad --input {text!r}: expected a shape like 1x3x64x64, optionally :dtype[:high]")
    shape = tuple(int(p) for p in parts[0].split("x"))
    if any(n == 0 for n in shape):
        raise BadInputError(f"bad --input {text!r}: sizes must be positive")
    dtype = torch.float32
    if len(parts) > 1:
        if parts[1] not in _DTYPES:
            raise BadInputError(f"bad --input {text!r}: unknown dtype {parts[1]!r} (one of {', '.join(_DTYPES)})")
        dtype = _DTYPES[parts[1]]
    high = 2
    if len(parts) > 2:
        if not parts[2].isdigit() or int(parts[2]) < 1:
            raise BadInputError(f"bad --input {text!r}: the id range must be a positive integer")
        high = int(parts[2])
    if len(parts) > 3:
        raise BadInputError(f"bad --input {text!r}: too many ':' parts")
    return InputSpec(shape, dtype, high)


@dataclass
class Target:
    module_class: type
    kwargs: dict = field(default_factory=dict)
    weights: Path | None = None
    inputs: list[InputSpec] = field(default_factory=list)
    name: str = "model"
    origin: str = ""
    parity_inputs: Path | None = None  # an .npz of real inputs to check besides the random ones
    processing: object = None  # preprocess.Processing from the manifest's "preprocess"/"postprocess" keys


def load_class(spec: str, base: Path | None = None) -> type:
    """Import ``module:attr`` or ``file.py:Attr`` (relative to ``base`` for manifests)."""
    if ":" not in spec:
        raise BadInputError(f"bad module spec {spec!r}: expected package.module:Class or path/to/file.py:Class")
    where, _, attr = spec.rpartition(":")
    if where.endswith(".py"):
        path = (base / where if base else Path(where)).resolve()
        if not path.is_file():
            raise BadInputError(f"bad module spec {spec!r}: file {path} not found")
        module = _import_file(path)
    else:
        sys.path.insert(0, str(base or Path.cwd()))
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise BadInputError(f"bad module spec {spec!r}: cannot import {where!r} ({exc})") from None
        finally:
            sys.path.pop(0)
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise BadInputError(f"bad module spec {spec!r}: {where!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)) and not callable(obj):
        raise BadInputError(f"bad module spec {spec!r}: {attr!r} is not an nn.Module class or factory")
    return obj


def _import_file(path: Path):
    name = f"bridge_user_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))  # the file may import its siblings
    try:
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise BadInputError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.pop(0)
    return module


def parse_kwargs(text: str | None) -> dict:
    """Constructor kwargs as JSON text, or @file.json."""
    if not text:
        return {}
    raw = text
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise BadInputError(f"--kwargs file {path} not found")
        raw = path.read_text()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"--kwargs is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(value, dict):
        raise BadInputError("--kwargs must be a JSON object, e.g. '{\"width\": 64}'")
    return value


def from_manifest(folder: Path) -> Target:
    manifest = folder / "bridge.json"
    if not manifest.is_file():
        raise BadInputError(f"{folder} is a folder without a bridge.json manifest; pass module:Class instead")
    try:
        data = json.loads(manifest.read_text())
        spec = data["module"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise BadInputError(f"{manifest} is not a valid manifest: {exc}") from None
    inputs = [InputSpec(tuple(i["shape"]), _DTYPES[i.get("dtype", "float32")], int(i.get("high", 2)), i.get("name"))
              for i in data.get("inputs", [])]
    weights = folder / data["weights"] if data.get("weights") else None
    parity = folder / data["parity_inputs"] if data.get("parity_inputs") else None
    processing = processing_from_manifest(data, manifest)
    return Target(load_class(spec, folder), data.get("kwargs", {}), weights, inputs, folder.name,
                  f"{folder}/{spec}", parity, processing)


def resolve(target: str, *, weights: str | None, inputs: list[str], kwargs: str | None) -> Target:
    """The CLI's TARGET plus options -> Target; options override the manifest's values."""
    path = Path(target)
    if path.is_dir():
        t = from_manifest(path)
    elif ":" in target:
        cls = load_class(target)
        t = Target(cls, name=getattr(cls, "__name__", "model").lower(), origin=target)
    else:
        raise BadInputError(f"{target!r} is neither a folder with bridge.json nor a module:Class spec")
    if kwargs is not None:
        t.kwargs = parse_kwargs(kwargs)
    if weights is not None:
        t.weights = Path(weights)
    if inputs:
        t.inputs = [parse_input(s) for s in inputs]
    if not t.inputs:
        raise BadInputError("no input shape: pass --input, e.g. --input 1x3x64x64")
    return t


def instantiate(t: Target) -> torch.nn.Module:
    try:
        module = t.module_class(**t.kwargs)
    except TypeError as exc:
        raise BadInputError(f"constructing {t.origin} failed: {exc} (check --kwargs)") from None
    if not isinstance(module, torch.nn.Module):
        raise BadInputError(f"{t.origin} did not produce an nn.Module (got {type(module).__name__})")
    return module


def load_npz_inputs(path, names: list[str], examples: tuple) -> list[tuple]:
    """User parity inputs: arrays keyed by input name (or arr_0, arr_1, ...), with a leading batch dim."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"--inputs file {p} not found")
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise BadInputError(f"--inputs {p} is not a readable .npz file ({exc})") from None
    arrays = []
    for i, (name, ex) in enumerate(zip(names, examples)):
        key = name if name in data else f"arr_{i}" if f"arr_{i}" in data else None
        if key is None and len(names) == 1 and len(data.files) == 1:
            key = data.files[0]
        if key is None:
            raise BadInputError(f"--inputs {p} has no array for input {name!r} (keys: {', '.join(data.files)})")
        a = data[key]
        if tuple(a.shape[1:]) != tuple(ex.shape[1:]):
            raise BadInputError(f"--inputs {p}[{key}] has shape {list(a.shape)}; expected [batch, "
                                f"{', '.join(map(str, ex.shape[1:]))}]")
        arrays.append(torch.from_numpy(np.ascontiguousarray(a)).to(ex.dtype))
    return [tuple(arrays)]
