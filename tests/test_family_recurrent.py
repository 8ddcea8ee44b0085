"""RNN, LSTM and GRU through the converter: parity per option combination, at two sequence
lengths, in TF and (one batch for the whole table) in tfjs on cpu and wasm.

tests/test_layers_recurrent.py checks the TF layers and the gate transforms on their own;
this table checks the mapping: weights bound by key, torch's exact output structure, initial
states as model inputs, and a free sequence length in the exported signature.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _parity import assert_port_matches, randn, seeded
from _tfjs_batch import TfjsBatch

BATCH = TfjsBatch()


class WithState(nn.Module):
    """``rnn(x, h0)`` with the initial state as a second model input (``(h0, c0)`` for an LSTM)."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, h0, c0=None):
        return self.rnn(x, hx=h0 if c0 is None else (h0, c0))  # by keyword, as torch's forward names it


def _states(rnn, batch: int, seed: int = 5) -> tuple:
    layers = rnn.num_layers * (2 if rnn.bidirectional else 1)
    h = randn(layers, batch, getattr(rnn, "proj_size", 0) or rnn.hidden_size, seed=seed)
    return (h, randn(layers, batch, rnn.hidden_size, seed=seed + 1)) if isinstance(rnn, nn.LSTM) else (h,)


def _seq(batch_first: bool, n: int = 2, t: int = 6, f: int = 5) -> torch.Tensor:
    return randn(n, t, f) if batch_first else randn(t, n, f)


RECURRENT = []
for kind, extra in [("RNN", {"nonlinearity": "tanh"}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}),
                    ("GRU", {})]:
    for layers, bidir, batch_first, bias in [(1, False, True, True), (2, True, False, True),
                                             (2, False, True, False), (1, True, True, True)]:
        name = f"{kind}{'-' + extra['nonlinearity'] if extra else ''}-L{layers}{'-bi' if bidir else ''}" \
               f"{'-bf' if batch_first else '-tm'}{'' if bias else '-nobias'}"
        config = dict(num_layers=layers, bidirectional=bidir, batch_first=batch_first, bias=bias, **extra)
        RECURRENT.append(pytest.param(kind, config, id=name))
RECURRENT += [
    pytest.param("LSTM", dict(proj_size=3, batch_first=True), id="LSTM-proj"),
    pytest.param("LSTM", dict(proj_size=2, num_layers=2, bidirectional=True), id="LSTM-proj-L2-bi"),
    pytest.param("GRU", dict(num_layers=2, dropout=0.3, batch_first=True), id="GRU-dropout-ignored-in-eval"),
]


@BATCH.parametrize("kind, config", RECURRENT)
def test_recurrent(kind, config):
    module = seeded(lambda: nn.Sequential(getattr(nn, kind)(5, 4, **config)))
    port = assert_port_matches(module, (_seq(config.get("batch_first", False)),))
    time_dim = 1 if config.get("batch_first") else 0
    if config.get("batch_first"):  # time-major inputs have the batch in dim 1: only batch_first gets free dims
        assert time_dim in port.dynamic_dims[0], port.notes
        assert any(x[0].shape[1] != 6 for x in port.parity_inputs()), "parity must check a second length"
    return port


STATES = [
    pytest.param("LSTM", dict(batch_first=True), id="LSTM-h0-c0"),
    pytest.param("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True, proj_size=2), id="LSTM-h0-c0-proj-bi"),
    pytest.param("GRU", dict(num_layers=2, batch_first=True), id="GRU-h0"),
    pytest.param("RNN", dict(bidirectional=True, batch_first=True), id="RNN-h0-bi"),
]


@BATCH.parametrize("kind, config", STATES)
def test_initial_states_as_inputs(kind, config):
    module = seeded(lambda: WithState(getattr(nn, kind)(5, 4, **config)))
    return assert_port_matches(module, (_seq(True), *_states(module.rnn, 2)))


UNBATCHED = [
    pytest.param(lambda: nn.Sequential(nn.LSTM(5, 4, num_layers=2)), (6, 5), id="LSTM-unbatched"),
    pytest.param(lambda: nn.Sequential(nn.GRU(5, 4, bidirectional=True)), (6, 5), id="GRU-unbatched-bi"),
    pytest.param(lambda: nn.Sequential(nn.RNNCell(5, 4)), (3, 5), id="RNNCell"),
    pytest.param(lambda: nn.Sequential(nn.RNNCell(5, 4, nonlinearity="relu", bias=False)), (3, 5), id="RNNCell-relu"),
    pytest.param(lambda: nn.Sequential(nn.LSTMCell(5, 4)), (3, 5), id="LSTMCell"),
    pytest.param(lambda: nn.Sequential(nn.GRUCell(5, 4)), (3, 5), id="GRUCell"),
    pytest.param(lambda: nn.Sequential(nn.GRUCell(5, 4, bias=False)), (5,), id="GRUCell-unbatched-nobias"),
]


@BATCH.parametrize("factory, shape", UNBATCHED)
def test_unbatched_and_cells(factory, shape):
    return assert_port_matches(seeded(factory), (randn(*shape),))


class CellLoop(nn.Module):
    """A hand-written time loop over an LSTMCell, as speech models often have."""

    def __init__(self):
        super().__init__()
        self.cell = nn.LSTMCell(5, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = c = torch.zeros(x.shape[0], 4)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return self.head(h)


def test_a_cell_called_in_a_python_loop():
    port = assert_port_matches(seeded(CellLoop), (randn(2, 6, 5),))
    assert port.source.count("self.cell(") == 6  # one call per traced step, all sharing one TF layer
    assert len(port.plan.layers["cell"].out_layouts) == 6


def test_the_lstm_key_accounting_uses_every_bias_once():
    module = seeded(lambda: nn.Sequential(nn.LSTM(5, 4, num_layers=2, bidirectional=True)))
    port = assert_port_matches(module, (_seq(False),))
    keys = module.state_dict().keys()
    assert set(port.keys.used) == set(keys) and port.keys.shared == {} and port.keys.unused == []
    assert port.keys.used["0.bias_ih_l1_reverse"] == port.keys.used["0.bias_hh_l1_reverse"] == "rnn_bias_sum"


@pytest.mark.node
def test_tfjs(node_or_skip):
    BATCH.assert_all_within()
