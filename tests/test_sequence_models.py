"""Sequence models as people write them: taggers, transformer stacks (decomposed around the mapped
MultiheadAttention), position embeddings, masks and token ids; TF parity at two sequence lengths,
then every row in tfjs cpu and wasm in one batch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import bridge
from bridge.errors import BadInputError
from bridge.export import savedmodel

from _parity import assert_port_matches, randn, seeded
from _tfjs_batch import TfjsBatch

BATCH = TfjsBatch()
VOCAB = 40


def ids(n: int = 2, t: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, t), generator=torch.Generator().manual_seed(seed))


def padding(n: int = 2, t: int = 7) -> torch.Tensor:
    """int64 0/1 mask with padding at the end of the second row (1 = padded)."""
    mask = torch.zeros(n, t, dtype=torch.int64)
    mask[1, t - 2:] = 1
    return mask


class Tagger(nn.Module):
    """Embedding -> bidirectional LSTM -> self-attention with a padding mask -> Linear."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 16)
        self.lstm = nn.LSTM(16, 8, batch_first=True, bidirectional=True)
        self.att = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 5)

    def forward(self, tokens, pad):
        h, _ = self.lstm(self.emb(tokens))
        a, _ = self.att(h, h, h, key_padding_mask=pad.bool(), need_weights=False)
        return self.fc(a)


class Encoder(nn.Module):
    def __init__(self, norm_first=False, activation="relu", layers=2, position="learned"):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 16)
        self.position = position
        if position == "learned":
            self.pos = nn.Embedding(32, 16)
        else:
            self.register_buffer("table", sinusoids(32, 16))
        layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first,
                                           activation=activation)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, tokens, pad):
        x = self.emb(tokens)
        t = tokens.shape[1]
        x = x + (self.pos(torch.arange(t)) if self.position == "learned" else self.table[:t])
        return self.enc(x, src_key_padding_mask=pad.bool())


def sinusoids(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class CausalDecoderOnly(nn.Module):
    """A GPT-style stack from TransformerEncoderLayer with a causal mask built in forward()."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 16)
        self.layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=True,
                                                activation="gelu")
        self.head = nn.Linear(16, VOCAB)

    def forward(self, tokens):
        t = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(t)
        return self.head(self.layer(self.emb(tokens), src_mask=mask, is_causal=True))


class Seq2Seq(nn.Module):
    def __init__(self):
        super().__init__()
        self.t = nn.Transformer(16, 4, 1, 1, 32, dropout=0.0, batch_first=True)

    def forward(self, src, tgt):
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        return self.t(src, tgt, tgt_mask=mask, tgt_is_causal=True)


class Rotary(nn.Module):
    """Rotary position embedding written with basic tensor ops, then causal SDPA."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.qkv = nn.Linear(dim * heads, 3 * dim * heads)
        inv = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
        self.register_buffer("inv_freq", inv)

    def rotate(self, x, cos, sin):
        x1, x2 = x[..., : self.dim // 2], x[..., self.dim // 2:]
        return x * cos + torch.cat([-x2, x1], dim=-1) * sin

    def forward(self, x):
        n, t, _ = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, self.dim).permute(2, 0, 3, 1, 4)
        angles = torch.arange(t, dtype=torch.float32)[:, None] * self.inv_freq[None]
        emb = torch.cat([angles, angles], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        q, k = self.rotate(q, cos, sin), self.rotate(k, cos, sin)
        out = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return out.transpose(1, 2).reshape(n, t, self.heads * self.dim)


ROWS = [
    pytest.param(Tagger, lambda: (ids(), padding()), id="tagger-bilstm-mha-padding"),
    pytest.param(lambda: Encoder(), lambda: (ids(), padding()), id="encoder-post-norm-relu-learned-pos"),
    pytest.param(lambda: Encoder(norm_first=True, activation="gelu", position="sinusoidal"),
                 lambda: (ids(), padding()), id="encoder-pre-norm-gelu-sinusoidal"),
    pytest.param(CausalDecoderOnly, lambda: (ids(),), id="causal-decoder-only"),
    pytest.param(Seq2Seq, lambda: (randn(2, 6, 16), randn(2, 5, 16, seed=1)), id="transformer-seq2seq"),
    pytest.param(Rotary, lambda: (randn(2, 7, 16),), id="rotary-sdpa-causal"),
]


@BATCH.parametrize("factory, make_inputs", ROWS)
def test_sequence_model(factory, make_inputs):
    module = seeded(factory)
    inputs = make_inputs()
    port = assert_port_matches(module, inputs)
    # the sequence length is free in the exported signature, and parity checked a second length
    assert all(1 in free for free in port.dynamic_dims), port.notes
    n = inputs[0].shape[1]  # the traced length, a longer one and a quarter of it
    assert {x[0].shape[1] for x in port.parity_inputs()} == {n, n + 3, max(2, n // 4)}
    spec = savedmodel.input_specs(port)[0]
    assert spec.shape.as_list()[1] is None
    return port


def test_token_ids_are_int32_at_the_tfjs_boundary_and_overflow_is_refused():
    port = bridge.convert(seeded(Tagger), (ids(), padding()))
    assert [s.dtype.name for s in savedmodel.input_specs(port)] == ["int32", "int32"]
    feeds = savedmodel.feeds_for(port, (ids(), padding()))
    assert all(v.dtype.name == "int32" for v in feeds.values())
    too_big = ids().clone()
    too_big[0, 0] = 2 ** 31
    with pytest.raises(BadInputError, match="int32"):
        savedmodel.feeds_for(port, (too_big, padding()))


class ReturnsAttentionTuple(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.att(x, x, x, need_weights=False)  # (out, None), returned as it is


def test_a_none_inside_the_output_structure_is_kept():
    port = assert_port_matches(seeded(ReturnsAttentionTuple), (randn(2, 5, 8),))
    assert port.output_names == ["output_0"]
    out = port.tf_model(randn(2, 5, 8).numpy())
    assert isinstance(out, tuple) and len(out) == 2 and out[1] is None


@pytest.mark.node
def test_tfjs(node_or_skip):
    BATCH.assert_all_within()
