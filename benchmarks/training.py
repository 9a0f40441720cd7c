"""Training with masks on digits-cnn at 90% unstructured sparsity: what fine-tuning, distillation, iterative and
gradual pruning buy over one-shot pruning, and pruning before / during / after training.

Part 1 starts from the trained demo model: global magnitude pruning to 90% (conv + linear weights), then the same
budget of training epochs for every method. Part 2 starts from the untrained model (`compare_timing`): every arm
trains the same number of epochs in total and ends at 90%. Several seeds (the seed orders the training batches);
mean and min..max over seeds are shown.

Run: ``.venv/bin/python -m benchmarks.training`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings

import torch

import workbench as wb

SPARSITY = 0.9
FT_EPOCHS = 6  # part 1: epochs of training after pruning, for every method
LR = 3e-3
SEEDS = (0, 1, 2)
TIMING_EPOCHS = 12  # part 2: the demo model's own training recipe is 12 epochs
TIMING_LR = 5e-3


def _fmt(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ({min(values):.4f}..{max(values):.4f})"


def part1() -> list[tuple[str, list[float], float]]:
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    dense = bench.evaluate()["metric"]
    rows: dict[str, list[float]] = {}
    secs: dict[str, float] = {}

    def run(name, fn):
        t0 = time.perf_counter()
        rows.setdefault(name, []).append(fn())
        secs[name] = secs.get(name, 0.0) + time.perf_counter() - t0
        bench.reset()

    plan = wb.Plan.global_(SPARSITY)
    kw = {"lr": LR, "progress": False}
    for seed in SEEDS:
        run("one-shot, no fine-tune", lambda: bench.apply(plan).metric)
        run(
            f"one-shot + fine-tune {FT_EPOCHS} ep",
            lambda seed=seed: (bench.apply(plan), bench.finetune(FT_EPOCHS, seed=seed, **kw))[1].final_metric,
        )
        run(
            f"one-shot + fine-tune {FT_EPOCHS} ep, KD from dense",
            lambda seed=seed: (
                (bench.apply(plan), bench.finetune(FT_EPOCHS, teacher="before", seed=seed, **kw))[1].final_metric
            ),
        )
        run(
            f"iterative 3 rounds x {FT_EPOCHS // 3} ep",
            lambda seed=seed: (
                wb.training.iterative(
                    bench, SPARSITY, rounds=3, finetune_epochs=FT_EPOCHS // 3, seed=seed, **kw
                ).final_metric
            ),
        )
        run(
            f"ADMM rho=1, {FT_EPOCHS // 2} ep + fine-tune {FT_EPOCHS // 2} ep (SGD lr 0.01)",
            lambda seed=seed: (
                wb.training.admm(
                    bench,
                    plan,
                    epochs=FT_EPOCHS // 2,
                    rho=1.0,
                    finetune_epochs=FT_EPOCHS // 2,
                    seed=seed,
                    progress=False,
                ).final_metric
            ),
        )
        run(
            f"learned masks (movement), {FT_EPOCHS - 1} ep + fine-tune 1 ep",
            lambda seed=seed: (
                wb.training.learned_masks(
                    bench, SPARSITY, epochs=FT_EPOCHS - 1, finetune_epochs=1, seed=seed, **kw
                ).final_metric
            ),
        )
        run(
            f"gradual AGP, 10 steps over {FT_EPOCHS} ep",
            lambda seed=seed: (
                wb.training.gradual(bench, SPARSITY, steps=10, epochs=FT_EPOCHS, seed=seed, **kw).final_metric
            ),
        )
    out = [("dense (trained demo model)", [dense], 0.0)]
    out += [(k, v, secs[k] / len(SEEDS)) for k, v in rows.items()]
    return out


def part2() -> list[tuple[str, str, list[float], list[float], float]]:
    results: dict[str, list] = {}
    for seed in SEEDS:
        model, data = wb.demo.load("digits-cnn", pretrained=False)
        bench = wb.Workbench(model, data)
        kw = {"lr": TIMING_LR, "seed": seed}
        res = wb.training.compare_timing(
            bench, SPARSITY, TIMING_EPOCHS, methods=("dense", "pre", "during", "post", "post-iterative"), **kw
        )
        snip = wb.training.compare_timing(bench, SPARSITY, TIMING_EPOCHS, methods=("pre",), at_init="snip", **kw)
        rows = [*res.rows, {**snip.rows[0], "method": "pre (snip)"}]
        for r in rows:
            name = "pre (synflow)" if r["method"] == "pre" else r["method"]
            entry = results.setdefault(name, [r["what"], [], [], 0.0])
            entry[1].append(r["metric"])
            entry[2].append(r["pruned_metric"] if r["pruned_metric"] is not None else float("nan"))
            entry[3] += r["seconds"] / len(SEEDS)
    return [(k, v[0], v[1], v[2], v[3]) for k, v in results.items()]


def main() -> int:
    torch.set_num_threads(1)  # tiny models: one thread is faster and steadier on a shared machine
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    print(
        f"training with masks, digits-cnn, {SPARSITY:.0%} global unstructured sparsity (conv + linear weights); "
        f"torch {torch.__version__}, 1 thread, {os.cpu_count()} CPUs; seeds {SEEDS}; accuracy on the 360 validation "
        "digits, mean (min..max) over seeds"
    )
    print(f"\n1. after training: prune the trained model, then {FT_EPOCHS} epochs (AdamW, lr {LR:g}, cosine)")
    rows = part1()
    w = max(len(r[0]) for r in rows)
    print(f"{'method'.ljust(w)} | accuracy                 | s/run")
    print("-" * w + "-+--------------------------+------")
    for name, vals, s in rows:
        print(f"{name.ljust(w)} | {_fmt(vals):<24} | {s:5.1f}")
    print(
        f"\n2. when to prune (compare_timing): from the untrained model, {TIMING_EPOCHS} epochs in total per arm "
        f"(AdamW, lr {TIMING_LR:g}, cosine per phase)"
    )
    rows2 = part2()
    w = max(len(r[0]) for r in rows2)
    w2 = max(len(r[1]) for r in rows2)
    print(
        f"{'method'.ljust(w)} | {'schedule'.ljust(w2)} | accuracy at the end       | right after pruning       | s/run"
    )
    print("-" * w + "-+-" + "-" * w2 + "-+---------------------------+---------------------------+------")
    for name, what, vals, pruned, s in rows2:
        p = "-" if all(v != v for v in pruned) else _fmt(pruned)
        print(f"{name.ljust(w)} | {what.ljust(w2)} | {_fmt(vals):<25} | {p:<25} | {s:5.1f}")
    print(f"\ndone in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
