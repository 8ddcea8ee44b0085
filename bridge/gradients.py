"""gradients: training parity, the port's gradients against torch's on the parity inputs.

For each parity input set, both models run forward in inference mode (torch
``module.train(False)``), a scalar loss is built from every float output
(``sum(output * w)`` with fixed seeded random ``w`` per output, the same in both),
and one backward pass gives torch's ``param.grad`` and ``tf.GradientTape``'s
gradient of every trainable TF variable.

What is compared, per torch parameter with ``requires_grad`` (in torch's shape):
a TF variable is ``transform(*torch_values)``; when that transform only moves,
repeats, drops or sums entries (a transpose, a reshape, the folded-flatten
permutation, LSTM's ``b_ih + b_hh``, GRU's bias layout) the chain rule maps the TF
gradient back to each torch key exactly: every TF entry's gradient is added to
the torch entry it came from. So a transpose is compared as the transposed
gradient, and each of LSTM's two biases gets the gradient of their sum. A key
bound to several variables (tied weights) gets the sum, as torch accumulates it.
Transforms that scale or mix values are probed and, if not of that kind, the key
is listed under ``not_compared`` with the reason, never silently skipped.

Bound: max abs error <= 1e-4 * max(1, max|torch grad|) per key and input set.
Modules whose training behaviour differs (BatchNorm/InstanceNorm statistics,
Dropout, RReLU, recurrent dropout) are listed as ``inference_only``: the
comparison holds in eval mode, which is what the port computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from . import layout as lay
from . import parity
from .build import resolve

RTOL = 1e-4
LOSS = "sum over float outputs of sum(output * w), w ~ N(0, 1) fixed per output (seeded)"


@dataclass
class KeyGradient:
    """One torch parameter: the worst input set's gradient error against its bound."""

    key: str
    max_abs_error: float
    max_abs_grad: float
    bound: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.bound

    def to_dict(self) -> dict:
        return {"key": self.key, "max_abs_error": self.max_abs_error, "max_abs_grad": self.max_abs_grad,
                "bound": self.bound, "ok": self.ok}


@dataclass
class GradientReport:
    keys: list[KeyGradient]
    not_compared: dict[str, str] = field(default_factory=dict)  # torch key -> why
    inference_only: dict[str, str] = field(default_factory=dict)  # torch module path -> what differs in training
    n_inputs: int = 0

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.keys)

    @property
    def max_abs_error(self) -> float:
        return max((k.max_abs_error for k in self.keys), default=0.0)

    def worst(self) -> KeyGradient | None:
        return max(self.keys, key=lambda k: k.max_abs_error / k.bound, default=None)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "max_abs_error": self.max_abs_error, "rtol": RTOL, "loss": LOSS,
                "mode": "eval (module.train(False))", "n_inputs": self.n_inputs,
                "keys": [k.to_dict() for k in self.keys], "not_compared": self.not_compared,
                "inference_only": self.inference_only}


def gradient_parity(port, max_sets: int | None = None, seed: int = 0) -> GradientReport:
    """Compare torch's and the port's gradients on ``port.parity_inputs()`` (the first ``max_sets``)."""
    sets = port.parity_inputs()[:max_sets]
    grad_keys = {k for k, p in port.module.named_parameters(remove_duplicate=False) if p.requires_grad}
    shapes = {k: tuple(v.shape) for k, v in port.module.state_dict(keep_vars=True).items()}
    maps, not_compared = _gradient_maps(port.bindings, grad_keys, shapes)
    not_compared.update({k: "not read by the port's forward (torch's gradient is zero)"
                         for k in sorted(grad_keys - set(maps) - set(not_compared))})
    worst: dict[str, KeyGradient] = {}
    for i, inputs in enumerate(sets):
        ref, weights = torch_gradients(port.module, inputs, seed + i)
        got = tf_gradients(port, inputs, weights)
        for key, parts in maps.items():
            mapped = sum(fn(got[j]) for j, fn in parts)
            g = ref.get(key)
            g = np.zeros(shapes[key], np.float32) if g is None else g
            err = float(np.max(np.abs(mapped - g), initial=0.0))
            scale = float(np.max(np.abs(g), initial=0.0))
            cand = KeyGradient(key, err, scale, RTOL * max(1.0, scale))
            if key not in worst or cand.max_abs_error / cand.bound > worst[key].max_abs_error / worst[key].bound:
                worst[key] = cand
    return GradientReport([worst[k] for k in maps], not_compared, inference_only(port.module), len(sets))


def _gradient_maps(bindings, grad_keys: set, shapes: dict):
    """torch key -> [(binding index, fn: TF gradient -> this key's share, in torch's shape)]; and what cannot be mapped."""
    maps: dict[str, list] = {}
    not_compared: dict[str, str] = {}
    for j, b in enumerate(bindings):
        if not any(k in grad_keys for k in b.keys):
            continue
        fns = _adjoints(b.transform, [shapes[k] for k in b.keys])
        for key, fn in zip(b.keys, fns):
            if key not in grad_keys:
                continue
            if isinstance(fn, str):
                not_compared[key] = f"transform {b.transform.name}: {fn}"
            else:
                maps.setdefault(key, []).append((j, fn))
    for key in not_compared:
        maps.pop(key, None)
    return maps, not_compared


def _adjoints(transform, shapes: list[tuple]) -> list:
    """Per source of ``transform``: the map from a TF gradient to that source's gradient, or why there is none.

    Each source is probed with its entry numbers 1..n (the others zero): a transform that only moves,
    repeats or drops entries, and adds sources together, returns entry numbers (0 where nothing came
    from it); a random probe confirms it. The gradient of such a map adds each TF entry's gradient to
    its source entry.
    """
    rng = np.random.default_rng(0)
    zeros = [np.zeros(s) for s in shapes]
    randoms = [rng.standard_normal(s) for s in shapes]
    joint = transform(*randoms)
    alone = []
    out = []
    for i, shape in enumerate(shapes):
        n = int(np.prod(shape, dtype=np.int64))
        probe = list(zeros)
        probe[i] = np.arange(1, n + 1, dtype=np.float64).reshape(shape)
        index = transform(*probe)
        source = np.rint(index).astype(np.int64)
        x = list(zeros)
        x[i] = randoms[i]
        got = transform(*x)
        alone.append(got)
        expect = np.where(source > 0, randoms[i].reshape(-1)[np.clip(source - 1, 0, max(n - 1, 0))], 0.0)
        if (not np.array_equal(index, source) or source.min(initial=0) < 0 or source.max(initial=0) > n
                or not np.allclose(got, expect, rtol=0, atol=1e-12)):
            out.append("it does not only move, repeat or drop entries (its gradient map is not derived)")
            continue
        out.append(_scatter(source, shape))
    if len(shapes) > 1 and not np.allclose(joint, sum(alone), rtol=0, atol=1e-12):
        return ["its sources do not simply add (its gradient map is not derived)"] * len(shapes)
    return out


def _scatter(source: np.ndarray, shape: tuple):
    flat = source.reshape(-1)
    keep = flat > 0
    targets = flat[keep] - 1
    size = int(np.prod(shape, dtype=np.int64))

    def fn(grad: np.ndarray) -> np.ndarray:
        g = np.zeros(size, np.float64)
        np.add.at(g, targets, np.asarray(grad, np.float64).reshape(-1)[keep])
        return g.reshape(shape)

    return fn


def loss_weights(outputs: list[tuple[str, torch.Tensor]], seed: int) -> list[np.ndarray | None]:
    """Fixed random weights per float output (None for the others)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(v.shape)).astype(np.float32) if v.dtype.is_floating_point else None
            for _, v in outputs]


def torch_gradients(module: torch.nn.Module, inputs: tuple, seed: int):
    """torch's gradient of every requires_grad parameter (by every name it has) in eval mode, and the loss weights."""
    was_training = module.training
    module.train(False)
    module.zero_grad(set_to_none=True)
    try:
        with torch.enable_grad():
            flat = parity.flatten_outputs(module(*inputs))
            weights = loss_weights(flat, seed)
            loss = sum((v * torch.from_numpy(w)).sum() for (_, v), w in zip(flat, weights) if w is not None)
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                loss.backward()
        grads = {k: p.grad.detach().numpy().copy() for k, p in module.named_parameters(remove_duplicate=False)
                 if p.requires_grad and p.grad is not None}
    finally:
        module.zero_grad(set_to_none=True)
        module.train(was_training)
    return grads, weights


def tf_gradients(port, inputs: tuple, weights: list) -> list[np.ndarray]:
    """Per binding, the gradient of the same loss for its TF variable (zeros if unconnected or not trainable)."""
    import tensorflow as tf

    feeds = [tf.convert_to_tensor(parity.to_numpy(x)) for x in port.boundary_inputs(inputs)]
    layouts = port.plan.output_layouts
    with tf.GradientTape() as tape:
        flat = parity.flatten_outputs(port.tf_model(*feeds))
        terms = [tf.reduce_sum(tf.cast(v, tf.float32) * _in_tf_layout(w, layouts, i))
                 for i, ((_, v), w) in enumerate(zip(flat, weights)) if w is not None]
        loss = tf.add_n(terms) if terms else tf.constant(0.0)
    variables = [resolve(port.tf_model, b.access) for b in port.bindings]
    grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [np.asarray(tf.convert_to_tensor(g)) for g in grads]  # an embedding's IndexedSlices made dense


def _in_tf_layout(w: np.ndarray, layouts: list, index: int) -> np.ndarray:
    if index < len(layouts) and not layouts[index].is_identity:
        return lay.to_tf(w, layouts[index])
    return w


def inference_only(module: torch.nn.Module) -> dict[str, str]:
    """Modules that compute differently in train mode; the port (and this comparison) is their eval behaviour."""
    out = {}
    for path, m in module.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.track_running_stats:
            out[path] = f"{type(m).__name__}: train mode normalizes with batch statistics and updates the running ones"
        elif isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0:
            out[path] = f"{type(m).__name__}(p={m.p}): identity in eval, random masks in train mode"
        elif isinstance(m, torch.nn.RReLU):
            out[path] = "RReLU: a fixed slope in eval, random slopes in train mode"
        elif isinstance(m, torch.nn.RNNBase) and m.dropout > 0 and m.num_layers > 1:
            out[path] = f"{type(m).__name__}(dropout={m.dropout}): dropout between layers in train mode only"
    return out
