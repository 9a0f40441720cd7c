"""_text.py: plain-text tables: every column starts (left-aligned) or ends (right-aligned) at the same offset on
every line, cells are kept as they are, trailing spaces dropped, and a rule of dashes as wide as each column."""

from hypothesis import given
from hypothesis import strategies as st

from workbench._text import table_lines

cell = st.text(st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=1, max_size=8)


@given(st.integers(1, 4).flatmap(lambda k: st.lists(st.lists(cell, min_size=k, max_size=k), min_size=1, max_size=6)))
def test_columns_line_up_and_cells_are_kept(rows):
    k = len(rows[0])
    right = {k - 1} if k > 1 else set()
    lines = table_lines(rows, right=right)
    assert len(lines) == len(rows) and all(line == line.rstrip() for line in lines)
    widths = [max(len(r[i]) for r in rows) for i in range(k)]
    starts = [sum(widths[:i]) + 2 * i for i in range(k)]
    for line, r in zip(lines, rows):
        padded = line.ljust(sum(widths) + 2 * (k - 1))
        for i, (c, s, w) in enumerate(zip(r, starts, widths)):
            col = padded[s : s + w]
            assert (col.rjust(w) == col and col.lstrip() == c) if i in right else col.rstrip() == c


def test_a_rule_follows_the_header_and_no_rows_is_no_lines():
    lines = table_lines([("layer", "n"), ("features.0", "12")], sep=" | ", rule="-+-")
    assert lines == ["layer      | n", "-----------+---", "features.0 | 12"]  # the rule's + under the separator
    assert table_lines([]) == [] and table_lines([("a",)], sep=" | ") == ["a"]
    assert table_lines([("x", "y"), ("1", "2")], sep=" | ") == ["x | y", "1 | 2"]
