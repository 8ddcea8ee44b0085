"""``assert_parity``: does a hand-written TF port still compute what the torch module computes?

For CI: it runs both on the same inputs, compares every output with
``bridge.parity.compare`` and, on failure, raises an AssertionError naming each
output's error and bound and the FIRST DIVERGING SUBMODULE: torch module
outputs are recorded with forward hooks, TF layer outputs by wrapping the
``__call__`` of the watched layers' classes for the duration of one run, and
the two are paired by path (``features.0`` <-> the TF attribute ``features[0]``)
or by an explicit ``correspondence``.

Hand-written ports often take channels-last inputs: with
``input_layout="auto"`` torch layout is tried first, then channels-last (rank
3 and 4 inputs), and outputs are moved back to torch layout by shape before
they are compared.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
import torch

from .errors import BadInputError, ParityError
from .parity import (DEFAULT_RTOL, Diff, ParityReport, RuntimeResult, compare, compare_outputs, flatten_outputs, merge,
                     merge_sets, to_numpy, torch_module_outputs)
from .porting import is_keras_layer, named_tf_objects, normalize_path

LAYOUTS = ("auto", "torch", "channels_last")
_TO_CHANNELS_LAST = {3: (0, 2, 1), 4: (0, 2, 3, 1)}  # torch (N,C,L) / (N,C,H,W) -> TF (N,L,C) / (N,H,W,C)
_TO_CHANNELS_FIRST = {3: (0, 2, 1), 4: (0, 3, 1, 2)}
N_DRAWN = 2  # input sets drawn when the inputs come from the TF model's declared shapes
DRAWN_BATCH = 2  # size of a batch dimension the TF model leaves open (2, so batch bugs show)


@dataclass(frozen=True)
class ParityOptions:
    rtol: float = DEFAULT_RTOL  # bound = rtol * max(1, max|torch|)
    atol: float | None = None  # an absolute floor under that bound
    input_layout: str = "auto"
    seed: int = 0
    correspondence: Mapping[str, str] | None = field(default=None, hash=False)  # torch path -> TF path
    module_rtols: Mapping[str, float] | None = field(default=None, hash=False)  # torch path -> rtol override
    reason: str | None = None  # why rtol is what it is, for the report (e.g. from tolerances.resolve)


@dataclass
class ParityRun:
    """A ParityReport plus how it was obtained."""

    report: ParityReport
    layout: str  # the layout the TF model was fed: "torch" or "channels_last"
    pairs: dict[str, str]  # torch module path -> TF attribute path, as compared per module
    kinds: dict[str, str]  # torch module path -> "Linear -> Dense", for messages

    def failure_message(self) -> str:
        r = self.report
        out = [f"the TF port differs from torch ({r.n_inputs} input set(s), TF fed {self.layout} inputs):"]
        for d in (d for rt in r.runtimes for d in rt.outputs):
            verdict = "ok" if d.ok else "FAIL"
            problem = f" ({d.problem})" if d.problem else ""
            out.append(f"  {d.name} {d.shape}: max abs error {d.max_abs_error:.3g}, max rel error "
                       f"{d.max_rel_error:.3g}, bound {d.bound:.3g}: {verdict}{problem}")
        out.append(self._divergence_line())
        return "\n".join(out)

    def _divergence_line(self) -> str:
        first = self.report.first_divergence
        if first is not None:
            d = next(d for d in self.report.per_module if d.name == first)
            path = first.split("#")[0]
            detail = d.problem or f"max abs error {d.max_abs_error:.3g} > bound {d.bound:.3g}"
            return (f"first diverging submodule: {first} ({self.kinds.get(path, '?')}, TF {self.pairs[path]}): "
                    f"{detail}")
        if not self.pairs:
            return ("no submodule could be paired by path; pass correspondence={torch_path: tf_path} "
                    "to find where they diverge")
        return (f"no paired submodule exceeded its bound ({len(self.report.per_module)} compared); the difference "
                "comes from code between them (functional ops in forward()/call())")


def assert_parity(torch_module, tf_model, inputs=None, atol=None, rtol=None, *, correspondence=None,
                  input_layout="auto", seed=0) -> ParityReport:
    """Raise AssertionError unless ``tf_model`` matches ``torch_module`` on ``inputs``; return the report.

    ``inputs``: a tuple of torch tensors (one input set) or a list of such tuples, in
    torch layout. None: draw seeded inputs of the shapes the TF model declares (a built
    Keras model, or a tf.function ``input_signature``).
    ``rtol``: the bound is ``rtol * max(1, max|torch|)`` per output (default 1e-4);
    ``atol`` raises it to at least ``atol``.
    ``correspondence``: ``{torch_path: tf_path}`` pairs for the per-module search, added
    to the pairs inferred from equal paths.
    ``input_layout``: "auto", "torch" or "channels_last".
    """
    options = ParityOptions(DEFAULT_RTOL if rtol is None else rtol, atol, input_layout, seed, correspondence)
    try:
        run = run_parity(torch_module, tf_model, inputs, options)
    except ParityError as exc:
        raise AssertionError(exc.message) from None
    if not run.report.ok:
        raise AssertionError(run.failure_message())
    return run.report


def run_parity(torch_module, tf_model, inputs=None, options: ParityOptions = ParityOptions()) -> ParityRun:
    """Compare without asserting. Raises BadInputError for unusable inputs or options, and
    ParityError when the TF model cannot run on the inputs in any layout tried."""
    _check_options(options)
    sets = input_sets(inputs)
    declared = None if sets is not None else declared_inputs(tf_model)
    if sets is None and declared is None:
        raise BadInputError("no inputs: pass inputs=(tensor, ...) (bridge check: --input SHAPE); the TF model "
                            "declares no input shape (neither a built Keras model nor a tf.function "
                            "input_signature)")
    pairs, kinds = pair_modules(torch_module, tf_model, options.correspondence)
    ranks = [x.dim() for x in sets[0]] if sets else [len(shape) for shape, _ in declared]
    layouts = _layouts_to_try(options.input_layout, ranks)
    failures, results = [], []
    with _eval_mode(torch_module):
        for layout in layouts:
            result = _attempt(torch_module, tf_model, sets, declared, layout, pairs, options)
            if isinstance(result, str):
                failures.append(f"{layout} layout: {result}")
                continue
            results.append((result, layout))
            if result.report.ok:
                break
    if not results:
        raise ParityError("the TF model could not run on the inputs in any layout tried:\n  " + "\n  ".join(failures))
    # the first layout that passes; else the first whose output shapes fit; else the first that ran
    result, layout = next((r for r in results if r[0].report.ok),
                          next((r for r in results if r[0].shapes_ok), results[0]))
    return ParityRun(result.report, layout, pairs, kinds)


def _check_options(o: ParityOptions) -> None:
    if o.input_layout not in LAYOUTS:
        raise BadInputError(f"input_layout must be one of {', '.join(LAYOUTS)}, not {o.input_layout!r}")
    if not o.rtol >= 0 or (o.atol is not None and not o.atol >= 0):
        raise BadInputError(f"tolerances must be non-negative numbers (rtol={o.rtol}, atol={o.atol})")


def _layouts_to_try(requested: str, ranks: list[int]) -> list[str]:
    if requested != "auto":
        return [requested]
    return ["torch", "channels_last"] if any(r in _TO_CHANNELS_LAST for r in ranks) else ["torch"]


@contextmanager
def _eval_mode(module: torch.nn.Module):
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


# --------------------------------------------------------------------------- inputs


def input_sets(inputs) -> list[tuple[torch.Tensor, ...]] | None:
    """None, a tensor, a tuple of tensors, or a list of tuples -> a list of tuples of torch tensors."""
    if inputs is None:
        return None
    if _is_array(inputs):
        return [(_as_tensor(inputs),)]
    if isinstance(inputs, tuple) and all(_is_array(x) for x in inputs):
        return [tuple(_as_tensor(x) for x in inputs)]
    if isinstance(inputs, list) and inputs and all(isinstance(s, (tuple, list)) for s in inputs):
        if all(_is_array(x) for s in inputs for x in s):
            return [tuple(_as_tensor(x) for x in s) for s in inputs]
    raise BadInputError("inputs must be a tuple of tensors (one input set) or a list of such tuples, "
                        f"not {type(inputs).__name__}")


def _is_array(x) -> bool:
    return isinstance(x, (torch.Tensor, np.ndarray))


def _as_tensor(x) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(np.array(x))


def declared_inputs(tf_model) -> list[tuple[tuple, np.dtype]] | None:
    """The (shape, dtype) of each input the TF model declares, in TF layout; None if it declares none."""
    specs = _signature_specs(tf_model)
    if specs is None and is_keras_layer(tf_model) and tf_model.built:
        specs = _keras_specs(tf_model)
    if not specs:
        return None
    out = []
    for shape, dtype in specs:
        if any(d is None for d in shape[1:]):
            raise BadInputError(f"the TF model declares an input of shape {list(shape)} with an open size past "
                                "the batch dimension; pass inputs explicitly (bridge check: --input)")
        out.append(((DRAWN_BATCH if shape and shape[0] is None else shape[0], *shape[1:]), dtype))
    return out


def _signature_specs(tf_model):
    call = getattr(tf_model, "__call__", None)
    signature = getattr(call, "input_signature", None)
    if signature is None and hasattr(tf_model, "signatures"):  # a loaded SavedModel: its serving signature
        fn = tf_model.signatures.get("serving_default") if hasattr(tf_model.signatures, "get") else None
        signature = list(fn.structured_input_signature[1].values()) if fn is not None else None
    if not signature or not all(isinstance(s, tf.TensorSpec) for s in signature):
        return None
    return [(tuple(s.shape.as_list()), np.dtype(s.dtype.as_numpy_dtype)) for s in signature]


def _keras_specs(model):
    inputs = getattr(model, "inputs", None)  # a functional model
    if inputs:
        return [(tuple(x.shape), np.dtype(x.dtype)) for x in inputs]
    shapes = getattr(model, "_build_shapes_dict", None) or {}  # Keras 3 keeps the build shape here
    if len(shapes) == 1:
        shape = next(iter(shapes.values()))
        if isinstance(shape, (tuple, list)) and all(d is None or isinstance(d, int) for d in shape):
            return [(tuple(shape), np.dtype("float32"))]
    return None


def _draw(declared, layout: str, seed: int, n: int) -> list[tuple[torch.Tensor, ...]]:
    """Seeded torch-layout inputs for TF-layout declared shapes."""
    gen = torch.Generator().manual_seed(seed)
    sets = []
    for _ in range(n):
        xs = []
        for shape, dtype in declared:
            if layout == "channels_last" and len(shape) in _TO_CHANNELS_FIRST:
                shape = tuple(shape[p] for p in _TO_CHANNELS_FIRST[len(shape)])
            if dtype.kind == "f":
                xs.append(torch.randn(shape, generator=gen).to(getattr(torch, dtype.name)))
            elif dtype.kind == "b":
                xs.append(torch.randint(0, 2, shape, generator=gen).bool())
            else:
                xs.append(torch.randint(0, 2, shape, generator=gen).to(getattr(torch, dtype.name)))
        sets.append(tuple(xs))
    return sets


def to_tf_input(x: torch.Tensor, layout: str) -> tf.Tensor:
    a = to_numpy(x)
    if layout == "channels_last" and a.ndim in _TO_CHANNELS_LAST:
        a = a.transpose(_TO_CHANNELS_LAST[a.ndim])
    return tf.constant(np.ascontiguousarray(a))


def align(ref: np.ndarray, got: np.ndarray, layout: str) -> np.ndarray:
    """``got`` in torch layout if its shape says how: unchanged, or channels-last moved back (rank 3/4).

    An ambiguous shape (channels-last equal to channels-first) takes the layout the TF model was fed.
    """
    got = np.asarray(got)
    options = [None, _TO_CHANNELS_FIRST.get(got.ndim)]
    if layout == "channels_last":
        options.reverse()
    for perm in options:
        moved = got if perm is None else got.transpose(perm) if len(perm) == got.ndim else None
        if moved is not None and moved.shape == ref.shape:
            return moved
    return got


# --------------------------------------------------------------------------- pairing modules


def pair_modules(torch_module, tf_model, correspondence) -> tuple[dict[str, str], dict[str, str]]:
    """torch module path -> TF attribute path: the explicit pairs, plus every torch path that TF also has."""
    torch_paths = {p: m for p, m in torch_module.named_modules() if p}
    tf_objects = {p: o for p, o in named_tf_objects(tf_model) if p and _callable_layer(o)}
    pairs, errors = {}, []
    for t_path, tf_path in (correspondence or {}).items():
        tf_path = normalize_path(tf_path)
        if t_path not in torch_paths:
            errors.append(f"{t_path!r} is not a torch submodule path")
        elif tf_path not in tf_objects:
            errors.append(f"{tf_path!r} is not a TF layer or module reachable by attributes")
        else:
            pairs[t_path] = tf_path
    if errors:
        raise BadInputError("bad correspondence:\n  " + "\n  ".join(errors))
    for path in torch_paths:
        if path not in pairs and path in tf_objects:
            pairs[path] = path
    kinds = {p: f"{type(torch_paths[p]).__name__} -> {type(tf_objects[t]).__name__}" for p, t in pairs.items()}
    return pairs, kinds


def _callable_layer(obj) -> bool:
    return (is_keras_layer(obj) or isinstance(obj, tf.Module)) and callable(obj)


def _arrays(out) -> list[np.ndarray]:
    return [to_numpy(v) for _, v in flatten_outputs(out) if hasattr(v, "shape") and _has_value(v)]


def _has_value(v) -> bool:
    return isinstance(v, (torch.Tensor, np.ndarray)) or hasattr(v, "numpy")


@contextmanager
def recording_tf_calls(objects: dict[str, object], seen: list):
    """Wrap ``__call__`` of the classes of ``objects`` ({TF path: layer}); record (path, outputs) of those
    instances only, appending to ``seen``.

    Only the outermost call of an instance is recorded (a class and its parent may both be wrapped).
    The original class attributes are restored on exit, whatever happens.
    """
    watched = {id(o): p for p, o in objects.items()}
    classes = {type(o) for o in objects.values()}
    saved = [(cls, cls.__dict__.get("__call__", _ABSENT)) for cls in classes]
    active: set[int] = set()
    try:
        for cls in classes:
            cls.__call__ = _recording_call(_resolve_call(cls), watched, seen, active)
        yield
    finally:
        for cls, original in saved:
            if original is _ABSENT:
                del cls.__call__
            else:
                cls.__call__ = original


_ABSENT = object()


def _resolve_call(cls):
    return next(k.__dict__["__call__"] for k in cls.__mro__ if "__call__" in k.__dict__)


def _recording_call(raw, watched, seen, active):
    def __call__(self, *args, **kwargs):
        bound = raw.__get__(self, type(self))
        key = id(self)
        if key not in watched or key in active:
            return bound(*args, **kwargs)
        active.add(key)
        try:
            out = bound(*args, **kwargs)
        finally:
            active.discard(key)
        seen.append((watched[key], _arrays(out)))
        return out

    return __call__


# --------------------------------------------------------------------------- one attempt


@dataclass
class _Result:
    report: ParityReport
    shapes_ok: bool


def _attempt(torch_module, tf_model, sets, declared, layout, pairs, options) -> _Result | str:
    """Run both sides in one layout; a string says why TF (or torch, on drawn inputs) could not run."""
    drawn = sets is None
    sets = _draw(declared, layout, options.seed, N_DRAWN) if drawn else sets
    tf_objects = dict(named_tf_objects(tf_model))
    watched = {t: tf_objects[t] for t in pairs.values()}
    outputs, modules = [], []
    for inputs in sets:
        try:
            ref, torch_seen = torch_module_outputs(torch_module, inputs, list(pairs), keep=_arrays)
        except Exception as exc:  # the user's torch code on inputs we chose or were given
            message = f"torch failed on inputs {[list(x.shape) for x in inputs]}: {type(exc).__name__}: {exc}"
            if drawn:
                return message
            raise BadInputError(message) from None
        tf_inputs = [to_tf_input(x, layout) for x in inputs]
        try:
            got = tf_model(*tf_inputs)
        except Exception as exc:  # the user's TF code: say why, maybe another layout works
            return f"{type(exc).__name__}: {_first_line(exc)}"
        outputs.append(_compare_outputs(ref, got, layout, options))
        tf_seen = _record_tf(tf_model, tf_inputs, watched)
        modules.append(_compare_modules(torch_seen, tf_seen, pairs, layout, options))
    merged = merge_sets(outputs)
    report = ParityReport(runtimes=[RuntimeResult("tf", merged)], per_module=_merge_in_order(modules),
                          n_inputs=len(sets), tolerance=_tolerance(options))
    return _Result(report, not any(d.structural for d in merged))


def _tolerance(o: ParityOptions) -> dict:
    by_caller = o.rtol != DEFAULT_RTOL or o.atol is not None
    reason = o.reason or ("set by the caller" if by_caller else "float32 default: bound = 1e-4 * max(1, max|torch|)")
    per_module = {p: r for p, r in (o.module_rtols or {}).items() if r != o.rtol}
    return {"rtol": o.rtol, "atol": o.atol, "reason": reason, "per_module": per_module}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _record_tf(tf_model, tf_inputs, watched: dict[str, object]) -> list[tuple[str, list[np.ndarray]]]:
    """Run TF once more, eagerly (so tf.functions give values), recording the watched layers' outputs."""
    if not watched:
        return []
    seen: list = []
    eager = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        with recording_tf_calls(watched, seen):
            tf_model(*tf_inputs)
    except Exception:  # the output run worked; a failing recording run only loses per-module detail
        seen = []
    finally:
        tf.config.run_functions_eagerly(eager)
    return seen


def _tol(name: str, ref, got, layout: str, o: ParityOptions, rtol: float | None = None) -> Diff:
    ref = np.asarray(ref)
    d = compare(name, ref, align(ref, got, layout), o.rtol if rtol is None else rtol)
    if o.atol is not None and d.problem is None and ref.dtype.kind == "f" and d.bound < o.atol:
        d = Diff(d.name, d.shape, d.max_abs_error, d.max_rel_error, o.atol, d.max_abs_error <= o.atol, None, d.note)
    return d


def _compare_outputs(ref, got, layout: str, o: ParityOptions) -> list[Diff]:
    """Structure first (count; names when both sides return dicts), then each output in torch layout."""
    gots = flatten_outputs(got)
    named = isinstance(ref, Mapping) and isinstance(got, Mapping)
    return compare_outputs(flatten_outputs(ref), gots if named else [v for _, v in gots], o.rtol, "TF",
                           value=lambda n, r, g: _tol(n, r, g, layout, o))


def _compare_modules(torch_seen, tf_seen, pairs, layout, o) -> list[Diff]:
    """The k-th torch call of a path against the k-th TF call of its pair; unpaired calls are skipped."""
    tf_calls: dict[str, list] = {}
    for tf_path, outs in tf_seen:
        tf_calls.setdefault(tf_path, []).append(outs)
    count: dict[str, int] = {}
    diffs = []
    for path, refs in torch_seen:
        k = count[path] = count.get(path, -1) + 1
        calls = tf_calls.get(pairs[path], [])
        if k >= len(calls) or not refs:
            continue  # TF computes this part inline, not with the paired layer
        name = path if k == 0 else f"{path}#{k}"
        side = f"TF {pairs[path]}"
        diffs.append(_worst(compare_outputs([(name, r) for r in refs], calls[k], side=side,
                                            value=lambda n, r, g: _module_diff(n, r, g, layout, o))))
    return diffs


def _module_diff(name, ref, got, layout, o) -> Diff:
    rtol = (o.module_rtols or {}).get(name.split("#")[0])
    d = _tol(name, ref, got, layout, o, rtol)
    if d.ok or d.problem or ref.ndim != 2 or np.shape(got) != ref.shape:
        return d
    # A flatten of a channels-last map holds the same values per sample in another order: not a divergence
    # by itself (the next layer's weights absorb the order), and the next layer is compared anyway.
    rows = _tol(name, np.sort(ref, axis=1), np.sort(np.asarray(got), axis=1), "torch", o, rtol)
    if rows.ok:
        return Diff(name, d.shape, rows.max_abs_error, rows.max_rel_error, rows.bound, True,
                    "same values per sample in another order (a channels-last flatten)")
    return d


def _worst(diffs: list[Diff]) -> Diff:
    return merge(diffs[0].name, diffs)


def _merge_in_order(per_set: list[list[Diff]]) -> list[Diff]:
    names: list[str] = []
    by_name: dict[str, list[Diff]] = {}
    for diffs in per_set:
        for d in diffs:
            if d.name not in by_name:
                names.append(d.name)
            by_name.setdefault(d.name, []).append(d)
    return [merge(n, by_name[n]) for n in names]
