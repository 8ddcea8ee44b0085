"""trace: torch module -> fx graph whose leaf modules stay single nodes.

We use ``torch.fx`` symbolic tracing (see docs/tracers.md for the comparison
with torch.export and runtime tracing). Every module that has a mapping, and
every built-in ``torch.nn`` module that is not a container, is a leaf: it stays
one ``call_module`` node, so per-module parity and the generated source can
name it by its path. User-defined modules are traced through.

After tracing, the graph is run once on the example inputs to record each
node's shape and dtype (and the concrete value of non-tensor nodes, such as
sizes), which the planner needs.
"""

from __future__ import annotations

import inspect

import torch
import torch.fx as fx

from .errors import BadInputError, Unsupported, UnsupportedError
from .plan import TensorMeta
from .registry import Registry

_CONTAINERS = (torch.nn.Sequential, torch.nn.ModuleList, torch.nn.ModuleDict)


class _BridgeTracer(fx.Tracer):
    def __init__(self, registry: Registry):
        super().__init__()
        self.registry = registry
        self.record_stack_traces = True

    def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
        if self.registry.find_module(m) is not None:
            return True
        builtin = type(m).__module__.startswith("torch.nn")
        return builtin and not isinstance(m, _CONTAINERS)


def trace(module: torch.nn.Module, n_inputs: int, registry: Registry) -> fx.GraphModule:
    """Symbolically trace ``module``; forward() arguments beyond ``n_inputs`` are fixed to their defaults."""
    params = list(inspect.signature(module.forward).parameters.values())
    concrete = {}
    for p in params[n_inputs:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            raise UnsupportedError([Unsupported("forward()", type(module).__name__,
                                                f"argument {p.name!r} has no example input and no default")])
        concrete[p.name] = p.default
    tracer = _BridgeTracer(registry)
    try:
        graph = tracer.trace(module, concrete_args=concrete or None)
    except Exception as exc:  # fx raises many types: report as one unsupported part, with its reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedError([Unsupported("forward()", type(module).__name__,
                                            f"cannot be traced symbolically ({type(exc).__name__}: {first})")]) from exc
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


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
        return type(value)(_meta(v) for v in value)
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
