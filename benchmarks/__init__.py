"""Benchmarks: each module prints ratios against a baseline measured in the same run (docs/benchmarks.md)."""

from collections.abc import Collection, Sequence


def print_table(table: Sequence[Sequence[str]], right: Collection[int] = ()) -> None:
    """Rows of strings (the first a header) in aligned columns; the `right` columns right-aligned."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for i, r in enumerate(table):
        print(
            " | ".join(c.rjust(w) if j in right else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
        if i == 0:
            print("-+-".join("-" * w for w in widths))
