"""codegen: a Plan -> readable TF source (``model_tf.py``).

``__init__`` builds one ``bridge.layers`` object per torch leaf module, nested
exactly as in torch (Sequential/ModuleList -> list, ModuleDict -> dict, other
modules -> ``L.Namespace``). ``__call__`` is the traced forward, one line per
op. The in-memory model is always built by executing this same text, so the
file a user keeps and the model that was checked cannot differ.
"""

from __future__ import annotations

import keyword

import torch

from . import __version__
from .plan import Plan, module_access, param_access

_WIDTH = 100


def _kwargs(config: dict) -> list[str]:
    return [f"{k}={v!r}" for k, v in config.items()]


def _call(fn: str, args: list[str], indent: str) -> str:
    one = f"{fn}({', '.join(args)})"
    if len(indent) + len(one) <= _WIDTH:
        return one
    inner = indent + "    "
    return f"{fn}(\n" + "".join(f"{inner}{a},\n" for a in args) + f"{indent})"


class _Tree:
    def __init__(self):
        self.children: dict[str, _Tree] = {}
        self.leaf: str | None = None  # a constructor expression


def _tree(plan: Plan) -> _Tree:
    root = _Tree()
    entries = [(p, u) for p, u in plan.layers.items()] + [(p, m) for p, m in plan.params.items()]
    for path, entry in entries:
        node = root
        for part in path.split("."):
            node = node.children.setdefault(part, _Tree())
        node.leaf = entry
    return root


def _render(node: _Tree, path: str, modules: dict, indent: str) -> str:
    entry = node.leaf
    if entry is not None and not node.children:
        if hasattr(entry, "plan"):  # a layer
            args = [f"path={path!r}", *_kwargs(entry.plan.config)]
            return _call(f"L.{entry.plan.layer}", args, indent)
        dtype = str(entry.dtype).replace("torch.", "tf.")
        return f"L.parameter({path!r}, {list(entry.shape)}, {dtype})"
    if entry is not None:
        raise ValueError(f"{path} is both a mapped module and a container of used parameters")
    module = modules[path]
    inner = indent + "    "
    kids = {name: _render(child, f"{path}.{name}" if path else name, modules, inner)
            for name, child in node.children.items()}
    if isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)) and all(k.isdigit() for k in kids):
        items = [kids.get(str(i), "None") for i in range(max((int(k) for k in kids), default=-1) + 1)]
        return "[\n" + "".join(f"{inner}{v},\n" for v in items) + f"{indent}]"
    if isinstance(module, torch.nn.ModuleDict) or not all(k.isidentifier() and not keyword.iskeyword(k) for k in kids):
        return "{\n" + "".join(f"{inner}{k!r}: {v},\n" for k, v in kids.items()) + f"{indent}}}"
    args = [repr(path)] + [f"{k}={v}" for k, v in kids.items()]
    return "L.Namespace(\n" + "".join(f"{inner}{a},\n" for a in args) + f"{indent})"


# where the generated file finds the TF layers: a copy of bridge/layers written beside it (export's
# bridge_layers/, so the file needs only TensorFlow), or the installed bridge package
STANDALONE_IMPORT = "import bridge_layers as L  # bridge's TF layers, copied into bridge_layers/ beside this file"
BRIDGE_IMPORT = "from bridge import layers as L"


def generate(plan: Plan, modules: dict, origin: str, imports_bridge: bool = False) -> str:
    """The full model_tf.py text for ``plan``; ``modules`` is torch's ``named_modules()`` dict.

    By default the file imports its layers from ``bridge_layers`` (export writes that copy beside
    it); ``imports_bridge`` imports them from the installed bridge package instead.
    """
    root = _tree(plan)
    init = []
    root_module = modules[""]
    if isinstance(root_module, (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)):
        init.append(f"self.layers = {_render(root, '', modules, ' ' * 8)}")
    else:
        for name, child in root.children.items():
            init.append(f"self.{name} = {_render(child, name, modules, ' ' * 8)}")
    # float inputs may arrive as float64 numpy; a cast to the dtype we run in costs nothing when it already is
    casts = [f"{n} = tf.cast({n}, tf.float32)" for n, m in zip(plan.input_names, plan.input_metas)
             if m.dtype.is_floating_point]
    body = [*casts, *plan.lines, f"return {plan.output_expr}"]
    args = ", ".join(["self", *plan.input_names])
    return _TEMPLATE.format(
        origin=origin, version=__version__, cls=plan.class_name, io=_io_sentence(plan),
        layers_import=BRIDGE_IMPORT if imports_bridge else STANDALONE_IMPORT,
        init="\n".join("        " + line for line in init) or "        pass",
        args=args, body="\n".join("        " + line for line in body),
    )


def _io_sentence(plan: Plan) -> str:
    moved = [f"{n} ({lo.describe()})" for n, lo in zip(plan.input_names, plan.input_layouts) if not lo.is_identity]
    outs = [n for n, lo in zip(plan.output_names, plan.output_layouts) if not lo.is_identity]
    if not moved and not outs:
        return "Inputs and outputs use torch's layout and structure;"
    return ("Converted with channels_last_io: inputs " + (", ".join(moved) or "none") + " arrive channels-last"
            + (", outputs " + ", ".join(outs) + " are returned channels-last" if outs else "")
            + "; the rest use torch's layout and structure;")


_TEMPLATE = '''"""TF port of {origin}, generated by bridge {version}.

The layers mirror the torch module tree, with the same names (Sequential and
ModuleList become lists). {io}
inside, feature maps are channels-last and transposes appear only where the
layout must change. The weights are not in this file: they live in the
SavedModel and in checkpoint/ beside it (tf.train.Checkpoint(model=...).read),
or are loaded from a torch state_dict by bridge.load_torch_weights.
"""

import tensorflow as tf

{layers_import}


class {cls}(tf.Module):
    def __init__(self, name="{cls}"):
        super().__init__(name=name)
{init}

    def __call__({args}):
{body}
'''


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
