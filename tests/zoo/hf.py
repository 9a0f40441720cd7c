"""Hugging Face architectures built from small configs (random weights, nothing downloaded), with natural batches."""

from __future__ import annotations

import torch

V = 64  # vocabulary of the text models
B, T = 4, 10  # batch and sequence length


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _text(labels: str, classes: int = 3, seed: int = 0):
    g = _g(seed)
    out = []
    for _ in range(2):
        ids = torch.randint(4, V, (B, T), generator=g)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if labels == "class":
            batch["labels"] = torch.randint(0, classes, (B,), generator=g)
        elif labels == "lm":
            batch["labels"] = ids.clone()
        elif labels == "seq2seq":
            batch["labels"] = torch.randint(4, V, (B, 6), generator=g)
        out.append(batch)
    return out


def _images(size: int = 32, classes: int = 3, channels: int = 3):
    g = _g(1)
    return [
        {
            "pixel_values": torch.randn(B, channels, size, size, generator=g),
            "labels": torch.randint(0, classes, (B,), generator=g),
        }
        for _ in range(2)
    ]


def _audio(classes: int = 3):
    g = _g(2)
    return [
        {"input_values": torch.randn(B, 1600, generator=g), "labels": torch.randint(0, classes, (B,), generator=g)}
        for _ in range(2)
    ]


def _whisper():
    g = _g(3)
    return [
        {"input_features": torch.randn(B, 16, 60, generator=g), "labels": torch.randint(4, V, (B, 5), generator=g)}
        for _ in range(2)
    ]


TXT = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
LLM = dict(TXT, max_position_embeddings=64)


def builders():
    import transformers as T

    return {
        "bert": (lambda: T.BertForSequenceClassification(T.BertConfig(**TXT, num_labels=3)), lambda: _text("class")),
        "roberta": (
            lambda: T.RobertaForSequenceClassification(
                T.RobertaConfig(**TXT, num_labels=3, pad_token_id=1, max_position_embeddings=40)
            ),
            lambda: _text("class"),
        ),
        "distilbert": (
            lambda: T.DistilBertForSequenceClassification(
                T.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=4, hidden_dim=48, num_labels=3)
            ),
            lambda: _text("class"),
        ),
        "albert": (
            lambda: T.AlbertForSequenceClassification(T.AlbertConfig(**TXT, embedding_size=16, num_labels=3)),
            lambda: _text("class"),
        ),
        "electra": (
            lambda: T.ElectraForSequenceClassification(T.ElectraConfig(**TXT, embedding_size=16, num_labels=3)),
            lambda: _text("class"),
        ),
        "gpt2": (
            lambda: T.GPT2LMHeadModel(T.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=32)),
            lambda: _text("lm"),
        ),
        "opt": (
            lambda: T.OPTForCausalLM(
                T.OPTConfig(
                    vocab_size=V,
                    hidden_size=32,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    ffn_dim=48,
                    word_embed_proj_dim=32,
                    max_position_embeddings=32,
                )
            ),
            lambda: _text("lm"),
        ),
        "gpt-neox": (lambda: T.GPTNeoXForCausalLM(T.GPTNeoXConfig(**LLM)), lambda: _text("lm")),
        "llama-gqa": (lambda: T.LlamaForCausalLM(T.LlamaConfig(**LLM, num_key_value_heads=2)), lambda: _text("lm")),
        "qwen2": (lambda: T.Qwen2ForCausalLM(T.Qwen2Config(**LLM, num_key_value_heads=2)), lambda: _text("lm")),
        "mistral": (lambda: T.MistralForCausalLM(T.MistralConfig(**LLM, num_key_value_heads=2)), lambda: _text("lm")),
        "gemma": (
            lambda: T.GemmaForCausalLM(T.GemmaConfig(**LLM, num_key_value_heads=2, head_dim=8)),
            lambda: _text("lm"),
        ),
        "phi": (lambda: T.PhiForCausalLM(T.PhiConfig(**LLM)), lambda: _text("lm")),
        "t5": (
            lambda: T.T5ForConditionalGeneration(
                T.T5Config(
                    vocab_size=V, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, decoder_start_token_id=0
                )
            ),
            lambda: _text("seq2seq"),
        ),
        "bart": (
            lambda: T.BartForConditionalGeneration(
                T.BartConfig(
                    vocab_size=V,
                    d_model=32,
                    encoder_layers=1,
                    decoder_layers=1,
                    encoder_attention_heads=4,
                    decoder_attention_heads=4,
                    encoder_ffn_dim=48,
                    decoder_ffn_dim=48,
                    max_position_embeddings=32,
                )
            ),
            lambda: _text("seq2seq"),
        ),
        "vit": (
            lambda: T.ViTForImageClassification(
                T.ViTConfig(
                    image_size=32,
                    patch_size=8,
                    hidden_size=32,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    intermediate_size=48,
                    num_labels=3,
                )
            ),
            _images,
        ),
        "deit": (
            lambda: T.DeiTForImageClassification(
                T.DeiTConfig(
                    image_size=32,
                    patch_size=8,
                    hidden_size=32,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    intermediate_size=48,
                    num_labels=3,
                )
            ),
            _images,
        ),
        "swin": (
            lambda: T.SwinForImageClassification(
                T.SwinConfig(
                    image_size=32,
                    patch_size=4,
                    embed_dim=16,
                    depths=[1, 1],
                    num_heads=[2, 4],
                    window_size=4,
                    num_labels=3,
                )
            ),
            _images,
        ),
        "convnext": (
            lambda: T.ConvNextForImageClassification(
                T.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
            ),
            _images,
        ),
        "resnet": (
            lambda: T.ResNetForImageClassification(
                T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=3)
            ),
            _images,
        ),
        "mobilenet-v2": (
            lambda: T.MobileNetV2ForImageClassification(
                T.MobileNetV2Config(image_size=32, depth_multiplier=0.25, num_labels=3)
            ),
            _images,
        ),
        "efficientnet": (
            lambda: T.EfficientNetForImageClassification(
                T.EfficientNetConfig(
                    image_size=32, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, num_labels=3
                )
            ),
            _images,
        ),
        "regnet": (
            lambda: T.RegNetForImageClassification(
                T.RegNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=4, num_labels=3)
            ),
            _images,
        ),
        "segformer": (
            lambda: T.SegformerForImageClassification(
                T.SegformerConfig(
                    num_encoder_blocks=2,
                    depths=[1, 1],
                    sr_ratios=[2, 1],
                    hidden_sizes=[16, 32],
                    patch_sizes=[7, 3],
                    strides=[4, 2],
                    num_attention_heads=[1, 2],
                    mlp_ratios=[2, 2],
                    decoder_hidden_size=32,
                    num_labels=3,
                )
            ),
            _images,
        ),
        "wav2vec2": (
            lambda: T.Wav2Vec2ForSequenceClassification(
                T.Wav2Vec2Config(
                    vocab_size=V,
                    hidden_size=32,
                    num_hidden_layers=2,
                    num_attention_heads=4,
                    intermediate_size=48,
                    conv_dim=(16, 16),
                    conv_stride=(5, 4),
                    conv_kernel=(10, 4),
                    num_conv_pos_embeddings=16,
                    num_conv_pos_embedding_groups=4,
                    num_labels=3,
                )
            ),
            _audio,
        ),
        "whisper": (
            lambda: T.WhisperForConditionalGeneration(
                T.WhisperConfig(
                    vocab_size=V,
                    d_model=32,
                    encoder_layers=1,
                    decoder_layers=1,
                    encoder_attention_heads=4,
                    decoder_attention_heads=4,
                    encoder_ffn_dim=48,
                    decoder_ffn_dim=48,
                    num_mel_bins=16,
                    max_source_positions=30,
                    max_target_positions=16,
                    decoder_start_token_id=1,
                    pad_token_id=0,
                )
            ),
            _whisper,
        ),
    }
