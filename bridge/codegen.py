"""codegen: a Plan -> readable TF source (``model_tf.py``), shaped like the torch source.

Each decomposed torch module class that forward() calls (a ResNet's ``BasicBlock``, a
transformer layer) becomes one TF class: its ``__init__`` builds the module's named children
and its ``__call__`` is that module's forward, one line per op. Instances that traced to
different graphs (a block with and without a downsample branch) get one class per variant,
named by what differs (``BasicBlockWithDownsample``); config values that differ between the
instances of one variant (channels, strides) become constructor arguments. The model class at
the root builds the top-level children and calls them. Mapped modules are ``bridge.layers``
objects (``L.Conv2d``), nested exactly as in torch (Sequential/ModuleList -> list, ModuleDict
-> dict, a module without a class of its own -> ``L.Namespace``).

How: the plan tags every line with the module calls it ran in (``Plan.line_scopes``). Each call
becomes a method whose inputs are the values it reads from outside and whose outputs are the
values read after it. When a trace cannot be split that way (ops of two calls interleave, a
module calls one that is not its child, one instance is called twice with different graphs),
the forward stays one flat method: longer, equally correct. The in-memory model is always
built by executing this same text, so the file a user keeps and the model that was checked
cannot differ.
"""

from __future__ import annotations

import ast
import inspect
import io
import keyword
import re
import tokenize
from dataclasses import dataclass, field

import torch

from . import __version__
from .plan import Plan, access_source, module_access, param_access

_WIDTH = 100
_CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)
# attributes a tf.Module (or L.Module) already has: a child of that name stays in a flat forward
_TAKEN = {"name", "name_scope", "variables", "trainable_variables", "non_trainable_variables", "submodules",
          "with_name_scope", "torch_path"}
_BUILTIN_NAMES = set(dir(__builtins__) if isinstance(__builtins__, dict) else dir(__import__("builtins")))


class _Flat(Exception):
    """The trace cannot be split into one method per module call: the forward stays flat."""


def _kwargs(config: dict) -> list[str]:
    return [f"{k}={v!r}" for k, v in config.items()]


def _call(fn: str, args: list[str], indent: str) -> str:
    one = f"{fn}({', '.join(args)})"
    if len(indent) + len(one) <= _WIDTH:
        return one
    inner = indent + "    "
    return f"{fn}(\n" + "".join(f"{inner}{a},\n" for a in args) + f"{indent})"


# ---------------------------------------------------------------- the module tree __init__ builds
class _Tree:
    def __init__(self):
        self.children: dict[str, _Tree] = {}
        self.leaf = None  # a LayerUse or the TensorMeta of a raw parameter


def _tree(plan: Plan, extra_paths=()) -> _Tree:
    root = _Tree()
    entries = [*plan.layers.items(), *plan.params.items(), *((p, None) for p in extra_paths)]
    for path, entry in entries:
        node = root
        for part in path.split("."):
            node = node.children.setdefault(part, _Tree())
        if entry is not None:
            node.leaf = entry
    return root


def _struct(node: _Tree, path: str, modules: dict, classed: set):
    """What builds the object at ``path``: ("layer"|"param"|"class"|"list"|"dict"|"ns", ...)."""
    entry = node.leaf
    if entry is not None and not node.children:
        if hasattr(entry, "plan"):  # a layer
            return ("layer", entry.plan.layer, path, list(entry.plan.config.items()))
        return ("param", path, list(entry.shape), str(entry.dtype).replace("torch.", "tf."))
    if entry is not None:
        raise ValueError(f"{path} is both a mapped module and a container of used parameters")
    if path in classed:
        return ("class", path)
    module = modules[path]
    kids = [(name, _struct(child, f"{path}.{name}" if path else name, modules, classed))
            for name, child in node.children.items()]
    names = [k for k, _ in kids]
    if isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)) and all(k.isdigit() for k in names):
        by_index = dict(kids)
        return ("list", [by_index.get(str(i)) for i in range(max((int(k) for k in names), default=-1) + 1)])
    if isinstance(module, torch.nn.ModuleDict) or not all(_attribute_name(k) for k in names):
        return ("dict", kids)
    return ("ns", path, kids)


def _attribute_name(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


class _Emit:
    """Renders structs as Python. ``path_expr(path)`` writes a torch path; ``value(path, key, v)``
    a config value (a literal, or a constructor argument); ``construct(path)`` the class of a
    classed module and its arguments."""

    def __init__(self, path_expr, value, construct):
        self.path_expr, self.value, self.construct = path_expr, value, construct

    def __call__(self, struct, indent: str) -> str:
        kind = struct[0]
        inner = indent + "    "
        if kind == "layer":
            _, layer, path, config = struct
            defaults = _defaults(layer)
            args = [f"path={self.path_expr(path)}"]
            for k, v in config:
                text = self.value(path, k, v)  # every value, so slot numbers stay in step
                if k not in defaults or text != defaults[k]:
                    args.append(f"{k}={text}")
            return _call(f"L.{layer}", args, indent)
        if kind == "param":
            _, path, shape, dtype = struct
            return f"L.parameter({self.path_expr(path)}, {self.value(path, 'shape', shape)}, {dtype})"
        if kind == "class":
            cls, args = self.construct(struct[1])
            return _call(cls, [self.path_expr(struct[1]), *[f"{k}={self.value(struct[1], k, v)}" for k, v in args]],
                         indent)
        if kind == "list":
            items = [self(s, inner) if s is not None else "None" for s in struct[1]]
            return "[\n" + "".join(f"{inner}{v},\n" for v in items) + f"{indent}]"
        if kind == "dict":
            return "{\n" + "".join(f"{inner}{k!r}: {self(s, inner)},\n" for k, s in struct[1]) + f"{indent}}}"
        _, path, kids = struct
        args = [self.path_expr(path)] + [f"{k}={self(s, inner)}" for k, s in kids]
        return "L.Namespace(\n" + "".join(f"{inner}{a},\n" for a in args) + f"{indent})"


_DEFAULTS: dict[str, dict[str, str]] = {}


def _defaults(layer: str) -> dict[str, str]:
    """repr of each keyword default of ``L.<layer>``: config values equal to them are left out."""
    if layer not in _DEFAULTS:
        from . import layers

        try:
            params = inspect.signature(getattr(layers, layer)).parameters.values()
        except (AttributeError, TypeError, ValueError):
            params = []
        _DEFAULTS[layer] = {p.name: repr(p.default) for p in params if p.default is not inspect.Parameter.empty}
    return _DEFAULTS[layer]


def _signature(struct, base: str, group_of) -> tuple:
    """The shape of a struct without its config values (instances with one signature share a class)."""
    kind = struct[0]
    if kind == "layer":
        return ("layer", struct[1], _rel(struct[2], base), tuple(k for k, _ in struct[3]))
    if kind == "param":
        return ("param", _rel(struct[1], base), struct[3])
    if kind == "class":
        return ("class", _rel(struct[1], base), group_of(struct[1]))
    if kind == "list":
        return ("list", tuple(None if s is None else _signature(s, base, group_of) for s in struct[1]))
    if kind == "dict":
        return ("dict", tuple((k, _signature(s, base, group_of)) for k, s in struct[1]))
    return ("ns", _rel(struct[1], base), tuple((k, _signature(s, base, group_of)) for k, s in struct[2]))


def _slots(struct, args_of):
    """(path, key, value) of every config value in a struct, in the order _Emit renders them."""
    kind = struct[0]
    if kind == "layer":
        yield from ((struct[2], k, v) for k, v in struct[3])
    elif kind == "param":
        yield struct[1], "shape", struct[2]
    elif kind == "class":
        yield from ((struct[1], k, v) for k, v in args_of(struct[1]))
    elif kind == "list":
        for s in struct[1]:
            if s is not None:
                yield from _slots(s, args_of)
    else:
        for _, s in struct[-1]:
            yield from _slots(s, args_of)


def _rel(path: str, base: str) -> str:
    return path[len(base) + 1:] if base else path


# ---------------------------------------------------------------- the call tree and its data flow
@dataclass(eq=False)
class _CallNode:
    key: str | None
    path: str
    parent: "_CallNode | None"
    items: list = field(default_factory=list)  # line indices and child calls, in order
    start: int = 0
    end: int = 0
    inputs: list = field(default_factory=list)  # flat variable names read from outside, by first use
    outputs: list = field(default_factory=list)  # flat variable names read after the call, by definition


def _gets_class(module) -> bool:
    """User-defined module classes, and torch's own composites (a TransformerEncoderLayer), get a
    class; a torch module without children (a decomposed Softsign) stays inline in its caller."""
    return not type(module).__module__.startswith("torch.") or next(module.children(), None) is not None


def _call_tree(plan: Plan, modules: dict) -> tuple[_CallNode, list]:
    """The root call and, per line, its innermost call; _Flat when calls do not nest cleanly."""
    if len(plan.line_scopes) != len(plan.lines):
        raise _Flat("no scopes")
    root = _CallNode(None, "", None, end=len(plan.lines))
    stack, closed, owner = [root], set(), []
    for i, scope in enumerate(plan.line_scopes):
        scope = [(key, path) for key, path in scope if _gets_class(modules[path])]
        depth = 0
        while depth < len(scope) and depth + 1 < len(stack) and stack[depth + 1].key == scope[depth][0]:
            depth += 1
        for c in stack[depth + 1:]:
            c.end = i
            closed.add(c.key)
        del stack[depth + 1:]
        for key, path in scope[depth:]:
            parent = stack[-1]
            if key in closed or path == parent.path or (parent.path and not path.startswith(parent.path + ".")):
                raise _Flat(f"call of {path} does not nest")
            c = _CallNode(key, path, parent, start=i)
            parent.items.append(c)
            stack.append(c)
        stack[-1].items.append(i)
        owner.append(stack[-1])
    for c in stack[1:]:
        c.end = len(plan.lines)
    return root, owner


def _chain(node: _CallNode) -> list[_CallNode]:
    out = []
    while node is not None:
        out.append(node)
        node = node.parent
    return out


def _parse(line: str) -> tuple[list[str], list[str]]:
    """(names the line assigns, names it reads) for one generated statement."""
    try:
        tree = ast.parse(line)
    except SyntaxError as exc:
        raise _Flat(str(exc)) from None
    if len(tree.body) != 1:
        raise _Flat("not one statement")
    stmt = tree.body[0]
    if any(isinstance(n, (ast.Lambda, ast.comprehension, ast.NamedExpr, ast.Global, ast.Nonlocal))
           for n in ast.walk(stmt)):
        raise _Flat("a nested scope")
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        defs, value = _targets(stmt.targets[0]), stmt.value
    elif isinstance(stmt, ast.Expr):
        defs, value = [], stmt.value
    else:
        raise _Flat("an unusual statement")
    return defs, [n.id for n in ast.walk(value) if isinstance(n, ast.Name)]


def _targets(t) -> list[str]:
    if isinstance(t, ast.Name):
        return [] if t.id == "_" else [t.id]
    if isinstance(t, (ast.Tuple, ast.List)):
        return [n for e in t.elts for n in _targets(e)]
    raise _Flat("an assignment to an attribute or item")


_CHAIN = re.compile(r"\bself((?:\.[A-Za-z_]\w*|\[-?\d+\]|\['(?:[^'\\]|\\.)*'\])+)")
_TAP = re.compile(r"L\.tap\((['\"])(.*?)\1")


class _Flow:
    """Reads every line once: what each defines and reads, with references from inside a call to
    objects outside its module (a graph constant at the root) bound to a name at the root first."""

    def __init__(self, plan: Plan, root: _CallNode, owner: list, modules: dict):
        self.modules = modules
        self.prefix = {}  # call path -> its "self.<access>" text
        self.hoisted: dict[str, str] = {}  # outside reference ("self.x.y") -> the name bound at the root
        self.words = set(re.findall(r"[A-Za-z_]\w*", "\n".join([*plan.lines, plan.output_expr])))
        self.lines = [self._localize(line, owner[i]) for i, line in enumerate(plan.lines)]
        self.defined: dict[str, int] = {n: -1 for n in plan.input_names}
        self.defined.update({n: -1 for n in self.hoisted.values()})
        self.reads: list[list[str]] = []
        for i, line in enumerate(self.lines):
            defs, uses = _parse(line)
            for d in defs:
                if d in self.defined:
                    raise _Flat(f"{d} is assigned twice")
                self.defined[d] = i
            self.reads.append(uses)
        self.defs_of = [[] for _ in self.lines]
        for name, i in self.defined.items():
            if i >= 0:
                self.defs_of[i].append(name)
        self.output_reads = [n.id for n in ast.walk(ast.parse(plan.output_expr, mode="eval")) if isinstance(n, ast.Name)]
        self._connect(root, owner)

    def _access(self, path: str) -> str:
        if path not in self.prefix:
            self.prefix[path] = "self." + access_source(module_access(path, self.modules))
        return self.prefix[path]

    def _localize(self, line: str, call: _CallNode) -> str:
        """Inside a call, ``self.<its own access>`` becomes ``self``; any other ``self.`` reference is
        replaced by a name bound at the root. Tap paths become relative to the module's own."""
        if call.parent is None:
            return line
        own = self._access(call.path)

        def chain(m):
            text = m.group(0)
            if text == own or text.startswith(own) and text[len(own)] in ".[":
                return "self" + text[len(own):]
            if text not in self.hoisted:
                base = re.sub(r"_\d+$", "", re.sub(r"\W+", "_", text[5:]).strip("_")) or "ref"
                self.hoisted[text] = _unique(base, self.words)
            return self.hoisted[text]

        def tap(m):
            path = m.group(2)
            if path == call.path:
                return "L.tap(self.torch_path"
            if path.startswith(call.path + "."):
                return f"L.tap(self.torch_path + {path[len(call.path):]!r}"
            raise _Flat(f"a tap of {path} inside {call.path}")

        return _TAP.sub(tap, _CHAIN.sub(chain, line))

    def _connect(self, root: _CallNode, owner: list) -> None:
        """Each call's inputs (read inside, defined outside) and outputs (defined inside, read after)."""
        n = len(self.lines)
        first_use: dict[tuple[int, str], int] = {}
        uses = [(i, name) for i, names in enumerate(self.reads) for name in names] + [(n, m) for m in self.output_reads]
        for u, name in uses:
            d = self.defined.get(name)
            if d is None:
                continue  # tf, L, a builtin
            if d > u:
                raise _Flat(f"{name} is read before it is assigned")
            inside_u = _chain(owner[u]) if u < n else [root]
            inside_d = _chain(owner[d]) if d >= 0 else [root]
            for c in inside_u:
                if c not in inside_d and name not in c.inputs:
                    c.inputs.append(name)
                    first_use[(id(c), name)] = u
            for c in inside_d:
                if c not in inside_u and name not in c.outputs:
                    c.outputs.append(name)
        for c in _walk(root):
            c.inputs.sort(key=lambda name: first_use[(id(c), name)])
            c.outputs.sort(key=lambda name: self.defined[name])


def _unique(base: str, taken: set) -> str:
    """``base``, or ``base_2``, ``base_3``, ... : the first not in ``taken`` (which then holds it)."""
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def _walk(node: _CallNode):
    yield node
    for item in node.items:
        if isinstance(item, _CallNode):
            yield from _walk(item)


def _rename(line: str, names: dict[str, str]) -> str:
    """``line`` with each variable in ``names`` renamed (not attributes, not keyword arguments)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(line).readline))
    edits, depth = [], 0
    for k, t in enumerate(tokens):
        if t.type == tokenize.OP and t.string in "([{":
            depth += 1
        elif t.type == tokenize.OP and t.string in ")]}":
            depth -= 1
        elif t.type == tokenize.NAME and t.string in names:
            before = tokens[k - 1].string if k else ""
            after = tokens[k + 1].string if k + 1 < len(tokens) else ""
            if before != "." and not (depth and after == "="):
                edits.append((t.start[1], t.end[1], names[t.string]))
    for start, end, new in reversed(edits):
        line = line[:start] + new + line[end:]
    return line


# ---------------------------------------------------------------- the methods
class _Body:
    """The text of one call's method, with its own variable names."""

    def __init__(self, call: _CallNode, flow: _Flow, module):
        self.call = call
        names: dict[str, str] = {}
        taken = {"self", "tf", "L", "np", "path"}

        def local(flat: str, preferred: str | None = None) -> str:
            names[flat] = _unique(preferred or _base(flat, call.path), taken)
            return names[flat]

        # arguments are named by forward's own names when they match in number (values read from outside
        # the module, such as a root constant, keep theirs), else input_1, ...: never by the caller's names
        passed = [v for v in call.inputs if v not in flow.hoisted.values()]
        named = _forward_args(module)
        named = named if len(named) == len(passed) else [f"input_{k + 1}" for k in range(len(passed))]
        given = dict(zip(passed, named))
        self.params = [local(v, given.get(v)) for v in call.inputs]
        self.lines = []
        for item in call.items:
            if isinstance(item, _CallNode):
                ins = ", ".join(names[v] for v in item.inputs)
                outs = [local(v) for v in item.outputs]
                target = ", ".join(outs) + " = " if outs else ""
                access = access_source(module_access(item.path, flow.modules))
                own = access_source(module_access(call.path, flow.modules)) if call.path else ""
                rel = access[len(own):].lstrip(".") if own else access
                self.lines.append(f"{target}self{'.' if not rel.startswith('[') else ''}{rel}({ins})")
            else:
                for d in flow.defs_of[item]:
                    local(d)
                self.lines.append(_rename(flow.lines[item], names))
        outs = [names[v] for v in call.outputs]
        self.returns = ", ".join(outs) if outs else "None"
        self.text = "\n".join([*self.lines, f"return {self.returns}"])


def _base(flat: str, path: str) -> str:
    """A short local name: 'layer1_0_conv1' is 'conv1' inside layer1.0, trailing counters go."""
    own = re.sub(r"\W", "_", path) + "_"
    name = flat
    for prefix in (own, "_" + own, "v_" + own):  # fx and the emitter prefix names that start with a digit
        if flat.startswith(prefix) and len(flat) > len(prefix):
            name = flat[len(prefix):]
            break
    name = re.sub(r"_\d+$", "", name) or "v"
    if not name[0].isalpha() and name[0] != "_" or keyword.iskeyword(name) or name in _BUILTIN_NAMES:
        name = f"v_{name}"
    return name


def _forward_args(module) -> list[str]:
    """The names of forward's arguments (after self), where they can be Python names here."""
    try:
        params = list(inspect.signature(type(module).forward).parameters.values())[1:]
    except (TypeError, ValueError):
        return []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(not _attribute_name(n) or n in {"self", "tf", "L", "np", "path"} for n in names):
        return []
    return names


# ---------------------------------------------------------------- classes
@dataclass(eq=False)
class _Group:
    """One generated class: the instances of a torch class that share a method and a child layout."""

    type_key: tuple
    torch_name: str
    body: _Body
    signature: tuple
    instances: list = field(default_factory=list)  # module paths
    name: str = ""
    params: list = field(default_factory=list)  # (argument name, per-instance values)
    slot_param: dict = field(default_factory=dict)  # slot index -> argument name (the rest are literals)


class _Classes:
    def __init__(self, plan: Plan, modules: dict, root: _CallNode, flow: _Flow):
        self.modules = modules
        calls: dict[str, list[_CallNode]] = {}
        for c in _walk(root):
            if c.parent is not None:
                calls.setdefault(c.path, []).append(c)
        for path in calls:
            module = modules[path]
            if isinstance(module, _CONTAINERS):
                raise _Flat(f"{path} is a container")
            # a class instance is reached by attribute: its children must be plain attribute names
            kids = [name for name, _ in module.named_children()]
            if any(not _attribute_name(k) or k in _TAKEN or k.startswith("_") for k in kids):
                raise _Flat(f"{path} has a child that cannot be an attribute")
        self.paths = set(calls)
        self.tree = _tree(plan, self.paths)
        self.bodies: dict[str, _Body] = {}
        for path, cs in calls.items():
            bodies = [_Body(c, flow, modules[path]) for c in cs]
            if any(b.text != bodies[0].text or len(b.params) != len(bodies[0].params) for b in bodies[1:]):
                raise _Flat(f"{path} is called with different graphs")
            self.bodies[path] = bodies[0]
        self.node_of = {}
        for path in self.paths:
            node = self.tree
            for part in path.split("."):
                node = node.children[part]
            self.node_of[path] = node
        self.group_of: dict[str, _Group] = {}
        groups: dict[tuple, _Group] = {}
        for path in sorted(self.paths, key=lambda p: (-p.count("."), _order(p, calls))):  # children first
            kids = self.children(path)
            signature = tuple((k, _signature(s, path, lambda p: id(self.group_of[p]))) for k, s in kids)
            module = modules[path]
            type_key = (type(module).__module__, type(module).__qualname__)
            key = (type_key, self.bodies[path].text, signature)
            if key not in groups:
                groups[key] = _Group(type_key, type(module).__name__, self.bodies[path], signature)
            groups[key].instances.append(path)
            self.group_of[path] = groups[key]
        self.groups = list(groups.values())
        for g in self.groups:
            g.instances.sort(key=lambda p: _order(p, calls))
        self._name(plan.class_name, calls)
        self.args: dict[str, list] = {}
        self.done: set[int] = set()
        for g in self.groups:
            self._arguments(g)

    def children(self, path: str) -> list:
        node = self.node_of[path]
        return [(name, _struct(child, f"{path}.{name}", self.modules, self.paths))
                for name, child in node.children.items()]

    def _name(self, root_name: str, calls) -> None:
        by_type: dict[tuple, list[_Group]] = {}
        for g in self.groups:
            by_type.setdefault(g.type_key, []).append(g)
        used = {root_name, "L", "tf", "np"}
        for groups in sorted(by_type.values(), key=lambda gs: min(_order(p, calls) for g in gs for p in g.instances)):
            groups.sort(key=lambda g: (-len(g.instances), _order(g.instances[0], calls)))
            base = re.sub(r"\W", "_", groups[0].torch_name)
            base = base if base.isidentifier() and not keyword.iskeyword(base) else f"M_{base}"
            main = {k for k, _ in groups[0].signature}
            for k, g in enumerate(groups):
                mine = {name for name, _ in g.signature}
                extra, missing = sorted(mine - main), sorted(main - mine)
                name = base
                if k and extra:
                    name += "With" + "And".join(_camel(e) for e in extra)
                elif k and missing:
                    name += "Without" + "And".join(_camel(e) for e in missing)
                elif k:
                    name += f"V{k + 1}"
                candidate, n = name, 1
                while candidate in used:
                    n += 1
                    candidate = f"{name}{n}" if k else f"{name}_{n}"
                used.add(candidate)
                g.name = candidate

    def _arguments(self, g: _Group) -> None:
        """Config values that differ between a class's instances become its constructor arguments
        (values that move together, like a block's width in every layer, share one argument)."""
        if id(g) in self.done:
            return
        self.done.add(id(g))
        for p in g.instances:  # the classes it builds first: their arguments are slots here
            for child in _classed_in(self.children(p)):
                self._arguments(self.group_of[child])
        per_instance = [list(_slots_of(self.children(p), self.args.__getitem__)) for p in g.instances]
        names_for: dict[str, str] = {}
        taken = {"self", "path"}
        for j, (spath, key, _) in enumerate(per_instance[0]):
            values = [slots[j][2] for slots in per_instance]
            if all(repr(v) == repr(values[0]) for v in values):
                continue
            vector = repr(values)
            if vector not in names_for:
                base = re.sub(r"\W+", "_", f"{_rel(spath, g.instances[0])}_{key}").strip("_")
                base = base if base.isidentifier() and not keyword.iskeyword(base) else f"a_{base}"
                name = names_for[vector] = _unique(base, taken)
                g.params.append((name, values))
            g.slot_param[j] = names_for[vector]
        for i, p in enumerate(g.instances):
            self.args[p] = [(name, values[i]) for name, values in g.params]

    def construct(self, path: str):
        g = self.group_of[path]
        return g.name, self.args[path]

    def source(self, g: _Group) -> str:
        base = g.instances[0]
        slot_index = iter(range(10 ** 9))

        def value(path, key, v):
            j = next(slot_index)
            return g.slot_param.get(j) or repr(v)

        emit = _Emit(lambda p: "f" + repr("{path}." + _rel(p, base).replace("{", "{{").replace("}", "}}")), value,
                     self.construct)
        init = [f"self.{k} = {emit(s, ' ' * 8)}" for k, s in self.children(base)]
        where = ", ".join(g.instances[:3]) + (f" and {len(g.instances) - 3} more" if len(g.instances) > 3 else "")
        module, qual = g.type_key
        params = ["self", "path", *[name for name, _ in g.params]]
        head = _call("def __init__", params, "    ")
        call_head = _call("def __call__", ["self", *g.body.params], "    ")
        body = "\n".join("        " + line for line in g.body.text.splitlines())
        return (f"class {g.name}(L.Module):\n"
                f'    """torch: {module}.{qual}, at {where}."""\n\n'
                f"    {head}:\n"
                f"        super().__init__(path)\n"
                + "".join(f"        {line}\n" for line in init)
                + f"\n    {call_head}:\n{body}\n")


def _classed_in(kids):
    """Paths of the class instances a list of (name, struct) builds directly."""
    for _, s in kids:
        yield from _classed(s)


def _classed(struct):
    if struct is None:
        return
    if struct[0] == "class":
        yield struct[1]
    elif struct[0] == "list":
        for s in struct[1]:
            yield from _classed(s)
    elif struct[0] in ("dict", "ns"):
        for _, s in struct[-1]:
            yield from _classed(s)


def _slots_of(kids, args_of):
    for _, s in kids:
        yield from _slots(s, args_of)


def _order(path: str, calls) -> int:
    return calls[path][0].start


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\W]+", name) if part)


# ---------------------------------------------------------------- the file
# where the generated file finds the TF layers: bridge/layers as one file written beside it (export's
# bridge_layers.py, see standalone_layers: the file then needs only TensorFlow), or the installed bridge package
STANDALONE_IMPORT = "import bridge_layers as L  # bridge's TF layers, in bridge_layers.py beside this file"
BRIDGE_IMPORT = "from bridge import layers as L"


def generate(plan: Plan, modules: dict, origin: str, imports_bridge: bool = False) -> str:
    """The full model_tf.py text for ``plan``; ``modules`` is torch's ``named_modules()`` dict.

    By default the file imports its layers from ``bridge_layers`` (export writes that copy beside
    it); ``imports_bridge`` imports them from the installed bridge package instead.
    """
    try:
        classes, init, body = _structured(plan, modules)
    except _Flat:
        classes, init, body = "", _root_init(plan, modules, set(), None), _flat_body(plan)
    args = ", ".join(["self", *plan.input_names])
    return _TEMPLATE.format(
        origin=origin, version=__version__, cls=plan.class_name, io=_io_sentence(plan),
        layers_import=BRIDGE_IMPORT if imports_bridge else STANDALONE_IMPORT,
        classes=classes,
        init="\n".join("        " + line for line in init) or "        pass",
        args=args, body="\n".join("        " + line for line in body),
    )


def _casts(plan: Plan) -> list[str]:
    # float inputs may arrive as float64 numpy; a cast to the dtype we run in costs nothing when it already is
    return [f"{n} = tf.cast({n}, tf.float32)" for n, m in zip(plan.input_names, plan.input_metas)
            if m.dtype.is_floating_point]


def _flat_body(plan: Plan) -> list[str]:
    return [*_casts(plan), *plan.lines, f"return {plan.output_expr}"]


def _root_init(plan: Plan, modules: dict, classed: set, classes) -> list[str]:
    tree = _tree(plan, classed)
    emit = _Emit(repr, lambda path, key, v: repr(v), classes.construct if classes else None)
    root_module = modules[""]
    if isinstance(root_module, _CONTAINERS):
        return [f"self.layers = {emit(_struct(tree, '', modules, classed), ' ' * 8)}"]
    return [f"self.{name} = {emit(_struct(child, name, modules, classed), ' ' * 8)}"
            for name, child in tree.children.items()]


def _structured(plan: Plan, modules: dict) -> tuple[str, list[str], list[str]]:
    root, owner = _call_tree(plan, modules)
    if not any(isinstance(item, _CallNode) for item in root.items):
        raise _Flat("no module calls")
    flow = _Flow(plan, root, owner, modules)
    classes = _Classes(plan, modules, root, flow)
    init = _root_init(plan, modules, classes.paths, classes)
    hoists = [f"{name} = {ref}" for ref, name in flow.hoisted.items()]
    lines = []
    for item in root.items:
        if isinstance(item, _CallNode):
            access = access_source(module_access(item.path, modules))
            target = ", ".join(item.outputs)
            lines.append(f"{target + ' = ' if target else ''}self.{access}({', '.join(item.inputs)})")
        else:
            lines.append(flow.lines[item])
    body = [*_casts(plan), *hoists, *lines, f"return {plan.output_expr}"]
    text = "\n\n".join(classes.source(g) for g in _definition_order(classes))
    return text + ("\n\n" if text else ""), init, body


def _definition_order(classes: _Classes) -> list[_Group]:
    """Classes before the classes that build them, each where its first instance is called."""
    depth = {id(g): max(p.count(".") for p in g.instances) for g in classes.groups}
    return sorted(classes.groups, key=lambda g: -depth[id(g)])


def _io_sentence(plan: Plan) -> str:
    moved = [f"{n} ({lo.describe()})" for n, lo in zip(plan.input_names, plan.input_layouts) if not lo.is_identity]
    outs = [n for n, lo in zip(plan.output_names, plan.output_layouts) if not lo.is_identity]
    if not moved and not outs:
        return "Inputs and outputs use torch's layout and structure;"
    return ("Converted with channels_last_io: inputs " + (", ".join(moved) or "none") + " arrive channels-last"
            + (", outputs " + ", ".join(outs) + " are returned channels-last" if outs else "")
            + "; the rest use torch's layout and structure;")


_TEMPLATE = '''"""TF port of {origin}, generated by bridge {version}.

The classes mirror the torch module classes and tree, with the same names
(Sequential and ModuleList become lists). {io}
inside, feature maps are channels-last and transposes appear only where the
layout must change. The weights are not in this file: they live in the
SavedModel and in checkpoint/ beside it (tf.train.Checkpoint(model=...).read),
or are loaded from a torch state_dict by bridge.load_torch_weights.
"""

import tensorflow as tf

{layers_import}


{classes}class {cls}(tf.Module):
    def __init__(self, name="{cls}"):
        super().__init__(name=name)
{init}

    def __call__({args}):
{body}
'''


LAYERS_FILE = "bridge_layers.py"


def standalone_layers() -> str:
    """bridge/layers as one module, ``bridge_layers.py``: what model_tf.py imports when it needs only
    TensorFlow. The family files are joined in the order their relative imports need (base first),
    without those imports; every name stays what it is in ``bridge.layers`` (they are unique across
    the files: tests/test_kept_port.py checks that the two expose the same names)."""
    from pathlib import Path

    from . import layers

    folder = Path(layers.__file__).parent
    sources = {f.stem: f.read_text() for f in sorted(folder.glob("*.py")) if f.stem != "__init__"}
    needs, bodies, imports = {}, {}, []
    for stem, text in sources.items():
        tree = ast.parse(text)
        lines = text.splitlines()
        drop, needs[stem] = set(), []
        for i, node in enumerate(tree.body):
            span = set(range(node.lineno - 1, node.end_lineno))
            if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                drop |= span  # the family's docstring, kept as a comment below
            elif isinstance(node, ast.ImportFrom) and node.level:
                needs[stem].append(node.module)
                drop |= span
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                statement = "\n".join(lines[node.lineno - 1:node.end_lineno])
                if statement not in imports and statement != "from __future__ import annotations":
                    imports.append(statement)
                drop |= span
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                      for t in node.targets):
                drop |= span
        doc = ast.get_docstring(tree) or ""
        head = f"# ---- bridge/layers/{stem}.py" + "".join(f"\n# {line}".rstrip() for line in doc.splitlines()[:1])
        bodies[stem] = head + "\n" + "\n".join(line for k, line in enumerate(lines) if k not in drop).strip("\n")
    order: list[str] = []

    def visit(stem):
        if stem not in order:
            for dep in needs[stem]:
                visit(dep)
            order.append(stem)

    for stem in sources:
        visit(stem)
    names = sorted(n for n in layers.__all__)
    return (f'"""bridge {__version__}\'s TF layers (bridge/layers) in one file, for model_tf.py beside it.\n\n'
            "Generated from the package by bridge.codegen.standalone_layers; it needs only TensorFlow and numpy.\n"
            '"""\n\nfrom __future__ import annotations\n\n' + "\n".join(imports) + "\n\n\n"
            + "\n\n\n".join(bodies[s] for s in order) + "\n\n\n__all__ = " + repr(names) + "\n")


def binding_paths(plan: Plan, modules: dict):
    """(access steps, state_dict key, transform) for every TF variable the plan creates."""
    from .plan import Binding
    from .transforms import IDENTITY

    out = []
    for path, use in plan.layers.items():
        steps = module_access(path, modules)
        for attr, w in use.plan.weights.items():
            out.append(Binding((*steps, ("attr", attr)), tuple(f"{path}.{s}" for s in w.sources), w.transform))
    for target in plan.params:
        out.append(Binding(param_access(target, modules), (target,), IDENTITY))
    return out
