"""Quantized tfjs weights (``bridge convert --quantize``), and what they cost, measured against torch.

What is quantized: only the tfjs artifact's weight shards, by the tensorflowjs
converter itself (``quantization_dtype_map``: float16, or uint8 affine per
weight tensor with its own min and scale; tfjs dequantizes to float32 at load,
so the graph and its ops are unchanged). The SavedModel, the TF port and its
checkpoint stay float32 and keep the normal strict parity bound.

Which weights: a rule is ``DTYPE`` (every float32 weight) or ``DTYPE:PATTERN[,PATTERN...]``.
A pattern is a torch module path or a state_dict key glob (``fnmatch``, case
sensitive): ``features.3`` selects ``features.3.weight`` and ``features.3.bias``,
``features.*`` everything under ``features``, ``*.weight`` every weight. The
tfjs model's weights are graph constants named after TF nodes
(``StatefulPartitionedCall/Conv2D/ReadVariableOp``), not torch keys, and some
are computed from several keys (a BatchNorm's folded scale comes from its
``weight`` and ``running_var``). So each constant is traced back through the
signature's function graph to the TF variables it is computed from, and each
variable to its torch keys through the port's bindings (variables are named by
torch key, bridge/build.py ``variable_name``): a weight is selected when every
key it comes from matches the rule. The converter gets those exact
names; afterwards the weights it actually quantized are checked to be exactly
the selected ones. A pattern that matches no bound key, or whose keys make up
no tfjs weight, is a BadInputError.

Verdict: the quantized tfjs runtimes cannot meet the float32 bound, so they are
compared with torch at the quantization's bound instead (``ACCEPT``, below,
with its reason), and the report's ``quantization.cost`` gives, per runtime,
the max abs and rel error and, for classifier outputs (float logits of shape
(N, C), C >= 2), the top-1 agreement with torch over all parity rows.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInputError, ExportError

# dtype -> (rtol of the acceptance bound, why). The bound is rtol * max(1, max|torch|), as for parity.
ACCEPT = {
    "float16": (1e-2, "float16 weights: each weight is rounded to 11 significant bits (relative error <= "
                      "4.9e-4); 1e-2 leaves 20x for the errors of successive layers adding up (measured on "
                      "models/: up to 6e-4)"),
    "uint8": (1e-1, "uint8 weights: each tensor is rounded to 256 levels of its own range (error <= range/510, "
                    "about 2e-3 of the range, far more than float16's), and that adds up over layers (measured on "
                    "models/: up to 1.1e-2); 1e-1 catches a broken artifact, not a small loss: read top-1 "
                    "agreement and held-out accuracy"),
}
DTYPES = tuple(ACCEPT)


@dataclass(frozen=True)
class Rule:
    dtype: str
    patterns: tuple[str, ...] = ()  # () = every float32 weight not selected by another rule

    def describe(self) -> str:
        return self.dtype + (":" + ",".join(self.patterns) if self.patterns else "")


@dataclass(frozen=True)
class QuantizeSpec:
    rules: tuple[Rule, ...]

    @property
    def rtol(self) -> float:
        """The acceptance rtol: the loosest of the rules' dtypes."""
        return max(ACCEPT[r.dtype][0] for r in self.rules)

    @property
    def reason(self) -> str:
        worst = max(self.rules, key=lambda r: ACCEPT[r.dtype][0])
        return ACCEPT[worst.dtype][1]

    def describe(self) -> str:
        return " ".join(r.describe() for r in self.rules)


def parse(texts) -> QuantizeSpec | None:
    """``--quantize`` values (each ``DTYPE`` or ``DTYPE:PATTERN[,PATTERN...]``) -> a spec; None for none."""
    rules = []
    for text in texts or ():
        dtype, _, rest = str(text).strip().partition(":")
        if dtype not in ACCEPT:
            raise BadInputError(f"bad --quantize {text!r}: the dtype must be one of {', '.join(DTYPES)} "
                                f"(e.g. --quantize uint8 or --quantize uint8:features.*)")
        patterns = tuple(p.strip() for p in rest.split(",") if p.strip())
        if ":" in text and not patterns:
            raise BadInputError(f"bad --quantize {text!r}: no pattern after ':' (e.g. {dtype}:features.*)")
        rules.append(Rule(dtype, patterns))
    if sum(not r.patterns for r in rules) > 1:
        raise BadInputError("--quantize: at most one rule without patterns (it covers every other weight)")
    return QuantizeSpec(tuple(rules)) if rules else None


def key_matches(key: str, pattern: str) -> bool:
    """A state_dict key glob, or a module path that selects the keys under it."""
    return fnmatch.fnmatchcase(key, pattern) or fnmatch.fnmatchcase(key, pattern + ".*")


# ---------------------------------------------------------------- parent side: the converter request


def converter_request(spec: QuantizeSpec, bindings) -> dict:
    """What the converter worker needs: each rule's selected torch keys, and each TF variable's keys.

    ``bindings``: the port's (bridge/plan.py ``Binding``: TF variable <- keys). BadInputError when a
    pattern matches no bound key, or a key is selected by rules of two dtypes.
    """
    from ..build import variable_name

    keys = sorted({k for b in bindings for k in b.keys})
    rules, owner = [], {}
    for rule in spec.rules:
        if not rule.patterns:
            rules.append({"dtype": rule.dtype, "patterns": [], "keys": None})
            continue
        selected = set()
        for pattern in rule.patterns:
            hits = {k for k in keys if key_matches(k, pattern)}
            if not hits:
                raise BadInputError(f"--quantize {rule.describe()}: pattern {pattern!r} matches no weight of the "
                                    f"model; its state_dict keys are: {_listing(keys)}")
            selected |= hits
        for k in sorted(selected):
            if owner.setdefault(k, rule.dtype) != rule.dtype:
                raise BadInputError(f"--quantize: {k!r} is selected for both {owner[k]} and {rule.dtype}")
        rules.append({"dtype": rule.dtype, "patterns": list(rule.patterns), "keys": sorted(selected)})
    return {"rules": rules, "variable_keys": {variable_name(b.keys): list(b.keys) for b in bindings}}


def _listing(items, limit: int = 12) -> str:
    items = list(items)
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# ---------------------------------------------------------------- worker side (inside the converter process)


def converter_map(saved_model_dir: str, signature: str, request: dict) -> tuple[dict, dict[str, list[str]]]:
    """(the converter's ``quantization_dtype_map``, {weight name: torch keys it is computed from}).

    Runs in the converter subprocess, on the same concrete function the converter freezes, so the
    node names are the ones the frozen weights get.
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(saved_model_dir)  # kept alive: the function's variables belong to it
    attribution = trace_weights(loaded.signatures[signature], request["variable_keys"])
    dtype_map: dict = {}
    for rule in request["rules"]:
        if rule["keys"] is None:
            dtype_map[rule["dtype"]] = True
            continue
        selected = set(rule["keys"])
        names = [n for n, ks in attribution.items() if set(ks) <= selected]
        dtype_map.setdefault(rule["dtype"], []).extend(_escaped(n) for n in sorted(names))
    return dtype_map, attribution


def _escaped(name: str) -> str:
    """An exact name as an fnmatch pattern (the converter matches its patterns with fnmatch)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def trace_weights(fn, variable_keys: dict[str, list[str]]) -> dict[str, list[str]]:
    """{node name a frozen constant would get: the torch keys it is computed from}, for every node
    of the signature function (and the functions it calls) that depends on at least one variable.

    The outer graph's captured placeholders are the variables (a constant keeps that name when it
    is passed into a loop); a called function's nodes are named ``<call node>/<node>`` once inlined.
    """
    var_names = {}
    for external, internal in fn.graph.captures:
        var = next((v for v in fn.variables if v.handle is external), None)
        if var is not None:
            name = var.name.split(":")[0]
            var_names[internal.op.name] = tuple(variable_keys.get(name, [name]))
    graph_def = fn.graph.as_graph_def()
    library = {f.signature.name: f for f in graph_def.library.function}
    out: dict[str, list[str]] = {}
    _scope(list(graph_def.node), dict(var_names), "", library, out, depth=0)
    return out


def _scope(nodes, leaves: dict[str, tuple], prefix: str, library: dict, out: dict, depth: int) -> None:
    by_name = {n.name: n for n in nodes}
    keys = _upstream_keys(by_name, leaves)
    for name, ks in keys.items():
        if ks:
            out[prefix + name] = sorted(ks)
    if depth > 8:
        return
    for node in nodes:
        func = node.attr["f"].func.name if "f" in node.attr else ""
        if func in library:
            fdef = library[func]
            data = [i for i in node.input if not i.startswith("^")]
            args = {a.name: keys.get(_node_of(i), frozenset()) for a, i in zip(fdef.signature.input_arg, data)}
            _scope(list(fdef.node_def), args, prefix + node.name + "/", library, out, depth + 1)


def _node_of(tensor: str) -> str:
    return tensor.split(":")[0]


def _upstream_keys(by_name: dict, leaves: dict) -> dict[str, frozenset]:
    """For each node (and each leaf), the union of the leaves' keys over its data inputs (iterative DFS)."""
    done: dict[str, frozenset] = {k: frozenset(v) for k, v in leaves.items()}

    def inputs_of(name):
        node = by_name.get(name)
        return [_node_of(i) for i in node.input if not i.startswith("^")] if node is not None else []

    for start in by_name:
        stack, visiting = [(start, False)], set()
        while stack:
            name, expanded = stack.pop()
            if name in done:
                continue
            inputs = inputs_of(name)
            if expanded:
                done[name] = frozenset().union(*(done.get(i, frozenset()) for i in inputs))
                continue
            visiting.add(name)
            stack.append((name, True))
            stack += [(i, False) for i in inputs if i not in done and i in by_name and i not in visiting]
    return done


# ---------------------------------------------------------------- parent side: what was quantized


_ITEMSIZE = {"float32": 4, "int32": 4, "bool": 1, "float16": 2, "uint8": 1, "uint16": 2}


def summarize(model_json: dict, out_dir: Path, request: dict, attribution: dict[str, list[str]]) -> dict:
    """The report's ``quantization`` section (without the measured cost), after checking that the
    converter quantized exactly the selected weights. BadInputError for a pattern that selects no weight."""
    weights = [w for group in model_json["weightsManifest"] for w in group["weights"]]
    floats = [w for w in weights if w["dtype"] == "float32"]
    expected = _expected(floats, request, attribution)
    actual = {w["name"]: w["quantization"]["dtype"] for w in weights if w.get("quantization")}
    if actual != expected:
        wrong = sorted(set(actual.items()) ^ set(expected.items()))
        raise ExportError(f"the tfjs converter quantized other weights than bridge selected: {wrong[:6]}")
    paths = [p for group in model_json["weightsManifest"] for p in group["paths"]]
    before = sum(int(np.prod(w["shape"], dtype=np.int64)) * _ITEMSIZE.get(w["dtype"], 4) for w in weights)
    return {
        "dtype": "+".join(sorted({r["dtype"] for r in request["rules"]})),
        "rules": [{"dtype": r["dtype"], "patterns": r["patterns"],
                   "weights": sorted(n for n in expected if _rule_of(n, request, attribution) is r)}
                  for r in request["rules"]],
        "weights_quantized": len(expected),
        "weights_float32": len(floats),
        # float32 weights computed from no torch key (graph constants such as an activation's 3 or 1/6): no
        # pattern selects them, only a rule without patterns
        "untraced": sorted(w["name"] for w in floats if not attribution.get(w["name"])),
        "weights": [{"name": w["name"], "shape": w["shape"], "keys": attribution.get(w["name"], []),
                     "quantization": actual.get(w["name"])} for w in floats],
        "weight_bytes_before": before,
        "weight_bytes_after": sum((Path(out_dir) / p).stat().st_size for p in paths),
    }


def _rule_of(name: str, request: dict, attribution: dict) -> dict | None:
    """The rule that selects a float32 weight: the first pattern rule whose keys cover it, else the catch-all."""
    keys = set(attribution.get(name, ()))
    for rule in request["rules"]:
        if rule["keys"] is not None and keys and keys <= set(rule["keys"]):
            return rule
    return next((r for r in request["rules"] if r["keys"] is None), None)


def _expected(floats: list[dict], request: dict, attribution: dict) -> dict[str, str]:
    expected = {}
    for w in floats:
        rule = _rule_of(w["name"], request, attribution)
        if rule is not None:
            expected[w["name"]] = rule["dtype"]
    for rule in request["rules"]:
        for pattern in rule["patterns"]:
            hits = [w["name"] for w in floats if _rule_of(w["name"], request, attribution) is rule
                    and any(key_matches(k, pattern) for k in attribution.get(w["name"], ()))]
            if not hits:
                sources = sorted({k for w in floats for k in attribution.get(w["name"], ())
                                  if key_matches(k, pattern)})
                raise BadInputError(
                    f"--quantize {rule['dtype']}:{pattern}: matches state_dict keys ({_listing(sources) or 'none'}) "
                    f"but no tfjs weight is computed from those keys alone, so nothing would be quantized; a weight "
                    f"is selected only when every key it comes from matches (e.g. a BatchNorm's folded scale "
                    f"needs both its weight and running_var): widen the pattern, e.g. to the module path")
    return expected


# ---------------------------------------------------------------- the measured cost


def is_classifier_output(ref: np.ndarray) -> bool:
    """Float logits of shape (N, C) with C >= 2."""
    return ref.ndim == 2 and ref.shape[1] >= 2 and ref.dtype.kind == "f"


def cost(runtime_results, seen: dict[str, list[tuple]], rtol: float) -> dict:
    """Per quantized runtime: errors against torch (from its RuntimeResult), the bound, and top-1 agreement.

    ``seen``: runtime -> [(torch outputs [(name, array)], runtime outputs {name: array})] per input set.
    """
    out = {}
    for r in runtime_results:
        if r.runtime not in seen and r.skipped is None:
            continue
        if r.skipped is not None:
            out[r.runtime] = {"skipped": r.skipped}
            continue
        out[r.runtime] = {"max_abs_error": r.max_abs_error, "max_rel_error": r.max_rel_error, "rtol": rtol,
                          "ok": r.ok, "top1": top1_agreement(seen[r.runtime])}
    return out


def top1_agreement(pairs: list[tuple]) -> dict:
    """{output name: {"agree", "rows", "rate"}} over every parity row, for the classifier outputs."""
    counts: dict[str, list[int]] = {}
    for ref, got in pairs:
        got = dict(got)
        for name, r in ref:
            r = np.asarray(r)
            if name not in got or not is_classifier_output(r) or np.shape(got[name]) != r.shape:
                continue
            c = counts.setdefault(name, [0, 0])
            c[0] += int(np.sum(np.argmax(r, axis=1) == np.argmax(np.asarray(got[name]), axis=1)))
            c[1] += r.shape[0]
    return {n: {"agree": a, "rows": rows, "rate": a / rows if rows else None} for n, (a, rows) in counts.items()}


def acceptance(spec: QuantizeSpec, float_rtol: float) -> dict:
    """The acceptance rule stated in the report: the bound the quantized tfjs runtimes are held to."""
    rtol = max(spec.rtol, float_rtol)
    return {"rtol": rtol, "bound": f"max_abs_error <= {rtol:g} x max(1, max|torch|) on every output, in every "
                                   "tfjs runtime (Node and browser)", "reason": spec.reason,
            "float32_runtimes": f"tf and savedmodel stay float32 and keep the float bound ({float_rtol:g})"}


# ---------------------------------------------------------------- held-out accuracy (models/ classifiers)


def load_heldout(folder) -> tuple[np.ndarray, np.ndarray] | None:
    """A model folder's held-back data (x, y): ``heldout.npz``, else the test split of its ``train.py``'s
    ``load_split()`` (models/digits_cnn: sklearn's bundled digits); None when it has neither."""
    folder = Path(folder)
    if (folder / "heldout.npz").is_file():
        with np.load(folder / "heldout.npz", allow_pickle=False) as data:
            return data["x"], data["y"]
    train = folder / "train.py"
    if not train.is_file() or "def load_split" not in train.read_text():
        return None
    from ..target import _import_file

    _, x_test, _, y_test = _import_file(train.resolve()).load_split()
    return np.asarray(x_test, np.float32), np.asarray(y_test)


def heldout_accuracy(runs: dict[str, tuple], backend: str = "wasm") -> dict[str, dict]:
    """Top-1 accuracy of tfjs models on held-out data, all in one Node process.

    ``runs``: label -> (folder with model.json, x, y); x goes to the model's first input.
    Returns label -> {"accuracy", "correct", "n", "backend", "predictions" (the argmax per row)}.
    """
    from . import tfjs

    requests = []
    for folder, x, _ in runs.values():
        meta = json.loads((Path(folder) / "model.json").read_text())["userDefinedMetadata"]["bridge"]
        requests.append((Path(folder), {meta["inputs"][0]["name"]: np.asarray(x, np.float32)}))
    results = tfjs.run_many_tfjs(requests, (backend,))
    out = {}
    for (label, (_, _, y)), result in zip(runs.items(), results):
        got = result.get(backend) if isinstance(result, dict) else result
        if isinstance(got, Exception):
            raise ExportError(f"held-out run of {label} failed: {got}")
        predictions = np.argmax(np.asarray(next(iter(got.values()))), axis=1)
        correct = int(np.sum(predictions == np.asarray(y)))
        out[label] = {"accuracy": correct / len(y), "correct": correct, "n": int(len(y)), "backend": backend,
                      "predictions": predictions.tolist()}
    return out


# ---------------------------------------------------------------- the hooks save.py calls


def spec_of(options) -> QuantizeSpec | None:
    """``SaveOptions.quantize`` as a spec: a QuantizeSpec, or the CLI's text (``"uint8:features.*"`` or a list)."""
    value = getattr(options, "quantize", None)
    if value is None or isinstance(value, QuantizeSpec):
        return value
    return parse([value] if isinstance(value, str) else value)


def request(port, options) -> dict | None:
    """The converter request for ``options.quantize`` (None without it); BadInputError for bad patterns."""
    spec = spec_of(options)
    if spec is None:
        return None
    if not options.tfjs:
        raise BadInputError("--quantize quantizes the tfjs model's weights; it cannot go with --no-tfjs")
    return converter_request(spec, port.bindings)


def tfjs_rtol(port, options) -> float:
    """The bound the tfjs runtimes are held to: the float one, or the quantization's acceptance bound."""
    rtol = port.tolerance.output.rtol
    spec = spec_of(options)
    return max(rtol, spec.rtol) if spec is not None else rtol


def report_section(port, options, tfjs_info: dict | None, report, seen: dict, notes: list) -> dict | None:
    """report.json's ``quantization``: what was quantized, the acceptance rule and the measured cost."""
    spec = spec_of(options)
    if spec is None or not tfjs_info or "quantization" not in tfjs_info:
        return None
    section = tfjs_info.pop("quantization")
    section["acceptance"] = acceptance(spec, port.tolerance.output.rtol)
    runtimes = [r for r in report.runtimes if r.runtime.startswith(("tfjs-", "browser-"))]
    section["cost"] = cost(runtimes, seen, tfjs_rtol(port, options))
    section["ok"] = all(r.ok for r in runtimes if r.skipped is None)
    notes.append(f"tfjs weights quantized ({spec.describe()}): {section['weights_quantized']} of "
                      f"{section['weights_float32']} float32 weights, {section['weight_bytes_before']} -> "
                      f"{section['weight_bytes_after']} bytes; the tfjs runtimes are held to the quantization's "
                      f"bound ({section['acceptance']['rtol']:g}), tf and savedmodel to the float one")
    if options.per_module_tfjs:
        notes.append("per-module tfjs parity ran on float32 throw-away graphs, not on the quantized weights")
    return section


def metadata_patch(section: dict | None) -> dict:
    """userDefinedMetadata.bridge.quantization: the report's section without the per-weight lists."""
    if section is None:
        return {}
    compact = {k: v for k, v in section.items() if k not in ("weights", "untraced")}
    compact["untraced"] = len(section["untraced"])
    compact["rules"] = [{**r, "weights": len(r["weights"])} for r in section["rules"]]
    return {"quantization": compact}
