"""Parity tolerances as data, each with its reason.

A bound is always relative to the output's scale:
``max_abs_error <= rtol * max(1, max|torch output|)``.

Where a tolerance comes from, most specific first:
1. an override for the module path (``--tolerance features.3=1e-3``, or
   ``[tool.bridge.tolerance]`` in pyproject.toml);
2. an override for the torch layer type (``--tolerance Conv2d=1e-3``);
3. the tolerance its mapping declares (``module_mapping(..., tolerance=...)``);
4. the default (``--tolerance default=...``, else ``DEFAULT``).

Model outputs are checked against the loosest tolerance that any module of the
model uses, and the report says which one that is and why.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadInputError


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    reason: str


DEFAULT = Tolerance(1e-4, "float32 default: TF and tfjs reorder sums and fuse ops; about 1e-6 relative is "
                          "typical, this leaves a 100x margin")


@dataclass(frozen=True)
class ToleranceConfig:
    """User overrides: a default, per module path, per torch layer type name (e.g. "Conv2d")."""

    default: float | None = None
    by_path: dict[str, float] = field(default_factory=dict)
    by_type: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, pairs, known_types=()) -> "ToleranceConfig":
        """From ``["default=1e-4", "features.3=1e-3", "Conv2d=1e-3"]`` or a ``{key: value}`` table.

        A key that is a known layer type name (or starts with an upper-case letter)
        is a type; anything else is a module path.
        """
        items = pairs.items() if isinstance(pairs, dict) else [_split(p) for p in pairs]
        default, by_path, by_type = None, {}, {}
        for key, value in items:
            rtol = _positive(key, value)
            if key == "default":
                default = rtol
            elif key in known_types or key[:1].isupper():
                by_type[key] = rtol
            else:
                by_path[key] = rtol
        return cls(default, by_path, by_type)

    def merged(self, override: "ToleranceConfig") -> "ToleranceConfig":
        return ToleranceConfig(override.default if override.default is not None else self.default,
                               {**self.by_path, **override.by_path}, {**self.by_type, **override.by_type})


def _split(pair: str) -> tuple[str, str]:
    key, sep, value = pair.partition("=")
    if not sep or not key:
        raise BadInputError(f"bad --tolerance {pair!r}: expected KEY=VALUE, e.g. default=1e-4 or Conv2d=1e-3")
    return key.strip(), value.strip()


def _positive(key: str, value) -> float:
    try:
        rtol = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"bad tolerance for {key!r}: {value!r} is not a number") from None
    if not rtol > 0:
        raise BadInputError(f"bad tolerance for {key!r}: must be > 0")
    return rtol


def from_pyproject(start: Path | None = None) -> ToleranceConfig:
    """``[tool.bridge.tolerance]`` from the nearest pyproject.toml at or above ``start`` (default: cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / "pyproject.toml"
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise BadInputError(f"{path} is not valid TOML: {exc}") from None
            table = data.get("tool", {}).get("bridge", {}).get("tolerance", {})
            return ToleranceConfig.parse(table)
    return ToleranceConfig()


@dataclass(frozen=True)
class Resolved:
    """The tolerance in force for each module and for the outputs, with the reasons."""

    per_module: dict[str, Tolerance]
    output: Tolerance

    def to_dict(self) -> dict:
        return {"rtol": self.output.rtol, "reason": self.output.reason,
                "per_module": {p: t.rtol for p, t in self.per_module.items() if t.rtol != self.output.rtol}}


def resolve(layers: dict, config: ToleranceConfig) -> Resolved:
    """``layers``: path -> (torch type name, mapping Tolerance or None)."""
    default = Tolerance(config.default, "default set by the user") if config.default else DEFAULT
    per_module = {}
    for path, (type_name, declared) in layers.items():
        if path in config.by_path:
            per_module[path] = Tolerance(config.by_path[path], f"user override for {path}")
        elif type_name in config.by_type:
            per_module[path] = Tolerance(config.by_type[type_name], f"user override for {type_name}")
        elif declared is not None and declared.rtol > default.rtol:
            per_module[path] = Tolerance(declared.rtol, f"{type_name} mapping: {declared.reason}")
        else:
            per_module[path] = default
    loosest = max(per_module.items(), key=lambda kv: kv[1].rtol, default=None)
    if loosest is None or loosest[1].rtol <= default.rtol:
        return Resolved(per_module, default)
    path, tol = loosest
    return Resolved(per_module, Tolerance(tol.rtol, f"loosest module tolerance, from {path}: {tol.reason}"))
