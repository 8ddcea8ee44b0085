"""Modules that are traced through rather than mapped as one layer: containers,
and composites built from mapped layers (the transformer stacks, whose attention
is the mapped ``nn.MultiheadAttention``). Their ATen ops are translated by the
op mappings, and per-module parity is still reported at their paths."""

from __future__ import annotations

from torch import nn

DECOMPOSE = {
    nn.Sequential: "container: its children are converted in order",
    nn.ModuleList: "container",
    nn.ModuleDict: "container",
    nn.ParameterList: "container of parameters read in forward()",
    nn.ParameterDict: "container of parameters read in forward()",
    nn.Module: "the base class: user code is traced through",
    nn.Container: "deprecated container base class",
    nn.DataParallel: "on CPU it only calls the wrapped module",
    nn.TransformerEncoderLayer: "self-attention (nn.MultiheadAttention), Linear, LayerNorm, activation and residual ops",
    nn.TransformerDecoderLayer: "self- and cross-attention (nn.MultiheadAttention), Linear, LayerNorm, activation",
    nn.TransformerEncoder: "a stack of TransformerEncoderLayer (+ optional norm)",
    nn.TransformerDecoder: "a stack of TransformerDecoderLayer (+ optional norm)",
    nn.Transformer: "encoder and decoder stacks",
}
