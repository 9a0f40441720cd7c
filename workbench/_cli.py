"""The command line: ``python -m workbench demo`` tells the workbench's story on a demo model.

It loads a demo model, shows its targets, prunes it twice in place (a structured step, then a global
magnitude step), prints the report, and shows that undo, redo and reset restore the weights bit for bit.

Example:
    >>> main(["--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["main"]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bitwise_equal(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> bool:
    now = model.state_dict()
    return now.keys() == snapshot.keys() and all(torch.equal(now[k], v) for k, v in snapshot.items())


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"


def _demo(args: argparse.Namespace) -> int:
    import workbench as wb

    t0 = time.perf_counter()
    print(f"== workbench demo: model {args.model!r}, seed {args.seed}")
    try:
        model, data = wb.demo.load(args.model, seed=args.seed)
    except ValueError as e:  # unknown model name: the message lists the available ones
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"data: scikit-learn digits (8x8 images, {len(data.classes)} classes); "
        f"model: {type(model).__name__}, {n_params:,} parameters (loaded in {time.perf_counter() - t0:.1f} s)"
    )
    bench = wb.Workbench(model, data, metric="accuracy")

    print("\n== targets: the layers the workbench can prune")
    print(bench.targets)

    dense = bench.evaluate()
    metric = dense["metric_name"]
    print(f"\n== dense {metric}: {dense['metric']:.4f} on {dense['n']} validation samples")
    dense_weights = _snapshot(model)

    granularity = next((g for g in ("filter", "neuron") if any(t.supports(g) for t in bench.targets)), "weight")
    plan1 = wb.Plan.uniform(0.5, granularity=granularity, criterion="l1")
    step1 = bench.apply(plan1)
    print(f"\n== step 1: apply {plan1!r}")
    if granularity == "weight":
        print("step 1: no layer of this model supports filter or neuron pruning, so this step prunes weights")
    print(
        f"step 1: {metric} {step1.metric:.4f} (dense {dense['metric']:.4f}, "
        f"change {step1.metric - dense['metric']:+.4f}); sparsity {step1.sparsity:.1%}"
    )
    if step1.sparsity > 0.5 + 1e-3:
        print(
            f"step 1: sparsity exceeds 50% because each removed {granularity} also zeroes its coupled "
            "channels (the next layer's inputs, a BatchNorm channel if any)"
        )
    print("step 1: no fine-tuning: the metric is what pruning alone leaves")
    after1 = _snapshot(model)

    plan2 = wb.Plan.global_(0.8, criterion="magnitude")
    step2 = bench.apply(plan2)
    print(f"\n== step 2: apply {plan2!r}")
    print(f"step 2: {metric} {step2.metric:.4f}; sparsity {step2.sparsity:.1%} (counting step 1's zeros)")
    after2 = _snapshot(model)

    print("\n== report")
    print(bench.report())

    print("\n== undo, redo, reset")
    undone = bench.undo()
    undo_ok = _bitwise_equal(model, after1)
    back = bench.evaluate()["metric"]
    print(f"undo: back to step {undone.index}; {metric} {back:.4f} (step 1 had {step1.metric:.4f})")
    print(f"undo: weights bitwise equal to before step 2: {_yes(undo_ok)}")
    bench.redo()
    redo_ok = _bitwise_equal(model, after2)
    print(f"redo: weights bitwise equal to after step 2: {_yes(redo_ok)}")
    bench.reset()
    reset_ok = _bitwise_equal(model, dense_weights)
    print(f"reset: weights bitwise equal to dense: {_yes(reset_ok)}")
    print(f"reset: {metric} {bench.evaluate()['metric']:.4f}")

    print("\n== history")
    for e in bench.history:
        m = "-" if e.metric is None else f"{e.metric:.4f}"
        state = "active" if e.active else "undone"
        print(f"  {e.index}  {e.label:<40}  {metric} {m}  sparsity {e.sparsity:6.1%}  {state}")
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return 0 if undo_ok and redo_ok and reset_ok else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workbench",
        description="A Jupyter-native workbench for pruning live PyTorch models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="prune a demo model step by step, then undo/redo/reset bitwise",
        description="Load a demo model, prune it in two steps, print the report, undo/redo/reset bitwise.",
    )
    demo.add_argument("--model", default="digits-cnn", help="demo model name (default: digits-cnn)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the demo model's weights (default: 0)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.func(args)
