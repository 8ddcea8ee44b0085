"""Pure numpy weight transforms: a closed, named set, each stating its shape change.

A mapping always names the transform it uses; nothing here guesses from a
tensor's rank or name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Transform:
    """A pure function of one or more state_dict arrays (in the order the Weight lists its sources)."""

    name: str
    shape_change: str  # e.g. "PT (O,I,kh,kw) -> TF (kh,kw,I,O)"
    fn: Callable[..., np.ndarray] = field(repr=False, compare=False)
    arity: int = 1  # how many state_dict entries it combines (e.g. 2 for LSTM's b_ih + b_hh)

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        if len(arrays) != self.arity:
            raise TypeError(f"transform {self.name} takes {self.arity} array(s), got {len(arrays)}")
        out = self.fn(*arrays)
        return np.ascontiguousarray(out).reshape(np.shape(out))  # ascontiguousarray makes a 0-d array 1-d


IDENTITY = Transform("identity", "PT (...) -> TF (...) unchanged", lambda a: a)

LINEAR_KERNEL = Transform("linear_kernel", "PT (out,in) -> TF (in,out)", lambda a: a.T)

CONV2D_KERNEL = Transform("conv2d_kernel", "PT (O,I/g,kh,kw) -> TF (kh,kw,I/g,O)", lambda a: a.transpose(2, 3, 1, 0))

CONV1D_KERNEL = Transform("conv1d_kernel", "PT (O,I/g,k) -> TF (1,k,I/g,O)", lambda a: a.transpose(2, 1, 0)[None])


def depthwise_kernel(in_channels: int, spatial_rank: int) -> Transform:
    """Depthwise conv: torch output channel ``c*m + j`` is TF's (channel c, multiplier j)."""

    def fn(a: np.ndarray) -> np.ndarray:
        out = a.shape[0]
        spatial = a.shape[2:]
        w = a.reshape(in_channels, out // in_channels, *spatial)  # (C, m, *k)
        w = np.moveaxis(w, (0, 1), (-2, -1))  # (*k, C, m)
        return w[None] if spatial_rank == 1 else w

    shape = "PT (C*m,1,kh,kw) -> TF (kh,kw,C,m)" if spatial_rank == 2 else "PT (C*m,1,k) -> TF (1,k,C,m)"
    return Transform("depthwise_kernel", shape, fn)


def linear_kernel_folded(columns: np.ndarray) -> Transform:
    """Linear after a flatten kept in TF order: rows follow the stored column order."""
    return Transform(
        "linear_kernel_folded_flatten",
        "PT (out,in) -> TF (in,out), rows permuted to the channels-last flatten order",
        lambda a: a.T[columns],
    )


# ---------------------------------------------------------------- recurrent (RNN, LSTM, GRU and cells)
# Gate order stays torch's (LSTM i,f,g,o; GRU r,z,n); bridge/layers/recurrent.py reads it so.

RNN_KERNEL = Transform("rnn_kernel", "PT (G*H, in) -> TF (in, G*H), gate order kept", lambda a: a.T)

RNN_BIAS_SUM = Transform(
    "rnn_bias_sum", "PT b_ih (G*H,), b_hh (G*H,) -> TF (G*H,) = b_ih + b_hh", lambda b_ih, b_hh: b_ih + b_hh, arity=2
)


def _gru_bias(b_ih: np.ndarray, b_hh: np.ndarray) -> np.ndarray:
    """r and z gates take both biases before the sigmoid; n keeps b_in and b_hn apart (r scales h W_hn + b_hn)."""
    hidden = b_ih.shape[0] // 3
    return np.concatenate([b_ih[: 2 * hidden] + b_hh[: 2 * hidden], b_ih[2 * hidden:], b_hh[2 * hidden:]])


GRU_BIAS = Transform(
    "gru_bias", "PT b_ih (3H,), b_hh (3H,) -> TF (4H,) = [b_ir+b_hr, b_iz+b_hz, b_in, b_hn]", _gru_bias, arity=2
)

LSTM_PROJ_KERNEL = Transform("lstm_proj_kernel", "PT (proj, H) -> TF (H, proj)", lambda a: a.T)


# ---------------------------------------------------------------- attention (nn.MultiheadAttention)
# bridge/layers/attention.py splits the packed kernel and bias into q|k|v columns in that order.

MHA_IN_KERNEL = Transform("mha_in_kernel", "PT in_proj_weight (3E, E) -> TF (E, 3E), columns q|k|v", lambda a: a.T)

MHA_PROJ_KERNEL = Transform("mha_proj_kernel", "PT q/k/v_proj_weight (E, Ein) -> TF (Ein, E)", lambda a: a.T)

MHA_BIAS_KV = Transform("mha_bias_kv", "PT bias_k / bias_v (1, 1, E) -> TF (E,)", lambda a: a.reshape(-1))


# ---------------------------------------------------------------- conv (Conv3d, ConvTranspose1d/2d/3d)

CONV3D_KERNEL = Transform("conv3d_kernel", "PT (O,I/g,kd,kh,kw) -> TF (kd,kh,kw,I/g,O)",
                          lambda a: a.transpose(2, 3, 4, 1, 0))


def _dilate_kernel(a: np.ndarray, dilation: tuple[int, ...]) -> np.ndarray:
    """Insert d-1 zeros between kernel taps on each spatial axis (axes 2..): at dilation 1 it is the dilated kernel."""
    spatial = a.shape[2:]
    out = np.zeros(a.shape[:2] + tuple(d * (k - 1) + 1 for k, d in zip(spatial, dilation)), a.dtype)
    out[(slice(None), slice(None), *[slice(None, None, d) for d in dilation])] = a
    return out


def conv_transpose_kernel(dilation: tuple[int, ...]) -> Transform:
    """ConvTranspose: torch (I, O/g, *k) -> TF conv_transpose filter (*k', O/g, I), k' = d*(k-1)+1 with zeros
    between taps (tfjs's Conv2DBackpropInput has no dilation); a 1-D kernel gets a leading height axis of 1."""

    def fn(a: np.ndarray) -> np.ndarray:
        w = _dilate_kernel(a, dilation)
        w = np.moveaxis(w, (0, 1), (-1, -2))  # (*k', O/g, I)
        return w[None] if len(dilation) == 1 else w

    return Transform("conv_transpose_kernel", f"PT (I,O/g,*k) -> TF (*k',O/g,I), dilation {dilation} as zeros", fn)


def conv_transpose_as_conv_kernel(dilation: tuple[int, ...], groups: int) -> Transform:
    """ConvTranspose run as a plain conv over the zero-stuffed input: torch (I, O/g, *k) -> TF conv filter
    (*k', I/g, O) with the taps flipped, k' = d*(k-1)+1 (zeros between taps), group j's outputs in columns j*O/g..."""

    def fn(a: np.ndarray) -> np.ndarray:
        w = _dilate_kernel(a, dilation)  # (I, O/g, *k')
        w = np.flip(w, axis=tuple(range(2, w.ndim)))
        in_g, out_g, spatial = w.shape[0] // groups, w.shape[1], w.shape[2:]
        w = w.reshape(groups, in_g, out_g, *spatial)
        w = np.moveaxis(w, (0, 1, 2), (-2, -3, -1))  # (*k', I/g, g, O/g)
        return w.reshape(*spatial, in_g, groups * out_g)

    return Transform("conv_transpose_as_conv_kernel",
                     f"PT (I,O/g,*k) -> TF (*k' flipped,I/g,O), dilation {dilation} as zeros, {groups} group(s)", fn)
