"""Linear regression with two slopes and one intercept, written with raw parameters.

    y = x[..., 0] * slope[0] + x[..., 1] * slope[1] + intercept

Input ``x`` has shape ``[batch, 2]``; the output has shape ``[batch, 1]``.

The parameters are bare ``nn.Parameter`` tensors rather than an ``nn.Linear``,
so a converter has to trace the elementwise multiply, the ``sum`` over the last
axis with ``keepdim=True`` and the broadcast add instead of matching a known
layer type. State-dict keys: ``slope`` (shape ``[2]``) and ``intercept``
(shape ``[1]``).
"""

import torch
from torch import nn


class LinearRegression(nn.Module):
    """``y = sum(slope * x, dim=-1, keepdim=True) + intercept``."""

    def __init__(self) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.zeros(2))
        self.intercept = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.slope).sum(dim=-1, keepdim=True) + self.intercept
