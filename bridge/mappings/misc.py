"""Identities at inference (Dropout in eval mode, Identity, copies and detaches) and dtype casts."""

from __future__ import annotations

import torch
from torch import nn

from ..registry import NotSupported, module_mapping, op_mapping

A = torch.ops.aten
from ._util import stateless


@module_mapping(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
def identity(m, call):
    return stateless("Identity", call)


@op_mapping(A.contiguous.default, A.clone.default, A.alias.default, A.detach.default, A.detach_.default,
            A.lift_fresh_copy.default)
def identity_op(c):
    x = c.arg(0, "self")
    return c.alias(x, x.layout)


@op_mapping(A.dropout.default, A.feature_dropout.default, A.alpha_dropout.default)
def dropout_op(c):
    x = c.arg(0, "input")
    if c.arg(2, "train", False):
        raise NotSupported("dropout in training mode (call model.eval() first)")
    return c.alias(x, x.layout)


@op_mapping(A.to.dtype, A._to_copy.default, A.to.dtype_layout)
def cast(c):
    """x.float(), x.to(dtype): a tf.cast when the dtype changes, else nothing."""
    x = c.arg(0, "self")
    if c.out_meta.dtype == x.dtype:
        return c.alias(x, x.layout)
    return c.out(f"tf.cast({c.tensor(x, x.layout)}, {c.render(c.out_meta.dtype)})", x.layout)


MAPPINGS = (identity, identity_op, dropout_op, cast)
