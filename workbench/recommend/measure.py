"""Compile candidates with the sparse core and time them against the masked dense model."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from .candidates import Strategy
from .context import _Cand, _Ctx, _nbytes


# compile and time ------------------------------------------------------------------------------------------------
def _backends(s: Strategy, device: torch.device) -> list[tuple[str, torch.dtype | None]]:
    """The registered backends for `s`'s family on `device` (and the dtype each needs), the most specific first:
    ``shrink`` for structured, ``semi_structured`` (fp16) / ``bsr`` for 2:4 / blocks on CUDA, then ``csr``."""
    from ..sparse.backends import available_backends, get_backend

    found = [get_backend(n) for n in available_backends()]
    found = [b for b in found if s.family in b.families and device.type in b.devices]
    return [(b.name, b.dtype) for b in sorted(found, key=lambda b: len(b.families))]


def _compile(ctx: _Ctx, c: _Cand, device: torch.device) -> None:
    """Compile `c` with each backend its strategy can use (on copies): module, bytes, or why it could not."""
    from ..sparse import CompileError, compile

    for backend, dtype in _backends(c.strategy, device):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fast, rep = compile(
                    ctx.masked(c.module, c.masks), backend, device, ctx.batch_size, dtype=dtype, repeats=1
                )
        except CompileError as e:
            c.compiled[backend] = {"module": None, "bytes": None, "dtype": dtype, "note": str(e).split(". ")[0]}
            continue
        note = (
            "nothing to shrink: no backend removes these units yet"
            if backend == "shrink" and not rep.removed_channels
            else ""
        )
        nbytes = None if dtype is not None else _nbytes(fast)  # fp16 bytes are not comparable with fp32 ones
        c.compiled[backend] = {"module": fast, "bytes": nbytes, "dtype": dtype, "note": note}


def _cpu_ms(fns: dict[str, Callable[[], Any]], rounds: int, min_block_s: float = 0.004) -> dict[str, float]:
    """Median CPU time (ms of process time) per call of each callable, in interleaved rounds on one thread: other
    programs on a shared machine slow wall-clock timings unevenly, but do not add to this process's CPU time."""
    from ..sparse.timing import measure

    return measure(
        fns, repeats=rounds, min_block_s=min_block_s, clock="cpu", warmup=1, grow="double", max_calls=1 << 12
    )


def _time(ctx: _Ctx, cands: list[_Cand], device: torch.device, repeats: int, timer: str) -> None:
    """One interleaved timing of every compiled module and the masked dense model (per dtype): speed-ups in place."""
    from ..sparse import compile
    from ..sparse.compiler import _batch, _cast
    from ..sparse.timing import measure

    xs0 = _batch(ctx.state.example_inputs, ctx.state.data, ctx.batch_size)
    fns: dict[str, Callable[[], Any]] = {}
    refs: dict[Any, str] = {}
    for dtype in {e["dtype"] for c in cands for e in c.compiled.values() if e["module"] is not None}:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dense = compile(
                ctx.masked(ctx.model, ctx.current), "dense", device, ctx.batch_size, dtype=dtype, repeats=1
            ).module
        xs = _cast(xs0, device, dtype)
        refs[dtype] = f"dense/{dtype}"
        fns[refs[dtype]] = lambda m=dense, xs=xs: m(*xs)
    for i, c in enumerate(cands):
        for backend, e in c.compiled.items():
            if e["module"] is not None:
                xs = _cast(xs0, device, e["dtype"])
                fns[f"{i}/{backend}"] = lambda m=e["module"], xs=xs: m(*xs)
    if not fns:
        return
    with torch.inference_mode():
        if device.type == "cpu" and timer == "cpu":
            ms = _cpu_ms(fns, repeats)
        else:
            ms = measure(fns, repeats=repeats, device=device)
    for i, c in enumerate(cands):
        for backend, e in c.compiled.items():
            if e["module"] is not None:
                e["ms"] = ms[f"{i}/{backend}"]
                e["speedup"] = ms[refs[e["dtype"]]] / e["ms"]
