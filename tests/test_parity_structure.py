"""Parity compares the output structure (count, names, shapes, dtypes) before any number, at every site.

One torch model with two outputs (float scores [2, 3] and an int64 count [2]) and ports
of it that are wrong in one way each: an output dropped, an extra output, a swapped
shape, a wrong dtype. Each must FAIL parity with a message naming the difference at
every place that compares torch with a port:

* TF parity inside ``bridge.convert`` (``Port.parity``) and the save that refuses it;
* the SavedModel, tfjs (Node) and browser checks of ``bridge.export.save``;
* ``bridge.testing.assert_parity`` and the ``bridge check`` command (hand-written ports).

The unchanged port passes at each site, so every test can fail. The int64 -> int32 dtype
difference of tfjs is accepted and stated in the Diff's note.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import torch

import bridge
from bridge import layout, parity
from bridge.cli import main
from bridge.errors import ExportError, ParityError
from bridge.export import runners, savedmodel
from bridge.testing import assert_parity

# What each broken port does to the (scores, count) outputs, and the words its failure must contain.
MUTATIONS = {
    "drop": "missing output",
    "extra": "extra output",
    "transpose": "shape [3, 2] != torch [2, 3]",
    "dtype": "dtype float32 != torch int64",
}
POSITIONAL = {  # a hand-written port returns a tuple: a dropped or extra output shows as the count
    "drop": "output count: TF returned 1 output(s)",
    "extra": "output count: TF returned 3 output(s)",
    "transpose": "shape [3, 2] != torch [2, 3]",
    "dtype": "dtype float32 != torch int64",
}

MODELS = textwrap.dedent('''
    """A torch model with a float and an int64 output, and a hand-written TF port that can be broken."""

    import tensorflow as tf
    import torch
    from torch import nn


    class TwoOut(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = self.fc(x)
            return y, (y > 0).sum(-1)


    def mutate(outputs, mutation):
        scores, count = outputs
        if mutation == "drop":
            return (scores,)
        if mutation == "extra":
            return scores, count, scores * 2
        if mutation == "transpose":
            return tf.transpose(scores), count
        if mutation == "dtype":
            return scores, tf.cast(count, tf.float32)
        return scores, count


    class Fc(tf.Module):
        def __init__(self):
            super().__init__()
            self.weight = tf.Variable(tf.zeros([3, 4]))
            self.bias = tf.Variable(tf.zeros([3]))


    class TwoOutTF(tf.Module):
        def __init__(self, mutation="none"):
            super().__init__()
            self.fc = Fc()
            self.mutation = mutation

        def __call__(self, x):
            y = tf.matmul(x, self.fc.weight, transpose_b=True) + self.fc.bias
            return mutate((y, tf.reduce_sum(tf.cast(y > 0, tf.int64), -1)), self.mutation)
''')


@pytest.fixture(scope="module")
def models_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("structure") / "two_out.py"
    path.write_text(MODELS)
    spec = importlib.util.spec_from_file_location("two_out_structure", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return path, module


def x_in() -> torch.Tensor:
    return torch.randn(2, 4, generator=torch.Generator().manual_seed(1))


class Mutated(tf.Module):
    """The converted TF model with its outputs broken one way."""

    def __init__(self, inner, mutation: str, mutate):
        super().__init__()
        self.inner, self.mutation, self._mutate = inner, mutation, mutate

    def __call__(self, *args):
        return self._mutate(self.inner(*args), self.mutation)


@pytest.fixture(scope="module")
def port(models_file):
    _, m = models_file
    return bridge.convert(m.TwoOut(), (x_in(),))


def broken_port(port, mutation: str, mutate):
    """A copy of ``port`` whose TF model is broken; parity is measured afresh."""
    from dataclasses import replace

    return replace(port, tf_model=Mutated(port.tf_model, mutation, mutate), _parity=None, notes=[])


def bound(port) -> float:
    """The fixed float32 bound of these tests: 1e-5 * max(1, max|torch|) over every parity input."""
    scale = max(float(np.abs(a).max()) for inputs in port.parity_inputs() for _, a in port.torch_outputs(inputs))
    return 1e-5 * max(1.0, scale)


def problems(result: parity.RuntimeResult) -> str:
    return "; ".join(f"{d.name}: {d.problem}" for d in result.outputs if d.problem)


# ------------------------------------------------------------------ the one comparison function


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_compare_outputs_names_the_difference(mutation, models_file):
    _, m = models_file
    torch_out = m.TwoOut()(x_in())
    ref = [(n, parity.to_numpy(v)) for n, v in parity.flatten_outputs(torch_out)]
    got = m.mutate((tf.constant(ref[0][1]), tf.constant(ref[1][1])), mutation)
    diffs = parity.compare_outputs(ref, parity.flatten_outputs(got), side="tfjs-cpu")
    bad = [d for d in diffs if not d.ok]
    assert bad and all(d.structural and d.max_abs_error == float("inf") for d in bad)
    assert MUTATIONS[mutation] in "; ".join(d.problem for d in bad)
    if mutation in ("drop", "extra"):  # which output, and who lacks it
        text = bad[0].problem
        assert ("'output_1'" in text and "tfjs-cpu returned no" in text) if mutation == "drop" else \
            ("'output_2'" in text and "torch does not return" in text)


def test_int64_returned_as_int32_is_accepted_and_stated():
    ref = [("count", np.array([1, 2], np.int64))]
    same = parity.compare_outputs(ref, {"count": np.array([1, 2], np.int32)})
    assert same[0].ok and "int64 returned as int32" in same[0].note
    wrong = parity.compare_outputs(ref, {"count": np.array([1, 3], np.int32)})
    assert not wrong[0].ok and wrong[0].problem == "1 integer values differ"
    assert not parity.compare_outputs(ref, {"count": np.array([1, 2], np.int16)})[0].ok


def test_a_module_output_the_port_did_not_return_is_missing_not_skipped():
    """Per module (TF, and tfjs via permodule.py): a recorded torch call without a port output fails."""
    ref = torch.ones(2, 3)
    torch_seen = [("fc", ref), ("fc", ref)]
    tf_seen = [("fc", (), np.ones((2, 3), np.float32))]  # the second call's output never came back
    same = layout.identity(2)
    diffs = parity.per_module_diffs(torch_seen, tf_seen, {("fc", ()): [same, same]}, {})
    assert [d.name for d in diffs] == ["fc", "fc#1"]
    assert diffs[0].ok and not diffs[1].ok and diffs[1].problem.startswith("missing output")
    retyped = parity.per_module_diffs([("fc", ref)], [("fc", (), np.ones((2, 3), np.int32))], {("fc", ()): [same]}, {})
    assert not retyped[0].ok and retyped[0].problem == "dtype int32 != torch float32"


# ------------------------------------------------------------------ TF parity in convert, and save


def test_converted_port_passes_unchanged(port):
    report = port.parity()
    assert report.ok and [d.name for d in report.runtime("tf").outputs] == ["output_0", "output_1"]
    assert report.runtime("tf").max_abs_error <= bound(port)


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_tf_parity_in_convert_fails_on_structure(mutation, port, models_file, tmp_path):
    broken = broken_port(port, mutation, models_file[1].mutate)
    report = broken.parity()
    tf_result = report.runtime("tf")
    assert not report.ok and not tf_result.ok
    assert MUTATIONS[mutation] in problems(tf_result)
    with pytest.raises(ParityError) as info:  # save refuses it, and its message names the difference too
        broken.save(tmp_path / "out", tfjs=False)
    assert MUTATIONS[mutation] in info.value.message
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ SavedModel, tfjs and browser checks


def _mutated_run(port, mutation, mutate):
    """A runtime runner that returns the port's TF outputs, broken, keyed by output name and with int64
    as int32, like a SavedModel signature or tfjs."""
    def run(feeds):
        outs = mutate(port.tf_model(*[tf.constant(v) for v in feeds.values()]), mutation)
        arrays = [np.asarray(v) for v in outs]
        return {f"output_{i}": a.astype(np.int32) if a.dtype == np.int64 else a for i, a in enumerate(arrays)}
    return run


def _refs(port):
    """(feeds, torch outputs) per parity input set, as save.py hands them to runners.check."""
    return [(savedmodel.feeds_for(port, inputs), port.torch_outputs(inputs, boundary=True))
            for inputs in port.parity_inputs()]


class _Fake(runners.Runner):
    """A runner for the given runtime names whose outputs are the port's TF outputs, broken."""

    def __init__(self, names, run):
        self.names, self._run = tuple(names), run

    def run(self, feed_sets):
        return {n: [runners.Run(self._run(f)) for f in feed_sets] for n in self.names}


@pytest.mark.parametrize("names", [("savedmodel",), ("tfjs-cpu", "tfjs-wasm"), ("browser-webgl",)])
@pytest.mark.parametrize("mutation", [*MUTATIONS, "none"])
def test_runtime_check_fails_on_structure(mutation, names, port, models_file):
    """Every runtime goes through runners.check, which pairs outputs by structure before numbers."""
    fake = _Fake(names, _mutated_run(port, mutation, models_file[1].mutate))
    results = runners.check(fake, _refs(port), port.tolerance.output.rtol).results
    assert [r.runtime for r in results] == list(names)
    for r in results:
        if mutation == "none":
            assert r.ok and r.max_abs_error <= bound(port)
            assert "int64 returned as int32" in r.outputs[1].note  # the signature's int32 counts are accepted
        else:
            assert not r.ok and MUTATIONS[mutation] in problems(r)
            assert mutation not in ("drop", "extra") or f"{r.runtime} returned" in problems(r)


def test_unavailable_runner_is_skipped_or_required(port):
    class Absent(_Fake):
        def unavailable(self):
            return "node not found on PATH"

    absent = Absent(("tfjs-cpu",), lambda feeds: {})
    [result] = runners.check(absent, _refs(port), 1e-4).results
    assert result.skipped == "node not found on PATH" and not result.outputs
    with pytest.raises(ExportError, match="cannot verify the artifact: node not found"):
        runners.check(absent, _refs(port), 1e-4, required=True)


@pytest.mark.node
def test_real_tfjs_outputs_pass_and_fail_when_broken(port, models_file, tmp_path, monkeypatch, node_or_skip):
    """The real tfjs model in Node: int32 counts are accepted; the same outputs with one dropped fail."""
    from bridge.export import tfjs

    report = port.save(tmp_path / "out", per_module_tfjs=False, browser_backends=())
    assert report["parity"]["ok"], report["parity"]
    tfjs_rt = {r["runtime"]: r for r in report["parity"]["runtimes"]}
    for b in ("tfjs-cpu", "tfjs-wasm"):
        count = tfjs_rt[b]["outputs"][1]
        assert tfjs_rt[b]["ok"] and count["max_abs_error"] == 0 and "int64 returned as int32" in count["note"]
    real = tfjs.run_many_tfjs

    def dropped(requests, backends, repeat=1, **kwargs):
        return [{b: tfjs.Outputs({k: v for k, v in outs.items() if k != "output_1"}, outs.ms)
                 for b, outs in result.items()} for result in real(requests, backends, repeat=repeat, **kwargs)]

    monkeypatch.setattr(tfjs, "run_many_tfjs", dropped)
    node = runners.NodeTfjsRunner(tmp_path / "out" / "tfjs", ("cpu", "wasm"))
    results = runners.check(node, _refs(port)[:1], port.tolerance.output.rtol).results
    assert all(not r.ok and "missing output: " + r.runtime + " returned no 'output_1'" in problems(r) for r in results)


# ------------------------------------------------------------------ hand-written ports: assert_parity, bridge check


def _hand_port(m, mutation: str):
    from bridge.porting import load_torch_weights

    torch_model = m.TwoOut()
    tf_model = m.TwoOutTF(mutation)
    load_torch_weights(tf_model, torch_model.state_dict())
    return torch_model, tf_model


def test_hand_written_port_passes_unchanged(models_file):
    torch_model, tf_model = _hand_port(models_file[1], "none")
    report = assert_parity(torch_model, tf_model, (x_in(),), rtol=1e-5)
    assert report.ok and len(report.runtime("tf").outputs) == 2


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_assert_parity_fails_on_structure(mutation, models_file):
    torch_model, tf_model = _hand_port(models_file[1], mutation)
    with pytest.raises(AssertionError) as info:
        assert_parity(torch_model, tf_model, (x_in(),))
    assert POSITIONAL[mutation] in str(info.value)


@pytest.mark.parametrize("mutation", [*MUTATIONS, "none"])
def test_bridge_check_fails_on_structure(mutation, models_file, tmp_path, capsys):
    path, _ = models_file
    out = tmp_path / "check.json"
    code = main(["check", f"{path}:TwoOut", f"{path}:TwoOutTF", "--tf-kwargs", json.dumps({"mutation": mutation}),
                 "--input", "2x4", "--json", str(out)])
    captured = capsys.readouterr()
    report = json.loads(out.read_text())
    if mutation == "none":
        assert code == 0 and report["ok"] and report["max_abs_error"] <= 1e-5 * 10
        return
    assert code == 4 and not report["ok"]
    assert POSITIONAL[mutation] in captured.err + captured.out
    assert any(POSITIONAL[mutation] in (d["problem"] or "") for d in report["runtimes"][0]["outputs"])


class _DictOut(torch.nn.Module):
    def forward(self, x):
        return {"scores": 2 * x, "total": x.sum(-1)}


class _RenamedTF(tf.Module):
    """Returns the right values under one wrong name: paired by name, that is a missing and an extra output."""

    def __call__(self, x):
        return {"score": 2 * x, "total": tf.reduce_sum(x, -1)}


def test_dict_outputs_are_paired_by_name():
    with pytest.raises(AssertionError) as info:
        assert_parity(_DictOut(), _RenamedTF(), (x_in(),))
    text = str(info.value)
    assert "missing output: TF returned no 'scores'" in text and "extra output: TF returned 'score'" in text
    assert "total [2]: max abs error 0" in text  # the output both have is still compared, and matches


def test_save_twice_records_each_runtime_once_and_leaves_the_port_alone(port, tmp_path):
    """save() works on its own copy of the parity report and its own notes (it used to append both to the Port)."""
    notes, runtimes = list(port.notes), [r.runtime for r in port.parity().runtimes]
    first = port.save(tmp_path / "a", tfjs=False)
    second = port.save(tmp_path / "b", tfjs=False)
    names = [[r["runtime"] for r in rep["parity"]["runtimes"]] for rep in (first, second)]
    assert names[0] == names[1] == ["tf", "savedmodel"]
    assert first["notes"] == second["notes"]
    assert port.notes == notes and [r.runtime for r in port.parity().runtimes] == runtimes == ["tf"]
