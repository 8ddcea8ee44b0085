"""build: generated source -> a live TF model, then weights into it.

Two separate steps, as the style guide asks: ``instantiate`` reads only the
source (configs, no weights); ``load_weights`` only assigns values through the
plan's bindings and builds nothing. Key accounting lives here too: every
state_dict key is used exactly once, knowingly ignored, or reported.
"""

from __future__ import annotations

import os
import re
import sys
import types
from dataclasses import dataclass, field

import numpy as np
import torch

from . import progress
from .errors import BridgeError, KeyMismatchError, KeyProblems


def instantiate(source: str, class_name: str, module_name: str = "bridge_generated"):
    """Execute model_tf.py text and return an instance of its model class.

    The text imports its layers as ``bridge_layers`` (the one-file copy an export writes beside it) or from
    ``bridge``; here both resolve to this process's ``bridge.layers``, the code the copy is made from.
    """
    from . import layers

    mod = types.ModuleType(module_name)
    mod.__file__ = "model_tf.py"
    before = sys.modules.get("bridge_layers")
    sys.modules["bridge_layers"] = layers
    try:
        exec(compile(source, "model_tf.py", "exec"), mod.__dict__)
    finally:
        if before is None:
            del sys.modules["bridge_layers"]
        else:
            sys.modules["bridge_layers"] = before
    return getattr(mod, class_name)()


def resolve(model, steps):
    obj = model
    for kind, part in steps:
        obj = getattr(obj, part) if kind == "attr" else obj[part]
    return obj


def load_weights(model, bindings, state_dict: dict[str, np.ndarray], trainable=None) -> None:
    """Assign ``transform(*state_dict[keys])`` to each bound TF variable; shapes must agree exactly.

    ``trainable``: the torch keys that are parameters with ``requires_grad`` (see ``trainable_keys``).
    When given, each bound variable is also named by its torch key(s) (``variable_name``) and made trainable exactly when
    one of its keys is in it (a variable combining two keys, LSTM's biases, is trainable if either is).
    tf.Variable's flag is fixed at creation, so a variable whose name or flag differs is replaced, at
    the same attribute, by one with the right name, flag and value; one that already fits is assigned.
    """
    with progress.task("weights into TF variables", sum(_nbytes(state_dict, b.keys) for b in bindings), "B") as advance:
        for b in bindings:
            _load_one(model, b, state_dict, trainable)
            advance(_nbytes(state_dict, b.keys))


def _nbytes(state_dict, keys) -> int:
    return sum(int(getattr(state_dict[k], "nbytes", 0)) for k in keys)


def _load_one(model, b, state_dict, trainable) -> None:
    """One binding: its transform of its torch arrays into its TF variable (see load_weights)."""
    var = resolve(model, b.access)
    value = b.transform(*(state_dict[k] for k in b.keys))
    if tuple(var.shape) != value.shape:
        raise BridgeError(
            f"weight {b.key}: transform {b.transform.name} ({b.transform.shape_change}) gave shape "
            f"{list(value.shape)}, but the TF variable has shape {var.shape.as_list()}"
        )
    value = value.astype(var.dtype.as_numpy_dtype, copy=False)
    if trainable is None:
        var.assign(value)
        return
    flag = var.dtype.is_floating and any(k in trainable for k in b.keys)
    name = variable_name(b.keys)
    if var.trainable == flag and var.name == f"{name}:0":
        var.assign(value)
    else:  # the zero variable goes before its replacement is made: one weight's size at a time, not two models
        _replace(model, b.access, None)
        del var
        _replace(model, b.access, tf_variable(value, name, flag))
    del value


def variable_name(keys) -> str:
    """A TF variable name for torch ``keys`` that TF accepts in graph mode too (a SavedModel load checks it):
    the key itself when valid, several keys joined by '-' ('lstm.bias_ih_l0-lstm.bias_hh_l0'), other
    characters as '_', and 'v' before a name that starts with '_' (a graph constant such as '_tensor_constant0')."""
    name = re.sub(r"[^A-Za-z0-9_./>-]", "_", "-".join(keys))
    return name if re.match(r"[A-Za-z0-9.]", name) else "v" + name


def tf_variable(value: np.ndarray, name: str, trainable: bool):
    import tensorflow as tf

    return tf.Variable(value, name=name, trainable=trainable)


def _replace(model, steps, new) -> None:
    parent = resolve(model, steps[:-1])
    kind, part = steps[-1]
    if kind == "attr":
        setattr(parent, part, new)
    else:
        parent[part] = new


def trainable_keys(module: torch.nn.Module) -> set[str]:
    """The state_dict keys of parameters with ``requires_grad`` (every name of a shared parameter)."""
    return {k for k, p in module.named_parameters(remove_duplicate=False) if p.requires_grad}


def load_torch_weights(target, weights, *, bindings=None, trainable=None):
    """Load torch weights into a TF port; returns the TF model.

    ``target``: a ``Port`` (from ``bridge.convert``): the weights go into ``port.tf_model`` through
    ``port.bindings``, and the trainable split follows ``port.module``'s ``requires_grad``.
    Or a TF model instance of the port's class (``model_tf.py``), with ``bindings=port.bindings``
    (``trainable``: the torch keys whose variables are to be trainable; default: each variable keeps
    the flag and name the class gave it).
    ``weights``: a state_dict (key -> torch tensor or numpy array) or a checkpoint path, read by
    ``bridge.load_checkpoint`` (safely: no code from the file runs).
    Every key the bindings read must be present: KeyMismatchError lists all missing ones at once.
    Keys the port does not use are ignored here (``bridge convert`` reports them).
    """
    if bindings is None:
        if not hasattr(target, "bindings"):
            raise BridgeError("load_torch_weights: pass bindings=port.bindings with a bare TF model")
        bindings = target.bindings
        if trainable is None:
            trainable = trainable_keys(target.module)
    model = getattr(target, "tf_model", target)
    if isinstance(weights, (str, os.PathLike)):
        from .checkpoint import load_checkpoint

        weights = load_checkpoint(weights).state_dict
    state = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in weights.items()}
    missing = KeyProblems()
    missing.missing = sorted({(k, ()) for b in bindings for k in b.keys if k not in state})
    if missing:
        raise KeyMismatchError(missing)
    load_weights(model, bindings, state, None if trainable is None else set(trainable))
    return model


@dataclass
class KeyReport:
    """How each state_dict key was used."""

    used: dict[str, str] = field(default_factory=dict)  # key -> transform name (keys combined by one share it)
    ignored: dict[str, str] = field(default_factory=dict)  # key -> reason
    unused: list[str] = field(default_factory=list)  # keys nothing in forward() reads
    shared: dict[str, int] = field(default_factory=dict)  # key -> times bound (> 1)

    def to_dict(self) -> dict:
        return {"used": self.used, "ignored": self.ignored, "unused": self.unused, "shared": self.shared}


def account_keys(bindings, ignored_by_layer: list[tuple[str, str]], keys: list[str]) -> KeyReport:
    report = KeyReport()
    counts: dict[str, int] = {}
    for b in bindings:
        for key in b.keys:
            counts[key] = counts.get(key, 0) + 1
            report.used[key] = b.transform.name
    report.shared = {k: n for k, n in counts.items() if n > 1}
    for key, why in ignored_by_layer:
        if key in keys and key not in report.used:
            report.ignored[key] = why
    report.unused = [k for k in keys if k not in report.used and k not in report.ignored]
    return report


def check_fits(module: torch.nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Raise KeyMismatchError listing all missing, unexpected and mis-shaped keys at once."""
    expected = module.state_dict()
    problems = KeyProblems()
    for key, tensor in expected.items():
        if key not in state_dict:
            problems.missing.append((key, tuple(tensor.shape)))
        elif tuple(state_dict[key].shape) != tuple(tensor.shape):
            problems.mismatched.append((key, tuple(tensor.shape), tuple(state_dict[key].shape)))
    for key, tensor in state_dict.items():
        if key not in expected:
            problems.unexpected.append((key, tuple(tensor.shape)))
    if problems:
        raise KeyMismatchError(problems)


def access_label(steps) -> str:
    """Access steps as a path from the model root: (('attr','features'), ('item',0), ('attr','kernel')) -> 'features/0/kernel'."""
    return "/".join(str(part) for _, part in steps)


def variable_summary(model, bindings, module: torch.nn.Module) -> dict:
    """The trainable split of the TF port beside torch's parameters and buffers, for the report.

    ``by_torch_key``: each bound torch key -> the TF variable path(s) holding it and whether they are
    trainable. Where the mapping is not 1:1 the counts differ, and ``exceptions`` says why: keys
    combined into one variable, a key bound to several variables, buffers no variable holds
    (ignored on purpose, e.g. num_batches_tracked), and variables that hold a graph constant.
    """
    params = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    by_key: dict[str, dict] = {}
    exceptions = []
    for b in bindings:
        var = resolve(model, b.access)
        if len(b.keys) > 1:
            exceptions.append(f"{b.key}: {len(b.keys)} torch keys combined into one variable ({b.transform.name})")
        for k in b.keys:
            entry = by_key.setdefault(k, {"variables": [], "trainable": False})
            entry["variables"].append(access_label(b.access))
            entry["trainable"] = entry["trainable"] or bool(var.trainable)
            if k not in params and k not in buffers:
                exceptions.append(f"{k}: a graph constant, held by a non-trainable variable")
    exceptions += [f"{k}: bound to {len(e['variables'])} variables" for k, e in by_key.items() if len(e["variables"]) > 1]
    exceptions += [f"{k}: no TF variable (the port does not read it)" for k in [*params, *buffers] if k not in by_key]
    return {
        "trainable": len(model.trainable_variables),
        "non_trainable": len(model.non_trainable_variables),
        "torch": {"trainable_parameters": sum(p.requires_grad for p in params.values()),
                  "frozen_parameters": sum(not p.requires_grad for p in params.values()),
                  "buffers": len(buffers)},
        "by_torch_key": by_key,
        "exceptions": exceptions,
    }
