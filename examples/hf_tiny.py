"""Tiny HF transformers models for `bridge convert` (random weights from a seeded config, no download).

    bridge convert examples/hf_tiny.py:bert_sentence_encoder --input 2x16:int64:100 --input 2x16:int64:2
    bridge convert examples/hf_tiny.py:gpt2 --input 2x16:int64:100 --input 2x16:int64:2
    bridge convert examples/hf_tiny.py:llama --input 2x16:int64:100 --input 2x16:int64:2

Each takes ``(input_ids, attention_mask)`` (int64, ids below 100, mask 0/1). Swap the config for
your own, or load your trained weights with ``--weights`` (a state_dict of the same model).
transformers is a test dependency of bridge: `pip install transformers` to use this file.
"""

from __future__ import annotations

import torch
import transformers
from torch import nn

TINY = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)


class SentenceEncoder(nn.Module):
    """BERT's last hidden state, mean-pooled over the tokens the attention mask keeps."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        keep = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * keep).sum(1) / keep.sum(1).clamp(min=1e-9)


class NoCache(nn.Module):
    """A decoder called with keyword inputs and no KV cache, returning its last hidden state."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


def bert_sentence_encoder() -> nn.Module:
    torch.manual_seed(0)
    return SentenceEncoder(transformers.BertModel(transformers.BertConfig(**TINY)))


def gpt2() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     bos_token_id=0, eos_token_id=0)
    return NoCache(transformers.GPT2Model(config))


def llama() -> nn.Module:
    """A Llama-style decoder: RMSNorm, rotary position embeddings, grouped KV heads."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(num_key_value_heads=2, bos_token_id=0, eos_token_id=0, pad_token_id=0, **TINY)
    return NoCache(transformers.LlamaModel(config))
