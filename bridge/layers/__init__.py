"""TF layers that mirror torch modules where Keras semantics differ.

The generated ``model_tf.py`` imports this package as ``L``. Each family lives in
its own file; the torch-side mapping that chooses a layer is in
``bridge/mappings/<same family>.py``.
"""

from .activation import (GELU, Identity, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh, gelu, hardsigmoid,
                         hardswish, mish, silu, softplus)
from .base import Layer, Namespace, keep_batch_reshape, parameter, record_outputs, tap
from .conv import Conv1d, Conv2d
from .linear import Embedding, Linear, lookup, matmul
from .norm import BatchNorm, LayerNorm, layer_norm, rms_norm, RMSNorm
from .padding import pad_axes, spatial_pad
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .shape import Flatten, take, take_along, take_nd, triangle
from .recurrent import *  # noqa: F401,F403  (each new family lists its names in __all__)
from .attention import *  # noqa: F401,F403

__all__ = [
    "AdaptiveAvgPool2d", "AvgPool2d", "BatchNorm", "Conv1d", "Conv2d", "Embedding", "Flatten", "GELU",
    "Identity", "Layer", "adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "matmul", "LayerNorm", "RMSNorm", "LeakyReLU", "Linear", "LogSoftmax", "MaxPool2d", "Namespace",
    "ReLU", "Sigmoid", "SiLU", "Softmax", "Tanh", "gelu", "keep_batch_reshape", "pad_axes",
    "parameter", "record_outputs", "silu", "spatial_pad", "tap",
    "hardsigmoid", "hardswish", "layer_norm", "lookup", "mish", "rms_norm", "softplus", "take", "take_along",
    "take_nd", "triangle",
]
