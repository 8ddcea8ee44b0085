"""A small CNN for the scikit-learn 8x8 handwritten digits (10 classes).

Input ``x``: float32 ``[batch, 1, 8, 8]`` (NCHW), pixel values scaled to
``[0, 1]`` (the raw 0..16 intensities divided by 16). Output: ``[batch, 10]``
logits (no softmax).

The layer mix is chosen to exercise a torch -> TF converter, not to be the
best digits model:

``features`` (module paths ``features.0`` .. ``features.12``)::

    0  Conv2d(1, c1, 3, padding=1)                    8x8 -> 8x8, zero padding
    1  BatchNorm2d(c1)
    2  ReLU
    3  Conv2d(c1, c1, 3, padding=1, groups=c1,         depthwise conv with
              padding_mode="reflect")                  reflect padding
    4  BatchNorm2d(c1)
    5  ReLU
    6  Conv2d(c1, c2, 1)                               pointwise (1x1) conv
    7  BatchNorm2d(c2)
    8  ReLU
    9  MaxPool2d(2)                                    8x8 -> 4x4
    10 Conv2d(c2, c2, 3)                               no padding, 4x4 -> 2x2
    11 BatchNorm2d(c2)
    12 ReLU

``classifier`` (``classifier.0`` .. ``classifier.5``)::

    0  Flatten                                         NCHW order: c2 * 2 * 2
    1  Dropout(p)
    2  Linear(c2 * 4, hidden)
    3  ReLU
    4  Dropout(p)
    5  Linear(hidden, 10)

Note for converters: ``Flatten`` runs on an NCHW tensor, so the first
classifier ``Linear`` expects features in channel-major order; an NHWC graph
has to transpose before flattening (or permute that Linear's weight rows).
"""

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Conv/BN/ReLU feature extractor plus an MLP head; returns logits."""

    def __init__(
        self,
        c1: int = 16,
        c2: int = 32,
        hidden: int = 64,
        num_classes: int = 10,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=3, padding=1),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.Conv2d(c1, c1, kernel_size=3, padding=1, groups=c1, padding_mode="reflect"),
            nn.BatchNorm2d(c1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=1),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c2, c2, kernel_size=3),
            nn.BatchNorm2d(c2),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c2 * 2 * 2, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
