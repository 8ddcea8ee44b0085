"""Measure candidate tracers for the bridge on small, randomly initialised models.

Run it in a throwaway venv (see docs/tracers.md):

    python docs/experiments/compare_tracers.py --out /tmp/tracers.json

Every (model x tracer) pair is run inside try/except; a failure is a result,
recorded with the first line of its error. Nothing is downloaded: the HF models
are built from small configs with random weights.

What is measured for each pair (keys of the JSON record):
  ok / error              success, or the exception type and its first line
  seconds_first/_best     wall time of the first trace and the best of --repeat
  nodes                   graph nodes (runtime tracer: recorded events)
  kinds                   node count per op kind
  targets                 the most frequent op targets (what the ops look like)
  leaf_map                can each leaf nn.Module call that runs eagerly be
                          found, by module path, as exactly one node?  And does
                          that node's value equal the eager module output?
  replay                  does the traced artifact reproduce eager output on
                          the trace inputs and on a new (batch, seq) shape?
  int64 / mask            dtype of the token-id and mask inputs as the tracer
                          sees them and the first ops applied to the mask
  lstm_nodes              nodes attributed to the nn.LSTM / nn.GRU module
  symbolic                whether the batch / seq dims stay symbolic
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import platform
import sys
import time
import traceback
import warnings

import torch
import torch.fx
import torch.nn as nn
from torch.overrides import TorchFunctionMode

warnings.filterwarnings("ignore")
torch.manual_seed(0)

VOCAB = 1000
B, T = 2, 8  # trace shape
B2, T2 = 3, 5  # replay shape (T2 > 4 keeps the toy model on the same branch)


# --------------------------------------------------------------------------- models


class LSTMTagger(nn.Module):
    """nn.Embedding -> 2-layer batch_first nn.LSTM (or nn.GRU) -> nn.Linear."""

    def __init__(self, rnn=nn.LSTM):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        self.lstm = rnn(32, 48, num_layers=2, batch_first=True)
        self.head = nn.Linear(48, 10)

    def forward(self, input_ids):
        x = self.embed(input_ids)
        out, _ = self.lstm(x)
        return self.head(out)


class Branchy(nn.Module):
    """Shape-dependent Python control flow: `if x.shape[1] > 4`."""

    def __init__(self):
        super().__init__()
        self.long = nn.Linear(16, 16)
        self.short = nn.Linear(16, 16)

    def forward(self, x):
        if x.shape[1] > 4:
            return self.long(x).mean(1)
        return self.short(x).mean(1)


def token_inputs(b, t, pad=True):
    ids = torch.randint(0, VOCAB, (b, t), dtype=torch.int64)
    mask = torch.ones(b, t, dtype=torch.int64)
    if pad and b > 1:
        mask[1, t - 3 :] = 0  # second sequence is padded
    return ids, mask


def make_models(names):
    """name -> (model, input_names, make_inputs(b, t) -> tuple of tensors)."""
    out = {}
    if "lstm" in names:
        out["lstm"] = (LSTMTagger().eval(), ["input_ids"], lambda b, t: token_inputs(b, t)[:1])
    if "gru" in names:
        out["gru"] = (LSTMTagger(nn.GRU).eval(), ["input_ids"], lambda b, t: token_inputs(b, t)[:1])
    if "branchy" in names:
        out["branchy"] = (Branchy().eval(), ["x"], lambda b, t: (torch.randn(b, t, 16),))
    if "bert" in names or "gpt2" in names:
        import transformers

        if "bert" in names:
            cfg = transformers.BertConfig(
                hidden_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=128,
                vocab_size=VOCAB,
            )
            out["bert"] = (transformers.BertModel(cfg).eval(), ["input_ids", "attention_mask"], token_inputs)
        if "gpt2" in names:
            cfg = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB, use_cache=False)
            out["gpt2"] = (transformers.GPT2Model(cfg).eval(), ["input_ids", "attention_mask"], token_inputs)
    return out


# --------------------------------------------------------------------------- helpers


def first_tensor(x):
    """The first tensor in a (possibly nested) output: HF ModelOutput, tuple, tensor."""
    if isinstance(x, torch.Tensor):
        return x
    if hasattr(x, "to_tuple"):
        x = x.to_tuple()
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        for item in x:
            t = first_tensor(item)
            if t is not None:
                return t
    return None


def first_line(exc):
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"[:300]


def close(a, b):
    a, b = first_tensor(a), first_tensor(b)
    if a is None or b is None or a.shape != b.shape:
        return False
    return bool(torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4))


def max_diff(a, b):
    a, b = first_tensor(a), first_tensor(b)
    if a is None or b is None:
        return None
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    return float((a.float() - b.float()).abs().max())


def leaf_paths(model):
    return {name: m for name, m in model.named_modules() if name and not list(m.children())}


def eager_leaf_outputs(model, args, kwargs):
    """Run eagerly with forward hooks on every leaf module: path -> [outputs]."""
    outs = collections.defaultdict(list)
    handles = []
    for path, mod in leaf_paths(model).items():
        handles.append(mod.register_forward_hook(lambda m, i, o, p=path: outs[p].append(o)))
    with torch.no_grad():
        model(*args, **kwargs)
    for h in handles:
        h.remove()
    return dict(outs)


def target_name(node):
    t = node.target
    if node.op == "call_module":
        return f"module:{t}"
    if node.op == "call_method":
        return f"method:{t}"
    if isinstance(t, str):
        return t
    name = getattr(t, "__name__", None) or str(t)
    mod = getattr(t, "__module__", None)
    if isinstance(t, torch._ops.OpOverload):
        return str(t)
    return f"{mod}.{name}" if mod else name


def graph_stats(graph):
    kinds = collections.Counter(n.op for n in graph.nodes)
    targets = collections.Counter(
        target_name(n) for n in graph.nodes if n.op in ("call_function", "call_method", "call_module")
    )
    return {
        "nodes": len(graph.nodes),
        "kinds": dict(kinds),
        "distinct_targets": len(targets),
        "targets": [f"{k} x{v}" for k, v in targets.most_common(14)],
    }


def users_chain(graph, placeholder_name, depth=4):
    """Op targets reachable from one placeholder within `depth` hops (breadth-first)."""
    start = [n for n in graph.nodes if n.op == "placeholder" and n.name == placeholder_name]
    if not start:
        return None
    seen, frontier, chain = set(), start, []
    for _ in range(depth):
        nxt = []
        for n in frontier:
            for u in n.users:
                if u in seen:
                    continue
                seen.add(u)
                chain.append(target_name(u) if u.op != "output" else "output")
                nxt.append(u)
        frontier = nxt
    return chain[:16]


def code_excerpt(code, lines=14):
    body = [ln for ln in code.splitlines() if ln.strip()]
    return body[:lines]


class Capture(torch.fx.Interpreter):
    """Run a GraphModule and keep every node's value."""

    def __init__(self, gm):
        super().__init__(gm)
        self.values = {}

    def run_node(self, n):
        v = super().run_node(n)
        self.values[n.name] = v
        return v


def fx_leaf_map(gm, graph, eager_outs, args):
    """Leaf modules that are exactly one call_module node, and whose value matches eager."""
    vals, vals_err = None, None
    try:
        cap = Capture(gm)
        with torch.no_grad():
            cap.run(*args)
        vals = cap.values
    except Exception as e:  # noqa: BLE001
        vals_err = first_line(e)
    strip = lambda t: t[len("model.") :] if t.startswith("model.") else t  # noqa: E731  (KwargsWrapper)
    calls = collections.Counter(strip(n.target) for n in graph.nodes if n.op == "call_module")
    node_of = {strip(n.target): n.name for n in graph.nodes if n.op == "call_module"}
    single = [p for p in eager_outs if calls.get(p, 0) == len(eager_outs[p]) == 1]
    match = [p for p in single if vals is not None and close(vals[node_of[p]], eager_outs[p][0])]
    res = {
        "eager_leaf_calls": len(eager_outs),
        "one_node": len(single),
        "value_match": len(match),
        "missing": sorted(set(eager_outs) - set(single))[:8],
    }
    if vals is None:
        res["interpreter_error"] = vals_err
    return res


# --------------------------------------------------------------------------- tracers

LEAF_TYPES = (nn.Linear, nn.LayerNorm, nn.Embedding, nn.LSTM, nn.GRU, nn.Dropout, nn.Conv1d, nn.Conv2d)


def hf_leaf_types():
    extra = []
    with contextlib.suppress(Exception):
        from transformers.pytorch_utils import Conv1D

        extra.append(Conv1D)
    with contextlib.suppress(Exception):
        from transformers import activations

        extra += [activations.GELUActivation, activations.NewGELUActivation]
    return tuple(extra)


class LeafTracer(torch.fx.Tracer):
    """fx Tracer keeping a chosen set of module types as leaves (one call_module node each)."""

    def __init__(self, leaf_types):
        super().__init__()
        self.leaf_types = leaf_types

    def is_leaf_module(self, m, qualname):
        return isinstance(m, self.leaf_types)


class KwargsWrapper(nn.Module):
    """forward(input_ids, attention_mask) -> model(input_ids=..., attention_mask=...)."""

    def __init__(self, model, input_names):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)

    def forward(self, input_ids, attention_mask=None):
        kw = {"input_ids": input_ids}
        if "attention_mask" in self.input_names:
            kw["attention_mask"] = attention_mask
        return self.model(**kw)


def unused_concrete_args(model, input_names):
    """Every forward parameter that is not a traced input, fixed to its default (None/False)."""
    import inspect

    sig = inspect.signature(model.forward)
    ca = {}
    for name, p in sig.parameters.items():
        if name in input_names or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        ca[name] = None if p.default is inspect.Parameter.empty else p.default
    return ca


def run_fx(model, input_names, make_inputs, variant):
    tracer = LeafTracer(LEAF_TYPES + hf_leaf_types())  # imports outside the timed region
    t0 = time.perf_counter()
    if variant == "fx_plain":
        gm = torch.fx.symbolic_trace(model)
    elif variant == "fx_plain_concrete":
        gm = torch.fx.symbolic_trace(model, concrete_args=unused_concrete_args(model, input_names))
    elif variant == "fx_leaf":
        graph = tracer.trace(model, concrete_args=unused_concrete_args(model, input_names))
        gm = torch.fx.GraphModule(tracer.root, graph, type(model).__name__)
    elif variant == "fx_leaf_wrapped":
        # HF v5 forwards are wrapped in (*args, **kwargs) decorators; give fx a plain signature.
        graph = tracer.trace(KwargsWrapper(model, input_names))
        gm = torch.fx.GraphModule(tracer.root, graph, "Wrapped")
    elif variant == "hf_fx":
        from transformers.utils.fx import symbolic_trace as hf_trace

        gm = hf_trace(model, input_names=input_names)
    else:
        raise ValueError(variant)
    secs = time.perf_counter() - t0
    return gm, secs


def run_export(model, input_names, make_inputs, variant):
    args = make_inputs(B, T)
    kwargs = dict(zip(input_names, args))
    opts = {}
    if variant == "export_strict":
        opts["strict"] = True
    else:
        opts["strict"] = False
    if variant == "export_dynamic":
        opts["dynamic_shapes"] = {k: {0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO} for k in input_names}
    if variant == "export_dynamic_named":
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
        opts["dynamic_shapes"] = {k: {0: batch, 1: seq} for k in input_names}
    if variant == "export_preserve":
        opts["preserve_module_call_signature"] = tuple(leaf_paths(model))
    t0 = time.perf_counter()
    ep = torch.export.export(model, (), kwargs, **opts)
    secs = time.perf_counter() - t0
    return ep, secs


class RuntimeTrace(TorchFunctionMode):
    """Forward hooks on every module + a TorchFunctionMode.

    Leaf modules become one event each (keyed by module path); torch-level
    calls made outside leaf modules (functional ops, tensor methods) become one
    event each, tagged with the innermost enclosing module path.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.stack = []  # module paths currently executing
        self.leaf_depth = 0
        self.events = []  # (kind, name, module_path, info)
        self.handles = []
        self.tainted = {}  # id(tensor) -> tensor, tensors derived from the mask
        self.mask_ops = []
        self.leaves = set(leaf_paths(model))

    def install(self):
        for path, mod in self.model.named_modules():
            self.handles.append(mod.register_forward_pre_hook(lambda m, a, p=path: self._enter(p)))
            self.handles.append(mod.register_forward_hook(lambda m, a, o, p=path: self._exit(p, a, o)))

    def remove(self):
        for h in self.handles:
            h.remove()

    def _enter(self, path):
        self.stack.append(path)
        if path in self.leaves:
            self.leaf_depth += 1

    def _exit(self, path, args, out):
        self.stack.pop()
        if path in self.leaves:
            self.leaf_depth -= 1
            ins = [(str(a.dtype).replace("torch.", ""), tuple(a.shape)) for a in args if isinstance(a, torch.Tensor)]
            self.events.append(("module", type(self.model.get_submodule(path)).__name__, path, ins))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.leaf_depth == 0:
            name = getattr(func, "__qualname__", None) or getattr(func, "__name__", str(func))
            mod = getattr(func, "__module__", None) or ""
            if name.endswith("__get__"):
                kind = "attr"
            else:
                kind = "op"
            full = f"{mod}.{name}" if mod and not mod.startswith("torch._C") else name
            self.events.append((kind, full, self.stack[-1] if self.stack else "", None))
            flat = list(args) + list(kwargs.values())
            if kind != "attr" and any(isinstance(a, torch.Tensor) and id(a) in self.tainted for a in flat):
                self.mask_ops.append(full)
                for o in out if isinstance(out, (tuple, list)) else (out,):
                    if isinstance(o, torch.Tensor):
                        self.tainted[id(o)] = o
        return out


def run_runtime(model, input_names, args, pad=True):
    if not pad and len(args) > 1:
        args = (args[0], torch.ones_like(args[1]))
    kwargs = dict(zip(input_names, args))
    rt = RuntimeTrace(model)
    if "attention_mask" in kwargs:
        rt.tainted[id(kwargs["attention_mask"])] = kwargs["attention_mask"]
    t0 = time.perf_counter()
    rt.install()
    try:
        with torch.no_grad(), rt:
            out = model(**kwargs)
    finally:
        rt.remove()
    secs = time.perf_counter() - t0
    return rt, out, secs


# --------------------------------------------------------------------------- one experiment


def experiment(name, model, input_names, make_inputs, tracer, repeat):
    rec = {"model": name, "tracer": tracer, "ok": False}
    args = make_inputs(B, T)
    kwargs = dict(zip(input_names, args))
    with torch.no_grad():
        eager = model(**kwargs)
    eager_outs = eager_leaf_outputs(model, (), kwargs)
    args2 = make_inputs(B2, T2)
    kwargs2 = dict(zip(input_names, args2))
    with torch.no_grad():
        eager2 = model(**kwargs2)
    # branchy: a third shape that takes the other branch
    args3 = make_inputs(B2, 3)
    with torch.no_grad():
        eager3 = model(**dict(zip(input_names, args3)))
    # batch of one (export's symbolic dims are created with a lower bound of 2)
    args4 = make_inputs(1, 6)
    with torch.no_grad():
        eager4 = model(**dict(zip(input_names, args4)))
    more = (args3, eager3, args4, eager4)

    times = []
    try:
        if tracer.startswith("fx") or tracer == "hf_fx":
            for _ in range(repeat):
                gm, secs = run_fx(model, input_names, make_inputs, tracer)
                times.append(secs)
            graph = gm.graph
            rec.update(graph_stats(graph))
            rec["code"] = code_excerpt(gm.code)
            rec["leaf_map"] = fx_leaf_map(gm, graph, eager_outs, args)
            rec["replay"] = replay(lambda *a: gm(*a), args, eager, args2, eager2, more, name)
            if "attention_mask" in input_names:
                rec["mask_ops"] = users_chain(graph, "attention_mask")
            rec["int64"] = "placeholders carry no dtype/shape (fx records no metadata without ShapeProp)"
            if name in ("lstm", "gru"):
                rec["lstm_nodes"] = sum(1 for n in graph.nodes if n.op == "call_module" and n.target == "lstm") or [
                    target_name(n) for n in graph.nodes if "lstm" in n.name
                ][:10]
            rec["symbolic"] = "shapes are Proxies; size() becomes a node, values unknown at trace time"
        elif tracer.startswith("export"):
            for _ in range(repeat):
                ep, secs = run_export(model, input_names, make_inputs, tracer)
                times.append(secs)
            graph = ep.graph
            rec.update(graph_stats(graph))
            rec["code"] = code_excerpt(ep.graph_module.code, 18)
            rec["aten_ops"] = sum(
                1 for n in graph.nodes if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload)
            )
            rec["leaf_map"] = export_leaf_map(ep, eager_outs, kwargs, model)
            mod = ep.module()
            rec["replay"] = replay(
                lambda *a: mod(**dict(zip(input_names, a))), args, eager, args2, eager2, more, name
            )
            rec["inputs"] = {
                n.name: describe_val(n.meta.get("val"))
                for n in graph.nodes
                if n.op == "placeholder" and n.name in input_names
            }
            rec["range_constraints"] = {str(k): str(v) for k, v in ep.range_constraints.items()}
            if "attention_mask" in input_names:
                rec["mask_ops"] = users_chain(graph, "attention_mask")
            rec["int64_ops"] = int64_ops(graph)
            if name in ("lstm", "gru"):
                rec["lstm_nodes"] = [
                    target_name(n)
                    for n in graph.nodes
                    if n.op == "call_function" and innermost(n) == "lstm"
                ]
            if tracer == "export" and "attention_mask" in input_names:
                ones = dict(kwargs, attention_mask=torch.ones_like(kwargs["attention_mask"]))
                ep1 = torch.export.export(model, (), ones, strict=False)
                rec["same_graph_with_all_ones_mask"] = [target_name(n) for n in ep1.graph.nodes] == [
                    target_name(n) for n in graph.nodes
                ]
            if tracer in ("export_preserve", "export"):
                rec["unflatten"] = unflatten_check(ep, eager_outs, kwargs, input_names)
        elif tracer.startswith("runtime"):
            pad = tracer != "runtime_unpadded"
            for _ in range(repeat):
                rt, out, secs = run_runtime(model, input_names, args, pad=pad)
                times.append(secs)
            ev = rt.events
            kinds = collections.Counter(e[0] for e in ev)
            names = collections.Counter(e[1] for e in ev if e[0] != "attr")
            rec["nodes"] = kinds["module"] + kinds["op"]
            rec["kinds"] = dict(kinds)
            rec["distinct_targets"] = len(names)
            rec["targets"] = [f"{k} x{v}" for k, v in names.most_common(14)]
            mod_calls = collections.Counter(e[2] for e in ev if e[0] == "module")
            rec["leaf_map"] = {
                "eager_leaf_calls": len(eager_outs),
                "one_node": sum(1 for p in eager_outs if mod_calls.get(p) == len(eager_outs[p]) == 1),
                "value_match": "n/a (hook outputs are the eager outputs)",
            }
            rec["data_dependent_calls"] = sorted(
                {e[1] for e in ev if any(s in e[1] for s in ("__bool__", ".item", ".tolist", "__int__", "__index__"))}
            )
            rec["mask_ops"] = rt.mask_ops[:16]
            rec["int64"] = sorted({str(i) for e in ev if e[0] == "module" for i in e[3] if i and i[0] == "int64"})[:6]
            if name in ("lstm", "gru"):
                rec["lstm_nodes"] = mod_calls.get("lstm", 0)
            rec["symbolic"] = "no: concrete tensors, one record per input shape"
            if name == "branchy":
                rec["branch_taken"] = sorted({e[2] for e in ev if e[0] == "module"})
                rt3, _, _ = run_runtime(model, input_names, more[0], pad=pad)
                rec["branch_taken_T3"] = sorted({e[2] for e in rt3.events if e[0] == "module"})
            # same model at the replay shape: is the op sequence the same?
            rt2, _, _ = run_runtime(model, input_names, args2, pad=pad)
            sig1 = [(e[0], e[1], e[2]) for e in ev if e[0] != "attr"]
            sig2 = [(e[0], e[1], e[2]) for e in rt2.events if e[0] != "attr"]
            rec["same_record_at_new_shape"] = sig1 == sig2
            if pad:
                rec["replay"] = {"trace_inputs": "match" if close(out, eager) else "MISMATCH"}
            rec["replay_note"] = "a record of one run, not an executable graph"
            rec["shape_reads"] = kinds.get("attr", 0)
        rec["ok"] = True
    except Exception as e:  # noqa: BLE001
        rec["error"] = first_line(e)
        rec["error_detail"] = [ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()][:3]
        rec["where"] = last_frame(e)
    rec["seconds_first"] = round(times[0], 4) if times else None
    rec["seconds_best"] = round(min(times), 4) if times else None
    return rec


def last_frame(exc):
    """The deepest frame in model code (not torch, not this script), else the deepest frame."""
    tb = traceback.extract_tb(exc.__traceback__)
    fmt = lambda fr: f"{fr.filename.split('site-packages/')[-1]}:{fr.lineno} {fr.name}: {fr.line}"  # noqa: E731
    for fr in reversed(tb):
        short = fr.filename.split("site-packages/")[-1]
        if not short.startswith("torch/") and "compare_tracers" not in fr.filename:
            return fmt(fr)
    return fmt(tb[-1]) if tb else None


def describe_val(v):
    if isinstance(v, torch.Tensor):
        return {"dtype": str(v.dtype).replace("torch.", ""), "shape": [str(s) for s in v.shape]}
    return str(v)


def innermost(node):
    st = node.meta.get("nn_module_stack")
    if not st:
        return ""
    path = list(st.values())[-1][0]
    # export names paths like "L__self___encoder_layer_0" (strict) or "encoder.layer.0" (non-strict)
    return path


def norm_path(p):
    return p.replace("L['self'].", "").replace("L__self___", "")


def int64_ops(graph):
    ops = collections.Counter()
    for n in graph.nodes:
        if n.op != "call_function":
            continue
        v = n.meta.get("val")
        ins = [a.meta.get("val") for a in n.all_input_nodes]
        if (isinstance(v, torch.Tensor) and v.dtype == torch.int64) or any(
            isinstance(i, torch.Tensor) and i.dtype == torch.int64 for i in ins
        ):
            ops[target_name(n)] += 1
    return [f"{k} x{v}" for k, v in ops.most_common(10)]


def export_leaf_map(ep, eager_outs, kwargs, model):
    """Group call_function nodes by innermost nn_module_stack path; compare the group's last value."""
    groups = collections.defaultdict(list)
    for n in ep.graph.nodes:
        if n.op == "call_function":
            groups[norm_path(innermost(n))].append(n)
    mod = ep.module()
    cap = Capture(mod)
    names_by_path = {}
    # ep.module() keeps node names and meta; map by name
    for n in mod.graph.nodes:
        if n.op == "call_function":
            names_by_path.setdefault(norm_path(innermost(n)), []).append(n.name)
    vals = None
    with contextlib.suppress(Exception), torch.no_grad():
        cap.run(*[kwargs[k] for k in kwargs])
        vals = cap.values
    single = [p for p in eager_outs if len(groups.get(p, [])) == 1]
    present = [p for p in eager_outs if groups.get(p)]
    match = 0
    if vals is not None:
        for p in present:
            names = [x for x in names_by_path.get(p, []) if x in vals]
            if names and close(vals[names[-1]], eager_outs[p][0]):
                match += 1
    sizes = collections.Counter(len(groups[p]) for p in present)
    return {
        "eager_leaf_calls": len(eager_outs),
        "paths_present": len(present),
        "one_node": len(single),
        "nodes_per_leaf_histogram": dict(sorted(sizes.items())),
        "last_node_value_match": match if vals is not None else "interpreter failed",
        "missing": sorted(set(eager_outs) - set(present))[:8],
    }


def unflatten_check(ep, eager_outs, kwargs, input_names):
    """torch.export.unflatten, then forward hooks on the rebuilt leaf modules vs eager hooks."""
    res = {}
    try:
        t0 = time.perf_counter()
        uf = torch.export.unflatten(ep)
        res["seconds"] = round(time.perf_counter() - t0, 4)
        got = collections.defaultdict(list)
        hs = []
        found = 0
        for p in eager_outs:
            try:
                sub = uf.get_submodule(p)
            except AttributeError:
                continue
            found += 1
            hs.append(sub.register_forward_hook(lambda m, i, o, p=p: got[p].append(o)))
        with torch.no_grad():
            uf(**kwargs)
        for h in hs:
            h.remove()
        res["leaf_submodules_found"] = found
        res["hooks_fired"] = sum(1 for p in eager_outs if got.get(p))
        res["hook_value_match"] = sum(1 for p in eager_outs if got.get(p) and close(got[p][0], eager_outs[p][0]))
        res["leaf_submodule_types"] = sorted(
            {type(uf.get_submodule(p)).__name__ for p in eager_outs if p in dict(uf.named_modules())}
        )
    except Exception as e:  # noqa: BLE001
        res["error"] = first_line(e)
    return res


def replay(fn, args, eager, args2, eager2, more, name):
    args3, eager3, args4, eager4 = more
    res = {}
    cases = [("trace_shape", args, eager), ("new_shape", args2, eager2), ("batch1", args4, eager4)]
    if name == "branchy":
        cases.append(("other_branch_T3", args3, eager3))
    for label, a, e in cases:
        try:
            with torch.no_grad():
                got = fn(*a)
            res[label] = "match" if close(got, e) else f"MISMATCH (max diff {max_diff(got, e)})"
        except Exception as ex:  # noqa: BLE001
            res[label] = "error: " + first_line(ex)
    return res


# --------------------------------------------------------------------------- main

TRACERS = [
    "fx_plain",
    "fx_plain_concrete",
    "fx_leaf",
    "fx_leaf_wrapped",
    "hf_fx",
    "export",
    "export_strict",
    "export_dynamic",
    "export_dynamic_named",
    "export_preserve",
    "runtime",
    "runtime_unpadded",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="lstm,gru,bert,gpt2,branchy")
    ap.add_argument("--tracers", default=",".join(TRACERS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default="tracers.json")
    a = ap.parse_args()
    names = a.models.split(",")
    models = make_models(names)
    env = {"python": platform.python_version(), "torch": torch.__version__}
    with contextlib.suppress(Exception):
        import transformers

        env["transformers"] = transformers.__version__
    results = []
    for mname in names:
        model, input_names, make_inputs = models[mname]
        kw = dict(zip(input_names, make_inputs(B, T)))
        eager_times = []
        with torch.no_grad():
            for _ in range(4):  # the first call warms up; keep the best of the rest
                t0 = time.perf_counter()
                model(**kw)
                eager_times.append(time.perf_counter() - t0)
        eager_s = min(eager_times[1:])
        for tr in a.tracers.split(","):
            if tr in ("hf_fx", "fx_leaf_wrapped") and mname in ("lstm", "gru", "branchy"):
                continue
            if tr == "runtime_unpadded" and "attention_mask" not in input_names:
                continue
            buf = io.StringIO()
            with contextlib.redirect_stderr(buf):
                rec = experiment(mname, model, input_names, make_inputs, tr, a.repeat)
            rec["env"] = env
            rec["eager_forward_seconds"] = round(eager_s, 4)
            results.append(rec)
            status = "ok " if rec["ok"] else "ERR"
            print(
                f"{mname:8s} {tr:18s} {status} nodes={rec.get('nodes')!s:5s} "
                f"t={rec.get('seconds_best')} {rec.get('error', '')}",
                flush=True,
            )
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1, default=str)
    print("wrote", a.out)
    print()
    print(markdown_table(results))


def markdown_table(results):
    """One row per (model, tracer): the figures docs/tracers.md quotes."""
    rows = [
        "| model | tracer | ok | best s | nodes | leaf calls -> one node | leaf value match | replay at new shape |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lm = r.get("leaf_map") or {}
        if r["tracer"].startswith("export"):
            vm = lm.get("last_node_value_match")
            if r.get("unflatten", {}).get("hook_value_match") is not None:
                vm = f"{vm} (unflatten hooks: {r['unflatten']['hook_value_match']})"
        else:
            vm = lm.get("value_match")
        rep = (r.get("replay") or {}).get("new_shape", "n/a (record)" if r["tracer"].startswith("runtime") else "")
        ok = "yes" if r["ok"] else "**no**: " + r["error"].replace("|", "/")[:90]
        one = f"{lm.get('one_node')}/{lm.get('eager_leaf_calls')}" if lm else ""
        rows.append(
            f"| {r['model']} | {r['tracer']} | {ok} | {r.get('seconds_best') or ''} | {r.get('nodes') or ''} "
            f"| {one} | {vm if vm is not None else ''} | {str(rep).replace('|', '/')[:70]} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
