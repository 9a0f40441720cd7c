"""Attention with heads removed: what `compile`'s shrink puts in place of an `nn.MultiheadAttention` whose heads the
``head`` granularity pruned.

`nn.MultiheadAttention` ties the heads' total width to the embedding size, so it cannot lose heads.
`SlimMultiheadAttention` projects the embedding (E) to the kept heads only (``h' * d``) for queries, keys and
values, attends per head with `F.scaled_dot_product_attention`, and maps ``h' * d`` back to E, so its inputs and
outputs have the shapes the model expects. It takes nn.MultiheadAttention's call signature (masks of the original
head count are sliced to the kept heads) and says ``_qkv_same_embed_dim = False``, so `nn.TransformerEncoderLayer`
calls it through its regular path. A masked head (zero q/k/v rows and out_proj columns) adds exactly nothing to
the output, so the slim module computes what the masked one does (to float rounding; `compile` checks it).

>>> import torch
>>> mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
>>> slim = SlimMultiheadAttention.from_mha(mha, keep=[0, 1, 2, 3]).eval()
>>> x = torch.randn(2, 5, 16)
>>> torch.allclose(slim(x, x, x)[0], mha(x, x, x)[0], atol=1e-5), slim.num_heads
(True, 4)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SlimMultiheadAttention", "slimmable"]


def slimmable(mha: nn.Module) -> str:
    """Why `mha` cannot be replaced by a slim copy ("" if it can)."""
    if not isinstance(mha, nn.MultiheadAttention):
        return f"{type(mha).__name__} is not an nn.MultiheadAttention"
    if not mha._qkv_same_embed_dim or mha.in_proj_weight is None:
        return "separate key/value sizes (kdim/vdim) are not supported"
    if mha.bias_k is not None or mha.add_zero_attn:
        return "add_bias_kv / add_zero_attn are not supported"
    return ""


class SlimMultiheadAttention(nn.Module):
    """An `nn.MultiheadAttention` keeping only some of its heads (see the module docstring)."""

    _qkv_same_embed_dim = False  # for nn.TransformerEncoderLayer: not the fused fast path

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        head_dim: int,
        kept_heads: list[int] | tuple[int, ...],
        original_heads: int,
        *,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(kept_heads) != num_heads:
            raise ValueError(f"kept_heads lists {len(kept_heads)} heads for num_heads={num_heads}")
        inner = num_heads * head_dim
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, head_dim
        self.original_heads, self.batch_first, self.dropout = original_heads, batch_first, dropout
        self.in_features, self.out_features = embed_dim, embed_dim  # sizes the exporter records
        self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner)) if bias else None
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)
        self.register_buffer("kept_heads", torch.tensor(list(kept_heads), dtype=torch.long))

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention, keep: list[int]) -> SlimMultiheadAttention:
        """A copy of `mha` with only the heads in `keep` (original head indices)."""
        why = slimmable(mha)
        if why:
            raise ValueError(why)
        e, h = mha.embed_dim, mha.num_heads
        d = e // h
        keep = sorted(int(i) for i in keep)
        new = cls(
            e,
            len(keep),
            d,
            keep,
            h,
            bias=mha.in_proj_bias is not None,
            batch_first=mha.batch_first,
            dropout=mha.dropout,
        )
        rows = torch.cat([torch.arange(i * d, (i + 1) * d) for i in keep])
        rows3 = torch.cat([rows + j * e for j in range(3)])
        with torch.no_grad():
            new.in_proj_weight.copy_(mha.in_proj_weight[rows3])
            if mha.in_proj_bias is not None:
                new.in_proj_bias.copy_(mha.in_proj_bias[rows3])
            new.out_proj.weight.copy_(mha.out_proj.weight[:, rows])
            if mha.out_proj.bias is not None:
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new.to(device=mha.out_proj.weight.device, dtype=mha.out_proj.weight.dtype).train(mha.training)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, heads={self.num_heads} of {self.original_heads} "
            f"(kept {self.kept_heads.tolist()}), batch_first={self.batch_first}"
        )

    def _mask(self, attn_mask, key_padding_mask, n: int, lq: int, ls: int, dtype) -> Tensor | None:
        """One additive float mask broadcastable to (N, heads, L, S)."""
        out = None
        if attn_mask is not None:
            m = attn_mask
            if m.dtype == torch.bool:
                m = torch.zeros(m.shape, dtype=dtype, device=m.device).masked_fill(m, -math.inf)
            m = m.to(dtype)
            if m.dim() == 3:  # (N * original heads, L, S): keep the rows of the kept heads
                m = m.view(n, self.original_heads, lq, ls)[:, self.kept_heads]
            out = m
        if key_padding_mask is not None:
            k = key_padding_mask
            if k.dtype == torch.bool:
                k = torch.zeros(k.shape, dtype=dtype, device=k.device).masked_fill(k, -math.inf)
            k = k.to(dtype).view(n, 1, 1, ls)
            out = k if out is None else out + k
        return out

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, lq, _ = query.shape
        ls = key.shape[1]
        h, d = self.num_heads, self.head_dim
        w = self.in_proj_weight.chunk(3)
        b = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        q = F.linear(query, w[0], b[0]).view(n, lq, h, d).transpose(1, 2)
        k = F.linear(key, w[1], b[1]).view(n, ls, h, d).transpose(1, 2)
        v = F.linear(value, w[2], b[2]).view(n, ls, h, d).transpose(1, 2)
        mask = self._mask(attn_mask, key_padding_mask, n, lq, ls, q.dtype)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(d)
            if mask is not None:
                scores = scores + mask
            elif is_causal:
                scores = scores.masked_fill(torch.ones(lq, ls, dtype=torch.bool, device=q.device).triu(1), -math.inf)
            attn = scores.softmax(-1)
            weights = attn.mean(1) if average_attn_weights else attn
            out = F.dropout(attn, p) @ v
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=p, is_causal=is_causal and mask is None
            )
        out = self.out_proj(out.transpose(1, 2).reshape(n, lq, h * d))
        if unbatched:
            out = out.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights
