"""Tiny language models with random weights (LLaMA with grouped-query attention, GPT-2's Conv1D, OPT) and batches."""

from __future__ import annotations

import torch

VOCAB = 64


def llama(layers: int = 2, dtype=torch.float32, seed: int = 0):
    import transformers as T

    torch.manual_seed(seed)
    cfg = T.LlamaConfig(
        num_hidden_layers=layers,
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=VOCAB,
        max_position_embeddings=64,
    )
    return T.LlamaForCausalLM(cfg).to(dtype).eval()


def gpt2(layers: int = 2, dtype=torch.float32, seed: int = 0):
    import transformers as T

    torch.manual_seed(seed)
    cfg = T.GPT2Config(n_layer=layers, n_embd=32, n_head=4, vocab_size=VOCAB, n_positions=64)
    return T.GPT2LMHeadModel(cfg).to(dtype).eval()


def opt(layers: int = 2, dtype=torch.float32, seed: int = 0):
    import transformers as T

    torch.manual_seed(seed)
    cfg = T.OPTConfig(
        num_hidden_layers=layers,
        hidden_size=32,
        num_attention_heads=4,
        ffn_dim=64,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        word_embed_proj_dim=32,
    )
    return T.OPTForCausalLM(cfg).to(dtype).eval()


MODELS = {"llama": llama, "gpt2": gpt2, "opt": opt}


def batches(n: int = 2, rows: int = 3, tokens: int = 12, seed: int = 1, pad: bool = False) -> list[dict]:
    """Hugging Face causal-LM batches; with `pad` the last row of each batch is left-padded by 3 tokens."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, VOCAB, (rows, tokens), generator=g)
        mask = torch.ones_like(ids)
        if pad:
            mask[-1, :3] = 0
        out.append({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})
    return out


def _run(model, data) -> None:
    """Full forwards of `model` over `data` (no gradients, no cache)."""
    with torch.no_grad():
        for b in data:
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False)
