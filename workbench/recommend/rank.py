"""Measured candidates as ranked `Row`s: the backend kept, the budget check, the order and one reason each."""

from __future__ import annotations

from dataclasses import replace

from .candidates import FGSM_EPS, UNITS
from .context import _Cand, _Ctx
from .result import Row, _is_accuracy


def _row(ctx: _Ctx, c: _Cand, speed: bool) -> Row:
    """The backend the goal prefers (fastest, or smallest for `size` and where speed is not measured; the masked
    dense model when no compiled one is better: 1.00x, the bytes of the model now), and the budget check."""
    backend, sp, size = "dense", (1.0 if speed else None), 1.0
    by_size = ctx.goal == "size" or not speed
    measured = {}
    for name, e in c.compiled.items():
        s = e.get("speedup") if speed else None
        b = None if e["bytes"] is None else e["bytes"] / ctx.bytes_now
        measured[name] = {"speedup": s, "size": b, "note": e["note"]}
        if e["module"] is None or e["note"]:
            continue
        if by_size:
            better = b is not None and (b < size - 1e-9 or name == "shrink")
        else:  # sparse formats must gain clearly (timing noise); shrink is smaller as well
            better = s is not None and s > max(sp or 1.0, 1.0 if name == "shrink" else 1.05)
        if better:
            backend, sp, size = name, s, b
    drop = ctx.drop(c.value)
    if ctx.goal in ("latency", "size"):
        shortfall = max(0.0, drop - ctx.budget)
        if shortfall <= 1e-12:
            shortfall = 0.0
    else:
        shortfall = max(0.0, ctx.budget - c.counts["size_ratio"])
    s = c.strategy
    accel = 0.0
    if s.family == "structured" and backend == "shrink":
        accel = 1.0 - c.counts["flops_kept"]
    elif s.family == "N:M" and ctx.device.type == "cuda":
        accel = 0.5 * sum(ctx.cuda_24.get(n, 0.0) for n in c.masks) / max(ctx.flops, 1.0)
    return Row(
        rank=0,
        strategy=s.label,
        name=s.name,
        family=s.family,
        granularity=c.gran,
        criterion=s.criterion,
        allocation=s.allocation,
        timing=f"+ fine-tune {c.epochs} ep" if c.epochs else "one-shot",
        backend=backend,
        ratio=float(c.ratio),
        plan=c.plan,
        metric=float(c.value),
        drop=float(drop),
        predicted_loss=c.counts["predicted_loss"],
        robust_accuracy=c.robust,
        sparsity=c.counts["sparsity"],
        size_ratio=c.counts["size_ratio"],
        flops_kept=c.counts["flops_kept"],
        speedup=sp,
        size=size,
        accelerated_flops=accel,
        meets_budget=shortfall == 0.0,
        shortfall=float(shortfall),
        reason="",
        finetune_epochs=c.epochs,
        measured=measured,
    )


def _key(goal: str, speed: bool):
    """Rows within budget first, by the goal; speed-ups compare rounded to 0.1x (timing noise), then the smaller
    drop and the higher ratio win. Rows over budget follow, closest first."""

    def key(r: Row):
        if not r.meets_budget:
            return (1, r.shortfall, r.drop, 0.0)
        if goal == "latency":
            fast = r.speedup if speed and r.speedup is not None else 1.0 + r.accelerated_flops
            return (0, -round(fast, 1), r.drop, -r.ratio)
        if goal == "size":
            return (0, round(r.size if r.size is not None else 1.0, 2), r.drop, -r.ratio)
        if goal == "accuracy":
            return (0, r.drop, -(r.speedup or 1.0), 0.0)
        return (0, -(r.robust_accuracy or 0.0), r.drop, 0.0)

    return key


# reasons ----------------------------------------------------------------------------------------------------------
def _knob(r: Row) -> str:
    if r.family == "N:M":
        return "2 of every 4 weights kept"
    if r.allocation == "sensitivity":
        what = "FLOPs" if r.family == "structured" else "weights"
        return f"{r.ratio:.0%} of the {what} (per-layer ratios from this model's sensitivity)"
    if r.family == "structured":
        return f"{r.ratio:.0%} of the {'/'.join(UNITS.get(g, g) for g in r.granularity.split('+'))}"
    return f"{r.ratio:.0%} of the {'4x4 blocks' if r.family == 'block' else 'weights'}"


def _speed_text(r: Row, speed: bool, where: str) -> str:
    if not speed:
        if r.family == "structured" and r.backend == "shrink":
            return f"{1 - r.flops_kept:.0%} of the FLOPs physically removed (shrink), which a GPU skips too"
        if r.family == "N:M" and r.accelerated_flops > 0:
            return f"2:4 sparse tensor cores can skip {r.accelerated_flops:.0%} of the FLOPs (not measured)"
        if r.family == "structured":
            return "nothing a kernel can skip (no backend removes these units yet)"
        return "no CUDA kernel skips scattered zeros like these (not measured)"
    if r.backend != "dense" and r.speedup is not None:
        return f"measured {r.speedup:.2f}x on {where} ({r.backend})"
    alt = next(((k, v) for k, v in r.measured.items() if v["speedup"] is not None), None)
    if alt is not None and alt[1]["note"]:
        text = f"no measured speed on {where} ({alt[1]['note']})"
    elif alt is not None:
        text = f"no measured speed on {where} ({alt[0]} {alt[1]['speedup']:.2f}x, so it stays dense)"
    else:
        notes = [v["note"] for v in r.measured.values() if v["note"]]
        text = f"no measured speed on {where}" + (f" ({notes[0]})" if notes else "")
    if r.family == "N:M" and where == "CPU":
        text += "; 2:4 pays off on NVIDIA sparse tensor cores (device='cuda')"
    return text


def _reasons(rows: list[Row], ctx: _Ctx, speed: bool, where: str) -> list[Row]:
    acc = _is_accuracy(ctx.metric_name)

    def cost(r: Row) -> str:
        if acc:
            return f"{-100 * r.drop:+.1f} points of accuracy ({ctx.metric_now:.1%} -> {r.metric:.1%})"
        return f"{ctx.metric_name} {ctx.metric_now:.4f} -> {r.metric:.4f}"

    fast_other = any(x.family != "structured" and (x.speedup or 0) > 1.05 for x in rows if x.meets_budget)
    out, said_only = [], False
    for i, r in enumerate(rows):
        knob, speed_txt = _knob(r), _speed_text(r, speed, where)
        tuned = f" after {r.finetune_epochs} epoch(s) of fine-tuning" if r.finetune_epochs else ""
        if not r.meets_budget:
            if ctx.goal in ("latency", "size"):
                over = f"{100 * r.shortfall:.1f} points" if acc else f"{r.shortfall:.4f}"
                text = f"{r.strategy}: over budget by {over}: {knob} costs {cost(r)}{tuned}"
            else:
                text = (
                    f"{r.strategy}: over budget: reaches only {r.size_ratio:.2f}x fewer parameters of the "
                    f"{ctx.budget:g}x asked, with {knob}, at {cost(r)}{tuned}"
                )
        elif ctx.goal == "latency":
            fast = speed and (r.speedup or 0) > 1.05
            only = fast and r.family == "structured" and not fast_other and not said_only
            said_only = said_only or only
            lead = (
                "only structured removal gave measured speed: "
                if only
                else "fastest within budget: "
                if fast and i == 0
                else "nothing within budget gave measured speed; this loses least: "
                if i == 0 and speed
                else ""
            )
            text = f"{r.strategy}: {lead}{speed_txt} at {knob}, for {cost(r)}{tuned}"
        elif ctx.goal == "size":
            alt = r.measured.get("csr") or {}
            size_txt = f"{r.size:.0%} of the bytes as {r.backend}" if r.size is not None else "size not measured"
            if r.backend == "dense" and (alt.get("size") or 0) > 1:
                size_txt += f" (CSR would take {alt['size']:.0%}: its indices cost more than the zeros save)"
            lead = "smallest within budget: " if i == 0 else ""
            text = (
                f"{r.strategy}: {lead}{size_txt}, {1 / r.size_ratio:.0%} of the parameters kept, at {knob}, "
                f"for {cost(r)}{tuned}"
            )
        elif ctx.goal == "accuracy":
            lead = "least accuracy lost: " if i == 0 else ""
            text = f"{r.strategy}: {lead}{cost(r)} at {r.size_ratio:.2f}x fewer parameters ({knob}){tuned}; {speed_txt}"
        else:
            lead = "most robust: " if i == 0 else ""
            text = (
                f"{r.strategy}: {lead}FGSM (eps {FGSM_EPS:g}) accuracy {ctx.robust_now:.1%} -> "
                f"{r.robust_accuracy:.1%} and clean {cost(r)} at {r.size_ratio:.2f}x fewer parameters ({knob}){tuned}"
            )
        out.append(replace(r, rank=i + 1, reason=text + "."))
    return out
