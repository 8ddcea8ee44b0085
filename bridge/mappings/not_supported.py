"""torch.nn classes bridge refuses that belong to no layer family: training losses and abstract bases.

Each layer family lists its own unmapped classes in its ``NOT_SUPPORTED`` dict (with the
reason); tests/test_verdicts.py fails if a class has no verdict or two. To support one,
delete its entry there, add a mapping (or a DECOMPOSE entry) in the same family file and
a row in its family's test table.
"""

from __future__ import annotations

from torch import nn

_LOSS = "a training loss: it is not part of an inference graph (export the model without it)"

NOT_SUPPORTED = {
    **{cls: _LOSS for cls in (
        nn.BCELoss, nn.BCEWithLogitsLoss, nn.CTCLoss, nn.CosineEmbeddingLoss, nn.CrossEntropyLoss,
        nn.GaussianNLLLoss, nn.HingeEmbeddingLoss, nn.HuberLoss, nn.KLDivLoss, nn.L1Loss, nn.MSELoss,
        nn.MarginRankingLoss, nn.MultiLabelMarginLoss, nn.MultiLabelSoftMarginLoss, nn.MultiMarginLoss, nn.NLLLoss,
        nn.NLLLoss2d, nn.PoissonNLLLoss, nn.SmoothL1Loss, nn.SoftMarginLoss, nn.TripletMarginLoss,
        nn.TripletMarginWithDistanceLoss, nn.AdaptiveLogSoftmaxWithLoss,
        *([nn.LinearCrossEntropyLoss] if hasattr(nn, "LinearCrossEntropyLoss") else []))},
    nn.RNNBase: "an abstract base class: use nn.RNN, nn.LSTM or nn.GRU",
    nn.RNNCellBase: "an abstract base class: use nn.RNNCell, nn.LSTMCell or nn.GRUCell",
}
