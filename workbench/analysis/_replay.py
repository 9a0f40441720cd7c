"""Exact points for models torch.fx cannot trace (Hugging Face models called with keyword inputs, Python control
flow): module calls that finish before the pruned layer first runs are replayed from one dense pass.

A module call that has returned before the pruned layer's first call began cannot depend on the pruned weights, so
its output is the dense pass's. `ReplayRunner` records, on a structural clone of the model (hooks on the clone, never
on the live model), the order in which module calls start and end on the first batch; for every scan row it keeps
the outermost calls that end before the row's first module starts (for a transformer: the embeddings, the blocks
before the pruned one, the parts of its block that run before the pruned projection), and stores their outputs for
every batch. A point then runs a structural clone whose replayed calls return (copies of) the stored outputs: the
model's own forward runs everything else, so any output type, keyword input and task the adapter reads works.
Calls that change an input in place, return a view of one, or whose output the model changes in place after they
returned (``h = block(x); h += x``) are never replayed (their enclosing call may be). The pass that finds the call
order holds the first batch's outputs, so recording runs only the other batches. For every row the runner checks
on the first batch that its replay reproduces the dense outputs (to 1e-6) and replays nothing for a row where it
does not (each row when a point first uses it, so a trust check of 8 cells does not replay hundreds of rows; all
rows at once when the dense outputs are too large to keep); it refuses when the stored
outputs would exceed `max_bytes` even when only the outermost calls are kept (over it, deeper calls are dropped
first: `_plan_and_record`). It assumes a parameter is read only inside calls of a module that holds it (tied
weights are held by every module that names them, so the earliest counts); a forward that reads another module's
parameter directly, before that module runs, would get the dense value from a replayed call. On the 26 Hugging Face
architectures of the test zoo every replayed scan equals full forward passes exactly.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_leaves, tree_map

from ..adapter import Adapter
from ..adapter.batches import logits_of
from ..evaluate import eval_mode
from ._graph import clone_with

__all__ = ["ReplayRunner", "TooSmall"]

LAZY_CHECK_BYTES = 64 << 20  # dense outputs of the first batch kept to check each row's replay when first used
SPEED_SAMPLE = 4  # rows whose replay is timed against a full forward (spread over the depth)
CLEAR_SPEEDUP = 1.5  # above this on the first timing, replay is taken without timing both sides again
HOOKED_TIMING = 0.25  # seconds: an order pass this long stands for a full forward (its hooks' share is small)


class TooSmall(Exception):
    """The first batch's forward is so short that replay cannot pay for building it (`min_seconds`)."""


Call = tuple[str, int]  # (module name, how many calls of that module came before)


class ReplayRunner:
    """`outputs(params)`: (output, inputs, labels) per batch with `params` replacing the live tensors, re-running
    only what starts after the first call of a module that owns one of them."""

    def __init__(
        self,
        model: nn.Module,
        data: Iterable,
        rows: Sequence[Sequence[str]],
        max_bytes: int = 1 << 30,
        adapter: Adapter | None = None,
        first: Sequence[int] = (),
        min_seconds: float = 0.0,
    ):
        self.model, self.adapter = model, adapter or Adapter(model)
        self.bad: set[int] = set()  # row starts whose replay did not reproduce the model: nothing replayed there
        self.checked: set[int] = set()  # row starts whose replay was checked (bad or not)
        self._lock = threading.Lock()
        with eval_mode(model):
            with torch.no_grad():  # (not inference mode: the order records tensors' version counters)
                self.batches = list(self.adapter.batches(data, model))
                if not self.batches:
                    raise ValueError("no batches")
                t0 = time.perf_counter()
                order = _call_order(model, self.adapter, self.batches[0][0], max_bytes)
                hooked = time.perf_counter() - t0
                if hooked < min_seconds:
                    raise TooSmall(f"the first batch's forward took {hooked * 1e3:.1f} ms")
                self.start, self.end, self.parent, self.unsafe, nbytes, dense, held = order
            with torch.inference_mode():
                starts = sorted({self._first_start(members) for members in rows} - {-1})
                self.keep, self.cache = self._plan_and_record(starts, nbytes, max_bytes, held)
                del held
                fulls: list[float] = []  # what the full engine pays per point and batch

                def full_forward() -> Tensor:
                    t0 = time.perf_counter()
                    out = logits_of(self.adapter.call(self.batches[0][0], clone_with(model, {}).eval()))
                    fulls.append(time.perf_counter() - t0)
                    return out

                # the order pass gave the dense outputs; its time stands for a full forward's unless it was short
                # (the hooks on every module call are then a visible share of it: a plain forward is timed, cheaply)
                want = logits_of(dense)
                del dense
                if hooked >= HOOKED_TIMING:
                    fulls.append(hooked)
                else:
                    full_forward()
                # rows' replays are checked when first used if the dense outputs to check them against are small
                # (an estimate's trust check uses 8 rows of hundreds); else all now, and the outputs are dropped
                lazy = want.numel() * want.element_size() <= LAZY_CHECK_BYTES
                self._want = want if lazy else None
                # rows spread over the depth, for the speed-up: among those the caller uses first (an estimate's
                # trust cells), whose checks are then done
                pool = sorted({self._first_start(rows[i]) for i in first} - {-1}) or starts
                sample = pool
                if len(pool) > SPEED_SAMPLE:
                    sample = [pool[round(k * (len(pool) - 1) / (SPEED_SAMPLE - 1))] for k in range(SPEED_SAMPLE)]
                replayed = []
                for start in sample:
                    t0 = time.perf_counter()
                    self._check(start, want)
                    replayed.append(time.perf_counter() - t0)
                if fulls[0] * len(sample) <= CLEAR_SPEEDUP * sum(replayed):  # close: a load that came and went
                    for k, start in enumerate(sample):  # (another process, a collection) may have tipped it: the
                        if k == len(sample) // 2:  # replays timed again, full forwards amid and after them, the
                            full_forward()  # median of the full forwards taken
                        t0 = time.perf_counter()
                        next(iter(self._run({}, start)))
                        replayed.append(time.perf_counter() - t0)
                    full_forward()
                if not lazy:
                    for start in starts:
                        self._check(start, want)
                # measured speed-up over full forwards on the first batch (`auto` needs > 1.2)
                self.speedup = statistics.median(fulls) * len(replayed) / sum(replayed) if sum(replayed) > 0 else 1.0
                if self.checked and self.bad >= self.checked:
                    raise ValueError("replaying recorded module outputs does not reproduce the model's outputs")

    def _plan_and_record(
        self, starts: Sequence[int], nbytes: Mapping[Call, int], max_bytes: int, held: Mapping[Call, Any] | None
    ):
        """The calls to record (every row's outermost calls that end before it starts) and their outputs on every
        batch. Over `max_bytes`, calls nested deeper than a depth are left out, the deepest first (a transformer then
        keeps its blocks' outputs and re-runs the part of the pruned layer's block before it); `MemoryError` when
        even the outermost calls do not fit."""
        depth = {c: sum(1 for _ in _ancestors(c, self.parent)) for c in self.start}
        wanted: set[Call] = set()
        for start in starts:
            wanted |= self._replayable(start)
        scale = len(self.batches)  # outputs measured on the first batch; the others alike
        error: MemoryError | None = None
        for limit in sorted({depth[c] for c in wanted}, reverse=True) or [0]:
            keep = {c for c in wanted if depth[c] <= limit}
            if scale * sum(nbytes.get(c, 0) for c in keep) > max_bytes:
                continue
            try:
                return keep, _record(self.model, self.adapter, self.batches, keep, max_bytes, held)
            except MemoryError as e:  # batches larger than the first: shallower still
                error = e
        raise error or _over(max_bytes)

    def _check(self, start: int, want: Tensor) -> None:
        """Replay the row starting at `start` on the first batch; if it does not give the dense outputs `want` (to
        1e-6), nothing is replayed for that row. The row counts as checked once the verdict is in."""
        out, _, _ = next(iter(self._run({}, start)))
        got = logits_of(out)
        if want.shape != got.shape or not torch.allclose(want, got, rtol=0, atol=1e-6):
            self.bad.add(start)
        self.checked.add(start)

    def _first_start(self, modules: Iterable[str]) -> int:
        starts = [self.start[(m, 0)] for m in modules if (m, 0) in self.start]
        return min(starts) if starts else -1

    def _replayable(self, start: int) -> set[Call]:
        """The outermost calls that end before position `start` of the call order."""
        if start in self.bad:
            return set()
        done = {c for c, e in self.end.items() if e < start and c[0] != "" and c not in self.unsafe}
        return {c for c in done if not any(a in done for a in _ancestors(c, self.parent))}

    def outputs(self, params: Mapping[str, Tensor], start: int | None = None) -> Iterable[tuple[Any, Any, Any]]:
        owners = {name.rpartition(".")[0] for name in params}
        if start is None and not params and self.checked - self.bad:  # the dense model (a baseline): replayed up to
            start = max(self.checked - self.bad)  # the latest row checked to reproduce it
        start = self._first_start(owners) if start is None else start
        if start >= 0 and start not in self.checked:  # a row first used: its replay is checked first (see __init__)
            with self._lock:  # points run in threads: one checks, the others wait for its verdict
                if start not in self.checked:
                    if self._want is None:  # (every row's start was checked in __init__; another replays nothing)
                        self.bad.add(start)
                        self.checked.add(start)
                    else:
                        self._check(start, self._want)
        return self._run(params, start)

    def _run(self, params: Mapping[str, Tensor], start: int) -> Iterator[tuple[Any, Any, Any]]:
        replay = self._replayable(start) & self.keep if start >= 0 else set()
        clone = clone_with(self.model, params).eval()
        counts: dict[str, int] = {}
        batch = [0]
        replayed = {n for n, _ in replay}  # modules whose calls are replayed: overridden below, restored at the end
        for name in replayed:
            mod = clone.get_submodule(name)
            calls = {i for n, i in replay if n == name}

            def forward(*args, _name=name, _calls=calls, _orig=mod.forward, **kwargs):
                i = counts.get(_name, 0)
                counts[_name] = i + 1
                if i in _calls:
                    return tree_map(
                        lambda t: t.clone() if isinstance(t, Tensor) else t, self.cache[batch[0]][(_name, i)]
                    )
                return _orig(*args, **kwargs)

            mod.forward = forward
        try:
            for b, (x, y) in enumerate(self.batches):
                batch[0] = b
                counts.clear()
                with torch.inference_mode():  # never held across a yield (see _graph.full_outputs)
                    out = self.adapter.call(x, clone)
                yield out, x, y
        finally:  # each override holds its module's own forward (a cycle): dropped, the clone is freed at once
            for name in replayed:  # rather than by a full garbage collection, which stalls every thread
                del clone.get_submodule(name).forward


def _ancestors(call: Call, parent: Mapping[Call, Call | None]):
    p = parent.get(call)
    while p is not None:
        yield p
        p = parent.get(p)


def _call_order(model: nn.Module, adapter: Adapter, x: Any, hold_bytes: int = 0):
    """Start and end positions of every module call of one forward pass, each call's enclosing call, the calls
    a replay cannot stand in for (those that change an input in place, or return a tensor sharing an input's
    storage: a replayed copy would not see, or make, the later in-place changes the model relies on), the bytes
    of each call's output tensors, the model's output, and every call's output (what `_record` stores for the first
    batch) or None when they exceed `hold_bytes`. While they are held, a call whose output something changes in
    place after it returned (``h = block(x); h += x``) is unsafe too: its stored output would be the changed one."""
    probe = clone_with(model, {}).eval()
    held: dict[Call, Any] | None = {} if hold_bytes > 0 else None
    versions: dict[Call, list[tuple[Tensor, int]]] = {}
    held_ids: set[int] = set()
    held_total = [0]
    start: dict[Call, int] = {}
    end: dict[Call, int] = {}
    parent: dict[Call, Call | None] = {}
    unsafe: set[Call] = set()
    nbytes: dict[Call, int] = {}
    seen: dict[Call, list[tuple[Tensor, int, int]]] = {}
    counts: dict[str, int] = {}
    stack: list[Call] = []
    tick = [0]

    def pre(name):
        def hook(_m, args, kwargs):
            call = (name, counts.get(name, 0))
            counts[name] = call[1] + 1
            start[call], parent[call] = tick[0], stack[-1] if stack else None
            seen[call] = [(t, t._version, t.untyped_storage().data_ptr()) for t in _tensors((args, kwargs))]
            tick[0] += 1
            stack.append(call)

        return hook

    def post(name):
        def hook(_m, _args, _kwargs, out):
            call = stack.pop()
            if call[0] != name:
                raise ValueError(f"module calls did not nest: {call} ended as {name}")
            inputs = seen.pop(call)
            ptrs = {p for _, _, p in inputs}
            if any(t._version != v for t, v, _ in inputs) or any(
                t.untyped_storage().data_ptr() in ptrs for t in _tensors(out)
            ):
                unsafe.add(call)
            end[call] = tick[0]
            outs = _tensors(out)
            nbytes[call] = sum(t.nbytes for t in outs)
            tick[0] += 1
            nonlocal held
            if held is not None:
                held_total[0] += sum(t.nbytes for t in outs if id(t) not in held_ids)
                if held_total[0] > hold_bytes:  # too much to hold: `_record` runs the first batch again
                    held = None
                    versions.clear()
                    held_ids.clear()
                else:
                    held[call] = out
                    versions[call] = [(t, t._version) for t in outs]
                    held_ids.update(id(t) for t in outs)

        return hook

    for name, m in probe.named_modules():
        m.register_forward_pre_hook(pre(name), with_kwargs=True)
        m.register_forward_hook(post(name), with_kwargs=True)
    dense = adapter.call(x, probe)
    for call, vs in versions.items():
        if any(t._version != v for t, v in vs):
            unsafe.add(call)
    return start, end, parent, unsafe, nbytes, dense, held


def _record(
    model, adapter, batches, keep: set[Call], max_bytes: int, first: Mapping[Call, Any] | None = None
) -> list[dict[Call, Any]]:
    """Per batch, the outputs of the `keep` calls; those of the first batch taken from `first` when given (the
    order pass held them)."""
    probe = clone_with(model, {}).eval()
    names = {n for n, _ in keep}
    counts: dict[str, int] = {}
    cache: list[dict[Call, Any]] = []
    total = [0]

    def store(call: Call, out: Any) -> None:
        cache[-1][call] = out
        total[0] += sum(t.nbytes for t in _tensors(out))
        if total[0] > max_bytes:
            raise _over(max_bytes)

    if first is not None:
        cache.append({})
        for call in keep:
            store(call, first[call])
        batches = batches[1:]

    def post(name):
        def hook(_m, _args, out):
            i = counts.get(name, 0)
            counts[name] = i + 1
            if (name, i) in keep:
                store((name, i), out)

        return hook

    for name in names:
        probe.get_submodule(name).register_forward_hook(post(name))
    for x, _ in batches:
        cache.append({})
        counts.clear()
        adapter.call(x, probe)
        if set(cache[-1]) != keep:
            raise ValueError("the module calls differ between batches")
    return cache


def _over(max_bytes: int) -> MemoryError:
    return MemoryError(f"recorded module outputs would exceed {max_bytes / 2**20:.0f} MiB")


def _tensors(out: Any) -> list[Tensor]:
    return [t for t in tree_leaves(out) if isinstance(t, Tensor)]
