"""One way to run an artifact: every runtime an export is checked in is a Runner, and ``collect`` is
the one loop that compares each input set with torch and merges the sets.

A Runner runs one artifact on a batch of input sets, in as few processes as it can (one Node process
for every set and backend, one browser launch for every set), and returns, for each runtime name it
stands for, one ``Run`` per input set. ``check`` asks whether the runner can run here, runs it,
compares and merges; it returns a ``Checked`` (results, notes, latency, the outputs themselves) and
changes nothing else, so the caller decides what goes into its report.

Adding a runtime means adding a Runner: ``names``, ``unavailable()`` and ``run(feed_sets)``.

The runners here: ``TFRunner`` (the port in this process, with the per-module taps),
``SavedModelRunner`` (the written SavedModel, loaded once), ``NodeTfjsRunner`` (tfjs in Node, per
backend) and ``BrowserTfjsRunner`` (tfjs in headless chromium, per backend). The ONNX runtimes live
in ``onnx.py``, next to their exporter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import parity
from ..errors import ExportError


@dataclass
class Run:
    """What one runtime gave for one input set: outputs, or why it did not run (skipped) or failed (error)."""

    outputs: Mapping[str, np.ndarray] | list | None = None
    ms: list[float] = field(default_factory=list)  # per execution, outputs read back included; first = cold
    skipped: str | None = None  # not run here, and why (becomes a note; the set is left out)
    error: str | None = None  # the runtime failed on this set (its outputs fail parity with this problem)
    extra: object = None  # runner-specific (TFRunner: the per-module taps)


@dataclass
class Checked:
    results: list[parity.RuntimeResult]
    notes: list[str] = field(default_factory=list)
    latency: dict[str, list[list[float]]] = field(default_factory=dict)  # runtime -> ms per execution, per set ([]: not run)
    pairs: dict[str, list[tuple]] = field(default_factory=dict)  # runtime -> [(torch outputs, its outputs)]


class Runner:
    """A runtime (or a family sharing one process, e.g. tfjs cpu and wasm in one Node)."""

    names: tuple[str, ...] = ()
    what = "the artifact"  # for "cannot verify <what>: <reason>"

    def unavailable(self) -> str | None:
        """Why this runner cannot run on this machine (a skip reason), or None."""
        return None

    def run(self, feed_sets: list[dict]) -> dict[str, list[Run]]:
        """{runtime name: [Run per feed set, in order]}; raises ExportError when the runtime itself fails."""
        raise NotImplementedError

    notes: tuple[str, ...] = ()  # what the last run found worth saying (set by run)


Compare = Callable[[object, Run, str], list[parity.Diff]]


def output_compare(rtol: float, side: str | None = None) -> Compare:
    """Torch's flattened outputs against a run's, at ``rtol`` (``parity.compare_outputs``); messages name
    ``side`` (default: the runtime)."""
    return lambda ref, run, runtime: parity.compare_outputs(ref, run.outputs, rtol, side or runtime)


class Merged:
    """Diffs of many input sets -> one Diff per name per runtime (the worst over sets, in order of first
    appearance): the merge half of the compare-and-merge loop, for callers that stream their sets."""

    def __init__(self):
        self._sets: dict[str, list[list[parity.Diff]]] = {}

    def add(self, runtime: str, expected, run: Run, compare: Compare) -> None:
        """Compare one run with its set's expectation; a skipped run adds nothing, a failed one fails all."""
        if run.skipped is not None:
            self._sets.setdefault(runtime, [])
            return
        diffs = failed_diffs(expected, run.error) if run.error is not None else compare(expected, run, runtime)
        self._sets.setdefault(runtime, []).append(diffs)

    def result(self) -> dict[str, list[parity.Diff]]:
        return {runtime: parity.merge_sets(sets) for runtime, sets in self._sets.items()}


def collect(runs: dict[str, list[Run]], expected: list, compare: Compare) -> dict[str, list[parity.Diff]]:
    """The compare-and-merge loop over a batch: each runtime's run of each set against that set's expectation."""
    merged = Merged()
    for runtime, per_set in runs.items():
        for exp, run in zip(expected, per_set):
            merged.add(runtime, exp, run, compare)
    return merged.result()


def failed_diffs(ref, problem: str) -> list[parity.Diff]:
    """Every output of ``ref`` (torch's (name, array) pairs) failed with ``problem``: a runtime that did not run."""
    pairs = ref if isinstance(ref, list) and all(isinstance(p, tuple) for p in ref) else [("model", np.zeros(0))]
    return [parity.Diff(name, list(np.shape(a)), float("inf"), float("inf"), 0.0, False, problem) for name, a in pairs]


def check(runner: Runner, refs: list[tuple[dict, list]], rtol: float, *, required: bool = False) -> Checked:
    """Run ``runner`` on every (feeds, torch outputs) pair and compare at ``rtol``.

    A runner that cannot run here gives skipped results (the reason in each), or an ExportError with
    ``required``. Runs the runner skipped become one note each.
    """
    reason = runner.unavailable()
    if reason:
        if required:
            raise ExportError(f"cannot verify {runner.what}: {reason}")
        return Checked([parity.RuntimeResult(n, skipped=reason) for n in runner.names])
    runs = runner.run([feeds for feeds, _ in refs])
    diffs = collect(runs, [ref for _, ref in refs], output_compare(rtol))
    notes = list(runner.notes)
    for per_set in runs.values():
        for run in per_set:
            if run.skipped and f"not checked: {run.skipped}" not in notes:
                notes.append(f"not checked: {run.skipped}")
    return Checked(
        [parity.RuntimeResult(n, diffs.get(n, [])) for n in runner.names], notes,
        {n: [list(r.ms) if r.skipped is None else [] for r in runs.get(n, [])] for n in runner.names},
        {n: [(ref, r.outputs) for (_, ref), r in zip(refs, runs.get(n, [])) if r.skipped is None and r.error is None]
         for n in runner.names})


# ---------------------------------------------------------------- the runners


class TFRunner(Runner):
    """The port itself, in this process; ``Run.extra`` has its per-module taps for ``parity.per_module_diffs``."""

    names = ("tf",)
    what = "the TF port"

    def __init__(self, port):
        self.port = port

    def run(self, input_sets: list[tuple], taps: bool = True) -> dict[str, list[Run]]:
        """Takes torch input tuples (not feeds): the port runs on ``port.boundary_inputs``; ``taps=False``
        records no module outputs (``Run.extra`` is None)."""
        runs = []
        for inputs in input_sets:
            if taps:
                got, seen = parity.tf_module_outputs(self.port.tf_model, self.port.boundary_inputs(inputs))
            else:
                got, seen = self.port.tf_model(*[parity.to_numpy(x) for x in self.port.boundary_inputs(inputs)]), None
            runs.append(Run(parity.flatten_outputs(self.port.outputs_in_torch_layout(got)), extra=seen))
        return {"tf": runs}


class SavedModelRunner(Runner):
    """The written SavedModel, loaded once, through its serving signature."""

    names = ("savedmodel",)
    what = "the SavedModel"

    def __init__(self, saved_dir: Path):
        self.saved_dir = Path(saved_dir)

    def run(self, feed_sets: list[dict]) -> dict[str, list[Run]]:
        from . import savedmodel

        return {"savedmodel": [Run(out) for out in savedmodel.run_savedmodel_many(self.saved_dir, feed_sets)]}


class NodeTfjsRunner(Runner):
    """tfjs in Node (``tfjs.run_many_tfjs``): one Node process per backend, each loading the model once
    and running every set. The processes run side by side for small models; from PARALLEL_MAX_BYTES of
    weights one after the other, so that only one backend's copy of the weights (wasm keeps it in its
    heap) exists at a time.

    ``budget_s`` (None: every set) bounds what each backend spends on sets after its first: the sets
    run cheapest first (fewest input elements; the example before random sets of its size), and a set
    that would take the backend past the budget is left out (skipped, with a note saying how many).
    tfjs's pure-JS ``cpu`` backend is 20-30x slower than wasm on convolutions (7.5 s for one 224x224
    ResNet-18 image here), so without a budget it costs more than the whole conversion."""

    what = "the tfjs model"
    PARALLEL_MAX_BYTES = 256 * 2**20

    def __init__(self, model_dir: Path, backends: tuple[str, ...], repeat: int = 1, prefix: str = "tfjs-",
                 work_root: Path | None = None, budget_s: float | None = None):
        self.model_dir, self.backends, self.repeat, self.prefix = Path(model_dir), tuple(backends), repeat, prefix
        self.names = tuple(f"{prefix}{b}" for b in self.backends)
        self.work_root = work_root  # where the exchange files go (save: inside the export's temporary folder)
        self.budget_s = budget_s
        self._sessions: dict = {}

    def unavailable(self) -> str | None:
        from . import tfjs

        return tfjs.node_status()

    def start(self) -> None:
        """Start each backend's Node now (tfjs.NodeSession), while the model is still being written; ``run``
        then only loads the model. Call ``close`` after."""
        from . import tfjs

        if self.unavailable() is None and not self._sessions:
            self._sessions = {b: tfjs.NodeSession(b) for b in self.backends}

    def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            session.close()

    def weight_bytes(self) -> int:
        """Bytes of the model's weight shards."""
        return sum(p.stat().st_size for p in self.model_dir.glob("*.bin"))

    def run(self, feed_sets: list[dict]) -> dict[str, list[Run]]:
        from concurrent.futures import ThreadPoolExecutor

        from . import tfjs

        runs: dict[str, list] = {n: [None] * len(feed_sets) for n in self.names}
        jobs = []  # (backend, the sets it can run: wasm has no zero-size tensors)
        for b in self.backends:
            ok = []
            for i, feeds in enumerate(feed_sets):
                why = tfjs.zero_size_problem(feeds, b)
                if why is None:
                    ok.append(i)
                else:
                    runs[self.prefix + b][i] = Run(skipped=why)
            if ok:
                jobs.append((b, sorted(ok, key=lambda i: elements(feed_sets[i])) if self.budget_s is not None else ok))
        workers = len(jobs) if self.weight_bytes() < self.PARALLEL_MAX_BYTES else 1
        if workers == 1:
            _return_freed_memory()  # Node is about to load the weights again: give back what this process freed
        sessions, self._sessions = self._sessions, {}
        try:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                done = list(pool.map(lambda job: tfjs.run_many_tfjs(
                    [(self.model_dir, feed_sets[i]) for i in job[1]], (job[0],), repeat=self.repeat,
                    work_root=self.work_root, budget_s=self.budget_s, session=sessions.pop(job[0], None)), jobs))
        finally:
            for session in sessions.values():  # backends with no set to run
                session.close()
        failed = {}
        for (b, sets), results in zip(jobs, done):
            left_out = [i for i, result in zip(sets, results)
                        if not isinstance(result, ExportError) and result[b] is tfjs.OVER_BUDGET]
            why = left_out and _over_budget(f"{self.prefix}{b}", len(left_out), len(feed_sets), "parity input sets",
                                            self.budget_s)
            for i, result in zip(sets, results):
                if isinstance(result, ExportError):
                    raise result
                got = result[b]
                if got is tfjs.OVER_BUDGET:
                    runs[self.prefix + b][i] = Run(skipped=why)
                elif isinstance(got, ExportError):
                    failed.setdefault(b, got)
                else:
                    runs[self.prefix + b][i] = Run(dict(got), list(got.ms))
        if failed:
            raise tfjs.backend_failures(failed)
        return runs


def _over_budget(runtime: str, left_out: int, total: int, what: str, budget_s: float) -> str:
    """Why a runtime skipped sets: its verify budget (the note every budgeted runner gives)."""
    return (f"{runtime} on {left_out} of {total} {what}: over its {budget_s:g} s verify budget (cheapest sets run "
            "first; --verify-budget all runs every set)")


def elements(feeds: dict) -> int:
    """Input elements of one feed set: how the budgeted runners order sets, cheapest first."""
    return sum(int(np.size(a)) for a in feeds.values())


def _return_freed_memory() -> None:
    """Collect cycles, then hand the C heap's free pages back to the OS (glibc keeps them otherwise): what
    the SavedModel check and the tfjs writer freed stops counting against the machine while Node runs."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


class BrowserTfjsRunner(Runner):
    """tfjs in headless chromium, one launch for every set; each backend's page loads the model once."""

    what = "the tfjs model in a browser"

    def __init__(self, model_dir: Path, backends: tuple[str, ...], repeat: int = 1, work_root: Path | None = None,
                 budget_s: float | None = None):
        self.model_dir, self.backends, self.repeat = Path(model_dir), tuple(backends), repeat
        self.names = tuple(f"browser-{b}" for b in self.backends)
        self.notes = ()
        self.work_root = work_root
        self.budget_s = budget_s  # as NodeTfjsRunner's, in the page's wall time: cheapest sets first

    def unavailable(self) -> str | None:
        from . import browser

        if not hasattr(self, "_status"):
            self._status = browser.browser_status()
        return self._status

    def start(self) -> None:
        """Launch chromium and initialise the backends' pages now, while the artifacts are still being
        written (a launch costs seconds); ``run`` then only loads the model. Call ``close`` after."""
        from . import browser

        if self.unavailable() is None and getattr(self, "_session", None) is None:
            self._session = browser.BrowserSession(self.backends, self.work_root)

    def close(self) -> None:
        session, self._session = getattr(self, "_session", None), None
        if session is not None:
            session.close()

    def run(self, feed_sets: list[dict]) -> dict[str, list[Run]]:
        from . import browser

        session, self._session = getattr(self, "_session", None), None
        order = (sorted(range(len(feed_sets)), key=lambda i: elements(feed_sets[i])) if self.budget_s is not None
                 else list(range(len(feed_sets))))
        try:
            ran = browser.run_browser_many(self.model_dir, [feed_sets[i] for i in order], self.backends,
                                           repeat=self.repeat, work_root=self.work_root, session=session,
                                           budget_s=self.budget_s)
        finally:
            if session is not None:
                session.close()
        results = [None] * len(feed_sets)
        for i, r in zip(order, ran):
            results[i] = r
        notes = []
        for backend, info in (results[0].info if results else {}).items():
            if info.get("float32_textures") is False:
                notes.append(f"browser {backend}: float16 textures only, expect errors near 1e-3")
        self.notes = tuple(notes)
        runs = {}
        for b in self.backends:
            left_out = sum(r[b] is browser.OVER_BUDGET for r in results)
            why = left_out and _over_budget(f"browser-{b}", left_out, len(feed_sets), "browser input sets", self.budget_s)
            runs[f"browser-{b}"] = [Run(skipped=why) if r[b] is browser.OVER_BUDGET else Run(r[b], list(r.ms.get(b, [])))
                                    for r in results]
        return runs
