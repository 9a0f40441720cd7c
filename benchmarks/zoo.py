"""The zoo: the workbench's structured shrink vs Torch-Pruning on every architecture of the test zoo.

Models: the 26 Hugging Face architectures of ``tests/zoo/hf.py`` (small configs, random weights, their natural dict
batches) and the 6 hand-written CNNs of ``tests/zoo/cnn.py`` (3x16x16 images, BatchNorm statistics calibrated as
their test does), imported from the test tree, not copied.

Ours, per model: ``wb.Workbench(model, batches)`` (timed), ``wb.Plan.uniform(0.3, granularity=g)`` applied for every
structured granularity g the model offers (head / neuron / filter / hidden), then ``wb.sparse.compile(bench,
backend="shrink")``. Share = 1 - params_after / params_before of its report. The shrunk model's logits
(``workbench.adapter.call`` + ``logits_of`` on the first batch) must equal the masked model's within 1e-5 before
anything else is reported ("MISMATCH" otherwise); speed = dense ms / shrunk ms of the model's own call on that
batch, median of 7 interleaved rounds (`workbench.sparse.timing.measure`).

Torch-Pruning, per model, on a copy of the dense model, in a forked process bounded to 60 s (GQA attention is known
to hang its graph search): ``tp.pruner.MetaPruner(copy, example_inputs, importance=MagnitudeImportance(p=1),
pruning_ratio=0.3, ignored_layers=[output head])`` with, for transformers, its head options as in its HF examples
(``num_heads={q/k/v: heads}``, ``prune_num_heads=True``, ``prune_head_dims=False``, ``head_pruning_ratio=0.3``) and
``output_transform=logits_of``; example inputs are the batch's dict for HF models, the image tensor for CNNs.
After ``pruner.step()`` the attention modules' head counts are updated as its examples do, and the pruned model is
run with its own call: "runs" (finite outputs), "non-finite" or the exception. "end to end" counts the models whose
structured pruning removed parameters and whose pruned model runs (ours: with outputs equal to the masked model's).

Run: ``nice -n 10 .venv/bin/python -m benchmarks.zoo`` (about 6 minutes on 2 cores, 5 of them spent
waiting out Torch-Pruning hangs: the 4 GQA models and phi).
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch_pruning as tp

import workbench as wb
from workbench.adapter import call, logits_of
from workbench.sparse.timing import measure

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo.cnn import CNNS, _images, calibrated
from zoo.hf import builders

THREADS = 1
RATIO = 0.3
ATOL = 1e-5
REPEATS = 7
TP_TIMEOUT = 60.0
STRUCTURED = ("head", "neuron", "filter", "hidden")
HF_CNNS = {"convnext", "resnet", "mobilenet-v2", "efficientnet", "regnet"}
QKV_NAMES = (("query", "key", "value"), ("q_proj", "k_proj", "v_proj"), ("q_lin", "k_lin", "v_lin"), ("q", "k", "v"))
HEAD_ATTRS = ("num_attention_heads", "num_heads", "n_heads", "n_head")


def _cases():
    for name, (make, batches) in builders().items():
        yield name, "cnn" if name in HF_CNNS else "transformer", make, batches
    for name, cls in CNNS.items():
        yield name, "cnn", (lambda cls=cls: calibrated(cls())), _images


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:80]


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _logits(model, x) -> torch.Tensor:
    with torch.inference_mode():
        return logits_of(call(model, x))


# ours -----------------------------------------------------------------------------------------------------------


def _ours(make, batches) -> tuple[dict, torch.nn.Module, object]:
    torch.manual_seed(0)
    model = make().eval()
    data = batches()
    dense = copy.deepcopy(model)
    r: dict = {}
    t0 = time.perf_counter()
    bench = wb.Workbench(model, data)
    r["build_s"] = time.perf_counter() - t0
    r["targets"] = len(bench.targets)
    r["offered"] = sorted({g for t in bench.targets for g in t.granularities if g in STRUCTURED})
    x = bench.adapter.split(data[0])[0]
    try:
        for g in r["offered"]:
            bench.apply(wb.Plan.uniform(RATIO, granularity=g), evaluate=False)
        fast, rep = wb.sparse.compile(bench, backend="shrink", repeats=3)
    except Exception as e:
        r["error"] = _short(e)
        return r, dense, x
    r["notes"] = list(rep.notes)
    r["err"] = float((_logits(fast, x) - _logits(model, x)).abs().max())
    if not r["err"] <= ATOL:
        return r, dense, x
    r["share"] = 1 - rep.params_after / rep.params_before
    with torch.inference_mode():
        t = measure(
            {"dense": lambda: call(dense, x), "shrunk": lambda: call(fast, x)}, repeats=REPEATS, min_block_s=0.01
        )
    r["dense_ms"], r["speed"] = t["dense"], t["dense"] / t["shrunk"]
    return r, dense, x


# Torch-Pruning --------------------------------------------------------------------------------------------------


def _attention(model) -> dict:
    """attention module -> (q, k, v) Linear layers, q's heads, k/v's heads (GQA) -- for `num_heads`."""
    cfg = getattr(model, "config", None)
    found = {}
    for m in model.modules():
        for names in QKV_NAMES:
            lin = [getattr(m, n, None) for n in names]
            if not all(isinstance(v, torch.nn.Linear) for v in lin):
                continue
            heads = next((getattr(m, a) for a in HEAD_ATTRS if isinstance(getattr(m, a, None), int)), None)
            heads = heads or getattr(getattr(m, "config", cfg), "num_attention_heads", None)
            if not isinstance(heads, int):
                continue
            kv = getattr(m, "num_key_value_heads", None) or getattr(cfg, "num_key_value_heads", None) or heads
            found[m] = (lin, heads, kv if isinstance(kv, int) else heads)
        fused = getattr(m, "query_key_value", None)  # GPT-NeoX: heads interleaved as (heads, 3 * head_dim)
        if isinstance(fused, torch.nn.Linear) and isinstance(getattr(cfg, "num_attention_heads", None), int):
            found[m] = ([fused], cfg.num_attention_heads, cfg.num_attention_heads)
    return found


def _output_head(model) -> list[torch.nn.Module]:
    out = []
    get = getattr(model, "get_output_embeddings", None)
    if callable(get) and isinstance(get(), torch.nn.Module):
        out.append(get())
    for n in ("classifier", "score", "lm_head", "head"):
        m = getattr(model, n, None)
        if isinstance(m, torch.nn.Module) and all(m is not o for o in out):
            out.append(m)
    return out


def _tp_run(model, x, send) -> None:
    torch.set_num_threads(THREADS)
    warnings.simplefilter("ignore")
    r: dict = {}
    try:
        before = _params(model)
        attn = _attention(model)
        num_heads = {}
        for lin, heads, kv in attn.values():
            num_heads.update({lin[0]: heads, **{m: kv for m in lin[1:]}})
        t0 = time.perf_counter()
        pruner = tp.pruner.MetaPruner(
            model,
            x,
            importance=tp.importance.MagnitudeImportance(p=1),
            pruning_ratio=RATIO,
            ignored_layers=_output_head(model),
            num_heads=dict(num_heads),
            prune_num_heads=bool(num_heads),
            prune_head_dims=False,
            head_pruning_ratio=RATIO if num_heads else 0.0,
            output_transform=logits_of,
        )
        pruner.step()
        r["build_s"] = time.perf_counter() - t0
        r["share"] = 1 - _params(model) / before
        for m, (lin, _, _) in attn.items():  # what its HF examples do after step(): new head counts
            h = pruner.num_heads.get(lin[0])
            for a in HEAD_ATTRS:
                if isinstance(getattr(m, a, None), int):
                    setattr(m, a, h)
            for a in ("all_head_size", "inner_dim"):
                if isinstance(getattr(m, a, None), int):
                    setattr(m, a, lin[0].out_features)
            if len(lin) == 3 and isinstance(getattr(m, "num_key_value_heads", None), int):
                m.num_key_value_heads = pruner.num_heads.get(lin[1])
            if len(lin) == 3 and isinstance(getattr(m, "num_key_value_groups", None), int):
                m.num_key_value_groups = h // pruner.num_heads.get(lin[1])
        try:
            y = _logits(model.eval(), x)
            r["runs"] = "runs" if bool(torch.isfinite(y).all()) else "non-finite"
        except Exception as e:
            r["runs"] = _short(e)
    except BaseException as e:
        r["error"] = _short(e)
    send.send(r)


def _tp(dense, x) -> dict:
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_tp_run, args=(copy.deepcopy(dense), x, send), daemon=True)
    t0 = time.perf_counter()
    p.start()
    send.close()
    if recv.poll(TP_TIMEOUT):
        try:
            r = recv.recv()
        except EOFError:
            r = {"error": f"crashed (exit code {p.exitcode})"}
    else:
        r = {"error": f"hang (>{TP_TIMEOUT:.0f} s)"}
    p.join(1)
    if p.is_alive():
        p.kill()
        p.join()
    if "build_s" not in r and "hang" not in r["error"]:
        r["build_s"] = time.perf_counter() - t0
    return r


# table ----------------------------------------------------------------------------------------------------------


def _ok_ours(r: dict) -> bool:
    return r.get("share", 0) > 0


def _ok_tp(r: dict) -> bool:
    return r.get("share", 0) > 0 and r.get("runs") == "runs"


def main() -> int:
    torch.set_num_threads(THREADS)
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    header = (
        "model",
        "family",
        "targets",
        "offers",
        "build s",
        "ours share",
        "max |diff|",
        "dense ms",
        "ours x",
        "TP share",
        "TP s",
        "TP pruned model",
    )
    rows, results, problems = [header], [], []
    for name, family, make, batches in _cases():
        t_model = time.perf_counter()
        try:
            ours, dense, x = _ours(make, batches)
        except Exception as e:  # the Workbench itself did not build
            ours, dense, x = {"error": _short(e)}, None, None
        theirs = _tp(dense, x) if dense is not None else {"error": "no model"}
        results.append((family, ours, theirs))
        if "error" in ours:
            share, diff = ours["error"], "-"
            problems.append(f"{name}: {ours['error']}")
        elif "share" not in ours:
            share, diff = "MISMATCH", f"{ours['err']:.1e}"
            problems.append(f"{name}: shrunk vs masked logits differ by {ours['err']:.2e}")
        else:
            share, diff = f"{ours['share']:.1%}", f"{ours['err']:.0e}"
            if ours["speed"] < 0.95:
                problems.append(f"{name}: shrunk model slower than dense ({ours['speed']:.2f}x)")
        problems += [f"{name}: compile note: {n}" for n in ours.get("notes", [])]
        rows.append(
            (
                name,
                family,
                str(ours.get("targets", "-")),
                "+".join(ours.get("offered", [])) or "-",
                f"{ours['build_s']:.2f}" if "build_s" in ours else "-",
                share,
                diff,
                f"{ours['dense_ms']:.2f}" if "dense_ms" in ours else "-",
                f"{ours['speed']:.2f}x" if "speed" in ours else "-",
                f"{theirs['share']:.1%}" if "share" in theirs else theirs.get("error", "-"),
                f"{theirs['build_s']:.2f}" if "build_s" in theirs else "-",
                theirs.get("runs", "-"),
            )
        )
        print(f"  [{name}: {time.perf_counter() - t_model:.0f} s]", file=sys.stderr, flush=True)

    print(
        f"structured pruning at ratio {RATIO} on the zoo ({len(results)} models): workbench (every structured "
        f"granularity offered, compile backend='shrink', logits == masked within {ATOL:g}, checked first) vs "
        f"Torch-Pruning {tp.__version__} MetaPruner (L1 magnitude, heads for attention, output head ignored, "
        f"{TP_TIMEOUT:.0f} s bound); share = params removed; ours x = dense ms / shrunk ms of the model's own call on "
        f"one batch (HF: 4 rows, CNNs: 8x3x16x16), median of {REPEATS} interleaved rounds; torch {torch.__version__}, "
        f"torch.set_num_threads({THREADS}), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, r in enumerate(rows):
        print(
            " | ".join(
                c.ljust(w) if j in (0, 1, 3, 5, 9, 11) else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))
            )
        )
        if i == 0:
            print("-+-".join("-" * w for w in widths))
    n = len(results)
    print(
        f"end to end (structured, runs after): workbench {sum(_ok_ours(o) for _, o, _ in results)}/{n}, "
        f"Torch-Pruning {sum(_ok_tp(t) for _, _, t in results)}/{n}"
    )
    for fam in ("transformer", "cnn"):
        ours = [o.get("share", 0.0) if _ok_ours(o) else 0.0 for f, o, _ in results if f == fam]
        theirs = [t.get("share", 0.0) if _ok_tp(t) else 0.0 for f, _, t in results if f == fam]
        print(
            f"mean share removed on {fam}s ({len(ours)}, a model not pruned end to end counts 0): "
            f"workbench {statistics.mean(ours):.1%}, Torch-Pruning {statistics.mean(theirs):.1%}"
        )
    speeds = [o["speed"] for _, o, _ in results if "speed" in o]
    if speeds:
        print(f"workbench shrunk vs dense latency: median {statistics.median(speeds):.2f}x over {len(speeds)} models")
    if problems:
        print("workbench problems:")
        for p in problems:
            print(f"  {p}")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
