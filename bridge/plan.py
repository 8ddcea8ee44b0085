"""plan: walk the traced torch graph once and decide everything the TF model needs.

For each fx node the registry's mapping is asked what to do. The result is a
``Plan``: the TF layers to build (with their weight bindings), the lines of the
forward pass, and the layout of every value. Unsupported modules and ops are
collected, not raised one by one, so the user sees all of them at once.
Nothing here touches TensorFlow.
"""

from __future__ import annotations

import inspect
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx

from . import layout as lay
from .errors import Unsupported
from .registry import LayerPlan, NotSupported, Registry, Verdict, op_name
from .tolerances import Tolerance


# ---------------------------------------------------------------- values
@dataclass(frozen=True)
class TensorValue:
    """A tensor in the generated code: its variable, its layout, and torch's shape/dtype for it."""

    var: str
    layout: lay.Layout
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class PyValue:
    """A Python value computed in the generated code (e.g. a dynamic size), with its traced value."""

    expr: str
    value: Any


class Missing:
    """Stands for the output of a node that could not be mapped (already reported)."""


MISSING = Missing()


def trace_tap(path: str, index: tuple, value):
    """A marker the tracer puts in the graph: ``value`` is output ``index`` of the decomposed module at
    ``path``. It computes nothing; the emitter turns it into an ``L.tap`` line for per-module parity."""
    return None


@dataclass(frozen=True)
class TensorMeta:
    shape: tuple[int, ...]
    dtype: torch.dtype


# ---------------------------------------------------------------- plan records
@dataclass
class LayerUse:
    path: str
    module_type: str
    plan: LayerPlan
    tolerance: Tolerance | None = None  # declared by its mapping, if looser than the default
    out_layouts: list = field(default_factory=list)  # per call, in call order: the output layout (structure)


@dataclass(frozen=True)
class Binding:
    """TF variable at ``access`` (attribute/index steps from the model root) <- transform(*state_dict[keys])."""

    access: tuple[Any, ...]
    keys: tuple[str, ...]
    transform: Any

    @property
    def key(self) -> str:
        """The keys as one label, e.g. 'lstm.bias_ih_l0+lstm.bias_hh_l0'."""
        return "+".join(self.keys)


@dataclass
class Plan:
    class_name: str
    input_names: list[str]
    input_metas: list[TensorMeta]
    lines: list[str]
    output_expr: str
    output_names: list[str]  # flattened output names, in order
    layers: dict[str, LayerUse]
    params: dict[str, TensorMeta]  # raw parameters/buffers used in forward (get_attr)
    unsupported: list[Unsupported]
    tolerances: dict[str, Tolerance]  # family/op -> tolerance, for every mapping used that declares one
    taps: dict[str, list] = field(default_factory=dict)  # decomposed module path -> [(output index, layout)]
    # the layout of each input and (flattened) output at the model's boundary: identity unless channels_last_io
    input_layouts: list = field(default_factory=list)
    output_layouts: list = field(default_factory=list)
    # per line: the decomposed module calls it ran in, outermost first, as (call key, module path);
    # codegen turns each call into a method of a class for its module (see codegen.py)
    line_scopes: list = field(default_factory=list)

    def module_layouts(self) -> dict[tuple[str, tuple], list]:
        """(module path, output index) -> the layout of that output at each call, for per-module parity."""
        out: dict[tuple[str, tuple], list] = {}
        for path, use in self.layers.items():
            for structure in use.out_layouts:
                for index, layout in layout_leaves(structure):
                    out.setdefault((path, index), []).append(layout)
        for path, entries in self.taps.items():
            for index, layout in entries:
                out.setdefault((path, tuple(index)), []).append(layout)
        return out

    @property
    def module_paths(self) -> list[str]:
        """Every module whose outputs per-module parity compares: mapped layers and decomposed modules."""
        return list(dict.fromkeys([*self.layers, *self.taps]))


def layout_leaves(structure, prefix: tuple = ()):
    """(index path, Layout) for each tensor position of an output-layout structure (None skipped)."""
    if isinstance(structure, (lay.Perm, lay.Flat)):
        yield prefix, structure
    elif isinstance(structure, (list, tuple)):
        for i, v in enumerate(structure):
            yield from layout_leaves(v, (*prefix, i))


# ---------------------------------------------------------------- contexts given to mappings
class _Call:
    def __init__(self, emitter: "Emitter", node: fx.Node):
        self.em, self.node = emitter, node

    @property
    def out_meta(self):
        return self.em.results[self.node]

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.em.results[self.node].shape


class ModuleCall(_Call):
    """What a module mapping sees: the module path and the call's real arguments.

    ``args`` and ``kwargs`` are exactly what torch's forward got, with each tensor as a
    ``TensorValue`` (tuples of them stay tuples, absent optional inputs are None, flags are
    Python values). ``inputs`` lists the tensors in order (positional first, depth first),
    which is the order ``LayerPlan.inputs`` gives layouts in. ``argument(name)`` reads one
    argument by its name in the module's forward signature, with forward's default.
    """

    def __init__(self, emitter, node, path: str, module, args: tuple, kwargs: dict):
        super().__init__(emitter, node)
        self.path, self.module, self.args, self.kwargs = path, module, args, kwargs
        self.inputs = list(_tensor_leaves((args, kwargs)))

    def argument(self, name: str, default: Any = None):
        try:
            bound = inspect.signature(self.module.forward).bind(*self.args, **self.kwargs)
        except TypeError:
            return self.kwargs.get(name, default)
        bound.apply_defaults()
        return bound.arguments.get(name, default)


def _tensor_leaves(obj):
    if isinstance(obj, TensorValue):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensor_leaves(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensor_leaves(v)


class OpCall(_Call):
    """What an op mapping sees, with helpers to read arguments and emit TF source."""

    def arg(self, index: int, name: str | None = None, default: Any = NotSupported):
        args, kwargs = self.node.args, self.node.kwargs
        raw = args[index] if index < len(args) else kwargs.get(name, default)
        if raw is NotSupported:
            raise NotSupported(f"argument {name or index} is required")
        return self.em.value(raw)

    def tensor(self, value, want: lay.Layout | None = None) -> str:
        """The variable for ``value`` converted to ``want`` (default: keep a Perm, unflatten a Flat)."""
        if not isinstance(value, TensorValue):
            return self.render(value)
        if want is None:
            want = value.layout if isinstance(value.layout, lay.Perm) else lay.identity(value.rank)
        return self.em.convert(value, want)

    def render(self, value) -> str:
        return self.em.render(value)

    def out(self, expr: str, layout: lay.Layout) -> TensorValue:
        meta = self.out_meta
        var = self.em.assign(self.node.name, expr)
        return TensorValue(var, layout, meta.shape, meta.dtype)

    def alias(self, value: TensorValue, layout: lay.Layout) -> TensorValue:
        """Same TF tensor, new meaning (e.g. a permute absorbed into the layout)."""
        meta = self.out_meta
        return TensorValue(value.var, layout, meta.shape, meta.dtype)


# ---------------------------------------------------------------- the emitter
_RESERVED = {"tf", "np", "L", "self"}


def _ident(name: str) -> str:
    name = re.sub(r"\W", "_", name)
    if keyword.iskeyword(name) or name in _RESERVED or not name or name[0].isdigit():
        name = f"v_{name}"
    return name


class Emitter:
    """One walk of the graph. ``io_layouts`` (input index -> Layout) declares inputs that arrive
    already in that layout, and asks for outputs to be returned in the layout they have inside
    (channels-last maps stay channels-last); see ``plan_graph``."""

    def __init__(self, gm: fx.GraphModule, modules: dict, results: dict, registry: Registry, class_name: str,
                 io_layouts: dict[int, lay.Layout] | None = None):
        self.gm, self.results, self.registry = gm, results, registry
        self.io_layouts = io_layouts
        self._input_vars: list[str] = []
        self.input_layouts: list = []
        self.output_layouts: list = []
        self.modules = modules  # the original module's named_modules(): fx's copy loses container types
        self.lines: list[str] = []
        self.env: dict[fx.Node, Any] = {}
        self.names: set[str] = set()
        self.conversions: dict[tuple[str, lay.Layout], str] = {}
        self.layers: dict[str, LayerUse] = {}
        self.params: dict[str, TensorMeta] = {}
        self.unsupported: list[Unsupported] = []
        self.tolerances: dict[str, Tolerance] = {}
        self.taps: dict[str, list] = {}
        self.line_scopes: list[tuple] = []
        self.class_name = class_name
        self._aliases = dict(modules[""].named_modules(remove_duplicate=False)) if "" in modules else {}
        self._canonical = {id(m): p for p, m in modules.items()}

    # -- code helpers
    def fresh(self, base: str) -> str:
        name, k = _ident(base), 1
        while name in self.names:
            k += 1
            name = f"{_ident(base)}_{k}"
        self.names.add(name)
        return name

    def assign(self, base: str, expr: str) -> str:
        var = self.fresh(base)
        self.lines.append(f"{var} = {expr}")
        return var

    def convert(self, value: TensorValue, want: lay.Layout) -> str:
        key = (value.var, value.layout, want)
        if key not in self.conversions:
            expr = lay.convert_expr(value.var, value.layout, want)
            if expr is None:
                return value.var
            suffix = "torch" if isinstance(want, lay.Perm) and want.is_identity else want.describe()
            self.conversions[key] = self.assign(f"{value.var}_{_ident(suffix)}", expr)
        return self.conversions[key]

    def render(self, value) -> str:
        if isinstance(value, PyValue):
            return value.expr
        if isinstance(value, TensorValue):
            return self.convert(value, lay.identity(value.rank))
        if isinstance(value, (list, tuple)):
            return "[" + ", ".join(self.render(v) for v in value) + "]"
        if isinstance(value, torch.dtype):
            return f"tf.{str(value).replace('torch.', '')}"
        if isinstance(value, (int, float, bool, str)) or value is None:
            return repr(value)
        raise NotSupported(f"cannot express the constant {value!r} in TF")

    def value(self, arg):
        """fx argument -> Value (recursively through lists, tuples, dicts)."""
        if isinstance(arg, fx.Node):
            return self.env[arg]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value(a) for a in arg)
        if isinstance(arg, dict):
            return {k: self.value(v) for k, v in arg.items()}
        return arg

    # -- the walk
    def run(self) -> Plan:
        inputs, metas = [], []
        output_expr, output_names = "None", []
        for node in self.gm.graph.nodes:
            if _any_missing(self.value(node.args)) or _any_missing(self.value(node.kwargs)):
                if not self._has_mapping(node):  # still worth reporting: it needs a mapping anyway
                    self._report(node, self._why_unmapped(node))
                self.env[node] = MISSING
                continue
            start = len(self.lines)
            try:
                self.env[node] = getattr(self, f"_{node.op}")(node)
            except NotSupported as exc:
                self._report(node, str(exc))
                self.env[node] = MISSING
            self.line_scopes += [self._scope(node)] * (len(self.lines) - start)
            if node.op == "placeholder":
                inputs.append(self.env[node].var)
                metas.append(TensorMeta(self.env[node].shape, self.env[node].dtype))
            if node.op == "output" and self.env[node] is not MISSING:
                output_expr, output_names = self.env[node]
        return Plan(self.class_name, inputs, metas, self.lines, output_expr, output_names, self.layers,
                    self.params, self.unsupported, self.tolerances, self.taps, self.input_layouts,
                    self.output_layouts, self.line_scopes)

    def _scope(self, node) -> tuple:
        """The decomposed, non-container module calls ``node`` ran in (outermost first), as
        (export's call key, canonical module path); the walk stops at a leaf module."""
        out = []
        for key, entry in (node.meta.get("nn_module_stack") or {}).items():
            module = self._aliases.get(entry[0]) if entry and entry[0] else None
            if module is None:
                continue
            if self.registry.verdict(module).verdict != Verdict.DECOMPOSE:
                break
            if not isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)):
                out.append((key, self._canonical.get(id(module), entry[0])))
        return tuple(out)

    def wanted_input_layouts(self) -> dict[int, lay.Layout]:
        """Inputs (by index) that this walk converted to channels-last before their first use."""
        wanted = {}
        for i, (var, layout) in enumerate(zip(self._input_vars, self.input_layouts)):
            rank = layout.rank
            if rank >= 3 and (var, layout, lay.channels_last(rank)) in self.conversions:
                wanted[i] = lay.channels_last(rank)
        return wanted

    def _has_mapping(self, node: fx.Node) -> bool:
        if node.op == "call_module":
            return self.registry.find_module(self.modules[node.target]) is not None
        if node.op == "call_function":
            return node.target is trace_tap or self.registry.find_op(node.op, node.target) is not None
        return True

    def _why_unmapped(self, node: fx.Node) -> str:
        if node.op == "call_module":
            verdict = self.registry.verdict(self.modules[node.target])
            return verdict.note or "no mapping for this module type"
        return "no mapping for this op"

    def _report(self, node: fx.Node, why: str) -> None:
        if node.op == "call_module":
            m = self.modules[node.target]
            self.unsupported.append(Unsupported(node.target, f"{type(m).__module__}.{type(m).__qualname__}", why))
        else:
            self.unsupported.append(Unsupported(_source_line(node), _node_op_name(node), why))

    def _placeholder(self, node):
        meta = self.results[node]
        if not isinstance(meta, TensorMeta):
            raise NotSupported("only tensor inputs are supported")
        var = self.fresh(node.name)
        index = len(self.input_layouts)
        layout = (self.io_layouts or {}).get(index, lay.identity(len(meta.shape)))
        self.input_layouts.append(layout)
        self._input_vars.append(var)
        return TensorValue(var, layout, meta.shape, meta.dtype)

    def _get_attr(self, node):
        target = node.target
        meta = self.results[node]
        if not isinstance(meta, TensorMeta):
            raise NotSupported(f"attribute {target} is not a tensor")
        self.params[target] = meta
        return TensorValue("self." + _access_source(_param_access(target, self.modules)), lay.identity(len(meta.shape)),
                           meta.shape, meta.dtype)

    def _call_module(self, node):
        path = node.target
        module = self.modules[path]
        mapping = self.registry.find_module(module)
        if mapping is None:
            raise NotSupported(self._why_unmapped(node))
        args, kwargs = self.value(node.args), self.value(node.kwargs)
        call = ModuleCall(self, node, path, module, tuple(args), dict(kwargs))
        use = self.layers.get(path)
        plan = mapping.plan(module, call)
        if use is None:
            use = self.layers[path] = LayerUse(path, type(module).__name__, plan, mapping.tolerance)
        elif not _same_layer(plan, use.plan):  # called again on another layout: feed it what the layer has
            plan = use.plan
        if len(plan.inputs) != len(call.inputs):
            raise NotSupported(f"the mapping gives {len(plan.inputs)} input layouts for {len(call.inputs)} tensors")
        wants = iter(plan.inputs)
        rendered = [self._feed(a, wants) for a in call.args]
        rendered += [f"{k}={self._feed(v, wants)}" for k, v in call.kwargs.items()]
        expr = f"self.{_access_source(_module_access(path, self.modules))}({', '.join(rendered)})"
        meta = self.results[node]
        use.out_layouts.append(plan.output)
        if isinstance(meta, TensorMeta):
            if not isinstance(plan.output, (lay.Perm, lay.Flat)):
                raise NotSupported("the mapping returns a structure where torch returns one tensor")
            return TensorValue(self.assign(node.name, expr), plan.output, meta.shape, meta.dtype)
        target, value = self._unpack(node.name, meta, plan.output)
        self.lines.append(f"{target[1:-1]} = {expr}")  # out, (h_n, c_n) = self.lstm(x)
        return value

    def _feed(self, value, wants) -> str:
        """Source for one argument of a layer call: tensors in the layout the mapping asked for."""
        if isinstance(value, TensorValue):
            return self.convert(value, next(wants))
        if isinstance(value, (list, tuple)):
            inner = ", ".join(self._feed(v, wants) for v in value)
            return f"({inner},)" if isinstance(value, tuple) else f"[{inner}]"
        return self.render(value)

    def _unpack(self, base: str, meta, layouts):
        """(assignment target, value) for a structured output: ``out, (h_n, c_n) = ...``."""
        if isinstance(meta, TensorMeta):
            if not isinstance(layouts, (lay.Perm, lay.Flat)):
                raise NotSupported("the mapping's output structure differs from torch's")
            var = self.fresh(base)
            return var, TensorValue(var, layouts, meta.shape, meta.dtype)
        if isinstance(meta, (list, tuple)):
            if not isinstance(layouts, (list, tuple)) or len(layouts) != len(meta):
                raise NotSupported("the mapping's output structure differs from torch's")
            parts = [self._unpack(f"{base}_{i}", m, l) for i, (m, l) in enumerate(zip(meta, layouts))]
            names = ", ".join(t for t, _ in parts) + ("," if len(parts) == 1 else "")
            return f"({names})", type(meta)(v for _, v in parts)
        if meta is None:
            return "_", None
        raise NotSupported(f"a module output of type {type(meta).__name__}")

    def _call_function(self, node):
        return self._op(node)

    def _op(self, node):
        if node.target is trace_tap:  # the output of a decomposed module, for per-module parity
            path, index, value = node.args[0], node.args[1], self.value(node.args[2])
            if isinstance(value, TensorValue):
                self.taps.setdefault(path, []).append((tuple(index), value.layout))
                self.lines.append(f"L.tap({path!r}, {tuple(index)!r}, {value.var})")
            return None
        mapping = self.registry.find_op(node.op, node.target)
        if mapping is None:
            raise NotSupported("no mapping for this op")
        if mapping.tolerance:
            self.tolerances[op_name(mapping.targets[0])] = mapping.tolerance
        return mapping.emit(OpCall(self, node))

    def _output(self, node):
        names: list[str] = []

        def out(v, name):
            if isinstance(v, TensorValue):
                names.append(name)
                keep = self.io_layouts is not None and v.rank >= 3 and v.layout == lay.channels_last(v.rank)
                layout = v.layout if keep else lay.identity(v.rank)
                self.output_layouts.append(layout)
                return self.convert(v, layout)
            if isinstance(v, (list, tuple)):
                inner = ", ".join(out(x, f"{name}_{i}") for i, x in enumerate(v))
                return f"({inner},)" if isinstance(v, tuple) else f"[{inner}]"
            if isinstance(v, dict):
                return "{" + ", ".join(f"{k!r}: {out(x, str(k))}" for k, x in v.items()) + "}"
            if v is None:  # e.g. MultiheadAttention's weights with need_weights=False
                return "None"
            raise NotSupported(f"output of type {type(v).__name__} is not a tensor")

        result = self.value(node.args[0])
        expr = out(result, "output") if not isinstance(result, TensorValue) else out(result, "output_0")
        return expr, names


def plan_graph(gm: fx.GraphModule, modules: dict, results: dict, registry: Registry, class_name: str,
               channels_last_io: bool = False) -> Plan:
    """Walk the graph once; with ``channels_last_io`` walk it again with the inputs the first walk
    transposed to channels-last declared as arriving channels-last (NHWC images, NLC audio), and
    channels-last outputs returned as they are. Then the graph has no transpose at its boundary."""
    emitter = Emitter(gm, modules, results, registry, class_name)
    plan = emitter.run()
    if not channels_last_io or plan.unsupported:
        return plan
    return Emitter(gm, modules, results, registry, class_name, emitter.wanted_input_layouts()).run()


def _same_layer(a: LayerPlan, b: LayerPlan) -> bool:
    """Two calls can share one TF layer as planned for each when config and weights agree.

    A folded flatten ties the weights to one column order, so such a call always
    gets the first call's input layouts instead.
    """
    names = lambda p: {k: (w.source, w.transform.name) for k, w in p.weights.items()}  # noqa: E731
    return (a.layer, a.config, names(a)) == (b.layer, b.config, names(b)) and not any(
        isinstance(x, lay.Flat) for x in (*a.inputs, *b.inputs))


def _any_missing(v) -> bool:
    if isinstance(v, Missing):
        return True
    if isinstance(v, (list, tuple)):
        return any(_any_missing(x) for x in v)
    if isinstance(v, dict):
        return any(_any_missing(x) for x in v.values())
    return False


def _node_op_name(node: fx.Node) -> str:
    return op_name(node.target)


def _source_line(node: fx.Node) -> str:
    """'op at file.py:LINE' from the fx stack trace (the user's innermost frame)."""
    trace = node.stack_trace or ""
    found = [(f, n) for f, n in re.findall(r'File "([^"]+)", line (\d+)', trace)
             if "/torch/" not in f and "/bridge/" not in f]
    if found:
        file, line = found[-1]
        return f"op at {file.rsplit('/', 1)[-1]}:{line}"
    return f"op {node.name}"


# ---------------------------------------------------------------- module-tree access paths
def _is_list_container(module: torch.nn.Module) -> bool:
    return isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList))


def _module_access(path: str, modules: dict) -> tuple:
    """'features.0' -> (('attr','features'), ('item', 0)) mirroring how torch reaches it."""
    steps, prefix = [], ""
    if path and (_is_list_container(modules[""]) or isinstance(modules[""], torch.nn.ModuleDict)):
        steps.append(("attr", "layers"))  # a container at the root keeps its children in .layers
    for part in path.split("."):
        parent = modules[prefix]
        if _is_list_container(parent) and part.isdigit():
            steps.append(("item", int(part)))
        elif isinstance(parent, torch.nn.ModuleDict) or not part.isidentifier() or keyword.iskeyword(part):
            steps.append(("key", part))
        else:
            steps.append(("attr", part))
        prefix = f"{prefix}.{part}" if prefix else part
    return tuple(steps)


def _param_access(target: str, modules: dict) -> tuple:
    owner, _, name = target.rpartition(".")
    steps = _module_access(owner, modules) if owner else ()
    return (*steps, ("attr", name) if name.isidentifier() else ("key", name))


def _access_source(steps: tuple) -> str:
    out = ""
    for kind, part in steps:
        if kind == "attr":
            out += f".{part}"
        elif kind == "item":
            out += f"[{part}]"
        else:
            out += f"[{part!r}]"
    return out.lstrip(".")


module_access, param_access, access_source = _module_access, _param_access, _access_source
