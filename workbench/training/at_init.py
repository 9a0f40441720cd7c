"""Pruning at initialisation, as the papers do it: iterative SynFlow (Tanaka et al. 2020).

The `synflow` criterion (`workbench.criteria.synflow`) is one round of scores. The paper prunes in `rounds`
rounds (100), recomputing the scores on the masked network each time while the density shrinks exponentially:
after round k of n the kept share is ``(1 - ratio)^(k / n)``. Scoring on the masked network is what avoids layer
collapse. No weight changes until the end; the result is recorded as one pruning step.

>>> import torch, workbench as wb
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
>>> bench = wb.Workbench(model, [(torch.randn(4, 8), torch.randint(0, 3, (4,)))])
>>> entry = wb.training.synflow_prune(bench, 0.9, rounds=20, progress=False)
>>> entry.kind, round(entry.sparsity, 2)
('synflow', 0.9)
"""

from __future__ import annotations

import math
from typing import Any

from ..criteria._grad import one_thread_if_small
from ..criteria.synflow import _ones, ones_like_input, synflow_scores
from ..masks.select import n_to_prune
from ..masks.topk import lowest_k
from ..plan import Plan
from ..state import as_state
from ._loop import Progress, TrainingError, check, pool

__all__ = ["synflow_prune"]


def synflow_prune(state, ratio: float, rounds: int = 100, *, evaluate: bool = True, progress: Any = True):
    """Prune `ratio` of the weights a default plan covers (linear, conv, LSTM, attention), globally, by SynFlow
    recomputed on the masked network in `rounds` rounds with the exponential schedule; one history step.

    Data-free: only the shape of one input is used (the bench's calibration data, else its example input).
    What is already pruned stays pruned and counts towards `ratio`. Returns the history entry. A stop
    (KeyboardInterrupt, e.g. from a progress callback) before the last round leaves the model unchanged.
    """
    state = as_state(state)
    check(ratio, "ratio", lo=0.0, hi=1.0, lo_open=False)
    if ratio >= 1.0:
        raise TrainingError(f"ratio must be below 1 (the share of weights to remove), got {ratio!r}")
    rounds = check(rounds, "rounds", lo=1, lo_open=False, integer=True)
    if state.calib is not None:
        example = ones_like_input(state.calib)
    elif state.example_inputs is not None:
        example = _ones(state.example_inputs)
    else:
        raise TrainingError("synflow_prune needs the shape of one input: create the Workbench with data")
    names = pool(state)
    model = state.model
    total = sum(model.get_parameter(n).numel() for n in names)
    masks = {n: m.clone() for n in names if (m := state.store.current(n)) is not None}
    bar = Progress(progress, rounds, "synflow")
    try:
        with one_thread_if_small(model):
            for k in range(1, rounds + 1):
                density = (1.0 - ratio) ** (k / rounds)
                scores = synflow_scores(model, example, masks)
                fns = []
                for n in names:
                    s = scores[n].float()
                    if n in masks:
                        s = s.masked_fill(masks[n].to(s.device), -math.inf)
                    fns.append(lambda s=s: s)
                chosen = lowest_k(fns, n_to_prune(1.0 - density, total))
                masks = {n: m for n, m in zip(names, chosen) if bool(m.any())}
                bar.step()
    finally:
        bar.close()
    plan = Plan.global_(ratio, criterion="synflow")
    label = f"synflow {ratio:g}, {rounds} rounds (iterative, data-free)"
    return state.record(masks, label=label, plan=plan, kind="synflow", evaluate=evaluate)
