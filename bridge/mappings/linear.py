"""Linear and Embedding, and F.embedding with a raw weight."""

from __future__ import annotations

import torch
from torch import nn

from .. import layout as lay
from .. import transforms as T
from ..registry import LayerPlan, NotSupported, Weight, module_mapping, op_mapping

A = torch.ops.aten


@module_mapping(nn.Linear)
def linear(m, call):
    x = call.inputs[0]
    kernel = T.LINEAR_KERNEL
    if isinstance(x.layout, lay.Flat):  # flatten kept in channels-last order: fold it into the rows
        want = x.layout
        kernel = T.linear_kernel_folded(x.layout.columns())
        out = lay.identity(2)
    elif x.layout.perm[-1] == x.rank - 1:  # features already last in TF: act there, keep the layout
        want = out = x.layout
    else:
        want = out = lay.identity(x.rank)
    weights = {"kernel": Weight("weight", kernel)}
    if m.bias is not None:
        weights["bias"] = Weight("bias", T.IDENTITY)
    config = {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}
    return LayerPlan("Linear", config, weights, (want,), out)


@module_mapping(nn.Embedding)
def embedding(m, call):
    if m.max_norm is not None:
        raise NotSupported("max_norm renormalizes weights during lookup")
    x = call.inputs[0]
    config = {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim}
    return LayerPlan("Embedding", config, {"embeddings": Weight("weight", T.IDENTITY)},
                     (lay.identity(x.rank),), lay.identity(x.rank + 1))


@op_mapping(A.embedding.default)
def embedding_op(c):
    """F.embedding(ids, weight) records embedding(weight, ids, padding_idx, ...): a row lookup."""
    weight, ids = c.arg(0, "weight"), c.arg(1, "indices")
    return c.out(f"L.lookup({c.tensor(weight, lay.identity(2))}, {c.tensor(ids, lay.identity(ids.rank))})",
                 lay.identity(ids.rank + 1))


MAPPINGS = (linear, embedding, embedding_op)
