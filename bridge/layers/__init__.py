"""TF layers that mirror torch modules where Keras semantics differ.

The generated ``model_tf.py`` imports this package as ``L``. Each family lives in
its own file; the torch-side mapping that chooses a layer is in
``bridge/mappings/<same family>.py``.
"""

from .activation import (GELU, Identity, LeakyReLU, LogSoftmax, PReLU, ReLU, Sigmoid, SiLU, Softmax, Tanh, celu, elu,
                         gelu, glu, hardshrink, hardsigmoid, hardswish, log_sigmoid, mish, prelu, silu, softmax,
                         softplus, softshrink, threshold)
from .base import Layer, Module, Namespace, identifier, keep_batch_reshape, parameter, record_outputs, tap
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d, conv, conv_transpose
from .linear import Embedding, Linear, lookup, matmul
from .norm import (BatchNorm, CrossMapLRN2d, GroupNorm, InstanceNorm, LayerNorm, LocalResponseNorm, channel_norm,
                   group_norm, layer_norm, rms_norm, RMSNorm)
from .padding import pad_axes, spatial_pad
from .pooling import *  # noqa: F401,F403  (pooling lists its names in its __all__)
from .shape import (Flatten, channel_shuffle, einsum, linspace, pixel_shuffle, pixel_unshuffle, resample, roll, take,
                    take_along, take_nd, top_k, triangle)
from .recurrent import *  # noqa: F401,F403  (each new family lists its names in __all__)
from .attention import *  # noqa: F401,F403
from .misc import *  # noqa: F401,F403  (bilinear, norms, im2col/col2im, embedding_bag)

__all__ = [
    "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "conv", "conv_transpose",
    "CrossMapLRN2d", "GroupNorm", "InstanceNorm", "LocalResponseNorm", "channel_norm", "group_norm",
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm", "Conv1d", "Conv2d", "Embedding", "Flatten", "GELU",
    "Identity", "Layer", "Module", "identifier", "adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "matmul", "LayerNorm", "RMSNorm", "LeakyReLU", "Linear", "LogSoftmax", "MaxPool2d", "Namespace",
    "ReLU", "Sigmoid", "SiLU", "Softmax", "Tanh", "gelu", "keep_batch_reshape", "pad_axes",
    "parameter", "record_outputs", "silu", "spatial_pad", "tap",
    "hardsigmoid", "hardswish", "layer_norm", "lookup", "mish", "rms_norm", "softplus", "take", "take_along",
    "take_nd", "triangle", "einsum", "linspace", "roll", "top_k", "channel_shuffle", "pixel_shuffle", "pixel_unshuffle", "resample",
    "PReLU", "celu", "elu", "glu", "hardshrink", "log_sigmoid", "prelu", "softmax", "softshrink", "threshold",
]
