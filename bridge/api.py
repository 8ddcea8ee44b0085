"""The public surface: ``convert(module, example_inputs) -> Port``.

The data flows one way: trace -> plan (all unsupported parts found at once)
-> generate source -> build -> load weights (every key accounted for) ->
parity -> save (SavedModel, tfjs) -> verify the saved artifacts again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import codegen, overlap, parity
from . import layout as lay
from .build import account_keys, instantiate, load_weights, trainable_keys
from .errors import BadInputError, UnsupportedError
from .plan import Plan, plan_graph
from .registry import Registry, default_registry
from .tolerances import Resolved, ToleranceConfig, resolve
from .trace import LeafRoot, record, tensor_at, trace, wrap_leaf_root


@dataclass(frozen=True)
class Options:
    seed: int = 0
    tolerance: ToleranceConfig = field(default_factory=ToleranceConfig)  # overrides; see tolerances.py
    n_random_inputs: int = 2
    class_name: str | None = None
    channels_last_io: bool = False  # image inputs NHWC (what tf.browser.fromPixels gives), maps returned NHWC
    source_imports_bridge: bool = False  # model_tf.py imports bridge.layers instead of bridge_layers.py
    origin: str | None = None  # where the module came from, for the generated docstring
    # TF parity compares every module on the example set, and on another set only where that set's
    # outputs miss their bound (to find where); True: every module on every set
    per_module_all_sets: bool = False


@dataclass
class Port:
    """A converted model: the torch original, the TF twin, and how they relate."""

    module: torch.nn.Module
    example_inputs: tuple
    plan: Plan
    source: str
    tf_model: object
    bindings: list
    keys: object  # build.KeyReport
    options: Options
    dynamic_batch: bool
    dynamic_dims: list = field(default_factory=list)  # per input: the non-batch dims the exported model leaves free
    extra_inputs: list = field(default_factory=list)  # user-supplied parity inputs (tuples of tensors)
    smaller_inputs: tuple | None = None  # the free dims at a quarter of their size, when torch runs there
    notes: list = field(default_factory=list)  # e.g. checkpoint unwrapping and dtype casts
    checkpoint: object = None  # checkpoint.Checkpoint when converted from a file
    timings: dict = field(default_factory=dict)  # seconds of convert's steps (trace, build, ...), for report.json
    serving_fn: object = field(default=None, repr=False)  # savedmodel.serving_function, once traced for free dims
    _parity: parity.ParityReport | None = None
    _torch_seen: dict = field(default_factory=dict, repr=False)  # input-set digest -> torch's flat outputs

    @property
    def tolerance(self) -> Resolved:
        """The parity bound of each module and of the outputs (bound = rtol * max(1, max|torch|))."""
        layers = {p: (u.module_type, u.tolerance) for p, u in self.plan.layers.items()}
        layers.update({f"op:{name}": (name, tol) for name, tol in self.plan.tolerances.items()})
        return resolve(layers, self.options.tolerance)

    @property
    def input_names(self) -> list[str]:
        return self.plan.input_names

    @property
    def output_names(self) -> list[str]:
        return self.plan.output_names

    def parity_inputs(self) -> list[tuple]:
        sets = parity.make_inputs(self.example_inputs, self.options.seed, self.options.n_random_inputs)
        if self.dynamic_batch:  # prove the dynamic batch dim, too
            sets += parity.make_inputs(self.example_inputs, self.options.seed + 1, 1, batch=3)[1:]
        if any(self.dynamic_dims):  # and the free sequence (or spatial) lengths, larger and smaller
            sets.append(other_lengths(self.example_inputs, self.dynamic_dims, self.options.seed + 2))
        if self.smaller_inputs is not None:  # also the cheapest set for a slow runtime (runners.NodeTfjsRunner)
            sets.append(self.smaller_inputs)
        return sets + list(self.extra_inputs)

    def torch_outputs(self, inputs: tuple, boundary: bool = False) -> list[tuple[str, np.ndarray]]:
        """torch's outputs, flattened; ``boundary=True`` puts them in the exported model's layout
        (channels-last maps with ``channels_last_io``), which is what the artifacts are compared with.

        Each input set runs in torch once: the free-size check, TF parity and every saved artifact's
        check ask for the same sets (up to 24 ResNet-50 forwards, 1.6 s, before), so a set with the same
        values reuses its outputs (read-only arrays; up to ``TORCH_MEMO_BYTES`` of them)."""
        key = _digest(inputs)
        flat = self._torch_seen.get(key) if key else None
        if flat is None:
            with torch.no_grad():
                out = self.module(*inputs)
            flat = self._remember(key, out)
        if boundary and self.channels_last_io:
            flat = [(n, lay.to_tf(a, lo)) for (n, a), lo in zip(flat, self.plan.output_layouts)]
        return flat

    def _remember(self, key: str | None, out) -> list[tuple[str, np.ndarray]]:
        """torch's output structure flattened to read-only arrays, kept under ``key`` while they fit."""
        flat = [(n, parity.to_numpy(v)) for n, v in parity.flatten_outputs(out)]
        for _, a in flat:
            a.flags.writeable = False
        held = sum(a.nbytes for f in self._torch_seen.values() for _, a in f)
        if key and held + sum(a.nbytes for _, a in flat) <= TORCH_MEMO_BYTES:
            self._torch_seen[key] = flat
        return flat

    @property
    def channels_last_io(self) -> bool:
        return any(not lo.is_identity for lo in (*self.plan.input_layouts, *self.plan.output_layouts))

    def boundary_inputs(self, inputs: tuple) -> list:
        """An input set as the TF port and its artifacts take it (torch's layout unless channels_last_io)."""
        if not self.channels_last_io:
            return list(inputs)
        return [lay.to_tf(parity.to_numpy(x), lo) for x, lo in zip(inputs, self.plan.input_layouts)]

    def boundary_shape(self, index: int, shape: list) -> list:
        """Input ``index``'s torch shape (a list, None for free dims) in the boundary's layout."""
        layouts = self.plan.input_layouts
        return layouts[index].tf_shape(shape) if index < len(layouts) else shape

    def outputs_in_torch_layout(self, out):
        """The TF port's output structure with every channels-last boundary output put back in torch's layout."""
        if not self.channels_last_io:
            return out
        leaves = iter(self.plan.output_layouts)

        def walk(v):
            if isinstance(v, (list, tuple)):
                return type(v)(walk(x) for x in v)
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            return None if v is None else lay.to_torch(np.asarray(v), next(leaves))

        return walk(out)

    def parity(self) -> parity.ParityReport:
        """TF vs torch on every parity input: per output, and per module for the first divergence."""
        if self._parity is None:
            t = time.perf_counter()
            self._parity = self._run_parity()
            self.timings["tf_parity_s"] = time.perf_counter() - t
        return self._parity

    def _run_parity(self) -> parity.ParityReport:
        from .export.runners import Merged, TFRunner, output_compare

        layouts = self.plan.module_layouts()
        tol = self.tolerance
        rtols = {p: t.rtol for p, t in tol.per_module.items()}
        outputs, modules = Merged(), Merged()
        sets, runner, tapped = self.parity_inputs(), TFRunner(self), 0
        compare = output_compare(tol.output.rtol, "TF")
        for k, inputs in enumerate(sets):  # one set at a time: a tapped one holds every module's output twice
            if k and not self.options.per_module_all_sets:  # outputs first; modules only where they miss
                expected = self.torch_outputs(inputs)
                run = runner.run([inputs], taps=False)["tf"][0]
                diffs = compare(expected, run, "tf")
                if all(d.ok for d in diffs):
                    outputs.add("tf", expected, run, lambda *_: diffs)
                    continue
            ref, torch_seen = parity.torch_module_outputs(self.module, inputs, self.plan.module_paths)
            run = runner.run([inputs])["tf"][0]
            outputs.add("tf", self._remember(_digest(inputs), ref), run, compare)
            modules.add("tf", torch_seen, run, lambda seen, r, _: parity.per_module_diffs(seen, r.extra, layouts, rtols))
            tapped += 1
        return parity.ParityReport([parity.RuntimeResult("tf", outputs.result()["tf"])], modules.result()["tf"],
                                   len(sets), tol.to_dict(), per_module_inputs=tapped)

    def gradient_parity(self, **kwargs):
        """torch's vs the port's gradients of every trainable variable (eval mode); see ``bridge.gradients``."""
        from .gradients import gradient_parity

        return gradient_parity(self, **kwargs)

    def save(self, out, **kwargs):
        """Write SavedModel, tfjs, model_tf.py and report.json to ``out``; see ``bridge.export.save``."""
        from .export.save import save

        return save(self, out, **kwargs)


TORCH_MEMO_BYTES = 256 << 20  # Port.torch_outputs keeps torch's outputs of input sets up to this many bytes


def _digest(inputs: tuple) -> str | None:
    """The values of an input set (dtype, shape and bytes of each tensor); None if one is not an array."""
    h = hashlib.blake2b(digest_size=16)
    for x in inputs:
        if not isinstance(x, (torch.Tensor, np.ndarray)):
            return None
        a = np.ascontiguousarray(parity.to_numpy(x))
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


@dataclass
class Traced:
    """What the torch side of ``convert`` (trace -> plan; no TF) hands the TF side. It pickles
    (with cloudpickle: transforms are lambdas), so it can come from a forked child (bridge.overlap)."""

    plan: Plan
    free: list  # per input, the non-batch dims left free
    graph_values: dict  # plan.params target -> array, or the state_dict key whose tensor it is
    dynamic_batch: bool
    fixed_note: str | None
    seconds: float


OVERLAP_MAX_BYTES = 1 << 30  # above this many bytes of weights, convert(meanwhile=...) traces in this process


def convert(module: torch.nn.Module, example_inputs, *, registry: Registry | None = None,
            options: Options | None = None, meanwhile=None) -> Port:
    """Trace ``module`` on ``example_inputs`` (a tuple, as in ``module(*example_inputs)``) and build its TF port.

    ``meanwhile``: something slow this process should do at the same time (the CLI imports TF); the
    torch side then runs in a forked child beside it (bridge.overlap). For models over
    ``OVERLAP_MAX_BYTES`` of weights it runs first, then the torch side here: the child would share
    the weights' pages, and the bytes dominate the time anyway.
    """
    options = options or Options()
    registry = registry or default_registry()
    example_inputs = _as_tuple(example_inputs)
    module = wrap_leaf_root(module.eval(), registry)
    work = lambda: trace_and_plan(module, example_inputs, registry, options)  # noqa: E731
    forked = False
    if meanwhile is None:
        traced = work()
    elif sum(v.nbytes for v in module.state_dict().values()) > OVERLAP_MAX_BYTES:
        meanwhile()
        traced = work()
    else:
        traced, forked = overlap.beside(work, meanwhile)
    port = build_port(module, example_inputs, traced, options)
    if forked:  # the trace's seconds were spent beside ``meanwhile``, not after it
        port.timings["trace_overlapped_s"] = traced.seconds
    return port


def trace_and_plan(module: torch.nn.Module, example_inputs: tuple, registry: Registry, options: Options) -> Traced:
    """The torch side of ``convert``: free dims, trace, plan (all unsupported parts raised at once)."""
    t0 = time.perf_counter()
    _runs_on(module, example_inputs)
    free = free_dims(module, example_inputs)
    class_name = options.class_name or _class_name(module)
    modules = dict(module.named_modules())
    gm, results, plan = _traced_plan(module, example_inputs, registry, free, class_name, modules, options)
    fixed_note = None
    if plan.unsupported and any(free):  # sizes read at run time can need ops a static size does not
        static = [frozenset() for _ in free]
        retry = _traced_plan(module, example_inputs, registry, static, class_name, modules, options)
        if not retry[2].unsupported:
            fixed_note = (f"fixed at the traced size: dims {_dims_text(example_inputs, free)} (with them free: "
                          f"{plan.unsupported[0].line()})")
            (gm, results, plan), free = retry, static
    if plan.unsupported:
        raise UnsupportedError(plan.unsupported)
    own = {(v.data_ptr(), v.shape, v.stride(), v.dtype): k for k, v in module.state_dict().items() if v.numel()}
    graph_values = {}
    for target in plan.params:  # incl. constants; a module's own tensor goes by its key, not by value
        v = tensor_at(gm, target).detach().cpu()
        key = own.get((v.data_ptr(), v.shape, v.stride(), v.dtype)) if v.numel() else None
        graph_values[target] = key if key is not None else v.numpy()
    return Traced(plan, free, graph_values, _batch_is_dynamic(module, example_inputs), fixed_note,
                  time.perf_counter() - t0)


def build_port(module: torch.nn.Module, example_inputs: tuple, traced: Traced, options: Options) -> Port:
    """The TF side of ``convert``: source, TF model, weights (every key accounted for), free dims confirmed."""
    t1 = time.perf_counter()
    plan, modules = traced.plan, dict(module.named_modules())
    source = codegen.generate(plan, modules, options.origin or f"{type(module).__module__}.{type(module).__qualname__}",
                              imports_bridge=options.source_imports_bridge)
    tf_model = instantiate(source, plan.class_name)
    bindings = codegen.binding_paths(plan, modules)
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    graph_values = {t: (state[v] if isinstance(v, str) else v) for t, v in traced.graph_values.items()}
    load_weights(tf_model, bindings, {**state, **graph_values}, trainable_keys(module))
    ignored = [(f"{p}.{name}", why) for p, u in plan.layers.items() for name, why in u.plan.ignored]
    keys = account_keys(bindings, ignored, list(state))
    port = Port(module, example_inputs, plan, source, tf_model, bindings, keys, options,
                traced.dynamic_batch, traced.free)
    if traced.fixed_note:
        port.notes.append(traced.fixed_note)
    t2 = time.perf_counter()
    _confirm_free_dims(port)
    port.timings = {"trace_s": traced.seconds, "build_s": t2 - t1, "free_dims_s": time.perf_counter() - t2}
    return port


def _traced_plan(module, examples, registry, free, class_name, modules, options):
    gm = trace(module, examples, registry, free)
    results = record(gm, examples)
    return gm, results, plan_graph(gm, modules, results, registry, class_name, options.channels_last_io)


def _dims_text(examples: tuple, free: list) -> str:
    return ", ".join(f"input {i} dim {', '.join(map(str, sorted(f)))}" for i, f in enumerate(free) if f)


def _other_size(n: int) -> int:
    return n + 3


def _smaller_size(n: int) -> int:
    return max(2, n // 4)


def other_lengths(examples: tuple, dims: list, seed: int, size=_other_size) -> tuple:
    """Seeded inputs like ``examples`` with every free non-batch dim at another size (``size(n)``)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for x, free in zip(examples, dims):
        shape = [(size(n) if d in free else n) for d, n in enumerate(x.shape)]
        if x.dtype.is_floating_point:
            out.append(torch.randn(shape, generator=gen).to(x.dtype))
        elif x.dtype == torch.bool:
            out.append(torch.randint(0, 2, shape, generator=gen).bool())
        else:  # ids stay within what the example uses; 0/1 masks stay 0/1
            high = int(x.max()) + 1 if x.numel() else 1
            out.append(torch.randint(0, max(high, 1), shape, generator=gen, dtype=x.dtype))
    return tuple(out)


def free_dims(module: torch.nn.Module, examples: tuple) -> list[frozenset]:
    """Per input, the non-batch dims torch also runs at another size (sequence lengths, often).

    Dims of equal size across inputs (``input_ids`` and ``attention_mask`` share the sequence
    length) are tried together first, then one at a time; a dim of size 1 stays fixed.
    """
    free: list[set] = [set() for _ in examples]
    by_size: dict[int, list[tuple[int, int]]] = {}
    for i, x in enumerate(examples):
        for d in range(1, x.dim()):
            if x.shape[d] >= 2:
                by_size.setdefault(int(x.shape[d]), []).append((i, d))
    for group in by_size.values():
        for members in ([group] + ([[m] for m in group] if len(group) > 1 else [])):
            if all(d in free[i] for i, d in members):
                continue
            dims = [set(free[i]) | {d for j, d in members if j == i} for i in range(len(examples))]
            if _runs_at(module, examples, dims):
                for i, d in members:
                    free[i].add(d)
                if members is group:
                    break
    return [frozenset(f) for f in free]


def _runs_at(module, examples: tuple, dims: list) -> bool:
    try:
        with torch.no_grad():
            module(*other_lengths(examples, dims, 0))
        return True
    except Exception:  # the user's model refuses that size: the dim is fixed
        return False


def _confirm_free_dims(port: Port) -> None:
    """Keep a free dim only if the TF port, traced with that dim unknown, computes torch's values at another size.

    The traced graph may have fixed a size (a mapped layer's internals, or code that reads a size
    as a constant); then that dim keeps its traced size, and the report says so. Dims of equal
    size (``input_ids`` and ``attention_mask`` share the sequence length) are tried together.
    """
    if not any(port.dynamic_dims) or _follows(port, port.dynamic_dims):
        port.smaller_inputs = _smaller_inputs(port, port.dynamic_dims)
        return
    groups: dict[int, list[tuple[int, int]]] = {}
    for i, (x, free) in enumerate(zip(port.example_inputs, port.dynamic_dims)):
        for d in free:
            groups.setdefault(int(x.shape[d]), []).append((i, d))
    kept: list[set] = [set() for _ in port.example_inputs]
    for members in groups.values():
        trial = [set(k) for k in kept]
        for i, d in members:
            trial[i].add(d)
        if _follows(port, trial):
            kept = trial
    dropped = [(n, sorted(set(f) - k)) for n, f, k in zip(port.input_names, port.dynamic_dims, kept) if set(f) - k]
    port.notes.append("fixed at the traced size (the TF graph does not follow torch at other sizes): "
                      + ", ".join(f"{n} dim {', '.join(map(str, d))}" for n, d in dropped))
    port.dynamic_dims = [frozenset(k) for k in kept]
    port.smaller_inputs = _smaller_inputs(port, port.dynamic_dims)


def _smaller_inputs(port: Port, dims: list) -> tuple | None:
    """Inputs with every free dim at a quarter of its size (at least 2), when that shrinks one and torch
    runs there with non-empty outputs; else None (then only larger sizes are checked)."""
    if not any(_smaller_size(int(x.shape[d])) < x.shape[d] for x, free in zip(port.example_inputs, dims) for d in free):
        return None
    inputs = other_lengths(port.example_inputs, dims, port.options.seed + 3, _smaller_size)
    try:
        outs = port.torch_outputs(inputs)
    except Exception:  # the model needs a minimum size
        return None
    return inputs if outs and all(a.size for _, a in outs) else None


def _follows(port: Port, dims: list) -> bool:
    """The TF port traced with ``dims`` unknown matches torch on inputs where those dims change size:
    larger, and smaller where torch runs at a quarter of the size."""
    import tensorflow as tf

    from .export.savedmodel import serving_function, tf_dtype

    if not any(dims):
        return True
    specs = [tf.TensorSpec(port.boundary_shape(i, [None if (d in free or (d == 0 and port.dynamic_batch)) else n
                                                   for d, n in enumerate(x.shape)]), tf_dtype(x.dtype))
             for i, (x, free) in enumerate(zip(port.example_inputs, dims))]
    sets = [other_lengths(port.example_inputs, dims, port.options.seed + 2), _smaller_inputs(port, dims)]
    try:
        if dims == port.dynamic_dims:  # the exported signature: the SavedModel reuses this trace
            port.serving_fn = serving = serving_function(port)
            fn = lambda *a: list(serving(*a).values())  # noqa: E731 - in port.output_names order
        else:
            fn = tf.function(lambda *a: [t for _, t in parity.flatten_outputs(port.tf_model(*a))],
                             input_signature=specs, autograph=False)
        for inputs in (s for s in sets if s is not None):
            got = fn(*[tf.constant(parity.to_numpy(x).astype(s.dtype.as_numpy_dtype))
                       for x, s in zip(port.boundary_inputs(inputs), specs)])
            ref = port.torch_outputs(inputs, boundary=True)
            if not all(d.ok for d in parity.compare_outputs(ref, [np.asarray(g) for g in got],
                                                            port.tolerance.output.rtol)):
                return False
        return True
    except Exception:  # the graph cannot be traced or run with those sizes unknown
        return False

def _runs_on(module: torch.nn.Module, examples: tuple) -> None:
    """The torch model must run on the example inputs before anything else is tried."""
    try:
        with torch.no_grad():
            module(*examples)
    except Exception as exc:
        shapes = ", ".join(f"{list(x.shape)}:{str(x.dtype).replace('torch.', '')}" for x in examples)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInputError(f"the torch module fails on the example inputs ({shapes}): {first}") from None


def _as_tuple(example_inputs) -> tuple:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    example_inputs = tuple(example_inputs)
    if not example_inputs or not all(isinstance(x, torch.Tensor) for x in example_inputs):
        raise BadInputError("example_inputs must be a tensor or a non-empty tuple of tensors")
    return example_inputs


def _class_name(module: torch.nn.Module) -> str:
    name = type(getattr(module, "model", module) if isinstance(module, LeafRoot) else module).__name__
    return name if name.isidentifier() else "Model"


def _batch_is_dynamic(module: torch.nn.Module, examples: tuple) -> bool:
    """True when torch runs the same model with another batch size and its outputs follow it."""
    if any(x.dim() == 0 for x in examples):
        return False
    gen = torch.Generator().manual_seed(12345)
    try:
        with torch.no_grad():
            base = parity.flatten_outputs(module(*examples))
            other = parity.flatten_outputs(module(*[parity._random_like(x, gen, x.shape[0] + 2) for x in examples]))
    except Exception:
        return False
    b = examples[0].shape[0]
    return all(v.dim() > 0 and o.dim() > 0 and v.shape[0] == b and o.shape[0] == b + 2
               for (_, v), (_, o) in zip(base, other))
