"""RNN, LSTM, GRU (stacked, bidirectional, batch_first, LSTM projections) and their cells.

The TF layers (bridge/layers/recurrent.py) keep torch's gate order and take the
same arguments as torch's forward: ``(input, hx=None)``, with ``hx = (h0, c0)``
for the LSTM. Inputs and outputs stay in torch's layout (time-major unless
batch_first); the outputs keep torch's structure, ``output, (h_n, c_n)``.
Dropout between layers is a training-time op: ignored, as in eval mode.
"""

from __future__ import annotations

from torch import nn

from .. import layout as lay
from .. import transforms as T
from ..plan import TensorMeta
from ..registry import LayerPlan, NotSupported, Weight, module_mapping


def torch_layouts(meta):
    """Identity layouts shaped like a module's output structure (None stays None)."""
    if isinstance(meta, TensorMeta):
        return lay.identity(len(meta.shape))
    if isinstance(meta, (list, tuple)):
        return type(meta)(torch_layouts(m) for m in meta)
    return None


def _as_torch(call) -> tuple:
    """Every tensor input in torch's own layout (the layers compute in it)."""
    return tuple(lay.identity(x.rank) for x in call.inputs)


def _layer_weights(m, k: int, sfx: str, gru: bool) -> dict[str, Weight]:
    w = {f"kernel_ih_l{k}{sfx}": Weight(f"weight_ih_l{k}{sfx}", T.RNN_KERNEL),
         f"kernel_hh_l{k}{sfx}": Weight(f"weight_hh_l{k}{sfx}", T.RNN_KERNEL)}
    if m.bias:
        w[f"bias_l{k}{sfx}"] = Weight((f"bias_ih_l{k}{sfx}", f"bias_hh_l{k}{sfx}"),
                                      T.GRU_BIAS if gru else T.RNN_BIAS_SUM)
    if getattr(m, "proj_size", 0):
        w[f"kernel_hr_l{k}{sfx}"] = Weight(f"weight_hr_l{k}{sfx}", T.LSTM_PROJ_KERNEL)
    return w


@module_mapping(nn.RNN, nn.LSTM, nn.GRU)
def recurrent(m, call):
    """Stacked RNN/LSTM/GRU as one TF layer with a while-loop over the (dynamic) sequence length."""
    if call.inputs[0].rank not in (2, 3):
        raise NotSupported(f"input of rank {call.inputs[0].rank}")
    kind = type(m).__name__ if type(m) in (nn.RNN, nn.LSTM, nn.GRU) else m.mode.split("_")[0]
    config = {"input_size": m.input_size, "hidden_size": m.hidden_size, "num_layers": m.num_layers,
              "bias": m.bias, "batch_first": m.batch_first, "bidirectional": m.bidirectional}
    if kind == "RNN":
        config["nonlinearity"] = m.nonlinearity
    if kind == "LSTM":
        config["proj_size"] = m.proj_size
    weights = {}
    for k in range(m.num_layers):
        for sfx in ("", "_reverse")[: 2 if m.bidirectional else 1]:
            weights.update(_layer_weights(m, k, sfx, kind == "GRU"))
    return LayerPlan(kind, config, weights, _as_torch(call), torch_layouts(call.out_meta))


@module_mapping(nn.RNNCell, nn.LSTMCell, nn.GRUCell)
def cell(m, call):
    """One time step; ``hx`` (or ``(h, c)``) optional as in torch."""
    kind = type(m).__name__
    config = {"input_size": m.input_size, "hidden_size": m.hidden_size, "bias": m.bias}
    if kind == "RNNCell":
        config["nonlinearity"] = m.nonlinearity
    weights = {"kernel_ih": Weight("weight_ih", T.RNN_KERNEL), "kernel_hh": Weight("weight_hh", T.RNN_KERNEL)}
    if m.bias:
        weights["bias"] = Weight(("bias_ih", "bias_hh"), T.GRU_BIAS if kind == "GRUCell" else T.RNN_BIAS_SUM)
    return LayerPlan(kind, config, weights, _as_torch(call), torch_layouts(call.out_meta))


MAPPINGS = (recurrent, cell)
