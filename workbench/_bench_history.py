"""The history as plain data and files (a mixin of `workbench.bench.Workbench`); its entries and transactions are
`workbench.history`'s (`HistoryEntry` is re-exported here)."""

from __future__ import annotations

from typing import Any

from .history import HistoryEntry

__all__ = ["HistoryEntry", "HistoryExport"]


class HistoryExport:
    """`history_table` and `export_history` of a bench with a `history`."""

    def history_table(self) -> list[dict[str, Any]]:
        """The history as plain dicts, one per entry (0 = dense): index, label, kind, active, current, sparsity,
        removed, seconds, metric and the other scalar metrics (``accuracy``, ``loss``, ...), plan and layers.

        >>> import torch, workbench as wb
        >>> bench = wb.Workbench(torch.nn.Linear(4, 2), [(torch.randn(8, 4), torch.randint(0, 2, (8,)))])
        >>> _ = bench.apply(wb.Plan.uniform(0.5))
        >>> [(r["index"], r["label"], r["sparsity"], r["current"]) for r in bench.history_table()]
        [(0, 'dense', 0.0, False), (1, 'Plan(uniform 0.5 weight/magnitude)', 0.5, True)]
        """
        import json

        rows = []
        for e in self.history:
            metrics = {
                k: v
                for k, v in (e.metrics or {}).items()
                if isinstance(v, (int, float, str, bool)) and k not in ("metric", "metric_name")
            }
            rows.append(
                {
                    "index": e.index,
                    "label": e.label,
                    "kind": e.kind,
                    "active": e.active,
                    "current": e.index == self.store.position,
                    "sparsity": float(e.sparsity),
                    "removed": int(e.removed),
                    "seconds": float(e.seconds),
                    "metric": e.metric,
                    "metric_name": None if e.metrics is None else e.metrics.get("metric_name"),
                    **metrics,
                    "plan": json.loads(json.dumps(e.plan, default=str)) if e.plan is not None else None,
                    "layers": json.loads(json.dumps(e.layers, default=str)),
                }
            )
        return rows

    def export_history(self, path: Any) -> Any:
        """Write `history_table()` as JSON to `path` (with the model name and the current position); returns the
        path. `json.load` reads it back."""
        import json
        from pathlib import Path

        out = Path(path)
        doc = {"model": self.name, "position": self.store.position, "history": self.history_table()}
        out.write_text(json.dumps(doc, indent=2, default=str))
        return out
