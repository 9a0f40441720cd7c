"""sparse/manifest.py: the sha256 manifest of an export: a changed, truncated or missing file is named, a corrupted
manifest is named, a file it does not list is not read, and an export without one loads with a warning."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import workbench as wb
from workbench.errors import ExportError

from .conftest import _export, _net


def test_an_export_without_a_manifest_loads_with_a_warning(tmp_path):
    model, x = _export(tmp_path)
    (tmp_path / "manifest.json").unlink()  # as exports made before manifests
    with pytest.warns(wb.WorkbenchWarning, match=r"no manifest\.json .* cannot be checked"):
        back = wb.sparse.load(tmp_path, _net())
    with torch.inference_mode():
        torch.testing.assert_close(back(x), model(x), atol=0, rtol=0)


def test_one_changed_byte_of_the_weights_is_caught_by_the_sha256(tmp_path):
    _export(tmp_path)
    f = tmp_path / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor: the file still parses
    f.write_bytes(bytes(data))
    with pytest.raises(ExportError, match=r"model\.safetensors was changed or truncated .*its sha256 differs"):
        wb.sparse.load(tmp_path, _net())


@pytest.mark.parametrize("name", ["model.safetensors", "architecture.json", "example.safetensors", "plan.json"])
def test_a_truncated_file_is_named(tmp_path, name):
    _export(tmp_path)
    f = tmp_path / name
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ExportError, match=rf"{name.replace('.', '[.]')} was changed or truncated"):
        wb.sparse.load(tmp_path, _net())


@pytest.mark.parametrize("name", ["model.safetensors", "architecture.json", "example.safetensors", "plan.json"])
def test_a_missing_file_is_named(tmp_path, name):
    _export(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(ExportError, match=rf"{name.replace('.', '[.]')} is missing"):
        wb.sparse.load(tmp_path, _net())


def test_a_corrupted_manifest_is_named(tmp_path):
    _export(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "workbench-manifest", "files": {')
    with pytest.raises(ExportError, match=r"manifest\.json is not valid JSON"):
        wb.sparse.load(tmp_path, _net())
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "format": "workbench-manifest",
                "version": 1,
                "algorithm": "sha256",
                "files": {"../outside": {"bytes": 1, "sha256": "0" * 64}},
            }
        )
    )
    with pytest.raises(ExportError, match=r"manifest\.json: entry '\.\./outside' must be a plain file name"):
        wb.sparse.load(tmp_path, _net())


def test_a_stale_file_the_manifest_does_not_list_is_not_read(tmp_path):
    _export(tmp_path)
    save_file({"input.0": torch.zeros(1, 99)}, str(tmp_path / "stale.safetensors"))
    (tmp_path / "example.safetensors").unlink()  # as an export without examples into a folder used before
    doc = json.loads((tmp_path / "manifest.json").read_text())
    del doc["files"]["example.safetensors"]
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    (tmp_path / "stale.safetensors").rename(tmp_path / "example.safetensors")  # would fail the check if read
    wb.sparse.load(tmp_path, _net())
