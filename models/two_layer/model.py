"""A two-layer dense ReLU network: 3 inputs -> 3 hidden units -> 2 outputs.

    y = out(relu(hidden(x)))

Input ``x`` has shape ``[batch, 3]``; the output has shape ``[batch, 2]``.
State-dict keys: ``hidden.weight`` ``[3, 3]``, ``hidden.bias`` ``[3]``,
``out.weight`` ``[2, 3]``, ``out.bias`` ``[2]`` (torch ``Linear`` weights are
stored ``[out_features, in_features]``, i.e. transposed relative to a Keras
``Dense`` kernel).
"""

import torch
from torch import nn


class TwoLayer(nn.Module):
    """Dense(3 -> 3) -> ReLU -> Dense(3 -> 2)."""

    def __init__(self, in_features: int = 3, hidden_features: int = 3, out_features: int = 2) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, hidden_features)
        self.act = nn.ReLU()
        self.out = nn.Linear(hidden_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(x)))
