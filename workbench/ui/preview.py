"""Previewing a plan without running the model: parameters, FLOPs and the predicted metric change.

Rankings are scored once per (row, granularity, criterion) and cached until the model changes (apply, undo,
...); unstructured and patterned ones per layer when its slider first moves (ranking every weight of a
100M-parameter model at once would take seconds), structured ones for all coupled groups at once (a slider moves
its whole group). A slider move then only selects the first k units of a cached order and counts masks: milliseconds, no
forward pass. FLOPs per weight come from one FlopCounterMode pass when the dashboard is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..analysis.sensitivity import Row, rows_for
from ..masks.granularity import get_granularity
from ..plan import LayerPlan

__all__ = ["Preview", "PreviewModel"]


@dataclass(frozen=True)
class Preview:
    params_total: int
    params_removed: int
    flops_total: float
    flops_removed: float
    predicted: float | None  # summed predicted metric change from the cached sensitivity, if it covers the plan
    predicted_units: str
    seconds: float

    @property
    def params_kept(self) -> float:
        return 1 - self.params_removed / self.params_total if self.params_total else 1.0

    @property
    def flops_kept(self) -> float:
        return 1 - self.flops_removed / self.flops_total if self.flops_total else 1.0


class PreviewModel:
    def __init__(self, bench, flops_per_weight: dict[str, float], flops_total: float):
        self.bench = bench
        self.flops_per_weight = flops_per_weight
        self.flops_total = flops_total
        self._rows: dict[tuple[str, str], dict[str, Row]] = {}
        self._masks: dict[tuple, dict[str, torch.Tensor]] = {}
        self._counts: dict[tuple, dict[str, int]] = {}  # pruned weights per parameter of each cached mask
        self._current_counts: dict[str, int] = {}  # the same for the store's masks (what earlier steps pruned)
        self._version: tuple[int, int] | None = None
        self._params_total = sum(p.numel() for p in bench.model.parameters())

    def _check_version(self) -> None:
        version = (self.bench.store.position, len(self.bench.store.steps))
        if version != self._version:
            self._rows.clear()
            self._masks.clear()
            self._counts.clear()
            self._current_counts.clear()
            self._params_total = sum(p.numel() for p in self.bench.model.parameters())
            self._version = version

    def row_of(self, name: str, granularity: str, criterion: str) -> Row:
        self._check_version()
        key = (granularity, criterion)
        if not get_granularity(granularity).structured:  # one layer per row: rank only the layer asked for
            table = self._rows.setdefault(key, {})
            if name not in table:
                table.update({r.label: r for r in rows_for(self.bench, granularity, criterion, layers=[name])})
            return table[name]
        if key not in self._rows:
            rows = rows_for(self.bench, granularity, criterion, layers=None)
            table = {}
            for r in rows:
                for m in r.members:
                    table[m] = r
            self._rows[key] = table
        table = self._rows[key]
        if name not in table:  # a layer outside the default kinds (norm, embedding): its own row
            table.update({r.label: r for r in rows_for(self.bench, granularity, criterion, layers=[name])})
        return table[name]

    def masks(self, name: str, lp: LayerPlan) -> dict[str, torch.Tensor]:
        row = self.row_of(name, lp.granularity, lp.criterion)
        key = (row.label, lp.granularity, lp.criterion, round(lp.ratio, 6))
        if key not in self._masks:
            self._masks[key] = row.ranking.masks(lp.ratio)
            self._counts[key] = {n: int(m.sum()) for n, m in self._masks[key].items()}
        return self._masks[key]

    def preview(self, entries: dict[str, LayerPlan], sens: Any = None) -> Preview:
        import time

        t0 = time.perf_counter()
        self._check_version()
        current = self.bench.store.masks()
        parts: dict[str, list[tuple[torch.Tensor, int]]] = {}  # parameter -> (mask, its count) of each entry
        seen_rows: dict[tuple, float] = {}
        done_rows: set[tuple] = set()
        for name, lp in entries.items():
            if lp.ratio <= 0:
                continue
            row = self.row_of(name, lp.granularity, lp.criterion)
            seen_rows[(row.label, lp.granularity, lp.criterion)] = lp.ratio
            key = (row.label, lp.granularity, lp.criterion, round(lp.ratio, 6))
            if key in done_rows:  # coupled layers of one group: their masks are the group's, counted once
                continue
            done_rows.add(key)
            masks = self.masks(name, lp)
            for n, m in masks.items():
                parts.setdefault(n, []).append((m, self._counts[key][n]))
        # counts per parameter: a single fresh mask is its cached count; overlaps are OR-ed (no clone of the rest)
        removed, flops = 0, 0.0
        for n in set(parts) | set(current):
            got = parts.get(n, [])
            if n not in current and len(got) == 1:
                count = got[0][1]
            elif not got:  # pruned by earlier steps only: counted once per model state
                count = self._current_counts.setdefault(n, int(current[n].sum()))
            else:
                union = current.get(n)
                for m, _ in got:
                    union = m if union is None else union | m
                count = int(union.sum())
            removed += count
            flops += count * self.flops_per_weight.get(n, 0.0)
        params_total = self._params_total
        predicted = None
        units = ""
        if sens is not None and seen_rows:
            total = 0.0
            for (label, g, c), ratio in seen_rows.items():
                if g != sens.granularity or c != sens.criterion:
                    total = None
                    break
                try:
                    total += sens.predict(label, ratio)
                except KeyError:
                    total = None
                    break
            predicted, units = total, sens.units
        return Preview(params_total, removed, self.flops_total, flops, predicted, units, time.perf_counter() - t0)

    @staticmethod
    def structured(granularity: str) -> bool:
        return get_granularity(granularity).structured
