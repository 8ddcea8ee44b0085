"""Modules that are identities at inference: Dropout (eval mode) and Identity."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from ..registry import module_mapping, op_mapping
from ._util import stateless


@module_mapping(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
def identity(m, call):
    return stateless("Identity", call)


@op_mapping(F.dropout, "method:contiguous", "method:detach", "method:clone")
def identity_op(c):
    x = c.arg(0, "input")
    return c.alias(x, x.layout)


MAPPINGS = (identity, identity_op)
