"""A real pretrained transformer (all-MiniLM-L6-v2): prune attention heads and FFN neurons, then measure the
embedding cosine similarity to the dense model on the shipped sentences, the parameter count, and the latency of
the physically shrunk model against the dense model measured in the same run (batch of 16 sentences, CPU).

Needs the optional extra: ``pip install -e '.[transformers]'``; without it this prints why and exits 0.
Run: ``.venv/bin/python -m benchmarks.minilm``.
"""

from __future__ import annotations

import os
import sys

import torch

import workbench as wb
from workbench.demo import minilm
from workbench.sparse.timing import measure

SETTINGS = ((0.25, 0.0), (0.0, 0.3), (0.25, 0.3), (0.5, 0.5))  # (heads per layer, FFN neurons per layer)


def _paired(a, b, x) -> tuple[float, float]:
    """Latency of `a` and `b` in ms, measured in interleaved blocks (a busy machine slows both alike)."""
    with torch.inference_mode():
        t = measure({"a": lambda: a(*x), "b": lambda: b(*x)}, repeats=11)
    return t["a"], t["b"]


def main() -> int:
    ok, why = minilm.available()
    if not ok:
        print(f"skipped: {why}")
        return 0
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steadier on a shared machine; the ratio is what this reports
    model, data = minilm.load()
    x = data.val[0][0]
    bench = wb.Workbench(model, data.val, metric=minilm.cosine, example_inputs=data.example)
    ffn = [t.name for t in bench.targets if t.name.endswith("intermediate.dense")]
    n_dense = sum(p.numel() for p in model.parameters())
    dense_ms = _paired(model, model, x)[0]
    print(
        f"all-MiniLM-L6-v2, {len(data.sentences)} sentences, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {os.cpu_count()} CPUs; baseline: the dense model, {dense_ms:.1f} ms per batch of {x[0].shape[0]}"
    )
    print("heads | FFN  | cosine to dense | params        | latency vs dense (shrunk model)")
    for heads, neurons in SETTINGS:
        if heads:
            minilm.prune_heads(bench, heads)
        if neurons:
            bench.apply(wb.Plan({n: wb.LayerPlan(neurons, "neuron", "l2") for n in ffn}))
        cos = bench.evaluate()["metric"]
        small = minilm.shrink(model)
        n = sum(p.numel() for p in small.parameters())
        ms, base = _paired(small, model, x)  # base: the dense-shaped (masked) model, interleaved in the same run
        print(
            f"{heads:5.0%} | {neurons:4.0%} | {cos:15.4f} | {n / 1e6:5.2f}M ({n / n_dense:4.0%}) | "
            f"{base / ms:4.2f}x faster ({ms:.1f} ms vs {base:.1f} ms)"
        )
        bench.reset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
