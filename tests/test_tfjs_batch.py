"""Whole family tables checked in tfjs (cpu, wasm) with one converter and one Node process.

Two tables, used the two ways tests/_tfjs_batch.py allows:
- linear (Linear, Embedding with int64 ids, a Linear on two layouts): as a
  family file would, with ``@LINEAR.parametrize`` rows returning their port and
  a final node test;
- activation (every row of tests/test_family_activation.py, 112 rows): rows
  registered with ``ACTIVATION.row`` only, so the node test builds them all.
Plus the harness's own behaviour: structure checks, failing rows listed, no
vacuous pass, and the measured cost of batched vs one-at-a-time (``port.save``).
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import torch
from torch import nn

import bridge
import test_family_activation as act
import test_family_linear as lin
from _parity import Fn, assert_port_matches, randn, seeded
from _tfjs_batch import TfjsBatch, structure_problems

# ---------------------------------------------------------------- linear: the family-file pattern

LINEAR = TfjsBatch()


@LINEAR.parametrize("factory, shape", lin.CASES)
def test_linear_row(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


def _embedding_port(factory, shape):
    module = seeded(factory)
    n = next(m for m in module.modules() if isinstance(m, nn.Embedding)).num_embeddings
    ids = torch.arange(int(torch.tensor(shape).prod())).reshape(shape) % n  # int64 token ids
    return assert_port_matches(module, (ids,))


@LINEAR.parametrize("factory, shape", lin.EMBEDDINGS)
def test_embedding_row(factory, shape):
    return _embedding_port(factory, shape)


@LINEAR.parametrize("factory, shape", lin.SHARED)
def test_shared_linear_row(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


@pytest.mark.node
def test_linear_table_in_tfjs(node_or_skip):
    result = LINEAR.assert_all_within()
    assert len(result.rows) == len(lin.CASES) + len(lin.EMBEDDINGS) + len(lin.SHARED)
    assert {"test_embedding_row[2d-ids]", "test_linear_row[rank4-to-1]"} <= {r.row_id for r in result.rows}
    for row in result.rows:
        # float32 reaches 1e-5 * max(1, max|torch|) on every linear row (the bound is 1e-4 * ...)
        assert all(b.max_abs_error <= row.bound / 10 for b in row.backends.values()), row.line()


# ---------------------------------------------------------------- activation: rows built by the batch

ACTIVATION = TfjsBatch()


def _conv_input():
    return (randn(2, 3, 7, 9),)


ACTIVATION_TABLE = {  # the test functions of test_family_activation.py: (params, module builder, inputs)
    "module_2d": (act.MODULES, lambda f: nn.Sequential(nn.Linear(6, 5), f()), lambda: (randn(3, 6),)),
    "module_on_conv_map": (act.MODULES, lambda f: act._on_conv_map(f()), _conv_input),
    "module_after_flatten": (act.MODULES, lambda f: Fn(lambda s, x: s.fc(s.act(s.conv(x).flatten(1))),
                                                       conv=nn.Conv2d(3, 4, 3), act=f(), fc=nn.Linear(4 * 5 * 7, 3)),
                             _conv_input),
    "function_2d": (act.FUNCTIONS + act.DTYPES, lambda fn: Fn(lambda s, x: fn(x)), lambda: (randn(3, 6),)),
    "function_on_conv_map": (act.FUNCTIONS + act.DTYPES, act._on_conv_map_fn, _conv_input),
    "function_after_flatten": (act.FUNCTIONS, act._on_flatten, _conv_input),
}


def _activation_port(make, value, inputs):
    return assert_port_matches(seeded(lambda: make(value)), inputs())


for _kind, (_params, _make, _inputs) in ACTIVATION_TABLE.items():
    for _p in _params:
        ACTIVATION.row(f"{_kind}[{_p.id}]", functools.partial(_activation_port, _make, _p.values[0], _inputs))
ACTIVATION.row("softmax_after_flatten_returned", functools.partial(
    _activation_port, lambda _: Fn(lambda s, x: act.F.softmax(s.conv(x).flatten(1), dim=1), conv=nn.Conv2d(3, 4, 3)),
    None, _conv_input))


@pytest.mark.node
def test_activation_table_in_tfjs(node_or_skip):
    result = ACTIVATION.assert_all_within()
    assert len(result.rows) == 3 * len(act.MODULES) + 2 * len(act.FUNCTIONS + act.DTYPES) + len(act.FUNCTIONS) + 1


# ---------------------------------------------------------------- the harness itself


def test_parametrize_registers_every_row_at_import_and_leaves_out_skipped_ones():
    assert len(LINEAR._factories) == len(lin.CASES) + len(lin.EMBEDDINGS) + len(lin.SHARED)
    batch = TfjsBatch()
    params = [pytest.param(1, id="one"), pytest.param(2, id="two", marks=pytest.mark.xfail),
              pytest.param(3, id="three", marks=pytest.mark.skip)]

    @batch.parametrize("k", params)
    def test_row(k):
        return None

    assert list(batch._factories) == ["test_row[one]"]
    with pytest.raises(TypeError, match="must return the port"):
        test_row(k=params[0].values[0])


def test_an_empty_batch_cannot_pass():
    with pytest.raises(AssertionError, match="no rows"):
        TfjsBatch().check()


def test_structure_is_compared_before_numbers():
    ref = [("y", np.zeros((2, 3), np.float64)), ("ids", np.zeros(2, np.int64))]
    ok = {"y": np.zeros((2, 3), np.float32), "ids": np.zeros(2, np.int32)}
    assert structure_problems(ref, ok) == []  # float64 -> float32 and int64 -> int32 are what tfjs has
    assert structure_problems(ref, {"y": ok["y"]}) == ["outputs ['y'] != torch ['y', 'ids']"]
    assert structure_problems(ref, {**ok, "y": np.zeros((3, 2), np.float32)}) == ["y: shape [3, 2] != torch [2, 3]"]
    assert structure_problems(ref, {**ok, "ids": np.zeros(2, np.float32)}) == [
        "ids: dtype float32 != int32 (torch int64)"]


class _OffByOne:
    """A port whose torch reference is shifted: tfjs must be reported over the bound for it."""

    def __init__(self, port):
        self._port = port

    def __getattr__(self, name):
        return getattr(self._port, name)

    def torch_outputs(self, inputs):
        return [(n, a + 1.0) for n, a in self._port.torch_outputs(inputs)]


def _broken_row():
    raise RuntimeError("this row cannot be built")


@pytest.mark.node
def test_every_failing_row_is_listed_and_good_rows_still_measured(node_or_skip):
    good = assert_port_matches(seeded(lambda: nn.Linear(4, 3)), (randn(2, 4),))
    batch = TfjsBatch()
    batch.row("good", lambda: good)  # built by the batch: nothing was added
    batch.row("broken", _broken_row)
    batch.add("off-by-one", _OffByOne(good))
    big_ids = bridge.convert(seeded(lambda: nn.Sequential(nn.Embedding(5, 2))), (torch.zeros(2, dtype=torch.int64),))
    big_ids.extra_inputs.append((torch.tensor([0, 2**31]),))  # an id tfjs cannot take
    batch.add("id-2**31", big_ids)
    result = batch.check()
    rows = {r.row_id: r for r in result.rows}
    assert [r.row_id for r in result.failures] == ["broken", "off-by-one", "id-2**31"]
    assert rows["good"].ok and set(rows["good"].backends) == {"cpu", "wasm"}
    assert all(b.max_abs_error <= 1e-5 for b in rows["good"].backends.values())
    assert "this row cannot be built" in rows["broken"].error
    assert all(abs(b.max_abs_error - 1.0) < 1e-5 for b in rows["off-by-one"].backends.values())
    assert "BadInputError" in rows["id-2**31"].error and "2147483648" in rows["id-2**31"].error
    with pytest.raises(AssertionError, match="3 of 4 rows fail in tfjs"):
        batch.assert_all_within()


# ---------------------------------------------------------------- cost: batched vs one at a time
# A benchmark, not a test (tests check correctness): scripts/bench_tfjs_batch.py prints these figures.


def measure(n: int, out_root) -> dict:
    """Seconds for n linear rows checked in tfjs batched vs one port.save each (ports built beforehand)."""
    ids = list(LINEAR._factories)[:n]
    ports = {i: LINEAR._factories[i]() for i in ids}
    batch = TfjsBatch()
    for i, port in ports.items():
        batch.add(i, port)
    start = time.perf_counter()
    result = batch.check()
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for k, port in enumerate(ports.values()):
        port.save(out_root / f"row{k}", per_module_tfjs=False, browser_backends=(), require_node=True)
    single = time.perf_counter() - start
    return {"rows": n, "batched_s": batched, "single_s": single, "batch_steps": result.timings,
            "failures": [r.line() for r in result.failures]}
