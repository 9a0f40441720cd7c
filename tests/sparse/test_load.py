"""sparse/load.py: an export loads back and reproduces its outputs (from a given model, a factory, or an allow-listed
recorded class), a given model means the recorded name is never read, and paths that are not an export are named."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
import torch

import workbench as wb
from workbench.demo.models import DigitsCNN
from workbench.errors import ExportError

from .conftest import _export, _names, _net


def test_a_round_trip_loads_and_reproduces_the_outputs(tmp_path):
    model, x = _export(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "architecture.json", "example.safetensors", "plan.json"}
    for name, e in manifest["files"].items():
        assert e["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    for given in (_net(), _net):
        back = wb.sparse.load(tmp_path, given)
        with torch.inference_mode():
            torch.testing.assert_close(back(x), model(x), atol=0, rtol=0)


def test_a_workbench_class_is_built_from_its_recorded_name(tmp_path):
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    x = torch.randn(3, 1, 8, 8)
    wb.sparse.export(model, tmp_path, formats=("safetensors",), example_inputs=x)
    src = json.loads((tmp_path / "architecture.json").read_text())["source"]
    assert src == {"module": "workbench.demo.models", "qualname": "DigitsCNN"}
    back = wb.sparse.load(tmp_path)  # allow-listed: no model= and no trust_code needed
    assert isinstance(back, DigitsCNN)
    with torch.inference_mode():
        torch.testing.assert_close(back(x), model(x), atol=0, rtol=0)


def test_a_given_model_or_factory_means_the_recorded_name_is_not_read(tmp_path, probe):
    name, marker = probe
    _export(tmp_path)
    _names(tmp_path, name, "Net")
    wb.sparse.load(tmp_path, _net())
    wb.sparse.load(tmp_path, _net)
    assert name not in sys.modules and not marker.exists()


def test_paths_that_are_not_an_export(tmp_path):
    with pytest.raises(ExportError, match=r"missing-folder does not exist"):
        wb.sparse.load(tmp_path / "missing-folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match=r"empty is empty: no export was written there"):
        wb.sparse.load(tmp_path / "empty")
    _export(tmp_path / "out")
    with pytest.raises(ExportError, match=r"model\.safetensors is a file; pass the folder"):
        wb.sparse.load(tmp_path / "out" / "model.safetensors")
    wb.sparse.export(_net(), tmp_path / "plan-only", formats=("plan",), plan=wb.Plan.uniform(0.5))
    with pytest.raises(ExportError, match=r"has no architecture\.json \+ model\.safetensors in its manifest\.json"):
        wb.sparse.load(tmp_path / "plan-only")
    with pytest.raises(ExportError, match=r"model must be an nn\.Module .* got str"):
        wb.sparse.load(tmp_path / "out", "MyNet")
