"""Module-tree rules for transformer blocks: attention heads and MLP neurons, found by the modules' names, no tracing.

Torch-Pruning's dependency graph cannot see through attention (softmax, matmuls, reshapes) and hangs on grouped-query
attention; Hugging Face models do not trace with torch.fx either. These rules read the structure from the module
tree instead, the way the models are written:

**Attention heads** (``unit="head"``): an attention module with separate query/key/value/output projections
(``q_proj/k_proj/v_proj/o_proj`` and ``out_proj``/``dense`` as the output: LLaMA, Mistral, Qwen2, Gemma, Phi, OPT,
BART, Whisper, ViT; ``q_lin/k_lin/v_lin/out_lin``: DistilBERT; ``q/k/v/o``: T5; ``query/key/value`` with ``dense`` or
a sibling ``output.dense``: BERT, RoBERTa, ELECTRA, ALBERT, Swin), a fused one (GPT-2's ``c_attn``/``c_proj``
``Conv1D``; GPT-NeoX's ``query_key_value``/``dense``, heads interleaved). The unit is a key/value head with the query
heads that read it (grouped-query attention: ``num_heads / num_kv_heads`` query heads per KV head; plain
multi-head attention: one head): its rows of the q, k and v projections (and biases) and its columns of the output
projection. T5 computes one relative position bias per head in the first layer of each stack (zeros for
cross-attention) and adds it in every later layer, so there a unit is head h of every layer of the stack at once (and
its column of the bias table): the layers keep equal head counts and the shrunk model's own forward runs. Zeroed, the head's queries and keys are zero, its values zero, so it adds exactly nothing, rotary
embeddings and position biases included: the masked model computes what the model without those heads computes.

**MLP neurons** (``unit="channel"``, the ``neuron`` granularity of the input projections): an MLP's input projections
(``gate_proj`` + ``up_proj``: gated; ``fc1``, ``c_fc``, ``dense_h_to_4h``, ``wi`` / ``wi_0`` + ``wi_1``, ``lin1``,
``intermediate.dense``, ``ffn``, ``pwconv1``) and its output projection (``down_proj``, ``fc2``, ``c_proj``,
``dense_4h_to_h``, ``wo``, ``lin2``, ``output.dense``, ``ffn_output``, ``pwconv2``): neuron j is row j of every input
projection (and bias) and column j of the output projection, so zeroing it removes exactly what shrinking removes,
whatever the activation.

Hugging Face's ``Conv1D`` stores its weight transposed (``in x out``); the members say which dimension is which.
A rule only applies when the shapes agree (heads x head size = the projections' widths), else it reports why.

>>> import torch
>>> class Attn(torch.nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.num_heads, self.head_dim = 4, 2
...         self.q_proj, self.k_proj = torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)
...         self.v_proj, self.o_proj = torch.nn.Linear(8, 4), torch.nn.Linear(8, 8)
>>> g = attention_groups(torch.nn.Sequential(Attn()))[0]
>>> g.unit, g.size, g.producers  # 2 KV heads, each read by 2 query heads
('head', 2, ('0.q_proj', '0.k_proj', '0.v_proj', '0.o_proj'))
"""

from __future__ import annotations

from ._layers import is_conv1d, linear_dims
from .attention import AttentionSpec, attention_groups, find_attention, head_members
from .hidden import hidden_group, norm_form
from .mlp import find_mlps, mlp_groups, rule_groups

__all__ = [
    "AttentionSpec",
    "attention_groups",
    "find_attention",
    "find_mlps",
    "head_members",
    "hidden_group",
    "is_conv1d",
    "linear_dims",
    "mlp_groups",
    "norm_form",
    "rule_groups",
]
