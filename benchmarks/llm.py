"""Pruning language models layer-wise: the ordering table on a small LLaMA and the 1B-parameter memory/time check.

Default (``.venv/bin/python -m benchmarks.llm``, a few minutes): the ordering table on the shipped, trained
``stdlib-lm`` (its whole validation split, its 128 calibration sequences): magnitude, Wanda and SparseGPT at 50%
unstructured, 2:4 and 4:8, at 70% with and without OWL, and Wanda 2:4 followed by a short masked fine-tune.

``--scale small`` (about a minute): a small LLaMA-style decoder with random weights
(4 blocks, hidden 256, grouped-query attention 8 heads / 2 KV heads, MLP 688, vocabulary 2000, seed 0), calibrated on
16 random sequences x 128 tokens (seed 1) and evaluated on 16 others (seed 2), pruned with `bench.prune_llm` by
magnitude, Wanda and SparseGPT at 50% unstructured, 2:4 and 4:8, and at 70% with and without OWL. Random weights
have no language to lose, so next to perplexity the table gives the KL divergence of the pruned model's next-token
distribution from the dense model's (mean over tokens): how much of the dense function survives. The shipped
``stdlib-lm`` model (a trained one) will give the papers' perplexity ordering; this table checks the machinery.

``--scale 1b``: a LLaMA config of 1.1B parameters (TinyLlama's shape: 22 blocks, hidden 2048, 32 heads / 4 KV heads,
MLP 5632, vocabulary 32000; random weights, float32 unless ``--dtype bfloat16``), pruned to 50% by Wanda and by
SparseGPT, each in its own subprocess on 2 threads (``torch.set_num_threads(2)``), calibrated on 8 sequences x 256
tokens (batches of 4), through a `Workbench` with ``undo=False`` (no copy of the weights before the step is kept:
the documented option for models whose copy does not fit; the bench adopts the pruned model with its masks).
Peak RSS (``ru_maxrss`` of the subprocess, interpreter, torch and transformers included) is compared with
``1.5 x model bytes + one block's calibration activations`` (the hidden states of all calibration sequences, which
layer-wise calibration holds between blocks). Seconds per block are printed as they come; ``--max-blocks K`` stops
each run after K blocks and says that the totals are extrapolated (time: K blocks' mean x 22; memory: the masks of the
blocks not pruned added at one byte per weight). It takes about 3-5 minutes for Wanda and 13-17 for SparseGPT on
this machine's 2 cores while other work runs (load average 3-5); ``--methods sparsegpt`` runs one.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

SCALES = {
    "small": dict(
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=2000,
    ),
    "1b": dict(
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        vocab_size=32000,
    ),
}
THREADS_1B = 2


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _model(scale: str, dtype: torch.dtype):
    import transformers as T

    torch.manual_seed(0)
    cfg = T.LlamaConfig(**SCALES[scale], max_position_embeddings=2048, tie_word_embeddings=False)
    return T.LlamaForCausalLM(cfg).to(dtype).eval()


def _batches(n: int, tokens: int, batch: int, vocab: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, tokens), generator=g)
    return [{"input_ids": ids[i : i + batch], "labels": ids[i : i + batch]} for i in range(0, n, batch)]


# the 1B check: one method per subprocess --------------------------------------------------------------------------
class _Enough(Exception):
    pass


def _child(method: str, out: str, dtype: str, n: int, tokens: int, batch: int, max_blocks: int | None) -> None:
    import warnings

    torch.set_num_threads(THREADS_1B)
    import transformers  # noqa: F401  (its import counts in the baseline)

    import workbench as wb

    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    model = _model("1b", getattr(torch, dtype))
    build_s = time.perf_counter() - t0
    rss_model = _rss_bytes()
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    cfg = model.config
    data = _batches(n, tokens, batch, cfg.vocab_size, 1)
    example = {"input_ids": data[0]["input_ids"][:1, :16]}  # groups are traced once, on a short example
    bench = wb.Workbench(model, data, example_inputs=example)
    rss_bench = _rss_bytes()
    layer_weights = cfg.num_hidden_layers * sum(
        m.weight.numel() for m in model.model.layers[0].modules() if isinstance(m, torch.nn.Linear)
    )
    rows: list[dict] = []

    def progress(i: int, total: int, seconds: float) -> None:
        rows.append({"block": i, "seconds": seconds, "rss": _rss_bytes()})
        print(f"  {method} block {i + 1}/{total}: {seconds:.1f} s, peak RSS {_rss_bytes() / 2**30:.2f} GiB", flush=True)
        if max_blocks is not None and i + 1 >= max_blocks:
            raise _Enough

    t1 = time.perf_counter()
    stopped = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            bench.prune_llm(0.5, method=method, undo=False, evaluate=False, progress=progress)
        except _Enough:
            stopped = True
    prune_s = time.perf_counter() - t1
    masked = sum(int(m.sum()) for m in bench.masks.values())
    held = sum(m.numel() for m in bench.masks.values())
    res = {
        "method": method,
        "dtype": dtype,
        "params": sum(p.numel() for p in model.parameters()),
        "model_bytes": model_bytes,
        "act_bytes": n * tokens * cfg.hidden_size * torch.finfo(getattr(torch, dtype)).bits // 8,
        "rss0": rss0,
        "rss_model": rss_model,
        "rss_bench": rss_bench,
        "peak": _rss_bytes(),
        "build_s": build_s,
        "prune_s": prune_s,
        "blocks": rows,
        "method_seconds": list(bench.last_llm.method_seconds) if bench.last_llm else None,
        "stopped": stopped,
        "n_blocks": cfg.num_hidden_layers,
        "masks_bytes_missing": layer_weights - held,
        "sparsity_of_pruned": masked / max(held, 1),
        "threads": torch.get_num_threads(),
    }
    with open(out, "w") as f:
        json.dump(res, f)


def _scale_1b(args) -> int:
    results = []
    for method in args.methods.split(","):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "r.json")
            cmd = [sys.executable, "-m", "benchmarks.llm", "--child", method, out, "--dtype", args.dtype]
            cmd += ["--nsamples", str(args.nsamples), "--tokens", str(args.tokens), "--batch", str(args.batch)]
            if args.max_blocks:
                cmd += ["--max-blocks", str(args.max_blocks)]
            print(f"{method}: {' '.join(cmd[1:])}", flush=True)
            proc = subprocess.run(cmd, check=False)
            if proc.returncode:
                print(f"{method} failed (exit {proc.returncode})")
                return 1
            with open(out) as f:
                results.append(json.load(f))
    gib = 2**30
    r0 = results[0]
    print()
    print(
        f"LLaMA config {r0['params'] / 1e9:.2f}B parameters ({r0['dtype']}, {r0['model_bytes'] / gib:.2f} GiB), random "
        f"weights; 50% unstructured per layer; calibration {args.nsamples} sequences x {args.tokens} tokens in batches "
        f"of {args.batch}; {r0['threads']} torch threads; bench.prune_llm(undo=False); {os.cpu_count()} CPUs, load "
        f"average {os.getloadavg()[0]:.1f} (other work on the machine slows the 2 threads)"
    )
    head = ["method", "blocks", "s/block", "method s/block", "total s", "peak RSS", "bound", "peak / model", "ok"]
    rows = []
    for r in results:
        secs = [b["seconds"] for b in r["blocks"]]
        done = len(secs)
        per = sum(secs) / max(done, 1)
        meth = r["method_seconds"] or []
        extra_masks = r["masks_bytes_missing"] if r["stopped"] else 0
        peak = r["peak"] + extra_masks
        bound = 1.5 * r["model_bytes"] + r["act_bytes"]
        total = per * r["n_blocks"] if r["stopped"] else r["prune_s"]
        star = "*" if r["stopped"] else ""
        rows.append(
            [
                r["method"],
                f"{done}/{r['n_blocks']}",
                f"{per:.1f}",
                f"{sum(meth) / max(len(meth), 1):.1f}",
                f"{total:.0f}{star}",
                f"{peak / gib:.2f} GiB{star}",
                f"{bound / gib:.2f} GiB",
                f"{peak / r['model_bytes']:.2f}x",
                "yes" if peak <= bound else "NO",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    print(
        f"bound = 1.5 x model bytes + one block's calibration activations ({r0['act_bytes'] / 2**20:.0f} MiB: "
        f"{args.nsamples} x {args.tokens} tokens x hidden 2048); peak RSS includes the interpreter, torch and "
        f"transformers ({r0['rss0'] / gib:.2f} GiB before the model) and the masks the bench keeps (1 byte per pruned "
        "layer weight)."
    )
    for r in results:
        secs = ", ".join(f"{b['seconds']:.1f}" for b in r["blocks"])
        print(f"{r['method']} seconds per block: {secs}")
        print(
            f"{r['method']}: model built in {r['build_s']:.0f} s; RSS after build {r['rss_model'] / gib:.2f} GiB, after "
            f"Workbench(...) {r['rss_bench'] / gib:.2f} GiB; pruned layers' sparsity {r['sparsity_of_pruned']:.3f}"
        )
    if any(r["stopped"] for r in results):
        print(
            f"* extrapolated: each run stopped after {args.max_blocks} blocks (--max-blocks); total seconds = mean "
            "seconds per block x 22, peak RSS = measured peak + 1 byte per weight of the blocks not pruned (their masks)"
        )
    return 0


# the ordering table ------------------------------------------------------------------------------------------------
def _kl(model, dense_logp: list[torch.Tensor], data) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for b, ref in zip(data, dense_logp):
            logp = torch.log_softmax(model(input_ids=b["input_ids"]).logits.double(), -1)
            total += float((ref.exp() * (ref - logp)).sum())
            count += ref.shape[0] * ref.shape[1]
    return total / count


def _ordering(args) -> int:
    import warnings

    import workbench as wb

    torch.set_num_threads(1)
    model = _model("small", torch.float32)
    vocab = model.config.vocab_size
    calib = _batches(16, 128, 8, vocab, 1)
    val = _batches(16, 128, 8, vocab, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bench = wb.Workbench(model, val, calib=calib)
    dense = bench.evaluate()["metric"]
    with torch.no_grad():
        dense_logp = [torch.log_softmax(model(input_ids=b["input_ids"]).logits.double(), -1) for b in val]
    cases = [(0.5, "unstructured", False), (None, "2:4", False), (None, "4:8", False)]
    cases += [(0.7, "unstructured", False), (0.7, "unstructured", True)]
    head = ["method", "sparsity", "pattern", "OWL", "perplexity", "KL to dense", "seconds"]
    rows = [["dense", "0%", "", "", f"{dense:.1f}", "0", ""]]
    for method in ("magnitude", "wanda", "sparsegpt"):
        for s, pattern, owl in cases:
            t = time.perf_counter()
            entry = bench.prune_llm(s, method=method, pattern=pattern, owl=owl)
            secs = time.perf_counter() - t
            kl = _kl(model, dense_logp, val)
            label = f"{bench.last_llm.sparsity:.0%}"
            rows.append(
                [method, label, pattern, "yes" if owl else "", f"{entry.metric:.1f}", f"{kl:.4f}", f"{secs:.1f}"]
            )
            bench.undo()
    cfg = model.config
    print(
        f"LLaMA-style decoder, random weights (seed 0): {cfg.num_hidden_layers} blocks, hidden {cfg.hidden_size}, "
        f"{cfg.num_attention_heads} heads / {cfg.num_key_value_heads} KV heads, MLP {cfg.intermediate_size}, vocabulary "
        f"{vocab}; calibration 16 x 128 random tokens (seed 1), evaluation 16 x 128 (seed 2); every linear layer of "
        "every block pruned layer-wise (bench.prune_llm), undone between rows; 1 thread"
    )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    print(
        "KL to dense: mean over evaluation tokens of KL(dense || pruned) of the next-token distributions. Random weights: "
        "perplexity is near the vocabulary size for every row; the KL column is the one to read."
    )
    return 0


def _ordering_lm(args) -> int:
    """The papers' table on the shipped, trained stdlib-lm: perplexity on its whole validation split."""
    import itertools
    import warnings

    import workbench as wb

    torch.set_num_threads(1)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, data = wb.demo.load("stdlib-lm")
        bench = wb.Workbench(model, data.val, calib=data.calib, train=data.train)
    dense = bench.evaluate()
    n_cal = sum(int(b["input_ids"].shape[0]) for b in data.calib)
    cases = [(0.5, "unstructured", False), (None, "2:4", False), (None, "4:8", False)]
    cases += [(0.7, "unstructured", False), (0.7, "unstructured", True)]
    head = ["method", "ratio", "pattern", "OWL", "perplexity", "vs dense", "seconds"]
    rows = [["dense", "0%", "", "", f"{dense['perplexity']:.2f}", "", ""]]
    results = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        for r, pattern, owl in cases:
            t = time.perf_counter()
            entry = bench.prune_llm(r, method=method, pattern=pattern, owl=owl)
            secs = time.perf_counter() - t
            ppl = entry.metrics["perplexity"]
            results[(method, bench.last_llm.sparsity, pattern, owl)] = ppl
            rows.append(
                [
                    method,
                    f"{bench.last_llm.sparsity:.0%}",
                    pattern,
                    "yes" if owl else "",
                    f"{ppl:.2f}",
                    f"{ppl / dense['perplexity']:.3f}x",
                    f"{secs:.1f}",
                ]
            )
            bench.undo()
    entry = bench.prune_llm(None, method="wanda", pattern="2:4")
    t = time.perf_counter()
    bench.finetune(1, data=list(itertools.islice(data.train, 16)), lr=1e-4, progress=False)
    tuned = bench.evaluate()["perplexity"]
    rows.append(
        [
            "wanda + fine-tune",
            "50%",
            "2:4",
            "",
            f"{tuned:.2f}",
            f"{tuned / dense['perplexity']:.3f}x",
            f"{time.perf_counter() - t:.1f}",
        ]
    )
    bench.reset()
    cfg = model.config
    print(
        f"stdlib-lm (shipped weights): LlamaForCausalLM, {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{cfg.num_hidden_layers} blocks, hidden {cfg.hidden_size}, {cfg.num_attention_heads} heads / "
        f"{cfg.num_key_value_heads} KV heads; validation {dense['tokens']:,} predicted tokens (all of data.val); "
        f"calibration {n_cal} x {data.seq_len} tokens (data.calib, the papers' 128 sequences at this context); "
        "every linear layer of every block pruned layer-wise (bench.prune_llm), undone between rows; fine-tune: "
        "1 epoch over 16 training batches of 8 x 256 (AdamW lr 1e-4, masks enforced); seed 0; 1 thread"
    )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))

    def ppl(m, s, p="unstructured", o=False):
        return results[(m, s, p, o)]

    print(
        "orderings (the papers': magnitude >> SparseGPT ~ Wanda at 50%; 2:4 worse than 50% unstructured; OWL <= "
        "uniform at 70%; fine-tuning recovers part):"
    )
    print(
        f"  50% unstructured, best to worst: {' < '.join(sorted(('magnitude', 'wanda', 'sparsegpt'), key=lambda m: ppl(m, 0.5)))}"
    )
    for m in ("magnitude", "wanda", "sparsegpt"):
        print(
            f"  {m}: 2:4 {'worse' if ppl(m, 0.5, '2:4') > ppl(m, 0.5) else 'not worse'} than 50% unstructured; "
            f"OWL at 70% {'<=' if ppl(m, 0.7, o=True) <= ppl(m, 0.7) else '>'} uniform "
            f"({ppl(m, 0.7, o=True):.2f} vs {ppl(m, 0.7):.2f})"
        )
    print(f"  fine-tune after Wanda 2:4: {ppl('wanda', 0.5, '2:4'):.2f} -> {tuned:.2f}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scale",
        choices=("stdlib-lm", "small", "1b"),
        default="stdlib-lm",
        help="stdlib-lm: the ordering table on the shipped model; small: on a random LLaMA; 1b: memory/time check",
    )
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--nsamples", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument(
        "--max-blocks", type=int, default=None, help="stop each 1b run after this many blocks (extrapolate)"
    )
    ap.add_argument("--methods", default="wanda,sparsegpt", help="1b: the methods to run, comma-separated")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.dtype, args.nsamples, args.tokens, args.batch, args.max_blocks)
        return 0
    if args.scale == "1b":
        return _scale_1b(args)
    if args.scale == "small":
        return _ordering(args)
    return _ordering_lm(args)


if __name__ == "__main__":
    sys.exit(main())
