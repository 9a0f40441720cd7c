"""Every notebook in notebooks/ run top to bottom in a fresh kernel: the seconds each takes (goal < 60 s each).

Baseline measured in the same run: a notebook with one cell that imports workbench, so the table separates
kernel start-up and import from each chapter's own work. The kernel is this interpreter (a ``python3``
kernelspec for `sys.executable` on a private Jupyter path), as in tests/test_notebooks.py, which checks what each
notebook says; how long it takes is reported here.

Run: ``.venv/bin/python -m benchmarks.notebooks`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from benchmarks import print_table

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 60.0


def _seconds(nb: nbformat.NotebookNode, where: Path) -> float:
    from nbclient import NotebookClient

    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(where)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> None:
    from ipykernel.kernelspec import install

    import workbench as wb

    for name in wb.demo.available():  # the shipped weights checked once, as the notebook tests do
        wb.demo.load(name)
    with tempfile.TemporaryDirectory() as prefix:
        os.environ["JUPYTER_PATH"] = str(Path(prefix) / "share" / "jupyter")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        os.environ["WORKBENCH_NB_SUMMARY"] = str(Path(prefix) / "summary.json")
        install(kernel_name="python3", prefix=prefix, display_name="workbench benchmark kernel")
        base = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import workbench")])
        rows = [("notebook", "seconds", "goal")]
        rows.append(("import workbench (baseline)", f"{_seconds(base, ROOT / 'notebooks'):.1f}", ""))
        worst = 0.0
        for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
            s = _seconds(nbformat.read(path, as_version=4), path.parent)
            worst = max(worst, s)
            rows.append((path.name, f"{s:.1f}", "met" if s < GOAL_S else "NOT met"))
    print(
        f"notebooks run top to bottom in a fresh kernel ({sys.executable}); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    print_table(rows, right={1})
    print(f"goal every notebook < {GOAL_S:.0f} s: {'met' if worst < GOAL_S else 'NOT met'} (slowest {worst:.1f} s)")


if __name__ == "__main__":
    main()
