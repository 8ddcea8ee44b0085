"""parity: the same inputs through torch and TF (or tfjs), compared output by
output and, for TF, module by module.

Error measures, for each output (and each module output):
* ``max_abs_error``: max |tf - torch| over all elements;
* ``max_rel_error``: max_abs_error / max(|torch|), the error relative to the
  output's own scale (an elementwise ratio explodes near zero and says little).
The default bound is ``max_abs_error <= 1e-4 * max(1, max|torch|)``.

Structure comes before any number (``compare_outputs``, the one place outputs
of torch and a port are paired): the output count, the names where both sides
have them, then per output the shape and the dtype. A port that drops an output,
returns an extra one, swaps a shape or changes a dtype fails, and the Diff's
``problem`` names what differs. Accepted dtype differences (``ACCEPTED_DTYPES``):
torch int64 may come back as int32 and float64 as float32, because tfjs and the
SavedModel signature have neither int64 nor float64 (likewise int8/int16/uint8
as int32, float16 as float32); the Diff's ``note`` says so.
Then NaN/Inf positions must agree before numbers are compared; integer outputs
must be equal exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from . import layout as lay
from .tolerances import DEFAULT

DEFAULT_RTOL = DEFAULT.rtol  # bound = rtol * max(1, max|torch|); see tolerances.py


def flatten_outputs(obj, prefix: str = "output") -> list[tuple[str, object]]:
    """(name, tensor) pairs in a fixed order: a tensor, or nested tuples/lists/dicts of them (None skipped)."""
    if isinstance(obj, (list, tuple)):
        out = []
        for i, v in enumerate(obj):
            out += flatten_outputs(v, f"{prefix}_{i}") if not _is_tensor(v) else [(f"{prefix}_{i}", v)]
        return out
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            out += flatten_outputs(v, str(k)) if not _is_tensor(v) else [(str(k), v)]
        return out
    if obj is None:
        return []
    return [(f"{prefix}_0", obj)]


def _is_tensor(v) -> bool:
    return hasattr(v, "shape") and hasattr(v, "dtype")


def to_numpy(v) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        return v.detach().cpu().numpy()
    return np.asarray(v)


@dataclass
class Diff:
    name: str
    shape: list
    max_abs_error: float
    max_rel_error: float
    bound: float
    ok: bool
    problem: str | None = None  # structure (see STRUCTURE_PROBLEMS) / NaN mask / integer mismatch
    note: str | None = None  # an accepted difference, e.g. int64 returned as int32

    @property
    def structural(self) -> bool:
        """The outputs differ in count, name, shape or dtype: no number was compared."""
        return (self.problem or "").startswith(STRUCTURE_PROBLEMS)


STRUCTURE_PROBLEMS = ("output count", "missing output", "extra output", "shape", "dtype")

# torch dtype -> (the dtype a port may return instead, why that is accepted)
_INT32_ONLY = "tfjs and the SavedModel signature carry integers as int32; values compared exactly"
_FLOAT32_ONLY = "the port computes in float32, and tfjs has no other float type"
ACCEPTED_DTYPES = {
    "int64": ("int32", f"int64 returned as int32 ({_INT32_ONLY})"),
    **{t: ("int32", f"{t} returned as int32 ({_INT32_ONLY})") for t in ("int16", "int8", "uint8")},
    **{t: ("float32", f"{t} returned as float32 ({_FLOAT32_ONLY})") for t in ("float64", "float16")},
}


def dtype_check(ref: np.dtype, got: np.dtype) -> tuple[str | None, str | None]:
    """(problem, note): a problem when ``got`` is neither torch's dtype nor its accepted stand-in."""
    ref, got = np.dtype(ref).name, np.dtype(got).name
    if ref == got:
        return None, None
    stand_in, why = ACCEPTED_DTYPES.get(ref, (None, None))
    if got == stand_in:
        return None, why
    return f"dtype {got} != torch {ref}", None


def _failed(name: str, shape, problem: str) -> Diff:
    return Diff(name, list(shape), float("inf"), float("inf"), 0.0, False, problem)


def compare(name: str, ref: np.ndarray, got: np.ndarray, rtol: float = DEFAULT_RTOL) -> Diff:
    """One output: shape, then dtype, then NaN/Inf positions, then values (integers exactly)."""
    ref, got = np.asarray(ref), np.asarray(got)
    if ref.shape != got.shape:
        return _failed(name, ref.shape, f"shape {list(got.shape)} != torch {list(ref.shape)}")
    problem, note = dtype_check(ref.dtype, got.dtype)
    if problem:
        return _failed(name, ref.shape, problem)
    d = _compare_values(name, ref, got, rtol)
    d.note = note
    return d


def _compare_values(name: str, ref: np.ndarray, got: np.ndarray, rtol: float) -> Diff:
    if ref.dtype.kind in "iub":
        bad = int(np.count_nonzero(ref.astype(np.int64) != got.astype(np.int64)))
        return Diff(name, list(ref.shape), float(bad), float(bad), 0.0, bad == 0,
                    None if bad == 0 else f"{bad} integer values differ")
    if ref.dtype == got.dtype == np.float32 and np.isfinite(ref).all() and np.isfinite(got).all():
        # the common case, without float64 copies and masks: a float32 difference of two close values is
        # exact (Sterbenz), and a max of float32 magnitudes is too; per-module parity compares every module
        scale, err = float(np.max(np.abs(ref), initial=0.0)), float(np.max(np.abs(ref - got), initial=0.0))
        bound = rtol * max(1.0, scale)
        return Diff(name, list(ref.shape), err, err / scale if scale > 0 else err, bound, err <= bound)
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    finite = np.isfinite(ref64)
    same_mask = np.array_equal(finite, np.isfinite(got64))
    if not same_mask or not np.array_equal(ref64[~finite], got64[~finite], equal_nan=True):  # NaN, +Inf, -Inf
        return Diff(name, list(ref.shape), float("inf"), float("inf"), 0.0, False, "NaN/Inf positions differ")
    scale = float(np.max(np.abs(ref64[finite]))) if finite.any() else 0.0
    err = float(np.max(np.abs(ref64[finite] - got64[finite]))) if finite.any() else 0.0
    bound = rtol * max(1.0, scale)
    return Diff(name, list(ref.shape), err, err / scale if scale > 0 else err, bound, err <= bound)


@dataclass
class RuntimeResult:
    """Outputs of one runtime (tf, savedmodel, tfjs-cpu, ...) against torch, over all parity inputs."""

    runtime: str
    outputs: list[Diff] = field(default_factory=list)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None and all(d.ok for d in self.outputs)

    @property
    def max_abs_error(self) -> float:
        return max((d.max_abs_error for d in self.outputs), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((d.max_rel_error for d in self.outputs), default=0.0)

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "ok": self.ok, "skipped": self.skipped,
                "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
                "outputs": [asdict(d) for d in self.outputs]}


@dataclass
class ParityReport:
    runtimes: list[RuntimeResult]
    per_module: list[Diff]  # TF vs torch, per module call, in forward order
    n_inputs: int
    tolerance: dict = field(default_factory=dict)  # tolerances.Resolved.to_dict(): rtol in force and why
    per_module_runtimes: dict = field(default_factory=dict)  # runtime -> [Diff] beyond TF (e.g. tfjs-wasm)
    per_module_inputs: int | None = None  # how many of the n_inputs sets per_module covers (None: all)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.runtimes if r.skipped is None)

    @property
    def max_abs_error(self) -> float:
        return max((r.max_abs_error for r in self.runtimes if r.skipped is None), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.runtimes if r.skipped is None), default=0.0)

    @property
    def first_divergence(self) -> str | None:
        """The first torch module (in forward order) whose output is out of bounds, in TF or else in tfjs."""
        for diffs in (self.per_module, *self.per_module_runtimes.values()):
            bad = next((d.name for d in diffs if not d.ok), None)
            if bad:
                return bad
        return None

    def runtime(self, name: str) -> RuntimeResult | None:
        return next((r for r in self.runtimes if r.runtime == name), None)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
                "first_divergence": self.first_divergence, "n_inputs": self.n_inputs,
                "per_module_inputs": self.n_inputs if self.per_module_inputs is None else self.per_module_inputs,
                "tolerance": self.tolerance,
                "runtimes": [r.to_dict() for r in self.runtimes],
                "per_module": [asdict(d) for d in self.per_module],
                "per_module_runtimes": {"tf": [asdict(d) for d in self.per_module],
                                        **{k: [asdict(d) for d in v] for k, v in self.per_module_runtimes.items()}}}


def merge(name: str, diffs: list[Diff]) -> Diff:
    """One Diff per name over several input sets: the worst of them."""
    worst = max(diffs, key=lambda d: (not d.ok, d.max_abs_error / max(d.bound, 1e-30)))
    return Diff(name, worst.shape, max(d.max_abs_error for d in diffs), max(d.max_rel_error for d in diffs),
                worst.bound, all(d.ok for d in diffs), next((d.problem for d in diffs if d.problem), None),
                next((d.note for d in diffs if d.note), None))


def merge_sets(per_set: list[list[Diff]]) -> list[Diff]:
    """Diffs of several input sets -> one Diff per name (the worst), in order of first appearance."""
    by_name: dict[str, list[Diff]] = {}
    for diffs in per_set:
        for d in diffs:
            by_name.setdefault(d.name, []).append(d)
    return [merge(n, ds) for n, ds in by_name.items()]


def compare_outputs(ref, got, rtol: float = DEFAULT_RTOL, side: str = "TF",
                    value: Callable[[str, np.ndarray, np.ndarray], Diff] | None = None) -> list[Diff]:
    """Torch's outputs against a port's: structure first, then numbers; one Diff per output.

    ``ref``: [(name, array)] in torch's order (``flatten_outputs``). ``got``: the port's
    outputs, named ({name: array} or [(name, array)]) or positional ([array]). Named
    outputs are paired by name: a torch output the port lacks, or a port output torch
    lacks, is a failing Diff saying so. Positional outputs must be as many as torch's,
    else every output fails on the count. Paired outputs go through ``value`` (default
    ``compare`` at ``rtol``), which checks shape and dtype before any number. ``side``
    names the port in messages ("TF", "tfjs-wasm", ...).
    """
    value = value or (lambda n, r, g: compare(n, r, g, rtol))
    ref = [(n, to_numpy(r)) for n, r in ref]
    got = got if isinstance(got, Mapping) else list(got)
    named = _named(got)
    if named is None:
        return _compare_positional(ref, [to_numpy(g) for g in got], side, value)
    diffs = []
    for name, r in ref:
        if name in named:
            diffs.append(value(name, r, named[name]))
        else:
            diffs.append(_failed(name, r.shape, f"missing output: {side} returned no {name!r} (torch {_describe(r)}); "
                                                f"{side} returned {sorted(named)}"))
    torch_names = {n for n, _ in ref}
    diffs += [_failed(n, g.shape, f"extra output: {side} returned {n!r} ({_describe(g)}), which torch does not "
                                  f"return; torch returns {[n for n, _ in ref]}")
              for n, g in named.items() if n not in torch_names]
    return diffs


def _named(got) -> dict[str, np.ndarray] | None:
    """{name: array} for named outputs (a mapping, or (name, array) pairs with unique names), else None."""
    if isinstance(got, Mapping):
        return {str(k): to_numpy(v) for k, v in got.items()}
    pairs = got
    if pairs and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
        if len({n for n, _ in pairs}) == len(pairs):
            return {n: to_numpy(v) for n, v in pairs}
    return None


def _compare_positional(ref, got: list[np.ndarray], side: str, value) -> list[Diff]:
    if len(ref) != len(got):
        problem = (f"output count: {side} returned {len(got)} output(s) {[_describe(g) for g in got]}, "
                   f"torch {len(ref)} {[_describe(r) for _, r in ref]}")
        return [_failed(n, r.shape, problem) for n, r in ref]
    return [value(n, r, g) for (n, r), g in zip(ref, got)]


def _describe(a: np.ndarray) -> str:
    return f"{list(a.shape)} {a.dtype.name}"


def make_inputs(examples: tuple, seed: int, n_random: int = 2, batch: int | None = None) -> list[tuple]:
    """The examples themselves plus seeded random inputs of the same shapes (batch resized if given).

    Float inputs are standard normal; integer inputs are drawn from [0, max(example)] so that
    embedding ids stay valid.
    """
    gen = torch.Generator().manual_seed(seed)
    sets = [tuple(examples)]
    for _ in range(n_random):
        sets.append(tuple(_random_like(x, gen, batch) for x in examples))
    return sets


def _random_like(x: torch.Tensor, gen: torch.Generator, batch: int | None) -> torch.Tensor:
    shape = list(x.shape)
    if batch is not None and shape:
        shape[0] = batch
    if x.dtype.is_floating_point:
        return torch.randn(shape, generator=gen, dtype=torch.float32).to(x.dtype)
    if x.dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=gen).bool()
    high = int(x.max().item()) + 1 if x.numel() else 1
    return torch.randint(0, max(high, 1), shape, generator=gen, dtype=x.dtype)


def torch_module_outputs(module: torch.nn.Module, inputs: tuple, paths, keep=None) -> tuple[object, list]:
    """Run torch with forward hooks on ``paths``; returns (outputs, [(path, keep(output)) in call order]).

    ``keep`` turns a module's output into what is recorded (default: detached copies, in the
    output's own structure).
    """
    keep = keep or _detached
    seen: list[tuple[str, object]] = []
    modules = dict(module.named_modules())
    handles = [modules[p].register_forward_hook(lambda m, i, o, p=p: seen.append((p, keep(o)))) for p in paths]
    try:
        with torch.no_grad():
            out = module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return out, seen


def _detached(out):
    if isinstance(out, torch.Tensor):
        return out.detach().clone()
    if isinstance(out, (list, tuple)):
        return type(out)(_detached(v) for v in out)
    return out


def output_leaves(out, prefix: tuple = ()):
    """(index path, tensor) for every tensor in a module output (tuples and lists nested; None skipped)."""
    if isinstance(out, (list, tuple)):
        for i, v in enumerate(out):
            yield from output_leaves(v, (*prefix, i))
    elif _is_tensor(out):
        yield prefix, out


def tf_module_outputs(tf_model, inputs: tuple) -> tuple[object, list[tuple[str, tuple, object]]]:
    """Run the TF port eagerly; returns (outputs, [(path, output index, tensor)] in call order)."""
    from .layers import record_outputs

    seen: list[tuple[str, tuple, object]] = []
    with record_outputs(lambda path, index, out: seen.append((path, index, out))):
        out = tf_model(*[to_numpy(x) for x in inputs])
    return out, seen


def module_name(path: str, index: tuple, call: int) -> str:
    """'lstm', 'lstm[1][0]' for h_n of ``out, (h_n, c_n)``, and '#k' for the k-th call after the first."""
    return path + "".join(f"[{i}]" for i in index) + (f"#{call}" if call else "")


def per_module_diffs(torch_seen, tf_seen, layouts: dict[tuple, list], rtols: dict[str, float]) -> list[Diff]:
    """Pair the k-th torch output at (path, index) with the k-th TF one, bring TF to torch layout, compare.

    ``layouts`` is ``Plan.module_layouts()``: only the (path, index) positions it lists are
    compared (a decomposed module may have outputs the graph never materialises).
    """
    tf_by_key: dict[tuple, list] = {}
    for path, index, out in tf_seen:
        tf_by_key.setdefault((path, tuple(index)), []).append(out)
    calls: dict[tuple, int] = {}
    diffs = []
    for path, out in torch_seen:
        for index, ref in output_leaves(out):
            key = (path, index)
            if key not in layouts:
                continue
            k = calls.get(key, 0)
            calls[key] = k + 1
            got_list = tf_by_key.get(key, [])
            name = module_name(path, index, k)
            if k >= len(got_list) or k >= len(layouts[key]):
                diffs.append(_failed(name, ref.shape, "missing output: the port recorded no output for this call"))
                continue
            got = lay.to_torch(np.asarray(got_list[k]), layouts[key][k])
            diffs.append(compare(name, to_numpy(ref), got, rtols.get(path, DEFAULT_RTOL)))
    return diffs
