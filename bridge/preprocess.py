"""Pre- and post-processing metadata: how raw data becomes the model's input, and what its output means.

Declared at convert time (``bridge convert --input-scale 1/255 --mean .. --std ..
--labels a,b,c --output-activation softmax --image-layout NHW``) or in a
models/ manifest (``"preprocess"`` / ``"postprocess"`` keys of bridge.json; CLI
flags override the manifest field by field). Stored in the tfjs metadata
(``userDefinedMetadata.bridge.preprocess`` / ``.postprocess``) and report.json;
``bridge serve`` applies them in its demo page.

The input formula, per channel ``c``::

    x = (raw * scale - mean[c]) / std[c]

where ``raw`` is what the page has: pixel values 0..255 for images (grey is the
mean of R, G and B). ``mean``/``std`` hold one value for every channel or one
value per channel. The output activation (``softmax``, ``sigmoid`` or ``none``)
turns the named output into scores, and ``labels`` names its classes (last dim).

Image inputs: a rank-4 input in NCHW or NHWC (``--channels-last-io`` gives
NHWC, which is ``tf.browser.fromPixels`` order) is an image with 1 (grey) or 3
(RGB) channels; ``image_layout`` ``NHW`` declares a rank-3 input as a grey image
read row by row (a sequence model over the rows, like models/digits_lstm).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import BadInputError

ACTIVATIONS = ("softmax", "sigmoid", "none")
IMAGE_LAYOUTS = ("NCHW", "NHWC", "NHW")
PREPROCESS_KEYS = {"input", "scale", "mean", "std", "image_layout"}
POSTPROCESS_KEYS = {"output", "activation", "labels"}


@dataclass(frozen=True)
class Processing:
    """What was declared; ``None`` fields were not. ``resolve`` checks it against the converted model."""

    input: str | None = None
    scale: float | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    image_layout: str | None = None
    output: str | None = None
    activation: str | None = None
    labels: tuple[str, ...] | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def merged(self, override: Processing) -> Processing:
        """``self`` with every field that ``override`` declares replaced (CLI over manifest)."""
        return Processing(**{k: (v if v is not None else getattr(self, k)) for k, v in asdict(override).items()})


# ---------------------------------------------------------------- parsing


def parse_number(text, what: str) -> float:
    """A finite number, or a fraction written 'a/b' (e.g. 1/255)."""
    if isinstance(text, bool):
        raise BadInputError(f"{what} must be a number, got {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        m = re.fullmatch(r"([^/]+)/([^/]+)", s)
        try:
            value = float(m.group(1)) / float(m.group(2)) if m else float(s)
        except (ValueError, ZeroDivisionError):
            raise BadInputError(f"{what} must be a number or a fraction like 1/255, got {text!r}") from None
    if not math.isfinite(value):
        raise BadInputError(f"{what} must be finite, got {text!r}")
    return value


def _numbers(value, what: str) -> tuple[float, ...]:
    """'0.5', '0.485,0.456,0.406', a number or a list of numbers."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",") if isinstance(value, str) else [value]
    if not items or any(isinstance(i, str) and not i.strip() for i in items):
        raise BadInputError(f"{what} must be one number or a comma list, got {value!r}")
    return tuple(parse_number(i, what) for i in items)


def _labels(value, what: str) -> tuple[str, ...]:
    """'a,b,c', '@labels.txt' (one label a line) or a list of strings."""
    if isinstance(value, str) and value.startswith("@"):
        path = Path(value[1:])
        if not path.is_file():
            raise BadInputError(f"{what} file {path} not found")
        items = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    elif isinstance(value, str):
        items = [s.strip() for s in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(s) if isinstance(s, (int, float)) and not isinstance(s, bool) else s for s in value]
    else:
        raise BadInputError(f"{what} must be a comma list, @file or a list of strings, got {value!r}")
    if not items or not all(isinstance(s, str) and s for s in items):
        raise BadInputError(f"{what} must be non-empty names, got {value!r}")
    return tuple(items)


def _choice(value, choices, what: str) -> str:
    text = str(value)
    if text not in choices:
        raise BadInputError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return text


CLI_NAMES = {"scale": "--input-scale", "mean": "--mean", "std": "--std", "image_layout": "--image-layout",
             "labels": "--labels", "activation": "--output-activation"}


def parse(*, input=None, scale=None, mean=None, std=None, image_layout=None, output=None, activation=None,
          labels=None, where: str = "", names: dict | None = None) -> Processing:
    """Check the syntax of each declared field (CLI text or manifest JSON values).

    ``where`` prefixes messages (the manifest's path); ``names`` renames fields in them (CLI_NAMES).
    """
    p = f"{where} " if where else ""
    names = {k: f"{p}{v}" for k, v in (names or {}).items()}

    def n(field: str) -> str:
        return names.get(field, f"{p}{field}")

    for name, value in (("input", input), ("output", output)):
        if value is not None and (not isinstance(value, str) or not value):
            raise BadInputError(f"{p}{name} must be an input/output name, got {value!r}")
    proc = Processing(
        input=input,
        scale=None if scale is None else parse_number(scale, n("scale")),
        mean=None if mean is None else _numbers(mean, n("mean")),
        std=None if std is None else _numbers(std, n("std")),
        image_layout=None if image_layout is None else _choice(image_layout, IMAGE_LAYOUTS, n("image_layout")),
        output=output,
        activation=None if activation is None else _choice(activation, ACTIVATIONS, n("activation")),
        labels=None if labels is None else _labels(labels, n("labels")),
    )
    if proc.scale is not None and proc.scale <= 0:
        raise BadInputError(f"{n('scale')} must be > 0, got {proc.scale:g}")
    if proc.std is not None and any(s <= 0 for s in proc.std):
        raise BadInputError(f"{n('std')} must be > 0 for every channel, got {list(proc.std)}")
    if proc.mean is not None and proc.std is not None and len(proc.mean) != len(proc.std) \
            and 1 not in (len(proc.mean), len(proc.std)):
        raise BadInputError(f"{n('mean')} has {len(proc.mean)} values and {n('std')} {len(proc.std)}: "
                            f"give one value, or one per channel, for both")
    return proc


def from_manifest(data: dict, manifest: Path) -> Processing:
    """The ``"preprocess"`` and ``"postprocess"`` objects of a bridge.json (either may be absent)."""
    fields = {}
    for key, allowed in (("preprocess", PREPROCESS_KEYS), ("postprocess", POSTPROCESS_KEYS)):
        block = data.get(key)
        if block is None:
            continue
        if not isinstance(block, dict):
            raise BadInputError(f"{manifest}: \"{key}\" must be an object with keys {', '.join(sorted(allowed))}")
        unknown = sorted(set(block) - allowed)
        if unknown:
            raise BadInputError(f"{manifest}: unknown \"{key}\" key(s) {', '.join(unknown)} "
                                f"(known: {', '.join(sorted(allowed))})")
        fields.update(block)
    return parse(**fields, where=f"{manifest}:")


# ---------------------------------------------------------------- against the model


def resolve(proc: Processing | None, inputs: list[dict], outputs: list[dict]) -> dict:
    """The metadata for a converted model: ``{"preprocess": {...}, "postprocess": {...}}`` (absent parts omitted).

    ``inputs``/``outputs`` are the tfjs metadata entries (``name``, ``shape``
    with None for free dims, ``layout``; inputs may add ``example_shape``, the
    traced shape), in the exported model's layout.
    Raises BadInputError when a declaration does not fit the model: an unknown
    input/output name, a channel count that differs from mean/std, labels whose
    count is not the number of classes, an image layout that the input's rank
    or declared layout contradicts.
    """
    proc = proc or Processing()
    result = {}
    pre = _resolve_input(proc, inputs)
    if pre:
        result["preprocess"] = pre
    post = _resolve_output(proc, outputs)
    if post:
        result["postprocess"] = post
    return result


def _pick(name: str | None, entries: list[dict], kind: str) -> dict:
    if name is None:
        return entries[0]
    for e in entries:
        if e["name"] == name:
            return e
    raise BadInputError(f"the pre/post-processing names {kind} {name!r}, but the model's {kind}s are "
                        f"{', '.join(e['name'] for e in entries)}")


def _image_layout(proc: Processing, entry: dict) -> str | None:
    rank, layout = len(entry["shape"]), entry.get("layout")
    declared = proc.image_layout
    if declared is None:
        return layout if rank == 4 and layout in ("NCHW", "NHWC") else None
    if declared == "NHW":
        if rank != 3:
            raise BadInputError(f"image_layout NHW is for a rank-3 input (batch, rows, columns); input "
                                f"{entry['name']!r} has shape {entry['shape']}")
        return declared
    if rank != 4 or layout not in (declared, "NCHW") or (layout == "NCHW" and declared == "NHWC"):
        raise BadInputError(f"image_layout {declared} does not fit input {entry['name']!r} (shape {entry['shape']}, "
                            f"exported layout {layout}); use --channels-last-io for NHWC inputs")
    return declared


def _resolve_input(proc: Processing, inputs: list[dict]) -> dict | None:
    if all(v is None for v in (proc.input, proc.scale, proc.mean, proc.std, proc.image_layout)):
        return None  # nothing declared: a page must not guess how raw pixels become inputs
    entry = _pick(proc.input, inputs, "input")
    layout = _image_layout(proc, entry)
    channels = None
    if layout in ("NCHW", "NHWC"):
        channels = entry["shape"][1 if layout == "NCHW" else 3]
    elif layout == "NHW":
        channels = 1
    mean, std = proc.mean or (0.0,), proc.std or (1.0,)
    for name, values in (("mean", mean), ("std", std)):
        if len(values) > 1 and channels is not None and len(values) != channels:
            raise BadInputError(f"{name} has {len(values)} values but input {entry['name']!r} has {channels} "
                                f"channel(s) (layout {layout}, shape {entry['shape']}); give 1 or {channels}")
        if len(values) > 1 and channels is None:
            raise BadInputError(f"{name} has {len(values)} values but input {entry['name']!r} "
                                f"(shape {entry['shape']}) is not an image with channels; give one value")
    if layout is not None and channels not in (1, 3):
        layout = None  # e.g. a 4-channel feature map: not something a page can draw
    return {"input": entry["name"], "scale": 1.0 if proc.scale is None else proc.scale, "mean": list(mean),
            "std": list(std), "image_layout": layout, "channels": channels, "image_size": _image_size(entry, layout),
            "formula": "x = (raw * scale - mean[c]) / std[c]; raw: pixel values 0..255 for images"}


def _image_size(entry: dict, layout: str | None) -> list[int] | None:
    """[height, width] a page should feed: the exported size, or the traced one where the dim is free."""
    if layout is None:
        return None
    where = {"NCHW": (2, 3), "NHWC": (1, 2), "NHW": (1, 2)}[layout]
    example = entry.get("example_shape") or entry["shape"]
    return [entry["shape"][i] or example[i] for i in where]


def _resolve_output(proc: Processing, outputs: list[dict]) -> dict | None:
    if proc.output is None and proc.activation is None and proc.labels is None:
        return None
    entry = _pick(proc.output, outputs, "output")
    classes = entry["shape"][-1] if entry["shape"] else None
    if proc.labels is not None and classes != len(proc.labels):
        raise BadInputError(f"{len(proc.labels)} labels given, but output {entry['name']!r} has "
                            f"{classes} classes (shape {entry['shape']}, last dim)")
    return {"output": entry["name"], "activation": proc.activation or "none",
            "labels": None if proc.labels is None else list(proc.labels)}
