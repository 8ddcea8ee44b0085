"""trace: torch module -> an fx graph of leaf-module calls and ATen ops.

We trace with non-strict ``torch.export`` (docs/tracers.md has the measured
comparison: fx symbolic tracing fails on HF models and on shape-dependent
Python, export traced every model tried). Export inlines every module into ATen
ops, but tags each op with the stack of modules it ran in. We use that to fold
each *leaf* module call back into one ``call_module`` node named by its path:
a module that has a mapping, or any built-in ``torch.nn`` module that is not a
container. Per-module parity and the generated source need those boundaries.
What runs outside leaf modules (the user's own forward code) stays as ATen ops,
which the op mappings translate.

The batch dimension is traced symbolically when the model allows it, so sizes
read from a tensor (``x.size(0)``) stay dynamic in the TF graph.
"""

from __future__ import annotations

import operator
import warnings

import torch
import torch.fx as fx
import torch.utils._pytree as pytree
from torch.export import Dim
from torch.export.graph_signature import InputKind

from .errors import BadInputError, Unsupported, UnsupportedError
from .plan import TensorMeta
from .registry import Registry

_CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)
# bookkeeping ops export adds; they compute nothing the TF graph needs
_DROP = {"aten._assert_tensor_metadata.default", "aten._assert_scalar.default",
         "aten.sym_constrain_range_for_size.default", "aten._assert_async.msg"}


def is_leaf(module: torch.nn.Module | None, registry: Registry) -> bool:
    if module is None:
        return False
    if registry.find_module(module) is not None:
        return True
    return type(module).__module__.startswith("torch.nn") and not isinstance(module, _CONTAINERS)


def trace(module: torch.nn.Module, example_inputs: tuple, registry: Registry) -> fx.GraphModule:
    """Export ``module`` on ``example_inputs`` and fold leaf modules back into single nodes.

    A model that is itself one mapped module (a bare ``nn.Linear``) must be wrapped by the
    caller (see ``wrap_leaf_root``): export has no module path for the root to fold into.
    """
    ep = _export(module, example_inputs)
    return _fold_leaves(module, ep, registry, _leaf_outputs(module, example_inputs, registry))


def _leaf_outputs(module, examples, registry) -> dict[str, list]:
    """Per leaf path, per call: the (index path, tensor) leaves of what the module returned.

    Export only shows the ATen values a module's ops produced; this says where each
    sits in the module's real return value (e.g. ``out`` in ``(out, (h, c))``).
    """
    seen: dict[str, list] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, p=p: seen.setdefault(p, []).append(list(_leaves(o))))
             for p, m in module.named_modules() if p and is_leaf(m, registry)]
    try:
        with torch.no_grad():
            module(*examples)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _leaves(obj, prefix=()):
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*prefix, i))


class LeafRoot(torch.nn.Module):
    """Holds a model that is a single mapped module, so it gets a path ("model") of its own."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model(*args)


def wrap_leaf_root(module: torch.nn.Module, registry: Registry) -> torch.nn.Module:
    return LeafRoot(module) if is_leaf(module, registry) else module


def _export(module, examples):
    """Non-strict export, with a symbolic batch dim when the model accepts a batch of 2."""
    batched = tuple(torch.cat([x, x])[: max(2, x.shape[0])] if x.dim() else x for x in examples)
    dynamic = tuple({0: Dim.AUTO} if x.dim() else None for x in examples)
    first_error = None
    for args, shapes in ((batched, dynamic), (examples, None)):
        try:
            with warnings.catch_warnings():  # export's advice is for export users, not ours
                warnings.simplefilter("ignore")
                return torch.export.export(module, args, dynamic_shapes=shapes, strict=False)
        except Exception as exc:  # export raises many types; the static retry decides
            first_error = first_error or exc
    text = str(first_error).strip()
    first = text.splitlines()[0] if text else type(first_error).__name__
    raise UnsupportedError([Unsupported("forward()", type(module).__name__,
                                        f"torch.export cannot trace it ({type(first_error).__name__}: {first})")])


def _owner(node: fx.Node, modules: dict, canonical: dict, registry: Registry) -> tuple[str, str] | None:
    """(call key, module path) of the outermost leaf module this op ran in, if any.

    A module registered under two names (one nn.Tanh at seq[1] and seq[3]) gets its
    first name, as in ``named_modules()`` and the state_dict, so it is one TF layer.
    """
    for key, (path, _) in (node.meta.get("nn_module_stack") or {}).items():
        m = modules.get(path)
        if path and is_leaf(m, registry):
            return key, canonical[id(m)]
    return None


def _fold_leaves(module, ep, registry, leaf_outputs) -> fx.GraphModule:
    modules = dict(module.named_modules(remove_duplicate=False))
    canonical = {id(m): p for p, m in module.named_modules()}
    kinds = {s.arg.name: s for s in ep.graph_signature.input_specs if hasattr(s.arg, "name")}
    nodes = [n for n in ep.graph.nodes if not (n.op == "call_function" and str(n.target) in _DROP)]
    groups: dict[str, list[fx.Node]] = {}
    owner_of: dict[fx.Node, tuple[str, str]] = {}
    call_index: dict[str, int] = {}  # group key -> which call of its module (forward order)
    for n in nodes:
        own = _owner(n, modules, canonical, registry) if n.op == "call_function" else None
        if own:
            owner_of[n] = own
            if own[0] not in groups:
                call_index[own[0]] = sum(1 for k in groups if owner_of[groups[k][0]][1] == own[1])
            groups.setdefault(own[0], []).append(n)
    last = {g[-1]: key for key, g in groups.items()}
    graph, env, attrs = fx.Graph(), {}, {}
    for n in nodes:
        if n.op == "placeholder":
            env[n] = _placeholder(graph, n, kinds[n.name], module, ep, attrs)
        elif n in owner_of:
            if n in last:
                key, path = owner_of[n]
                calls = leaf_outputs.get(path, [])
                k = call_index[key]
                _emit_call(graph, env, groups[key], path, kinds, attrs, modules, calls[k] if k < len(calls) else [])
        elif n.op == "output":  # the flat outputs, rebuilt into the model's own structure (dicts too)
            flat = fx.map_arg(n.args[0], lambda a: _lookup(env, a))
            graph.output(pytree.tree_unflatten(list(flat), ep.call_spec.out_spec))
        else:
            env[n] = graph.node_copy(n, lambda a: _lookup(env, a))
    for n in list(graph.nodes):  # weights of leaf modules are read by their mappings, not as graph values
        if n.op == "get_attr" and not n.users:
            graph.erase_node(n)
            attrs.pop(n.target, None)
    return fx.GraphModule(attrs, graph, type(module).__name__)


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


def _emit_call(graph, env, group, path, kinds, attrs, modules, returned):
    """One call_module node for a leaf module's ops; values used outside are read from its return value."""
    inside = set(group)
    inputs = []
    for n in group:
        for a in n.all_input_nodes:
            if a in inside or a in inputs or _own_weight(a, kinds, path):
                continue
            if not isinstance(a.meta.get("val"), torch.Tensor):  # sizes the module read off its input
                continue
            inputs.append(a)
    outputs = [n for n in group if any(u not in inside for u in n.users)]
    attrs[path] = modules[path]
    call = graph.call_module(path, tuple(_lookup(env, a) for a in inputs))
    call.meta = dict(group[0].meta)
    taken: set = set()
    for out in outputs:
        where = _position(out, returned, taken)
        node = call
        for i in where:
            node = graph.call_function(operator.getitem, (node, i))
        node.meta = dict(out.meta)
        env[out] = node


def _position(out: fx.Node, returned: list, taken: set) -> tuple:
    """Where an ATen value sits in the module's return value: the first unused leaf of its shape and dtype."""
    val = out.meta.get("val")
    for index, tensor in returned:
        if index in taken or not isinstance(val, torch.Tensor) or tensor.dtype != val.dtype:
            continue
        if len(tensor.shape) == len(val.shape) and all(
                not isinstance(a, int) or a == b for a, b in zip(val.shape, tensor.shape)):
            taken.add(index)
            return index
    raise UnsupportedError([Unsupported(_where(out), str(out.target),
                                        "a value computed inside this module is used outside it, "
                                        "but is not one of the module's outputs")])


def _own_weight(node, kinds, path) -> bool:
    spec = kinds.get(node.name) if node.op == "placeholder" else None
    return bool(spec and spec.target and spec.kind != InputKind.USER_INPUT and spec.target.startswith(path + "."))


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
