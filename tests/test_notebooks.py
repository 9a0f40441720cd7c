"""Every notebook in notebooks/ runs top to bottom on this interpreter and says what it should (how long each
takes is reported by benchmarks/notebooks.py).

The kernel is this interpreter (`sys.executable`, i.e. `.venv/bin/python` under `make test`): a `python3`
kernelspec pointing at it is written into a temporary Jupyter path, so a user-level or system-wide `python3`
kernelspec cannot swap in another Python. Notebooks write a JSON summary to `$WORKBENCH_NB_SUMMARY` in their
last code cell; the tests read it back.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory):
    """A `python3` kernelspec for `sys.executable` on a private JUPYTER_PATH; the kernel inherits the env."""
    from ipykernel.kernelspec import install

    prefix = tmp_path_factory.mktemp("jupyter")
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    mp.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend renders the charts
    install(kernel_name="python3", prefix=str(prefix), display_name="workbench test kernel")
    yield
    mp.undo()


@pytest.fixture(scope="module")
def demo_cached():
    """Load the demo models the notebooks use (the shipped weights: nothing trains), so a broken file fails here
    with its own message rather than inside a notebook cell."""
    import workbench as wb

    for name in wb.demo.available():  # the chapters use all five
        wb.demo.load(name)


def _run(path: Path) -> tuple[nbformat.NotebookNode, float]:
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    spec = KernelSpecManager().get_kernel_spec("python3")
    assert Path(spec.argv[0]).resolve() == Path(sys.executable).resolve(), spec.argv

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb, time.perf_counter() - start


def _where(nb: nbformat.NotebookNode, seconds: float) -> str:
    """Where a slow run spent its time: the slowest cells (nbclient's timing metadata) and what the cells
    do not account for (kernel start and shutdown)."""
    from datetime import datetime

    spans = []
    for i, c in enumerate(nb.cells):
        ex = c.get("metadata", {}).get("execution", {})
        a, b = ex.get("iopub.execute_input"), ex.get("shell.execute_reply")
        if a and b:
            d = datetime.fromisoformat(b.replace("Z", "+00:00")) - datetime.fromisoformat(a.replace("Z", "+00:00"))
            spans.append((d.total_seconds(), i, "".join(c.source).splitlines()[0][:60] if c.source else ""))
    cells = sum(d for d, _, _ in spans)
    top = ", ".join(f"cell {i} {d:.1f} s ({src!r})" for d, i, src in sorted(spans, reverse=True)[:3])
    return f"cells {cells:.1f} s, outside cells (kernel start/stop) {seconds - cells:.1f} s; slowest: {top}; load {os.getloadavg()}"


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ has no .ipynb files"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_env, demo_cached):
    summary_path = tmp_path / "summary.json"
    monkeypatch.setenv("WORKBENCH_NB_SUMMARY", str(summary_path))
    nb, seconds = _run(path)
    print(f"{path.name}: {seconds:.1f} s; {_where(nb, seconds)}")  # timing claims: benchmarks/notebooks.py
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert summary_path.exists(), f"{path.name} did not write its summary to $WORKBENCH_NB_SUMMARY"
    summary = json.loads(summary_path.read_text())
    if path.name == "00_tour.ipynb":
        _check_tour(nb, summary)
    else:
        _checks_for(path)(nb, summary)


def _checks_for(path: Path):
    """The key-result checks of a chapter notebook: `check(nb, summary)` in tests/nbchecks/<notebook stem>.py."""
    import importlib.util

    file = ROOT / "tests" / "nbchecks" / f"{path.stem}.py"
    assert file.exists(), f"{path.name} has no key-result checks: write check(nb, summary) in {file}"
    spec = importlib.util.spec_from_file_location(f"nbchecks_{path.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check


def _outputs(nb: nbformat.NotebookNode) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def stream_text(nb: nbformat.NotebookNode) -> str:
    """All printed text of an executed notebook (for checks that the conclusions were stated)."""
    return "\n".join(o.get("text", "") for o in _outputs(nb) if o.output_type == "stream")


def image_count(nb: nbformat.NotebookNode) -> int:
    """How many charts (PNG outputs) the executed notebook drew in its cells."""
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def widget_outputs(nb: nbformat.NotebookNode) -> list[dict]:
    """What the notebook's ipywidgets Output areas showed when it ran (nbclient stores the widget state)."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [o for m in state.values() if m.get("model_name") == "OutputModel" for o in m["state"].get("outputs", [])]


def _check_tour(nb: nbformat.NotebookNode, s: dict) -> None:
    """Margins are stated on the weights shipped with the package (digits-cnn, seed 0)."""
    assert s["dense_accuracy"] >= 0.95  # shipped weights: 0.997
    for key in ("accuracy_after_uniform", "accuracy_after_global", "accuracy_after_undo"):
        assert isinstance(s[key], float) and 0.0 <= s[key] <= 1.0, (key, s[key])
    assert s["undo_bitwise"] is True
    assert s["redo_bitwise"] is True
    assert s["reset_bitwise"] is True
    assert s["restored_bitwise"] is True
    assert math.isclose(s["accuracy_after_undo"], s["accuracy_after_uniform"])
    assert math.isclose(s["accuracy_after_reset"], s["dense_accuracy"])
    assert 0.5 <= s["sparsity_after_uniform"] < s["sparsity_after_global"]
    assert s["sparsity_after_global"] == pytest.approx(0.8, abs=0.01)
    text = stream_text(nb)
    assert "Removing 50% of the filters cost" in text
    assert s["sensitivity_rows"] == 3  # the digits CNN's three conv layers, filter granularity
    assert s["allocation_flops_removed"] == pytest.approx(0.5, abs=0.01)
    for key in ("accuracy_after_allocation", "accuracy_uniform_same_flops"):
        assert isinstance(s[key], float) and 0.0 <= s[key] <= 1.0, (key, s[key])
    assert "At the same FLOPs" in text
    # shipped weights: PGD 0.234 vs FGSM 0.313 on the pruned model at eps 0.1 (5 of 64 digits), clean 0.891
    assert "the average hides who pays" in text and "PGD is the stronger attack" in text
    assert s["effects_eps0_equals_evaluate"] is True and s["effects_per_class_consistent"] is True
    assert s["effects_restored_bitwise"] is True
    assert s["effects_spearman_mean"] > 0.5  # global 70% keeps the pixel ranking alike (shipped weights: rho 0.77)
    pgd, fgsm, clean = s["effects_pgd_fgsm_clean"]
    assert pgd <= fgsm <= clean
    assert image_count(nb) == 9, (
        "the tour draws nine charts: sparsity, sensitivity, entropy, connectivity, allocation, and the effects: "
        "attributions, robustness, bias, flipped samples"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
