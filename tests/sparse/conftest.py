"""Shared by the tests of workbench/sparse/: a pruned test model (tests/zoo) on a Workbench; a small exported model
and the edits that tamper with an export (then reseal its manifest); a probe module that records being imported."""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn
from zoo import make

import workbench as wb


def _pruned_bench(name: str):
    model, data = make(name)
    bench = wb.Workbench(model, data)
    if name == "rescat":
        bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1", exclude=["g"]), evaluate=False)
    bench.apply(wb.Plan.global_(0.9), evaluate=False)
    return model, data, bench


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _export(path: Path) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = _net().eval()
    x = torch.randn(5, 4)
    wb.sparse.export(model, path, formats=("safetensors", "plan"), example_inputs=x, plan=wb.Plan.uniform(0.5))
    return model, x


def _reseal(path: Path) -> None:
    """Recompute the manifest after an edit, as a consistent but malformed export would carry."""
    doc = json.loads((path / "manifest.json").read_text())
    for name, entry in doc["files"].items():
        data = (path / name).read_bytes()
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    (path / "manifest.json").write_text(json.dumps(doc))


def _edit_arch(path: Path, fn) -> None:
    arch = json.loads((path / "architecture.json").read_text())
    fn(arch)
    (path / "architecture.json").write_text(json.dumps(arch))


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A module that exists on sys.path, is not imported yet, and leaves a marker file when it is imported."""
    name = f"wb_probe_{uuid.uuid4().hex[:12]}"
    mods = tmp_path / "mods"
    mods.mkdir()
    marker = tmp_path / "imported.txt"
    (mods / f"{name}.py").write_text(
        textwrap.dedent(f"""
        from pathlib import Path
        from torch import nn
        Path({str(marker)!r}).write_text("imported")

        class Net(nn.Sequential):
            def __init__(self):
                super().__init__(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        """)
    )
    monkeypatch.syspath_prepend(str(mods))
    yield name, marker
    sys.modules.pop(name, None)


def _names(path: Path, module: str, qualname: str) -> None:
    _edit_arch(path, lambda a: a.update(source={"module": module, "qualname": qualname}))
    _reseal(path)
