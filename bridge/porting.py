"""Fill a hand-written TF port with a torch state_dict: ``load_torch_weights``.

The port is the user's own code: a Keras 3 ``tf.keras.Model`` subclass built
from Keras layers, or a plain ``tf.Module`` holding ``tf.Variable``s. Its
variables are found by walking attributes (layers, modules, lists -> ``0``,
``1``, ..., dicts -> their keys), so a TF attribute path such as
``features.0`` or ``head.fc1`` lines up with the torch module path of the
same name.

Parameter names are translated per Keras layer KIND, never by guessing from a
tensor's rank (``LAYER_RULES``)::

    Dense               kernel <- weight (linear_kernel), bias <- bias
    Conv1D              kernel <- weight (keras_conv1d_kernel), bias <- bias
    Conv2D              kernel <- weight (conv2d_kernel), bias <- bias
    DepthwiseConv2D     kernel <- weight (depthwise_kernel), bias <- bias
    BatchNormalization  gamma <- weight, beta <- bias,
                        moving_mean <- running_mean, moving_variance <- running_var
    LayerNormalization  gamma <- weight, beta <- bias
    Embedding           embeddings <- weight

A plain variable is matched by its attribute path (``slope`` <- ``slope``)
with the identity transform. Anything else takes an explicit ``mapping``.

Every key problem (missing, unexpected, mis-shaped) is found before any
variable is written and raised together as one ``KeyMismatchError``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf
import torch

from .errors import BadInputError, KeyMismatchError, KeyProblems
from .transforms import CONV1D_KERNEL, CONV2D_KERNEL, IDENTITY, LINEAR_KERNEL, Transform, depthwise_kernel

# Keras Conv1D keeps a 3-D kernel (bridge's own Conv1d runs as a 2-D conv, hence CONV1D_KERNEL's extra axis).
KERAS_CONV1D_KERNEL = Transform("keras_conv1d_kernel", "PT (O,I/g,k) -> TF (k,I/g,O)", lambda a: a.transpose(2, 1, 0))

_FIXED_TRANSFORMS = {t.name: t for t in (IDENTITY, LINEAR_KERNEL, CONV2D_KERNEL, CONV1D_KERNEL, KERAS_CONV1D_KERNEL)}
# Built per variable from the TF shape: PT (C*m,1,kh,kw) -> TF (kh,kw,C,m), C = TF shape[-2].
_DEPTHWISE = "depthwise_kernel"
TRANSFORM_NAMES = (*_FIXED_TRANSFORMS, _DEPTHWISE)

# torch state_dict entries that have no TF counterpart on purpose: last name part -> reason
IGNORED_TORCH_PARAMS = {
    "num_batches_tracked": "BatchNorm's training step counter; inference in TF does not use it",
}


@dataclass(frozen=True)
class LayerRule:
    """How one Keras layer kind names its variables: (TF variable, torch parameter, transform name)."""

    kind: str  # the Keras class name, e.g. "Dense"
    params: tuple[tuple[str, str, str], ...]


LAYER_RULES = (
    LayerRule("Dense", (("kernel", "weight", "linear_kernel"), ("bias", "bias", "identity"))),
    LayerRule("Conv1D", (("kernel", "weight", "keras_conv1d_kernel"), ("bias", "bias", "identity"))),
    LayerRule("Conv2D", (("kernel", "weight", "conv2d_kernel"), ("bias", "bias", "identity"))),
    LayerRule("DepthwiseConv2D", (("kernel", "weight", _DEPTHWISE), ("depthwise_kernel", "weight", _DEPTHWISE),
                                  ("bias", "bias", "identity"))),
    LayerRule("BatchNormalization", (("gamma", "weight", "identity"), ("beta", "bias", "identity"),
                                     ("moving_mean", "running_mean", "identity"),
                                     ("moving_variance", "running_var", "identity"))),
    LayerRule("LayerNormalization", (("gamma", "weight", "identity"), ("beta", "bias", "identity"))),
    LayerRule("Embedding", (("embeddings", "weight", "identity"),)),
)


def transform_named(name: str, tf_shape: tuple) -> Transform:
    """The named transform for a TF variable of ``tf_shape`` (depthwise kernels need its channel count)."""
    if name == _DEPTHWISE:
        if len(tf_shape) != 4:
            raise BadInputError(f"transform {_DEPTHWISE!r} fills a 4-D (kh,kw,C,m) kernel, not shape {list(tf_shape)}")
        return depthwise_kernel(int(tf_shape[2]), 2)
    if name not in _FIXED_TRANSFORMS:
        raise BadInputError(f"unknown transform {name!r}; one of: {', '.join(TRANSFORM_NAMES)}")
    return _FIXED_TRANSFORMS[name]


# --------------------------------------------------------------------------- walking the TF object


@dataclass
class Slot:
    """One TF variable and where its value comes from by default."""

    tf_path: str
    variable: object
    kind: str | None  # Keras layer kind owning it; None for a plain variable; "?Conv3D" for a kind without rule
    torch_key: str | None  # default source key
    transform: str | None  # default transform name

    @property
    def shape(self) -> tuple:
        return tuple(int(d) for d in self.variable.shape)


def join(path: str, part) -> str:
    return f"{path}.{part}" if path else str(part)


def normalize_path(path: str) -> str:
    """``features[0].conv`` -> ``features.0.conv``."""
    return re.sub(r"\[(\w+)\]", r".\1", path).strip(".")


def is_variable(obj) -> bool:
    return isinstance(obj, (tf.Variable, tf.keras.Variable))


def is_keras_layer(obj) -> bool:
    return isinstance(obj, tf.keras.layers.Layer)


def _rule_for(layer) -> LayerRule | None:
    """The rule of the most specific Keras class in the layer's MRO (a user subclass of Dense is a Dense)."""
    by_class = {getattr(tf.keras.layers, r.kind): r for r in LAYER_RULES}
    return next((by_class[c] for c in type(layer).__mro__ if c in by_class), None)


def _is_builtin_keras(obj) -> bool:
    return type(obj).__module__.split(".")[0] in ("keras", "tf_keras")


def named_tf_objects(root) -> Iterator[tuple[str, object]]:
    """(attribute path, object) for every layer, module and variable reachable from ``root``; root first.

    A Keras Sequential's layers are numbered like torch's nn.Sequential; any
    other layer or module is walked through its public attributes. An object
    reachable twice keeps its first path.
    """
    seen: set[int] = set()
    stack = [("", root)]
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield path, obj
        stack.extend(reversed(list(_children(path, obj, root))))


def _children(path: str, obj, root) -> Iterator[tuple[str, object]]:
    if is_variable(obj) or isinstance(obj, (str, bytes)):
        return
    if is_keras_layer(obj):
        if isinstance(obj, tf.keras.Sequential):  # numbered like torch's nn.Sequential
            yield from ((join(path, i), layer) for i, layer in enumerate(obj.layers))
            return
        if isinstance(obj, tf.keras.Model) and _is_builtin_keras(obj):  # a functional model: by layer name
            yield from ((join(path, layer.name), layer) for layer in obj.layers)
            return
        if _is_builtin_keras(obj):  # built-in layers hold variables, not user structure
            return
    if is_keras_layer(obj) or _is_trackable_object(obj) or obj is root:
        for name, value in vars(obj).items():
            if not name.startswith("_") and _may_hold_weights(value):
                yield join(path, name), value
    elif isinstance(obj, Mapping):
        yield from ((join(path, k), v) for k, v in obj.items() if isinstance(k, (str, int)) and _may_hold_weights(v))
    elif isinstance(obj, Sequence):
        yield from ((join(path, i), v) for i, v in enumerate(obj) if _may_hold_weights(v))


def _is_trackable_object(obj) -> bool:
    """A tf.Module, or an object restored from a SavedModel (both AutoTrackable)."""
    return isinstance(obj, tf.__internal__.tracking.AutoTrackable)


def _may_hold_weights(value) -> bool:
    return (is_variable(value) or is_keras_layer(value) or _is_trackable_object(value)
            or (isinstance(value, (Mapping, Sequence)) and not isinstance(value, (str, bytes))))


def collect_slots(root) -> tuple[list[Slot], list[str]]:
    """Every TF variable of ``root`` with its default source, and the paths of unbuilt Keras layers."""
    slots: list[Slot] = []
    unbuilt: list[str] = []
    for path, obj in named_tf_objects(root):
        if is_variable(obj):
            if path:
                slots.append(Slot(path, obj, None, path, "identity"))
        elif is_keras_layer(obj):
            if not obj.built:
                unbuilt.append(path or "<the model itself>")
            slots += _layer_slots(path, obj)
    return slots, unbuilt


def _layer_slots(path: str, layer) -> list[Slot]:
    rule = _rule_for(layer)
    if rule is None and (isinstance(layer, tf.keras.Model) or not _is_builtin_keras(layer)):
        return []  # their variables belong to sublayers or attributes, which are visited on their own
    own = {_name_in_layer(v, layer): v for v in layer.weights}
    if rule is not None:
        return [Slot(join(path, tf_name), own[tf_name], rule.kind, join(path, pt_name), transform)
                for tf_name, pt_name, transform in rule.params if tf_name in own]
    return [Slot(join(path, name), v, f"?{type(layer).__name__}", None, None) for name, v in own.items()]


def _name_in_layer(v, layer) -> str:
    """A Keras variable's name within its layer: ``model/dense/kernel`` -> ``kernel``; nested parts keep dots."""
    full = str(getattr(v, "path", None) or v.name).split(":")[0]
    return full.rsplit(f"{layer.name}/", 1)[-1].replace("/", ".")


# --------------------------------------------------------------------------- matching


class PortKeyMismatchError(KeyMismatchError):
    """KeyMismatchError for a hand-written port: the same problems, a hint that fits this case."""

    def __init__(self, problems: KeyProblems):
        BadInputError.__init__(
            self,
            "the torch weights do not fit the TF port; nothing was written:\n  " + "\n  ".join(problems.lines())
            + "\nFix the port or its constructor arguments (bridge check: --tf-kwargs), or pass "
              "mapping={torch_key: tf_path or (tf_path, transform)} for parts named differently.",
            details=problems.to_dict())
        self.problems = problems


@dataclass(frozen=True)
class Loaded:
    torch_key: str
    tf_path: str
    transform: str
    torch_shape: tuple
    tf_shape: tuple


@dataclass
class LoadReport:
    """What ``load_torch_weights`` did: torch key -> TF path -> transform, and what it ignored on purpose."""

    loaded: list[Loaded] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)  # torch key -> reason
    notes: list[str] = field(default_factory=list)  # what was done to the state_dict itself (unwrapping, casts)

    def table(self) -> dict[str, tuple[str, str]]:
        return {x.torch_key: (x.tf_path, x.transform) for x in self.loaded}

    def lines(self) -> list[str]:
        out = [f"{x.torch_key} -> {x.tf_path}  [{x.transform}]  {list(x.torch_shape)} -> {list(x.tf_shape)}"
               for x in self.loaded]
        return out + [f"{k}: ignored ({why})" for k, why in self.ignored.items()]

    def to_dict(self) -> dict:
        return {"loaded": [{"torch_key": x.torch_key, "tf_path": x.tf_path, "transform": x.transform,
                            "torch_shape": list(x.torch_shape), "tf_shape": list(x.tf_shape)} for x in self.loaded],
                "ignored": dict(self.ignored), "notes": list(self.notes)}

    def __str__(self) -> str:
        return "\n".join(self.lines())


MappingSpec = Mapping[str, "str | tuple[str, str]"] | Callable[[str], "str | tuple[str, str] | None"] | None


def load_torch_weights(tf_model, state_dict, mapping: MappingSpec = None, *, ignore: Iterable[str] = (),
                       input_shape=None) -> LoadReport:
    """Fill ``tf_model``'s variables from a torch ``state_dict``; all or nothing.

    ``state_dict``: ``{key: torch.Tensor | np.ndarray}`` or a ``bridge.checkpoint.Checkpoint``.
    ``mapping``: explicit rules for keys the default matching cannot place, as
    ``{torch_key: tf_path}``, ``{torch_key: (tf_path, transform_name)}`` or a callable
    ``torch_key -> tf_path | (tf_path, transform_name) | None`` (None: match by default).
    ``ignore``: glob patterns of torch keys to leave out on purpose.
    ``input_shape``: build an unbuilt Keras model first by calling it on zeros of this shape
    (a tuple, or a list of tuples for several inputs).

    Raises KeyMismatchError listing every missing, unexpected and mis-shaped key at once,
    before any variable is written; BadInputError for an unbuilt model or a bad mapping.
    """
    arrays, notes = _as_arrays(state_dict)
    slots = _built_slots(tf_model, input_shape)
    plan, ignored, problems = match_keys(slots, arrays, mapping, tuple(ignore))
    if problems:
        raise PortKeyMismatchError(problems)
    cast = [(key, slot, transform, value.astype(_numpy_dtype(slot.variable))) for key, slot, transform, value in plan]
    report = LoadReport(ignored=ignored, notes=notes)
    for key, slot, transform, value in cast:  # everything is checked and converted: only writes are left
        slot.variable.assign(value)
        report.loaded.append(Loaded(key, slot.tf_path, transform.name, tuple(arrays[key].shape), slot.shape))
    return report


def _built_slots(tf_model, input_shape) -> list[Slot]:
    slots, unbuilt = collect_slots(tf_model)
    if unbuilt and input_shape is not None:
        shapes = input_shape if input_shape and isinstance(input_shape[0], (tuple, list)) else [input_shape]
        tf_model(*[tf.zeros([1 if d is None else d for d in s]) for s in shapes])
        slots, unbuilt = collect_slots(tf_model)
    if unbuilt:
        shown = ", ".join(unbuilt[:8]) + (", ..." if len(unbuilt) > 8 else "")
        raise BadInputError(
            f"the TF model is not built yet, so these Keras layers have no variables: {shown}. "
            "Call it once on an example input first (e.g. model(tf.zeros((1, 3)))), "
            "or pass input_shape=(1, 3) to load_torch_weights (bridge check: pass --input).")
    return slots


def _as_arrays(state_dict) -> tuple[dict[str, np.ndarray], list[str]]:
    from .checkpoint import Checkpoint, cast_summary, normalize_state_dict

    if isinstance(state_dict, Checkpoint):
        return {k: v.numpy() for k, v in state_dict.state_dict.items()}, state_dict.notes()
    if not isinstance(state_dict, Mapping):
        raise BadInputError(f"state_dict must be a dict of tensors or a Checkpoint, not {type(state_dict).__name__}")
    as_torch = {k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for k, v in state_dict.items()}
    tensors, unwrapped, casts = normalize_state_dict(as_torch)
    return {k: v.detach().cpu().numpy() for k, v in tensors.items()}, list(unwrapped) + cast_summary(casts)


def _numpy_dtype(variable) -> np.dtype:
    dtype = variable.dtype
    return np.dtype(getattr(dtype, "as_numpy_dtype", dtype))


def match_keys(slots: list[Slot], arrays: dict[str, np.ndarray], mapping: MappingSpec, ignore: tuple[str, ...]):
    """Pair every torch key with one TF slot. Returns (plan, ignored, problems); writes nothing.

    ``plan`` holds (torch key, slot, transform, transformed value) for each pair.
    """
    explicit = _explicit_targets(mapping, arrays, {s.tf_path: s for s in slots})
    by_default = {s.torch_key: s for s in slots if s.torch_key is not None}
    by_path = {s.tf_path: s for s in slots}
    plan, ignored, problems = [], {}, KeyProblems()
    filled: dict[str, str] = {}  # tf path -> torch key
    for key, array in arrays.items():
        reason = _ignore_reason(key, ignore)
        if reason and key not in explicit:
            ignored[key] = reason
            continue
        slot, transform_name = _target(key, explicit, by_default, by_path)
        if slot is None:
            where = f" (mapped to {explicit[key][0]!r}, which is no TF variable)" if key in explicit else ""
            problems.unexpected.append((key + where, tuple(array.shape)))
            continue
        if slot.tf_path in filled:
            problems.unexpected.append((f"{key} (its TF variable {slot.tf_path} is already filled from "
                                        f"{filled[slot.tf_path]})", tuple(array.shape)))
            continue
        filled[slot.tf_path] = key
        transform = transform_named(transform_name, slot.shape)
        value = _apply(transform, array)
        label = f"{key} -> {slot.tf_path} [{transform.name}: {transform.shape_change}]"
        if value is None or tuple(value.shape) != slot.shape:
            problems.mismatched.append((label, slot.shape, tuple(array.shape) if value is None else value.shape))
        else:
            plan.append((key, slot, transform, value))
    for s in slots:
        if s.tf_path not in filled:
            problems.missing.append((_missing_label(s), s.shape))
    return plan, ignored, problems


def _apply(transform: Transform, array: np.ndarray) -> np.ndarray | None:
    try:
        return transform(array)
    except (ValueError, IndexError):  # e.g. a 4-D transpose given a 2-D tensor: reported as a shape mismatch
        return None


def _ignore_reason(key: str, patterns: tuple[str, ...]) -> str | None:
    if any(fnmatch.fnmatchcase(key, p) for p in patterns):
        return "ignored on request"
    return IGNORED_TORCH_PARAMS.get(key.rsplit(".", 1)[-1])


def _target(key, explicit, by_default, by_path) -> tuple[Slot | None, str | None]:
    if key in explicit:
        path, transform = explicit[key]
        slot = by_path.get(path)
        if slot is None:
            return None, None
        return slot, transform or slot.transform or "identity"
    slot = by_default.get(key)
    return (slot, slot.transform) if slot else (None, None)


def _missing_label(s: Slot) -> str:
    if s.kind and s.kind.startswith("?"):
        return (f"{s.tf_path} (no default rule for Keras {s.kind[1:]}; map a torch key to it with "
                f"mapping={{key: ({s.tf_path!r}, transform)}})")
    return f"{s.tf_path} (from torch {s.torch_key})"


def _explicit_targets(mapping: MappingSpec, arrays: dict, by_path: dict[str, Slot]
                      ) -> dict[str, tuple[str, str | None]]:
    """The mapping as {torch key: (tf path, transform name or None)}; a bad mapping fails here, whole."""
    if mapping is None:
        return {}
    if callable(mapping) and not isinstance(mapping, Mapping):
        raw = {k: mapping(k) for k in arrays}
    elif isinstance(mapping, Mapping):
        raw = dict(mapping)
    else:
        raise BadInputError(f"mapping must be a dict or a callable, not {type(mapping).__name__}")
    out, errors = {}, []
    for key, value in raw.items():
        if value is None:
            continue
        if key not in arrays:
            errors.append(f"{key!r} is not a key of the state_dict")
            continue
        path, transform = (value, None) if isinstance(value, str) else (
            tuple(value) if isinstance(value, (tuple, list)) and len(value) == 2 else (None, None))
        if not isinstance(path, str):
            errors.append(f"{key!r}: expected 'tf.path' or ('tf.path', 'transform'), got {value!r}")
            continue
        path = normalize_path(path)
        slot = by_path.get(path)
        if transform is not None and transform not in TRANSFORM_NAMES:
            errors.append(f"{key!r}: unknown transform {transform!r} (one of {', '.join(TRANSFORM_NAMES)})")
        elif transform is None and slot is not None and slot.kind and slot.kind.startswith("?"):
            errors.append(f"{key!r}: {path} has no default transform (Keras {slot.kind[1:]}); name one of "
                          f"{', '.join(TRANSFORM_NAMES)}")
        out[key] = (path, transform)
    if errors:
        raise BadInputError("bad mapping; nothing was written:\n  " + "\n  ".join(errors))
    return out
