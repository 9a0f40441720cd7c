"""Structured shrink: `wb.sparse.compile(bench, backend="shrink")` vs Torch-Pruning's own pruner.

Both sides remove the same share (50%) of every prunable conv filter / linear neuron of the same model with
the same importance — the workbench's ``l1`` group score (mean |w| per weight over the output slices of a
channel's producers), given to Torch-Pruning's `MetaPruner` as a custom `Importance` — so they must remove
the same channels. The benchmark checks that the two pruned models have the same parameter count and equal
outputs (allclose, atol 1e-5) before it times them against the dense model (interleaved, median of 11 rounds;
`workbench.sparse.timing.measure`). "prune s" is the time to get the pruned model: for the workbench,
``bench.apply`` + ``compile(backend="shrink")`` (masks first, then a physical copy whose outputs compile checks
and times; the live model keeps its
undo history); for Torch-Pruning, building its graph and ``pruner.step()`` on a copy.

Run: ``.venv/bin/python -m benchmarks.structured`` (under a minute on 2 cores).
"""

from __future__ import annotations

import copy
import os
import sys
import time
import warnings

import torch
import torch_pruning as tp
from torch import nn

import workbench as wb
from workbench.sparse.timing import measure

THREADS = 2
RATIO = 0.5
REPEATS = 11


class VGGish(nn.Module):
    """A VGG-like CNN on 32x32 inputs: 6 conv+BN+ReLU in three stages, global pooling, a two-layer head."""

    def __init__(self, widths=(64, 64, 128, 128, 256, 256), classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c * 4 * 4, 256), nn.ReLU(), nn.Linear(256, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class WorkbenchL1(tp.importance.Importance):
    """The workbench's `l1` score of a coupled channel: summed |w| over every producer's output slice of the
    channel, divided by the number of those weights (`workbench.masks.select.group_ranking`)."""

    @torch.no_grad()
    def __call__(self, group):
        n = len(group[0].root_idxs)
        score = torch.zeros(n, dtype=torch.float64)
        count = torch.zeros(n, dtype=torch.float64)
        for i, (dep, idxs) in enumerate(group):
            if dep.pruning_fn not in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
                continue
            w = dep.layer.weight.detach()[idxs].flatten(1).double()
            root = torch.as_tensor(group[i].root_idxs)
            score.index_add_(0, root, w.abs().sum(1))
            count.index_add_(0, root, torch.full((len(idxs),), float(w.shape[1]), dtype=torch.float64))
        return score / count.clamp(min=1)


def _cases():
    torch.manual_seed(0)
    cnn, data = wb.demo.load("digits-cnn")
    x = torch.cat([xb for xb, _ in data.val])[:64]
    vgg = VGGish().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in vgg.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return [
        ("digits-cnn", "batch 64x1x8x8", cnn, x),
        ("VGG-like CNN", "6 conv (64-256 ch), batch 16x3x32x32", vgg, torch.randn(16, 3, 32, 32)),
    ]


def _ours(model: nn.Module, x: torch.Tensor):
    live = copy.deepcopy(model)
    t0 = time.perf_counter()
    bench = wb.Workbench(live, [(x, torch.zeros(len(x), dtype=torch.long))], example_inputs=x[:2])
    layers = {}
    for t in bench.targets:
        for g in ("filter", "neuron"):
            if t.supports(g):
                layers[t.name] = wb.LayerPlan(RATIO, g, "l1")
    bench.apply(wb.Plan(layers), evaluate=False)
    fast, _ = wb.sparse.compile(bench, backend="shrink", batch_size=len(x), repeats=3)
    return fast, time.perf_counter() - t0, sorted(layers)


def _theirs(model: nn.Module, x: torch.Tensor, pruned_layers: list[str]):
    m = copy.deepcopy(model)
    t0 = time.perf_counter()
    ignored = [
        mod for name, mod in m.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear)) and name not in pruned_layers
    ]
    pruner = tp.pruner.MetaPruner(m, x[:2], importance=WorkbenchL1(), pruning_ratio=RATIO, ignored_layers=ignored)
    pruner.step()
    return m.eval(), time.perf_counter() - t0


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def main() -> int:
    torch.set_num_threads(THREADS)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    header = (
        "case",
        "sizes",
        "params dense",
        "params ours",
        "params TP",
        "dense ms",
        "ours x",
        "TP x",
        "ours/TP",
        "prune s ours",
        "prune s TP",
    )
    rows = [header]
    for name, sizes, model, x in _cases():
        ours, t_ours, layers = _ours(model, x)
        theirs, t_tp = _theirs(model, x, layers)
        assert _params(ours) == _params(theirs), f"{name}: params differ ({_params(ours)} vs {_params(theirs)})"
        with torch.inference_mode():
            a, b = ours(x), theirs(x)
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), f"{name}: outputs differ by {(a - b).abs().max():.2e}"
        fns = {"dense": lambda m=model, x=x: m(x), "ours": lambda m=ours, x=x: m(x), "tp": lambda m=theirs, x=x: m(x)}
        with torch.inference_mode():
            measure(fns, repeats=3, min_block_s=0.05)  # warm-up
            t = measure(fns, repeats=REPEATS, min_block_s=0.02)
        rows.append(
            (
                name,
                sizes,
                f"{_params(model):,}",
                f"{_params(ours):,}",
                f"{_params(theirs):,}",
                f"{t['dense']:.3f}",
                f"{t['dense'] / t['ours']:.2f}x",
                f"{t['dense'] / t['tp']:.2f}x",
                f"{t['tp'] / t['ours']:.2f}x",
                f"{t_ours:.2f}",
                f"{t_tp:.2f}",
            )
        )
    print(
        f"structured shrink, {RATIO:.0%} of filters/neurons by the workbench's l1 group score, workbench vs Torch-Pruning "
        f"{tp.__version__} (same channels: equal params and outputs, allclose atol 1e-5, checked first); torch "
        f"{torch.__version__}, torch.set_num_threads({THREADS}); speed-up = dense ms / pruned ms, median of {REPEATS} "
        f"interleaved rounds; ours/TP > 1 means ours is faster; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, r in enumerate(rows):
        print(" | ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
