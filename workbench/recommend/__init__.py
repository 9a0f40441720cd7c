"""Which pruning should I use? `recommend` ranks pruning strategies on *this* model, from measurements.

Each candidate strategy is a granularity x criterion x allocation (x timing, x backend):

- ``global-magnitude``: single weights, one magnitude threshold over all layers;
- ``allocated-weight``: single weights, per-layer ratios chosen from this model's sensitivity estimate;
- ``structured-l1``: whole filters / neurons / heads / LSTM units (L1), the same share in every layer;
- ``allocated-structured``: whole channels, per-layer ratios chosen from the sensitivity estimate (FLOPs budget);
- ``2:4``: N:M semi-structured (2 of every 4 weights), the pattern NVIDIA sparse tensor cores accelerate;
- ``block4x4``: 4x4 blocks of weights.

For each one the largest ratio (efficiency goals) or the smallest ratio (quality goals) that meets the budget is
found by evaluating pruned *structural clones* of the live model (they share every tensor but the masked ones, so
the model is never written to). The masks at that ratio are compiled by the sparse core on a copy
(`workbench.sparse.compile`: ``shrink`` for structured strategies, ``csr`` for the others; ``semi_structured`` /
``bsr`` too on CUDA), and every compiled model and the masked dense one are timed side by side on one batch,
interleaved: on CPU in process CPU time on one thread (other programs on a shared machine do not distort it;
``timer="wall"`` for wall-clock), on CUDA in wall-clock time. With ``finetune=N`` the two most promising strategies
are also fine-tuned for N epochs on a copy of the model (at higher ratios for efficiency goals): the "timing"
dimension, one-shot vs pruning then fine-tuning. Speed-ups within 0.1x of each other count as equal (timing noise);
then the smaller accuracy drop wins.

Goals and what `budget` means:

==============  ===============================================  ============================================
goal            ranks by                                         budget (default)
==============  ===============================================  ============================================
``latency``     measured speed-up on `device`                    max metric drop, in the metric's units (0.01:
                                                                 one point of accuracy)
``size``        measured bytes of the compiled model             max metric drop (0.01)
``accuracy``    measured metric after pruning                    min size ratio: dense parameters / parameters
                                                                 kept (2.0: keep at most half)
``robustness``  accuracy under FGSM at eps 0.1 after pruning     min size ratio (2.0)
==============  ===============================================  ============================================

A budget that no strategy meets is not an error: every row is flagged (``meets_budget=False``), the rows are
ranked by how close they come, `Recommendation.met` is False, the first note says which strategy is closest and by
how much, and a `WorkbenchWarning` is issued. ``device="cuda"`` without a GPU is not an error either: speed cannot
be measured, the notes say so, and the latency ranking uses the FLOPs a CUDA kernel can skip instead.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
>>> data = [(torch.rand(64, 1, 4, 4), torch.randint(0, 3, (64,)))]
>>> rec = wb.recommend(wb.Workbench(model, data), goal="size", budget=0.05, strategies=["structured-l1"], repeats=1)
>>> rec.best.strategy, rec.best.plan.layers["1"].granularity
('structured L1', 'neuron')
"""

from __future__ import annotations

from .candidates import DEFAULT_BUDGET as DEFAULT_BUDGET
from .candidates import FGSM_EPS as FGSM_EPS
from .candidates import FINETUNE_RATIOS as FINETUNE_RATIOS
from .candidates import FINETUNE_STRATEGIES as FINETUNE_STRATEGIES
from .candidates import GOALS, STRATEGIES, RecommendationError, Strategy, available_strategies
from .candidates import UNITS as UNITS
from .choosing import guide_markdown
from .rank import _key as _key  # the documented row order (tests check rankings against it)
from .result import Recommendation, Row
from .run import apply_row, recommend

__all__ = [
    "GOALS",
    "STRATEGIES",
    "Recommendation",
    "RecommendationError",
    "Row",
    "Strategy",
    "apply_row",
    "available_strategies",
    "guide_markdown",
    "recommend",
]


def __getattr__(name: str):
    if name == "STRUCTURED":  # the registry's per-layer structured granularities, read when asked
        from ..masks.granularity import structured_granularities

        return structured_granularities()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
