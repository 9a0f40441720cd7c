"""The dashboard's header, actions and export panels (workbench/ui/panels.py), driven synchronously; the analysis
panels are exercised in test_dashboard.py."""

import pytest
import torch
from conftest import assert_bitwise, snapshot
from torch import nn

import workbench as wb

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

SYNC = {"threaded": False, "scheduler": lambda delay, fn: fn()}


def test_every_built_in_panel_still_imports_from_panels():
    import sys

    from workbench.ui import analysis_panels

    mod = sys.modules["workbench.ui.panels"]  # `workbench.ui.panels` the attribute is the list of registered panels
    for name in analysis_panels.__all__:
        assert getattr(mod, name) is getattr(analysis_panels, name) and name in mod.__all__
    assert {"Header", "ActionsPanel", "ExportPanel"} <= set(mod.__all__)


def test_export_compiles_and_writes_a_copy_and_leaves_the_live_model_as_it_was(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    bench = wb.Workbench(model, [(torch.randn(6, 8), torch.randint(0, 3, (6,)))])
    bench.apply(wb.Plan.uniform(0.5, granularity="neuron"), evaluate=False)
    snap = snapshot(model)
    d = bench.show(new=True, **SYNC)
    export = d.tabs["export"]
    export.folder.value = str(tmp_path / "out")
    export.button.click()
    assert "compile backend=auto" in export.report.value and (tmp_path / "out").is_dir()
    assert any((tmp_path / "out").iterdir())
    assert_bitwise(model, snap)
