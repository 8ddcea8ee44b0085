"""Attention: F.scaled_dot_product_attention (op mapping -> L.sdpa) and nn.MultiheadAttention
(L.MultiheadAttention, first directly against torch with weights copied by the mapping's own
bindings, then through convert()). Every row asserts max abs error <= 1e-5 * max(1, max|torch|);
NaN positions (torch's fully masked rows on its softmax paths) must match exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import torch
import torch.nn.functional as F
from torch import nn

import bridge
import bridge.layers as L
from bridge.errors import UnsupportedError
from bridge.mappings.attention import mha_config, mha_fast_path, mha_weights
from _parity import ATOL, Fn, Fn2, assert_port_matches, randn, seeded
from _tfjs_batch import TfjsBatch

BATCH = TfjsBatch()

H, E = 2, 4  # heads and head dim of the SDPA rows; sequences: L = 5 queries, S = 7 keys


class Masked(nn.Module):
    """SDPA with a fixed mask buffer ``m``: fn(self, q, kv)."""

    def __init__(self, fn, mask: torch.Tensor):
        super().__init__()
        self.fn = fn
        self.register_buffer("m", mask)

    def forward(self, q, kv):
        return self.fn(self, q, kv)


def _bool_mask(*shape, seed=3, dead_row: int | None = None) -> torch.Tensor:
    m = torch.rand(shape, generator=torch.Generator().manual_seed(seed)) > 0.4
    if dead_row is not None:
        m[..., dead_row, :] = False  # no key may be attended: torch gives zeros there
    return m


def _float_mask(*shape, seed=4, dead_row: int | None = None) -> torch.Tensor:
    m = randn(*shape, seed=seed)
    if dead_row is not None:
        m[..., dead_row, :] = float("-inf")
    return m


sdpa = F.scaled_dot_product_attention
Q, KV = randn(2, H, 5, E), randn(2, H, 7, E, seed=1)

SDPA_CASES = [
    pytest.param(Fn(lambda s, x: sdpa(x, x, x)), (Q,), id="self"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv)), (Q, KV), id="cross-L5-S7"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv[..., :3])), (Q, KV), id="value-dim-3"),
    pytest.param(Fn(lambda s, x: sdpa(x, x, x, is_causal=True)), (Q,), id="causal"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv, is_causal=True)), (Q, KV), id="causal-L5-S7"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(kv, q, q, is_causal=True)), (Q, KV), id="causal-L7-S5"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv, scale=0.25)), (Q, KV), id="scale"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv, is_causal=True, scale=1.5)), (Q, KV), id="causal-scale"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _bool_mask(5, 7, dead_row=2)),
                 (Q, KV), id="bool-2d-dead-row"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _bool_mask(1, H, 5, 7)),
                 (Q, KV), id="bool-4d"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _bool_mask(H, 1, 7)),
                 (Q, KV), id="bool-3d-broadcast-rows"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _float_mask(5, 7)),
                 (Q, KV), id="float-2d"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m), _float_mask(1, H, 5, 7, dead_row=4)),
                 (Q, KV), id="float-4d-inf-row"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m, scale=0.5), _float_mask(1, 7)),
                 (Q, KV), id="float-row-broadcast-scale"),
    pytest.param(Fn2(lambda s, q, pad: sdpa(q, q, q, attn_mask=pad[:, None, None, :])),
                 (Q, torch.tensor([[True, False, True, True, False], [False] * 5])), id="bool-input-padding"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q.flatten(0, 1), kv.flatten(0, 1), kv.flatten(0, 1))), (Q, KV),
                 id="rank3"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv[:, :1], kv[:, :1], enable_gqa=True)), (randn(2, 4, 5, E), KV),
                 id="gqa-4-over-1"),
    pytest.param(Fn2(lambda s, q, kv: sdpa(q, kv, kv, is_causal=True, enable_gqa=True)), (randn(2, 4, 5, E), KV),
                 id="gqa-4-over-2-causal"),
    pytest.param(Masked(lambda s, q, kv: sdpa(q, kv, kv, attn_mask=s.m, enable_gqa=True), _bool_mask(5, 7, dead_row=0)),
                 (randn(2, 4, 5, E), KV), id="gqa-bool-mask"),
]


@BATCH.parametrize("module, inputs", SDPA_CASES)
def test_sdpa_matches_torch(module, inputs):
    return assert_port_matches(seeded(lambda: module), inputs)


def test_sdpa_dead_rows_are_zero_like_torch():
    """torch's safe softmax: a row no key may attend is 0 (not NaN); TF must give the same."""
    mask = _bool_mask(5, 7, dead_row=2)
    ref = sdpa(Q, KV, KV, attn_mask=mask)
    got = L.sdpa(Q.numpy(), KV.numpy(), KV.numpy(), attn_mask=mask.numpy()).numpy()
    assert np.all(ref[:, :, 2].numpy() == 0) and np.all(got[:, :, 2] == 0)
    assert np.max(np.abs(got - ref.numpy())) <= ATOL * max(1.0, float(ref.abs().max()))


def test_sdpa_refuses_dropout():
    """F.scaled_dot_product_attention drops out even in eval mode: refused, with the value named."""
    with pytest.raises(UnsupportedError, match="dropout_p=0.1"):
        bridge.convert(Fn2(lambda s, q, kv: sdpa(q, kv, kv, dropout_p=0.1)), (Q, KV))


def test_sdpa_two_sequence_lengths_one_graph():
    """One traced TF function with unknown L and S runs lengths 5 and 9 (and the causal mask follows)."""
    port = assert_port_matches(Fn2(lambda s, q, kv: sdpa(q, kv, kv, is_causal=True)), (Q, KV))
    spec = tf.TensorSpec([None, H, None, E], tf.float32)
    fn = tf.function(port.tf_model.__call__, input_signature=[spec, spec])
    for length in (5, 9):
        q, kv = randn(2, H, length, E, seed=length), randn(2, H, length + 2, E, seed=length + 1)
        ref = sdpa(q, kv, kv, is_causal=True).numpy()
        got = fn(q.numpy(), kv.numpy()).numpy()
        assert np.max(np.abs(got - ref)) <= ATOL * max(1.0, float(np.max(np.abs(ref))))


# ---------------------------------------------------------------- nn.MultiheadAttention, the TF layer itself
N, LQ, S = 3, 5, 6  # batch, query length, key length of the MHA rows


def mha_module(embed_dim=8, num_heads=2, **kwargs) -> nn.MultiheadAttention:
    """torch's init, but biases (zero at init) and bias_k/bias_v random so a dropped one shows."""
    torch.manual_seed(0)
    m = nn.MultiheadAttention(embed_dim, num_heads, **kwargs).eval()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "bias" in name:
                p.normal_(0.0, 0.5)
    return m


def tf_twin(m: nn.MultiheadAttention, fast_path: bool) -> L.MultiheadAttention:
    """L.MultiheadAttention filled through the mapping's bindings; every state_dict key is used exactly once."""
    layer = L.MultiheadAttention(path="att", **mha_config(m, fast_path))
    state = m.state_dict()
    weights = mha_weights(m)
    assert sorted(w.source for w in weights.values()) == sorted(state)
    for attr, w in weights.items():
        getattr(layer, attr).assign(w.transform(state[w.source].numpy()))
    return layer


def _seq(length, dim, cfg, unbatched, seed):
    shape = (length, dim) if unbatched else (N, length, dim) if cfg.get("batch_first") else (length, N, dim)
    return randn(*shape, seed=seed)


def _padding(length=S, dead=False, unbatched=False, float_mask=False, seed=5):
    """(N, S) or (S,) key padding, True = ignore; key 0 is kept unless ``dead`` pads all of batch element 1."""
    shape = (length,) if unbatched else (N, length)
    if float_mask:
        return _float_mask(*shape, seed=seed)
    m = ~_bool_mask(*shape, seed=seed)
    m[..., 0] = False
    if dead:
        m[1] = True
    return m


def _attn(rows, cols, heads=0, dead_row=None, float_mask=False, seed=6):
    """attn_mask (L, S) or (heads, L, S); True = may not attend; ``dead_row`` is masked everywhere."""
    shape = (heads, rows, cols) if heads else (rows, cols)
    if float_mask:
        return _float_mask(*shape, seed=seed, dead_row=dead_row)
    m = ~_bool_mask(*shape, seed=seed) & ~torch.eye(rows, cols, dtype=torch.bool)
    if dead_row is not None:
        m[..., dead_row, :] = True
    return m


CAUSAL = torch.ones(LQ, LQ, dtype=torch.bool).triu(1)  # nn.Transformer.generate_square_subsequent_mask as bool
BF, SELF, UNB = {"batch_first": True}, "self", "unbatched"

# (module config, call kwargs, input kinds); "self": query is key is value (torch's fast path may apply)
MHA_CASES = [
    pytest.param({}, {}, (), id="seq-first-cross"),
    pytest.param(BF, {}, (), id="batch-first-cross"),
    pytest.param(BF, {}, (SELF,), id="batch-first-self-fast-path"),
    pytest.param(BF, {"key_padding_mask": _padding(LQ, dead=True), "need_weights": False},
                 (SELF,), id="fast-path-dead-batch-nan"),
    pytest.param(BF, {"attn_mask": _attn(LQ, LQ, dead_row=3)}, (SELF,), id="fast-path-attn-mask-dead-row"),
    pytest.param({"embed_dim": 6, "num_heads": 3, **BF},
                 {"key_padding_mask": _padding(LQ, dead=True), "need_weights": False}, (SELF,),
                 id="odd-heads-sdpa-dead-batch-zero"),
    pytest.param({}, {"key_padding_mask": _padding(LQ, dead=True)}, (SELF,), id="seq-first-self-weights-nan"),
    pytest.param({"kdim": 5, "vdim": 3}, {"key_padding_mask": _padding()}, (), id="kdim-vdim"),
    pytest.param({"kdim": 5, "vdim": 3, **BF}, {"need_weights": False, "attn_mask": _attn(LQ, S)}, (),
                 id="kdim-vdim-batch-first-sdpa"),
    pytest.param({"add_bias_kv": True, "add_zero_attn": True},
                 {"key_padding_mask": _padding(), "attn_mask": _attn(LQ, S, heads=N * 2, float_mask=True)}, (),
                 id="bias-kv-zero-attn-3d-float-mask",  # torch warns that the two mask dtypes differ: intended
                 marks=pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")),
    pytest.param({"add_bias_kv": True}, {"need_weights": False, "attn_mask": _attn(LQ, S, dead_row=1)}, (),
                 id="bias-kv-sdpa"),
    pytest.param({}, {}, (UNB,), id="unbatched"),
    pytest.param({"add_zero_attn": True}, {"key_padding_mask": _padding(unbatched=True),
                                           "attn_mask": _attn(LQ, S, heads=2)}, (UNB,),
                 id="unbatched-3d-mask-padding"),
    pytest.param(BF, {"average_attn_weights": False, "attn_mask": _attn(LQ, S, float_mask=True)}, (),
                 id="per-head-weights"),
    pytest.param({}, {"attn_mask": CAUSAL, "is_causal": True, "need_weights": False}, (SELF,), id="is-causal-sdpa"),
    pytest.param({"add_bias_kv": True, "add_zero_attn": True},
                 {"attn_mask": _attn(LQ, LQ), "is_causal": True, "need_weights": False}, (SELF,),
                 id="is-causal-replaces-mask-top-left"),
    pytest.param(BF, {"attn_mask": _attn(LQ, LQ), "is_causal": True, "need_weights": False}, (SELF,),
                 id="fast-path-ignores-is-causal"),
    pytest.param({}, {"attn_mask": CAUSAL, "is_causal": True, "key_padding_mask": _padding(LQ),
                      "need_weights": False}, (SELF,), id="is-causal-with-padding-uses-mask"),
    pytest.param({"bias": False}, {"key_padding_mask": _padding(float_mask=True)}, (), id="no-bias-float-padding"),
]


def _mha_inputs(m, cfg, kinds):
    unbatched, self_attention = UNB in kinds, SELF in kinds
    query = _seq(LQ, m.embed_dim, cfg, unbatched, seed=10)
    if self_attention:
        return query, query, query
    return query, _seq(S, m.kdim, cfg, unbatched, seed=11), _seq(S, m.vdim, cfg, unbatched, seed=12)


def _assert_close(got, ref):
    got, ref = np.asarray(got), ref.numpy()
    assert got.shape == ref.shape
    assert np.array_equal(np.isnan(got), np.isnan(ref)), "NaN positions differ"
    finite = ~np.isnan(ref)
    bound = ATOL * max(1.0, float(np.max(np.abs(ref[finite]), initial=0.0)))
    assert np.max(np.abs(got[finite] - ref[finite]), initial=0.0) <= bound


def _run_mha(cfg, call, kinds):
    m = mha_module(**cfg)
    query, key, value = _mha_inputs(m, cfg, kinds)
    masks = [v for v in call.values() if isinstance(v, torch.Tensor)]
    fast = mha_fast_path(m, query.dim() == 3, SELF in kinds, any(v.is_floating_point() for v in masks))
    with torch.no_grad():
        ref_out, ref_w = m(query, key, value, **call)
    layer = tf_twin(m, fast)
    tf_call = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in call.items()}
    out, weights = layer(query.numpy(), key.numpy(), value.numpy(), **tf_call)
    return (out, weights), (ref_out, ref_w), fast


@pytest.mark.parametrize("cfg, call, kinds", MHA_CASES)
def test_mha_layer_matches_torch(cfg, call, kinds):
    (out, weights), (ref_out, ref_w), _ = _run_mha(cfg, call, kinds)
    _assert_close(out, ref_out)
    assert (weights is None) == (ref_w is None)
    if ref_w is not None:
        _assert_close(weights, ref_w)


@pytest.mark.parametrize("row, fast, nan_rows", [("fast-path-dead-batch-nan", True, True),
                                                 ("odd-heads-sdpa-dead-batch-zero", False, False),
                                                 ("seq-first-self-weights-nan", False, True)])
def test_mha_dead_rows_follow_torch_path(row, fast, nan_rows):
    """The table's fully padded batch element: NaN on torch's softmax paths, finite on its SDPA path."""
    case = next(p for p in MHA_CASES if p.id == row)
    (out, _), (ref_out, _), took_fast = _run_mha(*case.values)
    assert took_fast == fast
    dead = ref_out[1] if case.values[0].get("batch_first") else ref_out[:, 1]
    assert bool(torch.isnan(dead).all()) == nan_rows and not (nan_rows is False and torch.isnan(ref_out).any())


def test_mha_layer_two_sequence_lengths_one_graph():
    """One tf.function with unknown batch and lengths serves L=5 and L=9 (self-attention with padding)."""
    m = mha_module(add_bias_kv=True)
    layer = tf_twin(m, fast_path=False)
    spec = tf.TensorSpec([None, None, 8], tf.float32)
    fn = tf.function(lambda x, pad: layer(x, x, x, key_padding_mask=pad)[0],
                     input_signature=[spec, tf.TensorSpec([None, None], tf.bool)])
    for length in (5, 9):
        x, pad = randn(length, N, 8, seed=length), _bool_mask(N, length, seed=length) & (torch.arange(length) > 0)
        with torch.no_grad():
            ref, _ = m(x, x, x, key_padding_mask=pad)
        _assert_close(fn(x.numpy(), pad.numpy()), ref)


# ---------------------------------------------------------------- nn.MultiheadAttention through convert()


class Att(nn.Module):
    """``fn(self, *inputs)`` around one nn.MultiheadAttention ``self.att`` built by ``mha_module(**cfg)``."""

    def __init__(self, fn, buffers=None, **cfg):
        super().__init__()
        self.fn, self.att = fn, mha_module(**cfg)
        for name, value in (buffers or {}).items():
            self.register_buffer(name, value)

    def forward(self, *inputs):
        return self.fn(self, *inputs)


PAD = _padding(LQ)  # (N, LQ) key padding fed as a model input; parity's random inputs pad whole rows too
SEQ_FIRST, BATCH_FIRST = randn(LQ, N, 8, seed=20), randn(N, LQ, 8, seed=21)

MHA_PORT_CASES = [
    pytest.param(Att(lambda s, h: s.att(h, h, h, need_weights=False)[0], batch_first=True), (BATCH_FIRST,),
                 id="self-fast-path-output-only"),
    pytest.param(Att(lambda s, h, pad: s.att(h, h, h, key_padding_mask=pad, need_weights=False)[0],
                     batch_first=True), (BATCH_FIRST, PAD), id="self-padding-input-fast-path"),
    pytest.param(Att(lambda s, h, pad: s.att(h, h, h, key_padding_mask=pad)), (SEQ_FIRST, PAD),
                 id="self-seq-first-padding-both-outputs"),
    pytest.param(Att(lambda s, q, kv: s.att(q, kv, kv[..., :3], attn_mask=s.m, average_attn_weights=False),
                     {"m": _attn(LQ, S)}, kdim=5, vdim=3), (SEQ_FIRST, randn(S, N, 5, seed=22)),
                 id="cross-kdim-vdim-seq-first-per-head-weights"),
    pytest.param(Att(lambda s, q, kv: s.att(q, kv, kv, attn_mask=s.m, need_weights=False)[0], {"m": _attn(LQ, S)},
                     kdim=5, vdim=5, batch_first=True), (BATCH_FIRST, randn(N, S, 5, seed=23)),
                 id="cross-kdim-batch-first"),
    pytest.param(Att(lambda s, h: s.att(h, h, h, attn_mask=s.m, is_causal=True, need_weights=False)[0],
                     {"m": CAUSAL}, add_bias_kv=True, add_zero_attn=True), (SEQ_FIRST,),
                 id="causal-bias-kv-zero-attn"),
    pytest.param(Att(lambda s, h: s.att(h, h, h, attn_mask=s.m), {"m": _attn(LQ, LQ, heads=2, float_mask=True)},
                     num_heads=2), (randn(LQ, 8, seed=24),), id="unbatched-3d-float-mask"),
    pytest.param(Fn2(lambda s, x, pad: s.tel(x, src_key_padding_mask=pad),
                     tel=nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True, dropout=0.0)),
                 (BATCH_FIRST, PAD), id="transformer-encoder-layer"),
]


@BATCH.parametrize("module, inputs", MHA_PORT_CASES)
def test_mha_port_matches_torch(module, inputs):
    return assert_port_matches(seeded(lambda: module), inputs)


def test_mha_port_two_sequence_lengths_one_graph():
    """The generated model in one tf.function with unknown lengths: L = 5 and L = 9 against torch."""
    module = seeded(lambda: Att(lambda s, h, pad: s.att(h, h, h, key_padding_mask=pad)[0], add_bias_kv=True))
    port = assert_port_matches(module, (SEQ_FIRST, PAD))
    fn = tf.function(port.tf_model.__call__, input_signature=[tf.TensorSpec([None, None, 8], tf.float32),
                                                             tf.TensorSpec([None, None], tf.bool)])
    for length in (5, 9):
        x, pad = randn(length, N, 8, seed=length), _padding(length, seed=length)
        with torch.no_grad():
            ref = module(x, pad)
        _assert_close(fn(x.numpy(), pad.numpy()), ref)


class TwoAttentions(nn.Module):
    """Two stacked self-attentions of one shape: export shares their sizes (batch*heads) between them."""

    def __init__(self, **cfg):
        super().__init__()
        self.a, self.b = mha_module(**cfg), mha_module(**cfg)

    def forward(self, h, pad):
        x = self.a(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        return self.b(x, x, x, need_weights=False)[0]


def test_two_attention_modules_share_sizes():
    assert_port_matches(seeded(lambda: TwoAttentions(batch_first=True)), (BATCH_FIRST, PAD))


def test_fast_path_fully_padded_example():
    """A fully padded sequence in the example itself: torch's fast path gives NaN there, and so does TF."""
    module = Att(lambda s, h, pad: s.att(h, h, h, key_padding_mask=pad, need_weights=False)[0], batch_first=True)
    port = assert_port_matches(seeded(lambda: module), (BATCH_FIRST, _padding(LQ, dead=True)))
    out = np.asarray(port.tf_model(BATCH_FIRST.numpy(), _padding(LQ, dead=True).numpy()))
    assert np.isnan(out[1]).all() and not np.isnan(out[[0, 2]]).any()


# ---------------------------------------------------------------- tfjs (node: cpu and wasm)
TFJS_ATOL = 1e-4  # TF vs tfjs float32 kernels differ by ~1e-6 (TOOLCHAIN-NOTES); the project's export bound


class AttentionZoo(nn.Module):
    """Representative attention forms in one model, so one tfjs conversion checks them all.

    SDPA: causal with L < S and L > S, a bool mask with a dead row, a float 4-D mask with scale,
    GQA 4 heads over 2, a bool padding input. MHA: batch-first self-attention with the padding
    input (torch's fast path), cross-attention with kdim/vdim, bias_kv, zero_attn, a bool mask and
    both outputs, and seq-first is_causal self-attention (SDPA's causal mask).
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("bool_mask", _bool_mask(5, 7, dead_row=2))
        self.register_buffer("float_mask", _float_mask(1, H, 5, 7))
        self.register_buffer("cross_mask", _attn(5, 7))
        self.register_buffer("causal", torch.ones(6, 6, dtype=torch.bool).triu(1))
        self.self_att = mha_module(batch_first=True)
        self.cross_att = mha_module(num_heads=4, kdim=E, vdim=E, add_bias_kv=True, add_zero_attn=True,
                                    batch_first=True)
        self.causal_att = mha_module(num_heads=1)

    def forward(self, q, kv, pad, h):
        q2, seq_first = q[:, :H], h[:, :6].transpose(0, 1)
        return (sdpa(q2, kv, kv, is_causal=True), sdpa(kv, q2, q2, is_causal=True),
                sdpa(q2, kv, kv, attn_mask=self.bool_mask), sdpa(q2, kv, kv, attn_mask=self.float_mask, scale=0.3),
                sdpa(q, kv, kv, enable_gqa=True), sdpa(q2, kv, kv, attn_mask=pad[:, None, None, :]),
                self.self_att(h, h, h, key_padding_mask=pad, need_weights=False)[0],
                self.cross_att(h[:, :5], kv[:, 0], kv[:, 1], attn_mask=self.cross_mask),
                self.causal_att(seq_first, seq_first, seq_first, attn_mask=self.causal, is_causal=True,
                                need_weights=False)[0])


def _tfjs_port():
    # no row all True or all False in the example: keeps torch's NaN rows (fast path) out of the trace
    pad = torch.tensor([[True, False, True, True, False, True, True], [False, True, True, False, True, True, True]])
    return assert_port_matches(seeded(AttentionZoo), (randn(2, 4, 5, E), KV, pad, randn(2, 7, 8)))


@pytest.mark.node
def test_attention_runs_in_tfjs(node_or_skip, tmp_path):
    """The saved port runs in tfjs-cpu and tfjs-wasm within 1e-4 * max(1, max|torch|) per output."""
    port = _tfjs_port()
    result = port.save(tmp_path / "attention", per_module_tfjs=False, browser_backends=())
    scale: dict[str, float] = {}
    for inputs in port.parity_inputs():
        for name, value in port.torch_outputs(inputs):
            scale[name] = max(scale.get(name, 1.0), float(np.max(np.abs(value))))
    runtimes = {r["runtime"]: r for r in result["parity"]["runtimes"]}
    for backend in ("tfjs-cpu", "tfjs-wasm"):
        assert runtimes[backend]["skipped"] is None, runtimes[backend]
        assert len(runtimes[backend]["outputs"]) == len(scale)
        for out in runtimes[backend]["outputs"]:
            assert out["problem"] is None and out["max_abs_error"] <= TFJS_ATOL * scale[out["name"]], (backend, out)


@pytest.mark.node
def test_every_port_row_in_tfjs(node_or_skip):
    """Every SDPA and MHA port row above, at every parity input set (two lengths where free), on cpu and wasm."""
    BATCH.assert_all_within()
