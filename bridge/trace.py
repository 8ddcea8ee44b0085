"""trace: torch module -> an fx graph of leaf-module calls and ATen ops.

We trace with non-strict ``torch.export`` (docs/tracers.md has the measured
comparison: fx symbolic tracing fails on HF models and on shape-dependent
Python, export traced every model tried).

* A *leaf* module (registry verdict *mapped* or *not supported*) is one opaque
  ``bridge::leaf`` op while exporting (``opaque_leaves``): export never traces
  into it, and the op node is folded back into one ``call_module`` node with
  exactly the module's arguments (tensors, tuples of them, flags) and its
  output structure.
* A *decomposed* module (containers, composites such as the transformer
  stacks, user code) is traced through; its ATen ops are translated by the op
  mappings. Export tags each op with the stack of modules it ran in; the
  values each decomposed call returned are found in the graph and marked with
  ``tap`` nodes, so per-module parity still reports it at its path.

The batch dimension is traced symbolically when the model allows it, so sizes
read from a tensor (``x.size(0)``) stay dynamic in the TF graph.
"""

from __future__ import annotations

import contextlib
import operator
import warnings
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.utils._pytree as pytree
from torch.export import Dim
from torch.export.graph_signature import InputKind

from .errors import BadInputError, Unsupported, UnsupportedError
from .plan import TensorMeta, trace_tap as tap
from .registry import Registry, Verdict

_CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)
# bookkeeping ops export adds; they compute nothing the TF graph needs
_DROP = {"aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
         "aten.sym_constrain_range_for_size.default", "aten._assert_async.msg"}


def is_leaf(module: torch.nn.Module | None, registry: Registry) -> bool:
    """A module the tracer keeps as one call: mapped or refused. Decomposed ones are traced through."""
    return module is not None and registry.verdict(module).verdict != Verdict.DECOMPOSE


def trace(module: torch.nn.Module, example_inputs: tuple, registry: Registry, free_dims=None) -> fx.GraphModule:
    """Export ``module`` on ``example_inputs`` and fold leaf modules back into single nodes.

    ``free_dims`` lists, per input, non-batch dims to keep symbolic (a sequence length).

    A model that is itself one mapped module (a bare ``nn.Linear``) must be wrapped by the
    caller (see ``wrap_leaf_root``): export has no module path for the root to fold into.
    """
    refuse_packed_sequences(module, example_inputs)
    leaf_paths, _ = _outer_paths(module, registry)
    leaves = _Leaves()
    with opaque_leaves(module, leaf_paths, leaves):
        ep, args = _export(module, example_inputs, free_dims or [()] * len(example_inputs), leaves.restart)
    calls = record_calls(module, args, registry)
    scopes = _scopes(ep, module, registry)
    with _active(leaves):
        values = _node_values(ep, module, args, scopes.boundary)
    return _fold(module, ep, calls, scopes, values, leaves.contexts)


# ---------------------------------------------------------------- leaf modules as single opaque ops
@dataclass
class _LeafContext:
    """One call of a leaf module during export: where it is, and the non-tensor parts of its call."""

    path: str
    forward: object  # the module's own bound forward
    template: object  # pytree spec of (args, kwargs)
    constants: list  # the flat (args, kwargs) leaves, with None where a tensor goes
    out_paths: list = None  # index path in the return value of each tensor the op returns
    out_structure: object = None  # the return value with tensors replaced by None


_CONTEXTS: ContextVar[dict | None] = ContextVar("bridge_leaf_contexts", default=None)
_LEAF_OP = None


def _leaf_op():
    """``bridge::leaf(key, tensors) -> tensors``: one graph node per leaf call (defined on first use)."""
    global _LEAF_OP
    if _LEAF_OP is None:
        @torch.library.custom_op("bridge::leaf", mutates_args=())
        def leaf(key: str, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
            return _run_leaf(key, tensors)

        leaf.register_fake(_run_leaf)
        _LEAF_OP = leaf
    return _LEAF_OP


def _run_leaf(key: str, tensors):
    """Run the leaf's real forward (on fake tensors while exporting) and return its tensors, fresh."""
    ctx = _CONTEXTS.get()[key]
    feed = iter(tensors)
    flat = [next(feed) if c is None else c[0] for c in ctx.constants]
    args, kwargs = pytree.tree_unflatten(flat, ctx.template)
    out = ctx.forward(*args, **kwargs)
    found = list(_leaves(out))
    ctx.out_paths = [index for index, _ in found]
    ctx.out_structure = _without_tensors(out)
    return [t.clone() for _, t in found]


def _without_tensors(out):
    if isinstance(out, torch.Tensor):
        return None
    if isinstance(out, (list, tuple)):
        return type(out)(_without_tensors(v) for v in out)
    return out


class _Leaves:
    """The leaf calls of the current export attempt, keyed by the op's key argument ("path#k")."""

    def __init__(self):
        self.contexts: dict[str, _LeafContext] = {}
        self.counts: dict[str, int] = {}

    def restart(self) -> None:
        """Before each export attempt: call numbers count from 0 again."""
        self.contexts.clear()
        self.counts.clear()


@contextlib.contextmanager
def _active(leaves: _Leaves):
    token = _CONTEXTS.set(leaves.contexts)
    try:
        yield
    finally:
        _CONTEXTS.reset(token)


@contextlib.contextmanager
def opaque_leaves(module, paths: list[str], leaves: _Leaves):
    """While exporting, each leaf module's forward is one ``bridge::leaf`` op.

    Export then never traces into a mapped (or refused) module: its internals cost no
    tracing time, cannot fail the export, and the call keeps exactly its arguments.
    """
    op = _leaf_op()
    modules = dict(module.named_modules())

    def wrapper(path, forward):
        def call(*args, **kwargs):
            flat, template = pytree.tree_flatten((args, kwargs))
            k = leaves.counts.get(path, 0)
            leaves.counts[path] = k + 1
            key = f"{path}#{k}"
            ctx = leaves.contexts[key] = _LeafContext(
                path, forward, template, [None if isinstance(v, torch.Tensor) else (v,) for v in flat])
            outs = op(key, [v for v in flat if isinstance(v, torch.Tensor)])
            return _rebuild(ctx.out_structure, dict(zip(map(tuple, ctx.out_paths), outs)))

        return call

    try:
        for p in paths:
            modules[p].forward = wrapper(p, modules[p].forward)
        with _active(leaves):
            yield
    finally:
        for p in paths:
            modules[p].__dict__.pop("forward", None)


def _rebuild(structure, tensors: dict, prefix: tuple = ()):
    if isinstance(structure, (list, tuple)):
        return type(structure)(_rebuild(v, tensors, (*prefix, i)) for i, v in enumerate(structure))
    return tensors.get(prefix, structure)


# ---------------------------------------------------------------- the real calls, recorded eagerly
def _outer_paths(module, registry) -> tuple[list[str], list[str]]:
    """(leaf paths, decomposed paths) of the modules forward() can reach as calls (not inside a leaf)."""
    leaves, decomposed = [], []
    for path, m in module.named_modules():
        if not path or any(path.startswith(p + ".") for p in leaves):
            continue
        if is_leaf(m, registry):
            leaves.append(path)
        elif not isinstance(m, _CONTAINERS):  # a container's output is its last child's: nothing new to compare
            decomposed.append(path)
    return leaves, decomposed


def record_calls(module, args: tuple, registry: Registry) -> dict[str, list]:
    """Per decomposed module path, the return value of each call, in the order the calls start."""
    _, decomposed = _outer_paths(module, registry)
    seen: dict[str, list] = {}
    open_calls: dict[str, list[int]] = {}
    modules = dict(module.named_modules())
    hooks = []
    for p in decomposed:
        def pre(mod, a, p=p):
            open_calls.setdefault(p, []).append(len(seen.setdefault(p, [])))
            seen[p].append(None)

        def post(mod, a, out, p=p):
            seen[p][open_calls[p].pop()] = out

        hooks.append(modules[p].register_forward_pre_hook(pre))
        hooks.append(modules[p].register_forward_hook(post))
    try:
        with torch.no_grad():
            module(*args)
    finally:
        for h in hooks:
            h.remove()
    return seen


def refuse_packed_sequences(module, examples: tuple) -> None:
    """PackedSequence has no TF counterpart: say so, and what to do instead, before tracing."""
    from torch.nn.utils.rnn import PackedSequence

    found: list[str] = []

    def pre(mod, a, kw, p):
        if any(isinstance(v, PackedSequence) for v in (*a, *kw.values())):
            found.append(p)

    hooks = [m.register_forward_pre_hook(lambda mod, a, kw, p=p: pre(mod, a, kw, p), with_kwargs=True)
             for p, m in module.named_modules() if p]
    try:
        with torch.no_grad():
            module(*examples)
    except Exception:
        pass  # the caller already ran the model; failures are reported there
    finally:
        for h in hooks:
            h.remove()
    if found:
        raise UnsupportedError([Unsupported(p, "torch.nn.utils.rnn.PackedSequence", _PACKED_ADVICE)
                                for p in dict.fromkeys(found)])


_PACKED_ADVICE = ("PackedSequence inputs cannot be converted: call the RNN on the padded batch (batch_first or "
                  "not) instead, and read each sequence's last valid step with its lengths "
                  "(output[torch.arange(N), lengths - 1]) or mask the padded steps")


class LeafRoot(torch.nn.Module):
    """Holds a model that is a single mapped module, so it gets a path ("model") of its own."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model(*args)


def wrap_leaf_root(module: torch.nn.Module, registry: Registry) -> torch.nn.Module:
    return LeafRoot(module) if is_leaf(module, registry) else module


def _export(module, examples, free_dims, restart=lambda: None):
    """Non-strict export, with a symbolic batch dim when the model accepts a batch of 2.

    Returns the program and the inputs it was traced on (later steps replay exactly those).
    """
    batched = tuple(_batch_of_two(x) if x.dim() else x for x in examples)
    dynamic = tuple({d: Dim.AUTO for d in {0, *free}} if x.dim() else None for x, free in zip(examples, free_dims))
    only_free = tuple({d: Dim.AUTO for d in free} or None if x.dim() else None
                      for x, free in zip(examples, free_dims))
    first_error = None
    attempts = [(batched, dynamic), *([(examples, only_free)] if any(free_dims) else []), (examples, None)]
    for args, shapes in attempts:
        restart()
        try:
            with warnings.catch_warnings():  # export's advice is for export users, not ours
                warnings.simplefilter("ignore")
                return torch.export.export(module, args, dynamic_shapes=shapes, strict=False), args
        except Exception as exc:  # export raises many types; the static retry decides
            first_error = first_error or exc
    text = str(first_error).strip()
    first = text.splitlines()[0] if text else type(first_error).__name__
    raise UnsupportedError([Unsupported("forward()", type(module).__name__,
                                        f"torch.export cannot trace it ({type(first_error).__name__}: {first})")])


def _batch_of_two(x: torch.Tensor) -> torch.Tensor:
    """The example with a batch of at least 2 (so export keeps the batch symbolic); an empty batch
    becomes zeros, since repeating it stays empty and export would fix the batch at 0."""
    if x.shape[0] == 0:
        return torch.zeros((2, *x.shape[1:]), dtype=x.dtype)
    return torch.cat([x, x])[: max(2, x.shape[0])]


# ---------------------------------------------------------------- which ops ran in which module
@dataclass
class _Scopes:
    """Which decomposed module calls each op ran in, keyed by export's module-stack keys."""

    decomposed_of: dict  # node -> [(call key, path)] of the decomposed modules it ran in
    boundary: set  # nodes whose values later steps compare with recorded tensors


def _scopes(ep, module, registry) -> _Scopes:
    modules = dict(module.named_modules(remove_duplicate=False))
    canonical = {id(m): p for p, m in module.named_modules()}
    decomposed_of = {}
    for n in ep.graph.nodes:
        if n.op != "call_function" or str(n.target) in _DROP:
            continue
        outer = []
        for key, (path, _) in (n.meta.get("nn_module_stack") or {}).items():
            m = modules.get(path)
            if not path or m is None:
                continue
            if is_leaf(m, registry):
                break
            outer.append((key, canonical[id(m)]))
        decomposed_of[n] = outer
    boundary = set()
    for n in ep.graph.nodes:
        if n.op == "placeholder" or any(u.op == "output" or decomposed_of.get(u) != decomposed_of.get(n)
                                        for u in n.users):
            boundary.add(n)
    return _Scopes(decomposed_of, boundary)


def _node_values(ep, module, args: tuple, keep: set) -> dict:
    """Real values of the ``keep`` nodes, from running the exported graph on ``args``."""
    flat = []
    user = iter(pytree.tree_leaves(args))
    for spec in ep.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            flat.append(next(user))
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            flat.append(tensor_at(module, spec.target))
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            flat.append(ep.constants[spec.target])
        else:
            return {}  # tokens or script objects: fall back to matching by shape
    values: dict = {}

    class Keep(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n in keep and isinstance(out, torch.Tensor):
                values[n] = out
            return out

    try:
        with torch.no_grad():
            Keep(ep.graph_module).run(*flat)
    except Exception:
        return {}  # matching by shape still works for most models
    return values


# ---------------------------------------------------------------- folding
class _Matcher:
    """Finds the graph value that holds a recorded tensor: same shape and dtype, equal values."""

    def __init__(self, values: dict):
        self.values = values

    def same(self, node, tensor: torch.Tensor) -> bool:
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor) or val.dtype != tensor.dtype or val.dim() != tensor.dim():
            return False
        if not all(not isinstance(a, int) or a == b for a, b in zip(val.shape, tensor.shape)):
            return False
        real = self.values.get(node)
        if real is None:
            return not self.values  # no values at all: shape and dtype must do
        if real.shape != tensor.shape:
            return False
        if not real.dtype.is_floating_point:
            return bool(torch.equal(real, tensor))
        # torch's eager kernels (e.g. MultiheadAttention's fused fast path) may round differently
        # from the exported ops: equal up to float32 noise is the same value
        scale = float(tensor.abs().max()) if tensor.numel() else 0.0
        return bool(torch.allclose(real, tensor, rtol=0, atol=1e-4 * max(1.0, scale), equal_nan=True))

    def find(self, tensor, candidates, taken: set):
        free = [n for n in candidates if n not in taken and self.same(n, tensor)]
        hit = free or [n for n in candidates if self.same(n, tensor)]
        return hit[0] if hit else None


@dataclass
class _LeafOut:
    """A folded leaf call and the index path of each tensor its op returned."""

    call: fx.Node
    paths: list


def _fold(module, ep, calls, scopes: _Scopes, values, contexts: dict) -> fx.GraphModule:
    """The exported graph with each ``bridge::leaf`` op turned back into a call of its module."""
    modules = dict(module.named_modules())
    kinds = {s.arg.name: s for s in ep.graph_signature.input_specs if hasattr(s.arg, "name")}
    nodes = [n for n in ep.graph.nodes if not (n.op == "call_function" and str(n.target) in _DROP)]
    taps = _decomposed_taps(nodes, scopes, calls, _call_indices(nodes, scopes), _Matcher(values))
    leaf = _leaf_op()._opoverload
    graph, env, attrs = fx.Graph(), {}, {}
    for n in nodes:
        if n.op == "placeholder":
            env[n] = _placeholder(graph, n, kinds[n.name], module, ep, attrs)
        elif n.op == "call_function" and n.target == leaf:
            ctx = contexts[n.args[0]]
            tensors = iter([_lookup(env, a) for a in n.args[1]])
            args, kwargs = pytree.tree_unflatten([next(tensors) if c is None else c[0] for c in ctx.constants],
                                                 ctx.template)
            attrs[ctx.path] = modules[ctx.path]
            call = graph.call_module(ctx.path, tuple(args), dict(kwargs))
            call.meta = dict(n.meta)
            env[n] = _LeafOut(call, ctx.out_paths)
            continue
        elif n.op == "call_function" and n.target is operator.getitem and isinstance(env.get(n.args[0]), _LeafOut):
            out = env[n.args[0]]
            node = out.call
            for i in out.paths[n.args[1]]:
                node = graph.call_function(operator.getitem, (node, i))
            node.meta = dict(n.meta)
            env[n] = node
        elif n.op == "output":  # the flat outputs, rebuilt into the model's own structure (dicts too)
            flat = fx.map_arg(n.args[0], lambda a: _lookup(env, a))
            graph.output(pytree.tree_unflatten(list(flat), ep.call_spec.out_spec))
            continue
        else:
            env[n] = graph.node_copy(n, lambda a: _lookup(env, a))
        # a value several nested calls return is tapped innermost first: each tap ends its own call
        marked = [(where, index, _stack_through(n, key)) for where, index, key in taps.get(n, ())]
        for where, index, stack in sorted(marked, key=lambda t: -len(t[2])):
            marker = graph.call_function(tap, (where, index, env[n]))
            marker.meta["nn_module_stack"] = stack  # the tap belongs to the tapped call
    for n in list(graph.nodes):  # weights of leaf modules are read by their mappings, not as graph values
        if n.op == "get_attr" and not n.users:
            graph.erase_node(n)
            attrs.pop(n.target, None)
    return fx.GraphModule(attrs, graph, type(module).__name__)


def _call_indices(nodes, scopes: _Scopes) -> dict:
    """Export's module-stack key of each decomposed call -> which call of its module it is."""
    index, count = {}, {}
    for n in nodes:
        for key, path in scopes.decomposed_of.get(n, ()):
            if key not in index:
                index[key] = count.get(path, 0)
                count[path] = index[key] + 1
    return index


def _decomposed_taps(nodes, scopes: _Scopes, calls, call_index, match) -> dict:
    """node -> [(path, output index, call key)] for the outputs of decomposed (non-container) module calls."""
    inside: dict = {}
    for n in nodes:
        for key, path in scopes.decomposed_of.get(n, ()):
            inside.setdefault((key, path), []).append(n)
    taps: dict = {}
    for (key, path), members in inside.items():
        recorded = calls.get(path, [])
        k = call_index.get(key, 0)
        if k >= len(recorded):
            continue
        outs = [n for n in members if n in scopes.boundary]
        taken: set = set()
        for index, tensor in _leaves(recorded[k]):
            hit = match.find(tensor, outs, taken)
            if hit is not None:
                taken.add(hit)
                taps.setdefault(hit, []).append((path, index, key))
    return taps


def _stack_through(node, key) -> dict:
    """``node``'s module stack up to and including the call ``key``: where a tap of that call's output
    goes in the generated source (the end of that module's own ``__call__``)."""
    out = {}
    for k, v in (node.meta.get("nn_module_stack") or {}).items():
        out[k] = v
        if k == key:
            break
    return out


def _lookup(env, node):
    if node not in env:
        raise UnsupportedError([Unsupported(_where(node), str(node.target),
                                            "its value is read before the module call that makes it has finished")])
    return env[node]


def _where(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    return next(reversed(stack.values()))[0] if stack else node.name


def _placeholder(graph, n, spec, module, ep, attrs):
    if spec.kind == InputKind.USER_INPUT:
        out = graph.placeholder(n.name)
    elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
        attrs[spec.target] = tensor_at(module, spec.target)
        out = graph.get_attr(spec.target)
    elif spec.kind == InputKind.CONSTANT_TENSOR:
        name = f"bridge_constant_{len(attrs)}"
        attrs[name] = ep.constants[spec.target]
        out = graph.get_attr(name)
    else:
        raise UnsupportedError([Unsupported("forward()", str(spec.kind), "this kind of graph input")])
    out.meta = dict(n.meta)
    return out


def tensor_at(module, target: str) -> torch.Tensor:
    owner, _, name = target.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, name)


def _leaves(obj, prefix=()):
    """(index path, tensor) for every tensor in a nested tuple/list return value."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*prefix, i))


class _Recorder(fx.Interpreter):
    """Runs the graph once, keeping tensor metas and the values of non-tensor nodes."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm)
        self.results: dict[fx.Node, object] = {}

    def run_node(self, n: fx.Node):
        out = super().run_node(n)
        self.results[n] = _meta(out)
        return out


def _meta(value):
    if isinstance(value, torch.Tensor):
        return TensorMeta(tuple(value.shape), value.dtype)
    if isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        return tuple(_meta(v) for v in value)
    return value


def record(gm: fx.GraphModule, inputs: tuple) -> dict:
    rec = _Recorder(gm)
    try:
        with torch.no_grad():
            rec.run(*inputs)
    except Exception as exc:
        shapes = ", ".join(f"{list(x.shape)}:{str(x.dtype).replace('torch.', '')}" for x in inputs)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInputError(f"the torch module fails on the example inputs ({shapes}): {first}") from None
    return rec.results
