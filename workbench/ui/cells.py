"""A table of clickable, coloured cells (rows x columns) as one widget: the sensitivity panel's layers x ratios.

The whole table is one `anywidget` model: its state is the rows, the columns and every cell's text and colours, and
its browser side draws an HTML table of buttons from it. A click sends (row, column) back to the kernel. Redrawing a
map of any size is one message.

Why not a grid of ipywidgets buttons (as before): a button is three widget models (button, style, layout), so a
table of 121 layers x 9 ratios opened ~3900 models in one burst, and once in a while the browser met boxes whose
children it had never received ("widget model not found") and drew no table at all. Jupyter's server exempts comm
openings from its rate limit; where they can be lost is the kernel's ZMQ PUB socket, which drops messages beyond its
high-water mark (1000 by default) silently when the server falls behind reading them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anywidget
import traitlets

__all__ = ["CellTable"]

_ESM = """
function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "wb-cells";
  el.appendChild(box);
  const draw = () => {
    const rows = model.get("rows"), columns = model.get("columns"), cells = model.get("cells");
    const old = box.querySelector(".wb-cells-body");
    const scrolled = old ? old.scrollTop : 0;  // a redraw keeps the user's place in a long table
    box.replaceChildren();
    box.style.display = rows.length ? "" : "none";
    if (!rows.length) return;
    const head = document.createElement("div");
    head.className = "wb-cells-row wb-cells-head";
    head.appendChild(Object.assign(document.createElement("span"), { className: "wb-cells-label" }));
    for (const c of columns) {
      head.appendChild(Object.assign(document.createElement("span"), { className: "wb-cells-column", textContent: c }));
    }
    const body = document.createElement("div");
    body.className = "wb-cells-body";
    rows.forEach((name, i) => {
      const row = document.createElement("div");
      row.className = "wb-cells-row";
      row.appendChild(Object.assign(document.createElement("span"), { className: "wb-cells-label", textContent: name, title: name }));
      (cells[i] || []).forEach(([text, background, color], j) => {
        const b = Object.assign(document.createElement("button"), { className: "wb-cell", textContent: text });
        b.title = `${name} at ${columns[j]}`;
        b.style.background = background;
        b.style.color = color;
        b.addEventListener("click", () => model.send({ row: i, column: j, name }));
        row.appendChild(b);
      });
      body.appendChild(row);
    });
    box.append(head, body);
    body.scrollTop = scrolled;
  };
  draw();
  model.on("change:cells", draw);  // rows and columns change in the same message as the cells
  return () => model.off("change:cells", draw);
}
export default { render };
"""

_CSS = """
.wb-cells { font-size: 10px; }
.wb-cells-body { max-height: 260px; overflow: auto; }
.wb-cells-row { display: flex; flex: 0 0 auto; align-items: center; height: 22px; }
.wb-cells-label { width: 180px; flex: 0 0 180px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  font-size: var(--jp-ui-font-size1, 13px); }
.wb-cells-column { width: 62px; flex: 0 0 62px; margin: 0 1px; font-size: var(--jp-ui-font-size1, 13px); }
.wb-cell { width: 62px; flex: 0 0 62px; height: 20px; margin: 0 1px; padding: 0; border: none; border-radius: 2px;
  font: inherit; font-variant-numeric: tabular-nums; cursor: pointer; white-space: nowrap; }
.wb-cell:hover { outline: 2px solid var(--jp-brand-color1, #1976d2); }
"""


class CellTable(anywidget.AnyWidget):
    """`rows` x `columns`, each cell a (text, background, text colour) triple; `on_click(row, column)` is called
    with the indices of a clicked cell."""

    _esm = _ESM
    _css = _CSS
    rows = traitlets.List(traitlets.Unicode()).tag(sync=True)
    columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    cells = traitlets.List().tag(sync=True)

    def __init__(self, on_click: Callable[[int, int], None], **kwargs):
        super().__init__(**kwargs)
        self._on_click = on_click
        self.on_msg(self._message)

    def show(
        self, rows: Sequence[str], columns: Sequence[str], cells: Sequence[Sequence[tuple[str, str, str]]]
    ) -> None:
        """Replace the table (one message, with only the parts that changed; none if nothing did)."""
        if len(cells) != len(rows) or any(len(r) != len(columns) for r in cells):
            raise ValueError(
                f"CellTable.show: {len(rows)} rows x {len(columns)} columns, but cells has a different shape"
            )
        with self.hold_sync():
            self.rows, self.columns = list(rows), list(columns)
            self.cells = [[list(c) for c in r] for r in cells]

    def click(self, row: int, column: int) -> None:
        """What a click on a cell in the browser does."""
        if not (0 <= row < len(self.rows) and 0 <= column < len(self.columns)):
            raise IndexError(
                f"CellTable.click: no cell ({row}, {column}) in a {len(self.rows)}x{len(self.columns)} table"
            )
        self._on_click(row, column)

    def _message(self, _widget, content, _buffers) -> None:
        """A click in the browser: (row, column, the row's name). A click on a table the kernel has replaced since
        (a row of that name no longer at that index) is dropped."""
        try:
            row, column, name = int(content["row"]), int(content["column"]), content["name"]
        except (TypeError, KeyError, ValueError):
            return
        if 0 <= row < len(self.rows) and self.rows[row] == name and 0 <= column < len(self.columns):
            self.click(row, column)
