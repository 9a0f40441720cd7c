"""Hugging Face models built from configs in memory (random weights, no download) for the module-tree rules' tests,
and helpers to zero masked weights and read logits."""

from __future__ import annotations

import pytest
import torch

T = pytest.importorskip("transformers")
V = 50


def _ids(b: int = 2, t: int = 7) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(1))


def _models():
    yield (
        "llama-gqa",
        T.LlamaForCausalLM(
            T.LlamaConfig(
                vocab_size=V,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=48,
            )
        ),
    )
    yield "gpt2", T.GPT2LMHeadModel(T.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=16))
    yield (
        "bert",
        T.BertForSequenceClassification(
            T.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
        ),
    )
    yield (
        "neox",
        T.GPTNeoXForCausalLM(
            T.GPTNeoXConfig(
                vocab_size=V,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=48,
                max_position_embeddings=16,
            )
        ),
    )
    yield (
        "distilbert",
        T.DistilBertForSequenceClassification(
            T.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=4, hidden_dim=48)
        ),
    )


MODELS = dict(_models())


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _zero(model, masks):
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name][mask] = 0
