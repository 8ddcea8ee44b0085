"""Safe checkpoint reading: .pt / .pth / .bin (torch zip or legacy pickle) and .safetensors.

Nothing here ever runs code from a checkpoint. Torch files go through
``torch.load(..., weights_only=True)``, whose unpickler refuses any import it
does not know to be tensor data; safetensors files go through the
``safetensors`` library, which has no code path at all. When torch refuses a
pickle, the pickle is disassembled (parsed, never executed) only to name the
imports it asks for in the error message.

The format is found from the file's first bytes, not from its suffix:

    PK\\x03\\x04 ...                  torch-zip     torch.save (default since torch 1.6)
    \\x80 <protocol 2..5> ...        torch-legacy  torch.save(_use_new_zipfile_serialization=False), or a pickle
    <u64 n> {"...json header...}    safetensors   n = header length, little endian

A checkpoint split into shards is read as one: pass its index (``model.safetensors.index.json``,
``pytorch_model.bin.index.json``: ``{"weight_map": {key: shard file}}``) or the folder that holds
it. Every shard is read as above; a key in two shards, a shard the index names that is missing, or
a key the index names that its shard lacks is a CheckpointError naming it.

After reading, the object is normalized into a flat ``{key: tensor}`` dict:
wrappers such as ``{"epoch": 3, "state_dict": {...}}`` are unwrapped, a
``module.`` prefix (DataParallel / DDP) or ``_orig_mod.`` prefix
(torch.compile) common to every key is stripped, and floating tensors other
than float32 are cast to float32. Every such change is recorded, so the CLI
can say what it did.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bridge.errors import CheckpointError, NonFiniteWeightsError, UnsafeCheckpointError

FORMATS = ("torch-zip", "torch-legacy", "safetensors")

# Keys under which training scripts commonly nest the state_dict, most specific first.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# How many wrapper levels are followed: {"model": {"state_dict": {...}}} is two.
MAX_WRAPPER_DEPTH = 2
# Prefixes added by wrappers rather than by the model: DataParallel/DDP and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit on header size
_SNIFF_BYTES = 4096
_SNIFF_PICKLE_BYTES = 1 << 20  # how much of an unknown file is parsed to tell a pickle
_SCAN_BYTES = 64 << 20  # most bytes of a pickle parsed to name its imports (a bound on memory)
# What pickletools raises on bytes that are not (or no longer) pickle opcodes.
_PARSE_ERRORS = (ValueError, EOFError, OverflowError, struct.error)

# Imports that every torch.save file makes to rebuild tensors. They are only used to keep
# error messages short (so they name the imports that matter); safety is decided by torch.
_TENSOR_REBUILD_GLOBALS = re.compile(
    r"^(torch\._utils\._rebuild_\w+|torch\._tensor\._rebuild_from_type_v2|torch\.\w*Storage"
    r"|torch\.storage\.(Typed|Untyped)Storage|torch\.Size|torch\.device|torch\.dtype"
    r"|torch\.(b?float|u?int|bool|complex)\w*|collections\.OrderedDict|_codecs\.encode"
    r"|torch\.nn\.parameter\.Parameter"
    r"|(__builtin__|builtins)\.(set|frozenset|dict|list|tuple|int|float|bool|str|bytes|bytearray|slice))$"
)
_TORCH_NAMES_GLOBAL = re.compile(r"GLOBAL (\S+?)(?: was not an allowed| whose module|\s|$)")


@dataclass(frozen=True, eq=False)  # eq=False: comparing dicts of tensors elementwise is meaningless
class Checkpoint:
    path: Path
    format: str  # "torch-zip" | "torch-legacy" | "safetensors", or "sharded-<one of those>" (path: the index)
    sha256: str  # of the file bytes
    state_dict: dict[str, torch.Tensor]  # floating tensors are float32; integer and bool tensors kept
    unwrapped: tuple[str, ...]  # what was unwrapped, e.g. "under 'state_dict'", "prefix 'module.' stripped"
    casts: tuple[tuple[str, str], ...]  # (key, original dtype) for every floating tensor cast to float32

    def notes(self) -> list[str]:
        """One line per thing done to the file's contents: unwrapping, then casts by dtype."""
        return list(self.unwrapped) + cast_summary(self.casts)


def cast_summary(casts: tuple[tuple[str, str], ...]) -> list[str]:
    """``[("a", "float16"), ("b", "float16")]`` -> ``["2 tensors cast from float16 to float32"]``."""
    counts: dict[str, int] = {}
    for _, dtype in casts:
        counts[dtype] = counts.get(dtype, 0) + 1
    return [f"{n} {'tensor' if n == 1 else 'tensors'} cast from {d} to float32" for d, n in counts.items()]


# --------------------------------------------------------------------------- loading


def load_checkpoint(path: str | Path, *, allow_nonfinite: bool = False) -> Checkpoint:
    """Read a checkpoint file without running any code from it.

    Raises CheckpointError (the file is missing, not a checkpoint, corrupt, or holds no
    tensors), UnsafeCheckpointError (it would import or call code), NonFiniteWeightsError
    (NaN/Inf in a floating tensor, unless ``allow_nonfinite``).
    """
    index = _shard_index(Path(path).expanduser())
    if index is not None:
        return _load_sharded(index, allow_nonfinite)
    path = _existing_file(path)
    fmt = detect_format(path)
    raw = _read_file(path, fmt)
    state_dict, unwrapped, casts = normalize_state_dict(raw, str(path))
    if not allow_nonfinite:
        check_finite(state_dict, str(path), casts)
    return Checkpoint(path, fmt, file_sha256(path), state_dict, unwrapped, casts)


def _read_file(path: Path, fmt: str):
    return _read_safetensors(path) if fmt == "safetensors" else _read_torch(path, fmt)


INDEX_SUFFIX = ".index.json"


def _shard_index(path: Path) -> Path | None:
    """The index json of a sharded checkpoint: ``path`` itself, or the one index in folder ``path``."""
    if path.is_file() and path.name.endswith(INDEX_SUFFIX):
        return path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.name.endswith(INDEX_SUFFIX) and p.is_file())
        if len(found) > 1:
            raise CheckpointError(f"{path} holds several shard indexes ({', '.join(p.name for p in found)}); "
                                  "pass the one to load.", details={"path": str(path)})
        return found[0] if found else None
    return None


def _load_sharded(index: Path, allow_nonfinite: bool) -> Checkpoint:
    """All shards an index names, as one state_dict. The sha256 covers the index and every shard."""
    import json

    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map is not {key: file}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise _fail(index, f"is not a shard index ({type(e).__name__}: {e}).",
                    'Expected JSON with a "weight_map" of {key: shard file}.') from e
    shards = list(dict.fromkeys(weight_map.values()))
    missing = [name for name in shards if not (index.parent / name).is_file()]
    if missing:
        raise _fail(index, f"names shards that are not beside it: {', '.join(missing[:8])}.",
                    "Download or copy every shard into the same folder.")
    raw: dict[str, torch.Tensor] = {}
    where: dict[str, str] = {}
    digest, formats = hashlib.sha256(index.read_bytes()), set()
    for name in shards:
        shard = _existing_file(index.parent / name)
        fmt = detect_format(shard)
        formats.add(fmt)
        part = _read_file(shard, fmt)
        if not isinstance(part, Mapping):
            raise CheckpointError(f"{shard}: {_not_a_dict(part)}", details={"path": str(shard)})
        for key, value in part.items():
            if key in raw:
                raise _fail(index, f"key {key!r} is in two shards ({where[key]} and {name}).",
                            "Each key must be in exactly one shard.")
            raw[key], where[key] = value, name
        digest.update(file_sha256(shard).encode())
    lacking = [k for k, name in weight_map.items() if where.get(k) != name]
    if lacking:
        raise _fail(index, f"{len(lacking)} keys are not in the shard the index names, e.g. "
                    f"{lacking[0]!r} ({weight_map[lacking[0]]}).", "The index and the shards do not match.")
    state_dict, unwrapped, casts = normalize_state_dict(raw, str(index))
    extra = sorted(set(raw) - set(weight_map))
    notes = [f"{len(shards)} shards read through {index.name}"]
    if extra:
        notes.append(f"{len(extra)} keys in the shards are not in the index ({', '.join(extra[:4])})")
    if not allow_nonfinite:
        check_finite(state_dict, str(index), casts)
    fmt = "sharded-" + (formats.pop() if len(formats) == 1 else "mixed")
    return Checkpoint(index, fmt, digest.hexdigest(), state_dict, tuple(notes) + unwrapped, casts)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _existing_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        near = _checkpoints_in(path.parent) if path.parent.is_dir() else []
        hint = f" Checkpoint files in {path.parent}: {', '.join(near)}." if near else ""
        raise CheckpointError(f"checkpoint not found: {path}.{hint}", details={"path": str(path)})
    if path.is_dir():
        near = _checkpoints_in(path)
        hint = (f" It holds: {', '.join(near)}; pass one of those." if near
                else " It holds no .pt/.pth/.bin/.safetensors file.")
        raise CheckpointError(f"{path} is a directory, not a checkpoint file.{hint}", details={"path": str(path)})
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"{path} is empty (0 bytes); the save or download did not finish. Save or download it again.",
            details={"path": str(path)},
        )
    return path


def _checkpoints_in(folder: Path) -> list[str]:
    try:
        return sorted(p.name for p in folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())[:8]
    except OSError:  # only used for a hint; an unreadable folder just gives none
        return []


def _fail(path: Path, problem: str, fix: str, fmt: str | None = None) -> CheckpointError:
    details = {"path": str(path)} | ({"format": fmt} if fmt else {})
    return CheckpointError(f"{path}: {problem} {fix}", details=details)


# --------------------------------------------------------------------------- paging mapped weights out


MADV_PAGEOUT = 21  # linux >= 5.4; Python's mmap module does not name it


def page_out(tensors) -> int:
    """Ask the kernel to reclaim the resident pages of these tensors' storages now; returns the bytes asked.

    For a checkpoint read by ``load_checkpoint`` (a private map of the file, see ``_map_safetensors`` and the
    ``mmap=True`` torch load) the pages are the file's: they leave this process's RSS and come back from the
    file when torch next reads them. ``MADV_PAGEOUT`` never loses data: a page that was written (an anonymous
    copy) needs swap to be reclaimed and otherwise stays, and memory that was never a map of a file is left
    as it is. Does nothing (returns 0) where the call is not available.
    """
    import ctypes
    import mmap

    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    page, seen, asked = mmap.PAGESIZE, set(), 0
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
            continue
        storage = t.untyped_storage()
        start, size = storage.data_ptr(), storage.nbytes()
        if not size or start in seen:
            continue
        seen.add(start)
        begin, end = -(-start // page) * page, (start + size) // page * page  # whole pages inside the storage
        if end > begin and madvise(begin, end - begin, MADV_PAGEOUT) == 0:
            asked += end - begin
    return asked


# --------------------------------------------------------------------------- format sniffing


def detect_format(path: Path) -> str:
    """Return one of FORMATS from the file's first bytes, or raise CheckpointError saying what it is."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as e:
        raise _fail(path, f"cannot be read ({e.strerror}).", "Check its permissions.") from e
    size = path.stat().st_size
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if _safetensors_header_length(head) is not None:
        return _check_safetensors_size(path, head, size)
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "torch-legacy"  # a pickle stream; torch.save without the zip container writes these
    if len(head) > 262 and head[257:262] == b"ustar":
        return "torch-legacy"  # torch's oldest (tar) format, still read by torch.load
    if _is_low_protocol_pickle(path):
        return "torch-legacy"  # protocol 0/1 pickle: refused or read by the same safe unpickler
    raise _fail(path, _describe_unknown(head),
                "Expected a torch.save file (.pt/.pth/.bin) or a .safetensors file.")


def _safetensors_header_length(head: bytes) -> int | None:
    if len(head) < 9 or head[8:9] != b"{":
        return None
    n = int.from_bytes(head[:8], "little")
    return n if 2 <= n <= _SAFETENSORS_MAX_HEADER else None


def _check_safetensors_size(path: Path, head: bytes, size: int) -> str:
    n = _safetensors_header_length(head)
    if 8 + n > size:
        raise _fail(path, f"is a truncated safetensors file: its header says {n} header bytes, "
                          f"but the file has only {size} bytes in all.",
                    "Download or save it again.", "safetensors")
    return "safetensors"


def _is_low_protocol_pickle(path: Path) -> bool:
    """True if the file's start parses (never runs) as pickle opcodes up to STOP or the window's end."""
    with open(path, "rb") as f:
        window = io.BytesIO(f.read(_SNIFF_PICKLE_BYTES))
    try:
        return any(op.name == "STOP" for op, _, _ in pickletools.genops(window))
    except _PARSE_ERRORS:
        # Still parsing when the window ran out: a pickle larger than the window.
        return window.tell() >= _SNIFF_PICKLE_BYTES


def _describe_unknown(head: bytes) -> str:
    text = _as_text(head)
    if text is None:
        return f"is not a checkpoint: its first bytes ({head[:8].hex(' ')}) match no known checkpoint format."
    start = text.lstrip()[:40].replace("\n", " ")
    if start.startswith("version https://git-lfs"):
        return "is a Git LFS pointer, not the weights themselves (run `git lfs pull` to fetch them)."
    if start.startswith(("{", "[")):
        return (f"is a JSON/text file (it starts with {start!r}), not a checkpoint; "
                "JSON files hold settings, not weights.")
    if start.lower().startswith(("<!doctype", "<html")):
        return "is an HTML page (probably an error page saved by a failed download), not a checkpoint."
    return f"is a text file (it starts with {start!r}), not a checkpoint."


def _as_text(head: bytes) -> str | None:
    if b"\x00" in head:
        return None
    for cut in range(4):  # the sniffed block may end inside a multi-byte character
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


# --------------------------------------------------------------------------- readers


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors, memory-mapped (no copy: see ``_map_safetensors``), else read by the library."""
    import safetensors
    import safetensors.torch

    mapped = _map_safetensors(path)
    if mapped is not None:
        return mapped
    try:  # the library's reader, for its error messages on a file the mapping did not accept
        return safetensors.torch.load_file(str(path), device="cpu")
    except safetensors.SafetensorError as e:
        raise _fail(path, f"is a corrupt safetensors file ({e}).", "Download or save it again.",
                    "safetensors") from e


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def _map_safetensors(path: Path) -> dict[str, torch.Tensor] | None:
    """Tensors that are views of a private (copy-on-write) map of the file: nothing is read into memory until
    it is used, and pages stay the page cache's (file-backed) until written. None when the header does not
    describe the file exactly (then the safetensors library reads it and names the problem).

    The format is 8 bytes of header length n, n bytes of JSON ``{key: {"dtype", "shape", "data_offsets":
    [begin, end]}}`` (offsets into the data after the header; ``__metadata__`` holds strings), then the data.
    A tensor whose bytes are misaligned for its dtype is copied out instead of viewed.
    """
    import json
    import mmap

    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
            size = path.stat().st_size
            if not isinstance(header, dict) or size <= 8 + n:
                return None
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError):
        return None
    start, out, spans = 8 + n, {}, []
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES[info["dtype"]]
            shape = [int(d) for d in info["shape"]]
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            return None
        numel = 1
        for d in shape:
            numel *= d
        itemsize = torch.empty((), dtype=dtype).element_size()
        if _bad_span(begin, end, numel * itemsize, size - start):
            return None
        spans.append((begin, end))
        if numel == 0:
            out[key] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(mapped, dtype=torch.uint8, count=end - begin, offset=start + begin)
        if (start + begin) % itemsize:
            flat = flat.clone()  # views must be aligned for their dtype
        out[key] = flat.view(dtype).reshape(shape)
    spans.sort()
    if any(b < a_end for (_, a_end), (b, _) in itertools.pairwise(spans)):
        return None  # overlapping tensors: not a file safetensors writes
    return out


def _bad_span(begin: int, end: int, nbytes: int, data_size: int) -> bool:
    """A header entry whose offsets do not hold exactly its tensor inside the data."""
    return begin < 0 or end < begin or end - begin != nbytes or end > data_size


def _read_torch(path: Path, fmt: str) -> Any:
    if fmt == "torch-zip":
        _check_torch_zip(path)
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            # torch warns about pickle protocols other than 2 before refusing them; the refusal
            # is what we report.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            if fmt == "torch-zip" and not path.name.endswith(".safetensors"):
                # mapped, not read: storages are views of a private map of the file (torch needs the path;
                # torch.load routes a path ending in .safetensors by its suffix, hence the file object there)
                return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
            return torch.load(f, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except pickle.UnpicklingError as e:
        raise _refusal(path, fmt, str(e)) from None
    except RuntimeError as e:
        if "Invalid magic number" not in str(e):
            raise _corrupt(path, fmt, e) from e
        raise _fail(path, "is a pickle that torch.save did not write (it lacks torch's header).",
                    "Re-save the weights with torch.save(model.state_dict(), path) or as .safetensors.", fmt) from e
    except Exception as e:  # noqa: BLE001 - any other failure inside torch's reader means a corrupt file
        raise _corrupt(path, fmt, e) from e


def _corrupt(path: Path, fmt: str, e: Exception) -> CheckpointError:
    return _fail(path, f"could not be read as a {fmt} checkpoint; it is corrupt or truncated "
                       f"({type(e).__name__}: {_first_line(e)}).",
                 "Save or download it again.", fmt)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else ""


def _check_torch_zip(path: Path) -> None:
    """Catch the zip problems torch reports obscurely: truncation, TorchScript, foreign zips."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise _fail(path, f"is a truncated or corrupt zip archive ({e}); the save or download was "
                          "probably interrupted.", "Save or download it again.", "torch-zip") from e
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise _fail(path, "is a TorchScript archive (torch.jit.save), which holds code as well as weights.",
                    "In trusted code, torch.jit.load it and torch.save(model.state_dict(), ...) "
                    "or save it as .safetensors.", "torch-zip")
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        shown = ", ".join(names[:5])
        raise _fail(path, f"is a zip archive but not a torch.save checkpoint (no data.pkl; it holds {shown}).",
                    "Pass the .pt/.pth/.bin/.safetensors file itself.", "torch-zip")


# --------------------------------------------------------------------------- refusals


def _refusal(path: Path, fmt: str, torch_message: str) -> CheckpointError:
    """Turn torch's weights_only refusal into our error, naming the imports the pickle asks for."""
    asked = [g for g in _pickle_globals(path, fmt) if not _TENSOR_REBUILD_GLOBALS.match(g)]
    named = _TORCH_NAMES_GLOBAL.search(torch_message)
    if named and not asked:  # the scan found nothing (e.g. the pickle was cut short); trust torch's name
        asked = [named.group(1)]
    if not asked:
        reason = _first_line_of_reason(torch_message)
        return _fail(path, f"is a corrupt or unsupported pickle; torch's safe reader stopped at: {reason}.",
                     "Re-save the weights with torch.save(model.state_dict(), ...) or as .safetensors.", fmt)
    details = {"path": str(path), "format": fmt, "imports": asked,
               "torch_reason": _first_line_of_reason(torch_message)}
    return UnsafeCheckpointError(_unsafe_message(path, asked), details=details)


def _unsafe_message(path: Path, asked: list[str]) -> str:
    shown = ", ".join(asked[:6]) + (f" and {len(asked) - 6} more" if len(asked) > 6 else "")
    message = (f"{path}: refused: loading this file would import or call code ({shown}), "
               "so it was not unpickled and nothing from it ran.")
    if any(g.startswith("torch.nn.modules.") for g in asked):
        message += (" It looks like a whole model saved with torch.save(model): "
                    "save model.state_dict() instead.")
    elif any(g.startswith("torch.storage._load_from_bytes") for g in asked):
        message += " It looks like pickle.dump of tensors rather than torch.save."
    return message + (" Re-save it as a plain state_dict (torch.save(model.state_dict(), path)) "
                      "or as .safetensors, in an environment where you trust the file.")


def _first_line_of_reason(torch_message: str) -> str:
    # torch wraps the unpickler's reason in advice about weights_only=False; keep the reason only.
    lines = [ln.strip() for ln in torch_message.splitlines() if ln.strip()]
    reasons = [ln for ln in lines if not ln.startswith(("Weights only load failed", "Check the documentation",
                                                         "Please file an issue", "(1)", "(2)", "In PyTorch"))]
    return (reasons[-1] if reasons else lines[-1] if lines else "unknown error")[:200]


def _pickle_globals(path: Path, fmt: str) -> list[str]:
    """Names the pickle(s) in a torch file would import, found by parsing opcodes (nothing runs)."""
    if fmt == "torch-zip":
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
            with z.open(name) as member:
                stream = io.BytesIO(member.read(_SCAN_BYTES))
    else:
        with open(path, "rb") as f:
            stream = io.BytesIO(f.read(_SCAN_BYTES))
    found: list[str] = []
    for _ in range(5):  # a legacy torch file is up to five pickles in a row, then raw storage bytes
        if not _scan_one_pickle(stream, found):
            break
    return list(dict.fromkeys(found))


def _scan_one_pickle(stream: io.BytesIO, found: list[str]) -> bool:
    """Append the imports of the next pickle in ``stream``; False when no whole pickle was there."""
    strings: list[str] = []  # strings pushed so far, to resolve STACK_GLOBAL's module and name
    memo: dict[int, str | None] = {}
    top: str | None = None  # the string on top of the stack, if the top is a string
    try:
        for op, arg, _ in pickletools.genops(stream):
            if op.name in ("GLOBAL", "INST"):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                found.append(".".join(strings[-2:]) if len(strings) >= 2 else "<unresolved import>")
            elif op.name == "MEMOIZE":
                memo[len(memo)] = top
                continue
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = top
                continue
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                top = memo.get(int(arg))
                if top is not None:
                    strings.append(top)
                continue
            pushed_string = isinstance(arg, str) and ("UNICODE" in op.name or "STRING" in op.name)
            top = arg if pushed_string else None
            if pushed_string:
                strings.append(arg)
    except _PARSE_ERRORS:
        return False
    return True


# --------------------------------------------------------------------------- normalizing


def normalize_state_dict(obj: Any, source: str = "<memory>"
                         ) -> tuple[dict[str, torch.Tensor], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Unwrap, strip wrapper prefixes and cast an in-memory checkpoint object.

    Returns ``(state_dict, unwrapped, casts)`` with the meanings of the Checkpoint fields.
    Raises CheckpointError if ``obj`` is not a dict holding tensors.
    """
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: {_not_a_dict(obj)}", details={"path": source})
    inner, path, siblings = _unwrap(obj)
    state_dict, ignored = _tensor_entries(inner, path)
    if not state_dict:
        raise CheckpointError(f"{source}: holds no tensors. {_describe_keys(obj)} "
                              "Pass the file that holds the model's state_dict.", details={"path": source})
    unwrapped = _unwrap_notes(path, siblings + ignored)
    state_dict, stripped = _strip_wrapper_prefixes(state_dict)
    unwrapped += [f"prefix {p!r} stripped" for p in stripped]
    state_dict, casts = _cast_floats(state_dict, source)
    return state_dict, tuple(unwrapped), casts


def _unwrap_notes(path: list[str], ignored: list[str]) -> list[str]:
    notes = [f"under {' -> '.join(repr(k) for k in path)}"] if path else []
    if ignored:
        shown = ", ".join(ignored[:8]) + (", ..." if len(ignored) > 8 else "")
        notes.append(f"ignored {len(ignored)} non-tensor {'entry' if len(ignored) == 1 else 'entries'}: {shown}")
    return notes


def _not_a_dict(obj: Any) -> str:
    kind = type(obj).__name__
    if isinstance(obj, torch.nn.Module):
        return f"is a whole model ({kind}), not a state_dict; pass model.state_dict() instead."
    if isinstance(obj, torch.Tensor):
        return "holds a single tensor, not a dict of named tensors; save {name: tensor} or model.state_dict()."
    return f"holds a {kind}, not a dict of tensors; save model.state_dict() instead."


def _unwrap(obj: Mapping) -> tuple[Mapping, list[str], list[str]]:
    """Follow WRAPPER_KEYS down to the dict holding the tensors.

    Returns that dict, the keys followed, and the entries passed over on the way ("epoch (int)").
    """
    path: list[str] = []
    siblings: list[str] = []
    for _ in range(MAX_WRAPPER_DEPTH):
        key = _wrapper_key(obj, MAX_WRAPPER_DEPTH - len(path))
        if key is None:
            break
        siblings += [f"{_entry_name(path, k)} ({type(v).__name__})" for k, v in obj.items() if k != key]
        path.append(key)
        obj = obj[key]
    return obj, path, siblings


def _entry_name(path: list[str], key: Any) -> str:
    return "/".join([*path, str(key)])


def _wrapper_key(obj: Mapping, depth: int) -> str | None:
    for key in WRAPPER_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping) and _holds_tensors(value, depth - 1):
            return key
    return None


def _holds_tensors(obj: Mapping, depth: int) -> bool:
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return True
    return depth > 0 and _wrapper_key(obj, depth) is not None


def _tensor_entries(obj: Mapping, path: list[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    tensors: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in obj.items():
        if isinstance(key, str) and isinstance(value, torch.Tensor):
            tensors[key] = value.detach()
        else:
            ignored.append(f"{_entry_name(path, key)} ({type(value).__name__})")
    return tensors, ignored


def _describe_keys(obj: Mapping) -> str:
    if not obj:
        return "It is an empty dict."
    shown = ", ".join(f"{k!r} ({type(v).__name__})" for k, v in list(obj.items())[:8])
    return f"Its top-level entries: {shown}{', ...' if len(obj) > 8 else ''}."


def _strip_wrapper_prefixes(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    stripped: list[str] = []
    while True:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state_dict)), None)
        if prefix is None:
            return state_dict, stripped
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
        stripped.append(prefix)


def _cast_floats(state_dict: dict[str, torch.Tensor], source: str
                 ) -> tuple[dict[str, torch.Tensor], tuple[tuple[str, str], ...]]:
    _refuse_unusual_tensors(state_dict, source)
    out: dict[str, torch.Tensor] = {}
    casts: list[tuple[str, str]] = []
    for key, t in state_dict.items():
        if t.is_floating_point() and t.dtype != torch.float32:
            casts.append((key, dtype_name(t.dtype)))
            t = t.to(torch.float32)
        out[key] = t
    return out, tuple(casts)


def _refuse_unusual_tensors(state_dict: dict[str, torch.Tensor], source: str) -> None:
    bad = [f"{k} ({_unusual(t)})" for k, t in state_dict.items() if _unusual(t)]
    if bad:
        raise CheckpointError(f"{source}: tensors the bridge cannot port: {', '.join(bad[:8])}. "
                              "Save dense real-valued tensors (dequantize / .to_dense() first).",
                              details={"path": source, "tensors": bad})


def _unusual(t: torch.Tensor) -> str:
    if t.is_quantized:
        return "quantized"
    if t.layout != torch.strided:
        return f"layout {t.layout}"
    if t.is_complex():
        return "complex"
    if t.device.type == "meta":
        return "meta tensor without data"
    return ""


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


# --------------------------------------------------------------------------- finiteness


def find_nonfinite(state_dict: Mapping[str, torch.Tensor]) -> list[dict]:
    """Every floating tensor with NaN or Inf: ``{"key", "nan", "inf", "numel"}``, in key order."""
    bad = []
    for key, t in state_dict.items():
        if not t.is_floating_point():
            continue
        nan = int(torch.isnan(t).sum())
        inf = int(torch.isinf(t).sum())
        if nan or inf:
            bad.append({"key": key, "nan": nan, "inf": inf, "numel": t.numel()})
    return bad


def check_finite(state_dict: Mapping[str, torch.Tensor], source: str,
                 casts: tuple[tuple[str, str], ...] = ()) -> None:
    """Raise NonFiniteWeightsError listing every tensor with NaN/Inf values."""
    bad = find_nonfinite(state_dict)
    if not bad:
        return
    from64 = {k for k, d in casts if d == "float64"}
    lines = [f"{b['key']}: {b['nan'] + b['inf']} of {b['numel']} values non-finite ({b['nan']} NaN, {b['inf']} Inf)"
             + (" - float64 values beyond float32 range become Inf when cast" if b["key"] in from64 else "")
             for b in bad]
    raise NonFiniteWeightsError(
        f"{source}: {len(bad)} tensor(s) hold NaN/Inf values:\n  " + "\n  ".join(lines)
        + "\nTraining probably diverged before this save; use an earlier checkpoint, "
          "or pass allow_nonfinite=True to load it anyway.",
        details={"path": source, "tensors": bad},
    )


# --------------------------------------------------------------------------- inspect


def inspect_checkpoint(path: str | Path) -> dict:
    """What a checkpoint holds, as JSON-ready data (NaN/Inf are reported, not refused).

    ``dtype`` and ``bytes`` are as stored in the file (before any cast to float32);
    ``parameter_count`` is the number of values in floating tensors (parameters and
    floating buffers such as BatchNorm running stats).
    """
    ckpt = load_checkpoint(path, allow_nonfinite=True)
    stored = dict(ckpt.casts)
    tensors = []
    for key, t in ckpt.state_dict.items():
        dtype = stored.get(key, dtype_name(t.dtype))
        itemsize = getattr(torch, dtype).itemsize
        tensors.append({"key": key, "shape": list(t.shape), "dtype": dtype, "numel": t.numel(),
                        "bytes": t.numel() * itemsize, "floating": t.is_floating_point()})
    return {
        "path": str(ckpt.path),
        "format": ckpt.format,
        "sha256": ckpt.sha256,
        "file_bytes": ckpt.path.stat().st_size,
        "tensors": tensors,
        "tensor_count": len(tensors),
        "parameter_count": sum(t["numel"] for t in tensors if t["floating"]),
        "total_bytes": sum(t["bytes"] for t in tensors),
        "common_prefix": common_prefix(list(ckpt.state_dict)),
        "prefixes": prefix_groups(list(ckpt.state_dict)),
        "unwrapped": list(ckpt.unwrapped),
        "casts": [list(c) for c in ckpt.casts],
        "notes": ckpt.notes(),
        "nonfinite": find_nonfinite(ckpt.state_dict),
    }


def common_prefix(keys: list[str]) -> str:
    """The longest dotted prefix every key shares and extends, e.g. ``"model.encoder."``; else ``""``."""
    if not keys:
        return ""
    parts = [k.split(".")[:-1] for k in keys]
    shared: list[str] = []
    for group in zip(*parts):
        if len(set(group)) != 1:
            break
        shared.append(group[0])
    return ".".join(shared) + "." if shared else ""


def prefix_groups(keys: list[str]) -> list[dict]:
    """Keys grouped by first dotted component: ``[{"prefix": "backbone.", "keys": 120}, ...]``."""
    counts: dict[str, int] = {}
    for key in keys:
        if "." in key:
            head = key.split(".", 1)[0] + "."
            counts[head] = counts.get(head, 0) + 1
    return [{"prefix": p, "keys": n} for p, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def render_inspect(info: dict, console) -> None:
    """Print ``inspect_checkpoint`` data: one table row per tensor, then a summary and notes."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(info["path"]), title_justify="left")
    table.add_column("key", overflow="fold")
    table.add_column("shape")
    table.add_column("dtype")
    table.add_column("numel", justify="right")
    for t in info["tensors"]:
        table.add_row(Text(t["key"]), "(" + ", ".join(map(str, t["shape"])) + ")", t["dtype"], f"{t['numel']:,}")
    console.print(table)
    console.print(
        f"{info['tensor_count']} tensors, {info['parameter_count']:,} parameters (floating values), "
        f"{_human_bytes(info['total_bytes'])} of tensor data; format {info['format']}; sha256 {info['sha256'][:16]}"
    )
    if info["common_prefix"]:
        console.print(f"every key starts with {escape(repr(info['common_prefix']))}")
    if len(info["prefixes"]) > 1:
        console.print("prefixes: " + escape(", ".join(f"{p['prefix']} ({p['keys']})" for p in info["prefixes"][:10])))
    for note in info["notes"]:
        console.print(f"note: {escape(note)}")
    for b in info["nonfinite"]:
        console.print(f"[red]non-finite:[/red] {escape(b['key'])} ({b['nan']} NaN, {b['inf']} Inf of {b['numel']})")


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
