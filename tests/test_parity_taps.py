"""TF parity taps every module on the example set, and another set only where its outputs miss their bound.

The per-module list is what finds the first diverging module; it costs a copy of every module's output
in torch and in TF per set. ``Port.parity`` compares the outputs of the other sets first and taps a set
only when they fail (``Options.per_module_all_sets`` taps them all); ``per_module_inputs`` says how many
sets the per-module list covers.
"""

from __future__ import annotations

import torch

import bridge
from bridge.api import Options


def _port(**options):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return bridge.convert(m, (torch.randn(2, 4),), options=Options(**options))


class _WrongAtBatch3:
    """The port's ReLU, but its output is off by one on a batch of 3 (the dynamic-batch parity set)."""

    def __init__(self, real):
        self.real = real

    def __call__(self, x):
        y = self.real(x)
        return y + 1.0 if x.shape[0] == 3 else y


def test_a_passing_port_taps_only_the_example_set():
    report = _port().parity()
    assert report.ok and report.n_inputs >= 3
    assert report.per_module_inputs == 1 and [d.name for d in report.per_module] == ["0", "1", "2"]
    assert report.to_dict()["per_module_inputs"] == 1


def test_every_set_is_tapped_when_asked():
    report = _port(per_module_all_sets=True).parity()
    assert report.ok and report.per_module_inputs == report.n_inputs


def test_a_set_whose_outputs_miss_is_tapped_and_names_the_module():
    port = _port()
    port.tf_model.layers[1] = _WrongAtBatch3(port.tf_model.layers[1])
    report = port.parity()
    assert not report.ok
    assert report.per_module_inputs == 2  # the example set and the batch of 3
    assert report.first_divergence == "2"  # the Linear fed by the wrong ReLU output
    assert [d.ok for d in report.per_module] == [True, True, False]
