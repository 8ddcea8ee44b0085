"""The parity sets a slow runtime runs: a smaller set for free dims, and Node's verify budget.

tfjs's pure-JS cpu backend is 20-30x slower than wasm on convolutions, so every Node backend runs its
sets cheapest first within ``SaveOptions.verify_budget_s`` (at least one set each), and models with
free sizes get a set at a quarter of the size, which is also the cheap set such a backend can run.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bridge
from bridge.export import runners, savedmodel


class FreeSize(nn.Module):  # any image size: conv, pool to 1x1, classify
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


class NeedsNine(nn.Module):  # a 9x9 VALID conv: refuses inputs under 9 rows or columns
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 9)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def _port(module, shape):
    torch.manual_seed(0)
    return bridge.convert(module.eval(), (torch.randn(*shape),))


def _sizes(port) -> list:
    return [tuple(x[0].shape[2:]) for x in port.parity_inputs()]


@pytest.fixture(scope="module")
def free_port():
    return _port(FreeSize(), (1, 3, 32, 32))


def test_free_dims_get_a_smaller_set_too(free_port):
    assert free_port.dynamic_dims == [frozenset({2, 3})]
    assert _sizes(free_port)[-2:] == [(35, 35), (8, 8)]  # larger, then a quarter of the traced size
    assert free_port.parity().ok and free_port.parity().n_inputs == len(_sizes(free_port))


@pytest.mark.parametrize("module, shape, sizes", [
    (NeedsNine(), (1, 2, 12, 12), {(12, 12), (15, 15)}),  # torch refuses 3x3: no smaller set
    (FreeSize(), (1, 3, 32, 1), {(32, 1), (35, 1), (8, 1)}),  # a size-1 dim stays fixed
    (FreeSize(), (1, 3, 3, 3), {(3, 3), (6, 6), (2, 2)}),  # a quarter, but at least 2
])
def test_smaller_set_only_where_torch_runs(module, shape, sizes):
    port = _port(module, shape)
    assert set(_sizes(port)) == sizes and port.parity().ok


@pytest.mark.node
def test_node_budget_runs_the_cheapest_set_first(free_port, tmp_path, node_or_skip):
    report = free_port.save(tmp_path / "out", browser_backends=(), per_module_tfjs=False, verify_budget_s=None)
    assert [r["runtime"] for r in report["parity"]["runtimes"]] == ["tf", "savedmodel", "tfjs-cpu", "tfjs-wasm"]
    assert not [n for n in report["notes"] if "verify budget" in n]
    assert all(v["n_sets"] == len(_sizes(free_port)) for v in report["latency"].values())

    refs = [(savedmodel.feeds_for(free_port, x), free_port.torch_outputs(x, boundary=True))
            for x in free_port.parity_inputs()]
    node = runners.NodeTfjsRunner(tmp_path / "out" / "tfjs", ("cpu", "wasm"), budget_s=0)
    checked = runners.check(node, refs, free_port.tolerance.output.rtol)
    smallest = min(range(len(refs)), key=lambda i: sum(a.size for a in refs[i][0].values()))
    assert _sizes(free_port)[smallest] == (8, 8)
    for runtime in ("tfjs-cpu", "tfjs-wasm"):
        ran = [i for i, ms in enumerate(checked.latency[runtime]) if ms]
        # once: its first execution spent the whole budget, so no warm one (no later set could fit)
        assert ran == [smallest] and len(checked.latency[runtime][smallest]) == 1
        result = next(r for r in checked.results if r.runtime == runtime)
        assert result.ok and result.skipped is None
        assert (f"not checked: {runtime} on {len(refs) - 1} of {len(refs)} parity input sets: over its 0 s verify "
                "budget" in " ".join(checked.notes))
    roomy = runners.check(runners.NodeTfjsRunner(tmp_path / "out" / "tfjs", ("wasm",), budget_s=60), refs,
                          free_port.tolerance.output.rtol)
    runs = roomy.latency["tfjs-wasm"]
    assert len(runs[smallest]) == 2 and all(len(ms) == 1 for i, ms in enumerate(runs) if i != smallest)  # cold, warm


@pytest.mark.node
def test_a_budget_that_fits_runs_every_set(free_port, tmp_path, node_or_skip):
    report = free_port.save(tmp_path / "out", browser_backends=(), per_module_tfjs=False)  # the default budget
    assert report["parity"]["ok"] and not [n for n in report["notes"] if "verify budget" in n]
    assert {v["n_sets"] for v in report["latency"].values()} == {len(_sizes(free_port))}
    assert {v["set"] for v in report["latency"].values()} == {"example"}


@pytest.mark.node
def test_node_started_ahead_gives_the_same_outputs(free_port, tmp_path, node_or_skip):
    """A NodeSession (Node started before the model exists) runs a request as a fresh process does;
    one that is never sent exits when closed."""
    from bridge.export import tfjs

    free_port.save(tmp_path / "out", browser_backends=(), per_module_tfjs=False, backends=("wasm",))
    requests = [(tmp_path / "out" / "tfjs", savedmodel.feeds_for(free_port, x)) for x in free_port.parity_inputs()]
    fresh = tfjs.run_many_tfjs(requests, ("wasm",))
    ahead = tfjs.run_many_tfjs(requests, ("wasm",), session=tfjs.NodeSession("wasm"))
    for a, b in zip(fresh, ahead):
        assert a["wasm"].keys() == b["wasm"].keys()
        assert all((a["wasm"][k] == b["wasm"][k]).all() for k in a["wasm"])
    unused = tfjs.NodeSession("cpu")
    proc = unused._proc
    unused.close()
    assert proc.returncode == 0


@pytest.mark.browser
def test_browser_budget_runs_the_cheapest_set_and_says_what_it_left_out(free_port, tmp_path, browser_or_skip):
    """Chromium gets the two cheapest parity sets; with a budget of 0 it runs the cheapest only (with its
    latency repeats), with none it runs the first two, as the browser check always did."""
    refs = [(savedmodel.feeds_for(free_port, x), free_port.torch_outputs(x, boundary=True))
            for x in free_port.parity_inputs()]
    free_port.save(tmp_path / "out", browser_backends=(), backends=(), per_module_tfjs=False)
    sizes = [sum(a.size for a in feeds.values()) for feeds, _ in refs]
    smallest = sizes.index(min(sizes))
    offered = [refs[0], refs[smallest]]
    in_browser = runners.BrowserTfjsRunner(tmp_path / "out" / "tfjs", ("webgl",), repeat=3, budget_s=0)
    checked = runners.check(in_browser, offered, free_port.tolerance.output.rtol)
    assert [len(ms) for ms in checked.latency["browser-webgl"]] == [0, 3]  # the example left out
    assert checked.results[0].ok and checked.results[0].skipped is None
    assert "not checked: browser-webgl on 1 of 2 browser input sets: over its 0 s verify budget" in " ".join(checked.notes)
    unbudgeted = runners.check(runners.BrowserTfjsRunner(tmp_path / "out" / "tfjs", ("webgl",)), offered,
                               free_port.tolerance.output.rtol)
    assert [len(ms) for ms in unbudgeted.latency["browser-webgl"]] == [1, 1] and unbudgeted.results[0].ok


def test_each_parity_set_runs_in_torch_once():
    """The free-size check, TF parity and the saved artifacts' checks ask torch for the same sets: each set's
    values run once (read-only outputs), and a set with other values runs again."""
    torch.manual_seed(0)
    module = FreeSize().eval()
    port = bridge.convert(module, (torch.randn(1, 3, 16, 16),))
    calls = []
    module.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    assert port.parity().ok
    sets = port.parity_inputs()
    first = [port.torch_outputs(x, boundary=True) for x in sets]
    assert len(calls) == len(sets) - 2  # the larger and smaller sets ran in the free-size check
    again = [port.torch_outputs(x) for x in port.parity_inputs()]  # new tensors, the same values
    assert len(calls) == len(sets) - 2
    assert all((a == b).all() for f, g in zip(first, again) for (_, a), (_, b) in zip(f, g))
    assert not again[0][0][1].flags.writeable
    port.torch_outputs((sets[0][0] + 1,))
    assert len(calls) == len(sets) - 1
