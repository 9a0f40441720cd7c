"""The README's "Which pruning should I use?" section, from `recommend` run on the demo models."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from ..errors import WorkbenchWarning
from .candidates import DEFAULT_BUDGET, STRATEGIES
from .result import Recommendation, _budget_text, _is_accuracy
from .run import recommend

# the README section ----------------------------------------------------------------------------------------------
_QUESTIONS = (
    ("latency", "cpu", "faster inference on a CPU"),
    ("latency", "cuda", "faster inference on an NVIDIA GPU"),
    ("size", "cpu", "a smaller model file"),
    ("accuracy", "cpu", "the most accuracy at a given size"),
    ("robustness", "cpu", "robustness to adversarial inputs"),
)


def guide_markdown(
    models: Sequence[str] | None = None,
    *,
    budgets: dict[str, float] | None = None,
    finetune: int = 0,
    repeats: int = 5,
    results: dict[tuple[str, str, str], Recommendation] | None = None,
    questions: Sequence[tuple[str, str]] | None = None,
) -> str:
    """The README's "Which pruning should I use?" section: for each question (goal and device), the strategy that
    `recommend` ranked first on the most demo models, its rule of thumb, and the measured numbers per model; then
    the conditions of the run. `models`: demo model names (default: all five); `budgets` per goal (default
    `DEFAULT_BUDGET`); `results` maps (model, goal, device) to a `Recommendation` already computed (the rest are
    computed here, a few seconds each); `questions`: (goal, device) pairs to cover (default: all five)."""
    import platform

    from ..bench import Workbench
    from ..demo import available, load

    models = list(models) if models is not None else available()
    budgets = {**DEFAULT_BUDGET, **(budgets or {})}
    results = dict(results or {})
    asked = [q for q in _QUESTIONS if questions is None or (q[0], q[1]) in set(questions)]
    for model_name in models:
        bench = None
        for goal, device, _ in asked:
            if (model_name, goal, device) in results:
                continue
            if bench is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model, data = load(model_name)
                bench = Workbench(model, data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", WorkbenchWarning)
                results[(model_name, goal, device)] = recommend(
                    bench, goal, budgets[goal], device, finetune=finetune, repeats=repeats
                )
    lines = [
        "## Which pruning should I use?",
        "",
        "Ask the workbench on your own model: `wb.recommend(bench, goal=..., budget=..., device=...)` ranks pruning "
        "strategies by what it measures there (accuracy of the pruned model, speed and size of the compiled one) and "
        "says why in one sentence per strategy; `wb.ui.guide(bench)` is the same as a widget with an *Apply best* "
        "button. What it recommended on the five demo models:",
        "",
        "| you want | start with | rule of thumb | ranked first on | measured (best row per model) |",
        "|---|---|---|---|---|",
    ]
    for goal, device, question in asked:
        recs = [(m, results[(m, goal, device)]) for m in models]
        recs = [(m, r) for m, r in recs if r.rows]
        if not recs:
            continue
        votes: dict[str, int] = {}
        for _, r in recs:
            votes[r.best.name] = votes.get(r.best.name, 0) + 1
        top = max(votes, key=lambda k: (votes[k], -list(STRATEGIES).index(k)))
        s = STRATEGIES[top]
        facts = "; ".join(f"{m.removeprefix('digits-')}: {_fact(r)}" for m, r in recs)
        q = f"{question}, {_budget_text(goal, budgets[goal], recs[0][1].metric_name)}"
        lines.append(f"| {q} | {s.label} | {s.rule} | {votes[top]} of {len(recs)} models | {facts} |")
    cuda = [results[(m, "latency", "cuda")] for m in models if (m, "latency", "cuda") in results]
    if cuda and cuda[0].measured_on is None:
        lines += [
            "",
            "GPU rows: no CUDA device was available for this run, so GPU speed was not measured; that ranking uses the "
            "FLOPs a CUDA kernel can skip (structured removal everywhere; 2:4 semi-structured on sparse tensor cores, "
            "NVIDIA Ampere or newer, fp16/bf16, Linear layers with multiples of 32 x 64 features). Measure on your GPU "
            "with `wb.sparse.compile(bench, backend='auto', device='cuda')`.",
        ]
    lines += [
        "",
        f"Measured with torch {torch.__version__} on {platform.machine()}, batch 64, "
        f"{'one-shot pruning' if not finetune else f'one-shot and {finetune} epoch(s) of fine-tuning'}, on the demo "
        "models' validation split (`wb.demo.load`); speed-ups are medians of interleaved CPU-time measurements on one "
        "thread, the model compiled by `wb.sparse.compile` vs the masked dense one. Regenerate with "
        "`python -c 'from workbench.recommend import guide_markdown; print(guide_markdown(finetune=1))'`.",
    ]
    return "\n".join(lines)


def _fact(r: Recommendation) -> str:
    b = r.best
    acc = _is_accuracy(r.metric_name)
    drop = f"{-100 * b.drop:+.1f} pt" if acc else f"{-b.drop:+.4f}"
    tuned = f" + {b.finetune_epochs} ep fine-tuning" if b.finetune_epochs else ""
    flag = "" if b.meets_budget else " (closest; over budget)"
    if r.goal == "latency":
        speed = f"{b.speedup:.2f}x" if b.speedup is not None else f"{b.accelerated_flops:.0%} of FLOPs skippable"
        return f"{b.strategy}{tuned} {speed}, {drop}{flag}"
    if r.goal == "size":
        return f"{b.strategy}{tuned} {b.size:.0%} of the bytes, {drop}{flag}"
    if r.goal == "accuracy":
        return f"{b.strategy}{tuned} {drop} at {b.size_ratio:.1f}x{flag}"
    return f"{b.strategy}{tuned} FGSM {r.robust_now:.0%} -> {b.robust_accuracy:.0%}{flag}"
