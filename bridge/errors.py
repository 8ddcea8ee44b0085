"""One exception hierarchy for the whole bridge.

Every error carries a stable ``code`` (for CI and JSON reports), the CLI exit
code it maps to, and a message that says what to do next. ``to_dict()`` gives
the machine-readable form written into report.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# CLI exit codes (the README's table is written from this list).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_UNSUPPORTED = 3
EXIT_PARITY = 4
EXIT_EXPORT = 5


class BridgeError(Exception):
    """Base class. ``code`` is a short stable reason code, ``exit_code`` the CLI exit."""

    code = "bridge_error"
    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, details: Any = None):
        super().__init__(message)
        self.message = message
        self.details = details

    def __reduce__(self):
        """Pickles with its attributes whatever the subclass's ``__init__`` takes (bridge.overlap sends
        the errors of a forked trace back to the parent)."""
        return _rebuild, (type(self), self.args, self.__dict__)

    def to_dict(self) -> dict:
        out = {"code": self.code, "message": self.message}
        if self.details is not None:
            out["details"] = self.details
        return out


def _rebuild(cls: type, args: tuple, state: dict) -> BridgeError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class BadInputError(BridgeError):
    """The user's input (a path, a shape, an import spec, a CLI value) is wrong."""

    code = "bad_input"
    exit_code = EXIT_BAD_INPUT


class CheckpointError(BadInputError):
    """A checkpoint file cannot be read safely: missing, empty, corrupt, wrong format, or unsafe."""

    code = "bad_checkpoint"


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint asks the unpickler to import or call code; it was refused, nothing ran."""

    code = "unsafe_checkpoint"


class NonFiniteWeightsError(BadInputError):
    """NaN or Inf values in weights."""

    code = "nonfinite_weights"


@dataclass
class KeyProblems:
    """Missing, unexpected and shape-mismatched state_dict keys, found together."""

    missing: list[tuple[str, tuple]] = field(default_factory=list)  # (key, expected shape)
    unexpected: list[tuple[str, tuple]] = field(default_factory=list)  # (key, found shape)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, expected, found)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)

    def lines(self) -> list[str]:
        out = [f"missing     {k}  expected shape {list(s)}" for k, s in self.missing]
        out += [f"unexpected  {k}  shape {list(s)}" for k, s in self.unexpected]
        out += [f"mismatched  {k}  expected {list(e)}, found {list(f)}" for k, e, f in self.mismatched]
        return out

    def to_dict(self) -> dict:
        return {
            "missing": [{"key": k, "expected": list(s)} for k, s in self.missing],
            "unexpected": [{"key": k, "shape": list(s)} for k, s in self.unexpected],
            "mismatched": [{"key": k, "expected": list(e), "found": list(f)} for k, e, f in self.mismatched],
        }


class KeyMismatchError(BadInputError):
    """The checkpoint does not fit the module: every bad key is listed at once."""

    code = "key_mismatch"

    def __init__(self, problems: KeyProblems):
        body = "\n  ".join(problems.lines())
        super().__init__(
            "the checkpoint does not fit the module; nothing was written:\n  " + body
            + "\nFix the checkpoint or the module's constructor arguments (e.g. --kwargs).",
            details=problems.to_dict(),
        )
        self.problems = problems


@dataclass(frozen=True)
class Unsupported:
    """One unsupported part of a model: where it is, what it is, and why."""

    where: str  # module path, or "op at file.py:LINE"
    what: str  # module type or op name
    why: str

    def line(self) -> str:
        return f"{self.where}: {self.what} - {self.why}"


class UnsupportedError(BridgeError):
    """The model uses modules or ops the bridge cannot map; all of them are listed."""

    code = "unsupported"
    exit_code = EXIT_UNSUPPORTED

    def __init__(self, items: list[Unsupported]):
        body = "\n  ".join(u.line() for u in items)
        super().__init__(
            f"{len(items)} unsupported part(s); nothing was written:\n  " + body,
            details=[u.__dict__ for u in items],
        )
        self.items = items


class ParityError(BridgeError):
    """TF (or tfjs) outputs differ from torch beyond tolerance."""

    code = "parity_failed"
    exit_code = EXIT_PARITY

    def __init__(self, message: str, report: Any = None):
        super().__init__(message, details=None)
        self.report = report


class ExportError(BridgeError):
    """Writing or converting an artifact failed (SavedModel, tfjs, or its verification)."""

    code = "export_failed"
    exit_code = EXIT_EXPORT
