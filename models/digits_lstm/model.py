"""An LSTM classifier for the scikit-learn 8x8 handwritten digits, read row by row.

Input ``x``: float32 ``[batch, 8, 8]`` (batch_first ``[batch, time, features]``):
each image is a sequence of its 8 pixel rows (top to bottom), each row 8
features, pixel values scaled to ``[0, 1]`` (the raw 0..16 intensities divided
by 16, as in ``digits_cnn``). Output: ``[batch, 10]`` logits (no softmax).

Modules::

    lstm  LSTM(8, hidden, batch_first=True)   one layer, one direction
                                              -> output [batch, 8, hidden]
    head  Linear(hidden, 10)                  on output[:, -1] (last time step)

Note for converters: the LSTM returns ``(output, (h_n, c_n))``; the forward
keeps only ``output`` and takes its last time step with a slice, so it
exercises a tuple-returning module followed by indexing on the time axis.
For this one-layer, one-direction LSTM ``output[:, -1]`` equals ``h_n[0]``.
"""

import torch
from torch import nn


class DigitsLSTM(nn.Module):
    """One-layer LSTM over the 8 pixel rows, Linear head on the last step; returns logits."""

    def __init__(self, features: int = 8, hidden: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x)
        return self.head(output[:, -1])
