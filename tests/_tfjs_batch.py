"""tfjs parity for a whole family table: one converter process and one Node process for all rows.

Checking a row in tfjs one at a time (``port.save``) costs a converter process
(TF import, seconds) and a Node process per input set. ``TfjsBatch`` collects
the rows' ports while the TF-parity tests run, then saves every SavedModel,
converts them all with ``convert_many_to_tfjs`` and runs every parity input set
of every row on cpu and wasm with ``run_many_tfjs``. Each output is compared
with torch: structure first (count, names, shapes, dtypes), then numbers with
``bridge.parity.compare``. Every failing row is listed at once.

How a family test file uses it::

    from _tfjs_batch import TfjsBatch

    BATCH = TfjsBatch()

    @BATCH.parametrize("factory, shape", CASES)       # instead of @pytest.mark.parametrize
    def test_linear(factory, shape):
        return assert_port_matches(seeded(factory), (randn(*shape),))   # return the checked port

    @pytest.mark.node
    def test_tfjs(node_or_skip):                       # last in the file
        BATCH.assert_all_within()                      # 1e-4 * max(1, max|torch|) on every row

``BATCH.parametrize`` registers one row factory per parameter at import time
(row id ``test_linear[rank2]``) and, when the test runs, records the port it
returns. The node test converts the recorded ports; rows that did not run
(``-k test_tfjs`` alone, a deselected or failed row) are built from their
factories, so the check covers the whole table and can never pass empty.
Parameters marked skip/xfail are left out. Row tests may take only the
arguments of this one parametrize (a factory is called without fixtures).

Without the decorator: ``BATCH.row(row_id, build)`` at import time and
``BATCH.add(row_id, port)`` in the test after its TF assertion.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from bridge import parity
from bridge.export import savedmodel, tfjs

RTOL = 1e-4  # the ceiling for tfjs vs torch (STYLE: never looser); float32 rows reach about 1e-6
_SKIPPING = {"skip", "skipif", "xfail"}


@dataclass
class BackendCheck:
    """One row on one backend, over all its parity input sets."""

    max_abs_error: float = 0.0
    problems: list[str] = field(default_factory=list)  # structure mismatch, NaN mask, integers, runtime error


@dataclass
class RowCheck:
    row_id: str
    bound: float = 0.0  # RTOL * max(1, max|torch|) over every float output and input set
    backends: dict[str, BackendCheck] = field(default_factory=dict)
    error: str | None = None  # the row could not be built, saved or converted
    transposes: int | None = None  # Transpose ops in the row's tfjs graph

    @property
    def ok(self) -> bool:
        return self.error is None and all(not b.problems and b.max_abs_error <= self.bound
                                          for b in self.backends.values())

    def line(self) -> str:
        if self.error:
            return f"{self.row_id}: {self.error}"
        parts = [f"{name} {b.max_abs_error:.3g}" + (f" ({'; '.join(b.problems)})" if b.problems else "")
                 for name, b in self.backends.items()]
        return f"{self.row_id}: bound {self.bound:.3g}, " + ", ".join(parts)


@dataclass
class BatchResult:
    rows: list[RowCheck]
    timings: dict[str, float]

    @property
    def failures(self) -> list[RowCheck]:
        return [r for r in self.rows if not r.ok]

    def summary(self) -> str:
        worst = max((b.max_abs_error / r.bound for r in self.rows if not r.error for b in r.backends.values()),
                    default=0.0)
        return (f"{len(self.rows)} rows, {len(self.failures)} failing, worst error/bound {worst:.3g}; "
                + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))


class TfjsBatch:
    """Rows of one family table, checked in tfjs together (see the module docstring)."""

    def __init__(self, backends: tuple[str, ...] = ("cpu", "wasm"), rtol: float = RTOL):
        self.backends = backends
        self.rtol = rtol
        self._factories: dict[str, Callable[[], object]] = {}
        self._ports: dict[str, object] = {}

    def row(self, row_id: str, build: Callable[[], object]) -> None:
        """Register how to build the row's port (called if the row's own test did not run)."""
        if row_id in self._factories:
            raise ValueError(f"row {row_id!r} is registered twice")
        self._factories[row_id] = build

    def add(self, row_id: str, port) -> None:
        """Record the port of a row whose TF-parity test passed."""
        self._ports[row_id] = port

    def parametrize(self, argnames: str, params: list):
        """``pytest.mark.parametrize`` that also registers each row and records the port the test returns."""
        names = [n.strip() for n in argnames.split(",")]

        def decorate(test):
            rows = [(_values(p, len(names)), f"{test.__name__}[{_param_id(p, i)}]") for i, p in enumerate(params)]
            for (values, row_id), p in zip(rows, params):
                if not _skipped(p):
                    self.row(row_id, functools.partial(test, **dict(zip(names, values))))

            @functools.wraps(test)
            def run(**kwargs):
                port = test(**kwargs)
                if port is None:
                    raise TypeError(f"{test.__name__} must return the port it checked, for the tfjs batch")
                row_id = _row_of(rows, names, kwargs)
                if row_id in self._factories:  # an xfail/skip row that passed stays out of the batch
                    self.add(row_id, port)

            return pytest.mark.parametrize(argnames, params)(run)

        return decorate

    def check(self) -> BatchResult:
        """Build missing rows, then save, convert and run all of them; one RowCheck per row."""
        ids = list(self._factories) + [r for r in self._ports if r not in self._factories]
        if not ids:
            raise AssertionError("the tfjs batch has no rows: register them with BATCH.parametrize or BATCH.row")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: torch's thread pool only contends with TF's
        try:
            with tempfile.TemporaryDirectory(prefix="bridge-tfjs-batch-") as tmp:
                return _Run(self, ids, Path(tmp)).result()
        finally:
            torch.set_num_threads(threads)

    def assert_all_within(self) -> BatchResult:
        """check(), then fail listing every row over its bound (or broken); returns the result."""
        result = self.check()
        print(result.summary())
        bad = result.failures
        assert not bad, f"{len(bad)} of {len(result.rows)} rows fail in tfjs:\n  " + "\n  ".join(r.line() for r in bad)
        return result

    def _port(self, row_id: str):
        if row_id not in self._ports:
            self._ports[row_id] = self._factories[row_id]()
        return self._ports[row_id]


class _Run:
    """One check(): the steps in order, each row's failure kept on its RowCheck."""

    def __init__(self, batch: TfjsBatch, ids: list[str], tmp: Path):
        import time

        self.batch, self.tmp, self.clock, self.timings = batch, tmp, time.perf_counter, {}
        self.rows = {row_id: RowCheck(row_id) for row_id in ids}
        self.ports: dict[str, tuple[object, Path]] = {}  # row id -> (port, its folder)

    def result(self) -> BatchResult:
        self._step("build_s", self._build_missing)
        self._step("savedmodel_s", self._save_all)
        converted = self._step("convert_s", self._convert_all)
        self._step("node_s", lambda: self._run_all(converted))
        return BatchResult(list(self.rows.values()), self.timings)

    def _step(self, name: str, fn):
        start = self.clock()
        out = fn()
        self.timings[name] = self.clock() - start
        return out

    def _build_missing(self) -> None:
        """Rows whose own test did not run (or failed) are built from their factories."""
        for row_id, row in self.rows.items():
            try:
                self.batch._port(row_id)
            except Exception as e:  # noqa: BLE001 - a broken row is reported, the others still run
                row.error = f"building the row failed: {_first_line(e)}"

    def _save_all(self) -> None:
        for i, (row_id, row) in enumerate(self.rows.items()):
            if row.error:
                continue
            try:
                port = self.batch._port(row_id)
                savedmodel.save_savedmodel(port, self.tmp / f"r{i}" / "saved_model")
                self.ports[row_id] = (port, self.tmp / f"r{i}")
            except Exception as e:  # noqa: BLE001
                row.error = f"SavedModel failed: {_first_line(e)}"

    def _convert_all(self) -> list[str]:
        jobs = [(d / "saved_model", d / "tfjs", _metadata(r, port)) for r, (port, d) in self.ports.items()]
        done = []
        for row_id, stats in zip(self.ports, tfjs.convert_many_to_tfjs(jobs)):
            if isinstance(stats, Exception):
                self.rows[row_id].error = f"tfjs conversion failed: {_first_line(stats)}"
            else:
                self.rows[row_id].transposes = stats.get("transpose_count")
                done.append(row_id)
        return done

    def _run_all(self, converted: list[str]) -> None:
        requests, refs = [], []
        for row_id in converted:
            port, folder = self.ports[row_id]
            try:
                sets = [(savedmodel.feeds_for(port, x), port.torch_outputs(x, boundary=True)) for x in port.parity_inputs()]
            except Exception as e:  # noqa: BLE001 - e.g. an id outside int32: this row fails, not the batch
                self.rows[row_id].error = f"parity inputs failed: {_first_line(e)}"
                continue
            for feeds, ref in sets:
                requests.append((folder / "tfjs", feeds))
                refs.append((row_id, ref))
        for (row_id, ref), got in zip(refs, tfjs.run_many_tfjs(requests, self.batch.backends)):
            self._compare(self.rows[row_id], ref, got)

    def _compare(self, row: RowCheck, ref: list[tuple[str, np.ndarray]], got) -> None:
        scale = max((float(np.max(np.abs(a))) for _, a in ref if a.dtype.kind == "f" and a.size), default=0.0)
        row.bound = max(row.bound, self.batch.rtol * max(1.0, scale))
        for backend in self.batch.backends:
            check = row.backends.setdefault(backend, BackendCheck())
            outputs = got if isinstance(got, Exception) else got[backend]
            if isinstance(outputs, Exception):
                check.problems.append(_first_line(outputs))
                continue
            problems = structure_problems(ref, outputs)
            if problems:
                check.problems += problems
                continue
            for name, want in ref:
                d = parity.compare(name, want, outputs[name], self.batch.rtol)
                if d.problem:
                    check.problems.append(f"{name}: {d.problem}")
                elif want.dtype.kind == "f":
                    check.max_abs_error = max(check.max_abs_error, d.max_abs_error)


def structure_problems(ref: list[tuple[str, np.ndarray]], got: dict[str, np.ndarray]) -> list[str]:
    """Output count, names, shapes and dtypes of tfjs against torch; [] when they agree.

    tfjs has float32, int32 and bool only: torch float64 is expected as float32
    and int64 as int32.
    """
    want_names = [n for n, _ in ref]
    if sorted(want_names) != sorted(got):
        return [f"outputs {sorted(got)} != torch {want_names}"]
    problems = []
    for name, want in ref:
        have = got[name]
        if list(have.shape) != list(want.shape):
            problems.append(f"{name}: shape {list(have.shape)} != torch {list(want.shape)}")
        expected = {"f": "float32", "i": "int32", "u": "int32", "b": "bool"}.get(want.dtype.kind, str(want.dtype))
        if str(have.dtype) != expected:
            problems.append(f"{name}: dtype {have.dtype} != {expected} (torch {want.dtype})")
    return problems


def _metadata(row_id: str, port) -> dict:
    """What save.py's metadata says about the boundary: names, shapes, dtypes (int64 ids go as int32)."""
    specs = savedmodel.input_specs(port)
    return {"row": row_id,
            "inputs": [{"name": s.name, "shape": s.shape.as_list(), "dtype": s.dtype.name,
                        "torch_dtype": str(x.dtype).replace("torch.", "")} for s, x in zip(specs, port.example_inputs)],
            "outputs": list(port.output_names)}


def _values(param, n_names: int) -> tuple:
    if hasattr(param, "values") and hasattr(param, "marks"):  # pytest.param(...)
        return tuple(param.values)
    return tuple(param) if n_names > 1 else (param,)


def _param_id(param, index: int) -> str:
    return getattr(param, "id", None) or str(index)


def _skipped(param) -> bool:
    return any(m.name in _SKIPPING for m in getattr(param, "marks", ()))


def _row_of(rows: list[tuple[tuple, str]], names: list[str], kwargs: dict) -> str:
    """The row whose parameter values are the very objects pytest passed in."""
    for values, row_id in rows:
        if all(kwargs[n] is v for n, v in zip(names, values)):
            return row_id
    raise LookupError(f"no registered row has the arguments {sorted(kwargs)}")


def _first_line(e: BaseException) -> str:
    text = getattr(e, "message", None) or str(e) or type(e).__name__
    return f"{type(e).__name__}: {text.strip().splitlines()[0] if text.strip() else ''}"
