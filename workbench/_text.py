"""Plain-text tables for the reports' ``__str__``: one way to align columns instead of one per report.

>>> print("\\n".join(table_lines([("layer", "params"), ("fc1", "1,024"), ("head", "10")], right={1})))
layer  params
fc1     1,024
head       10
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["table_lines"]


def table_lines(
    rows: Sequence[Sequence[str]], *, right: Collection[int] = (), sep: str = "  ", rule: str | None = None
) -> list[str]:
    """`rows` (the first is the header) as lines: each column padded to its widest cell, left-aligned unless its
    index is in `right`, trailing spaces dropped. With `rule` (e.g. ``"-+-"``) a line of dashes, joined by it,
    follows the header."""
    if not rows:
        return []
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = [
        sep.join(str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
        for r in rows
    ]
    if rule is not None:
        out.insert(1, rule.join("-" * w for w in widths))
    return out
