"""torch.nn classes bridge refuses, each with its reason, written down on purpose.

A class here is reported before anything is traced, together with every other
unsupported part of the model. To support one, delete its line here and add a
mapping (or a DECOMPOSE entry) in its family file and a row in its family's
test table; tests/test_verdicts.py fails if a class has no verdict or two.
"""

from __future__ import annotations

from torch import nn

_LOSS = "a training loss: it is not part of an inference graph (export the model without it)"
_NOT_YET = "no TF mapping yet"

NOT_SUPPORTED = {
    # ---- losses
    **{cls: _LOSS for cls in (
        nn.BCELoss, nn.BCEWithLogitsLoss, nn.CTCLoss, nn.CosineEmbeddingLoss, nn.CrossEntropyLoss,
        nn.GaussianNLLLoss, nn.HingeEmbeddingLoss, nn.HuberLoss, nn.KLDivLoss, nn.L1Loss, nn.MSELoss,
        nn.MarginRankingLoss, nn.MultiLabelMarginLoss, nn.MultiLabelSoftMarginLoss, nn.MultiMarginLoss, nn.NLLLoss,
        nn.NLLLoss2d, nn.PoissonNLLLoss, nn.SmoothL1Loss, nn.SoftMarginLoss, nn.TripletMarginLoss,
        nn.TripletMarginWithDistanceLoss, nn.AdaptiveLogSoftmaxWithLoss,
        *([nn.LinearCrossEntropyLoss] if hasattr(nn, "LinearCrossEntropyLoss") else []))},
    # ---- abstract bases and training-only modules
    nn.RNNBase: "an abstract base class: use nn.RNN, nn.LSTM or nn.GRU",
    nn.RNNCellBase: "an abstract base class: use nn.RNNCell, nn.LSTMCell or nn.GRUCell",
    nn.SyncBatchNorm: "distributed training only: replace it with the nn.BatchNorm of its rank (same state_dict) "
                      "before converting",
    nn.RReLU: "random negative slope; in eval mode it is LeakyReLU((lower+upper)/2), which has no mapping here yet",
    nn.FractionalMaxPool2d: "random pooling regions: no deterministic TF equivalent",
    nn.FractionalMaxPool3d: "random pooling regions: no deterministic TF equivalent",
    # ---- layers still to map (issue: every torch.nn layer accounted for)
    **{cls: _NOT_YET for cls in (
        nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
        nn.AvgPool1d, nn.AvgPool3d, nn.BatchNorm3d, nn.Bilinear, nn.CELU, nn.ChannelShuffle, nn.CircularPad1d,
        nn.CircularPad2d, nn.CircularPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d, nn.Conv3d,
        nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.CosineSimilarity, nn.CrossMapLRN2d,
        nn.Dropout3d, nn.ELU, nn.EmbeddingBag, nn.FeatureAlphaDropout, nn.Fold, nn.GLU, nn.GroupNorm,
        nn.Hardshrink, nn.Hardsigmoid, nn.Hardswish, nn.Hardtanh, nn.InstanceNorm1d, nn.InstanceNorm2d,
        nn.InstanceNorm3d, nn.LPPool1d, nn.LPPool2d, nn.LPPool3d, nn.LocalResponseNorm, nn.LogSigmoid,
        nn.MaxPool1d, nn.MaxPool3d, nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d, nn.Mish, nn.PReLU,
        nn.PairwiseDistance, nn.PixelShuffle, nn.PixelUnshuffle, nn.ReLU6, nn.ReflectionPad1d,
        nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ReplicationPad3d,
        nn.SELU, nn.Softmax2d, nn.Softmin, nn.Softplus, nn.Softshrink, nn.Softsign, nn.Tanhshrink, nn.Threshold,
        nn.Unflatten, nn.Unfold, nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d, nn.ZeroPad1d,
        nn.ZeroPad2d, nn.ZeroPad3d, nn.LazyBatchNorm3d, nn.LazyConv3d, nn.LazyConvTranspose1d,
        nn.LazyConvTranspose2d, nn.LazyConvTranspose3d, nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d,
        nn.LazyInstanceNorm3d)},
}
