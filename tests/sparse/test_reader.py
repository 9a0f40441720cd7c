"""sparse/reader.py: loading an export never runs code the files name (unless told to: only public workbench and
torch.nn module classes are allow-listed), and every malformed file is an ExportError naming it, raised before
anything is imported or built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from safetensors.torch import save_file

import workbench as wb
from workbench.errors import ExportError

from .conftest import _edit_arch, _export, _names, _net, _reseal


def test_os_abort_named_in_the_architecture_is_never_called(tmp_path, monkeypatch):
    _export(tmp_path)
    _names(tmp_path, "os", "abort")
    called = []
    monkeypatch.setattr(os, "abort", lambda: called.append(True))
    with pytest.raises(ExportError) as err:
        wb.sparse.load(tmp_path)
    msg = str(err.value)
    assert "architecture.json" in msg and "'os'" in msg and "'abort'" in msg
    assert "model=" in msg and "trust_code=True" in msg
    assert called == []


def test_os_abort_named_in_the_architecture_does_not_kill_a_fresh_process(tmp_path):
    _export(tmp_path)
    _names(tmp_path, "os", "abort")
    script = textwrap.dedent("""
        import sys
        import workbench as wb
        try:
            wb.sparse.load(sys.argv[1])
        except wb.ExportError as e:
            print("ExportError:", e)
            raise SystemExit(0)
        raise SystemExit(3)
        """)
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, (run.returncode, run.stdout, run.stderr)  # os.abort would give -6
    assert "ExportError:" in run.stdout and "os.abort" in run.stdout


def test_an_unlisted_module_is_not_imported_unless_trusted(tmp_path, probe):
    name, marker = probe
    model, x = _export(tmp_path)
    _names(tmp_path, name, "Net")
    assert name not in sys.modules
    with pytest.raises(ExportError, match=rf"{name}.*trust_code=True"):
        wb.sparse.load(tmp_path)
    assert name not in sys.modules and not marker.exists()
    back = wb.sparse.load(tmp_path, trust_code=True)  # the opt-in: imports the module and calls Net()
    assert name in sys.modules and marker.exists()
    with torch.inference_mode():
        torch.testing.assert_close(back(x), model(x), atol=0, rtol=0)


def test_a_stdlib_module_not_yet_imported_stays_unimported(tmp_path):
    _export(tmp_path)
    name = "this"  # prints the Zen of Python when imported
    assert name not in sys.modules
    _names(tmp_path, name, "s")
    with pytest.raises(ExportError, match=r"module 'this'"):
        wb.sparse.load(tmp_path)
    assert name not in sys.modules


@pytest.mark.parametrize(
    ("module", "qualname", "why"),
    [
        ("workbench._cli", "main", "trust_code=True"),  # a private module of the workbench
        ("workbench.__main__", "main", "trust_code=True"),
        ("torch.nn", "Module.__init__.__globals__", "trust_code=True"),  # no walking through dunder attributes
        ("workbench.sparse.export", "load", "not an nn.Module class"),
        ("torch.nn.functional", "relu", "not an nn.Module class"),
        ("workbench.no_such_module", "Net", "cannot be found here"),
        ("os; import sys", "abort", "names no class"),
        (None, None, "names no class"),
    ],
)
def test_the_allow_list_takes_only_public_module_classes(tmp_path, module, qualname, why):
    _export(tmp_path)
    _names(tmp_path, module, qualname)
    before = set(sys.modules)
    with pytest.raises(ExportError, match=why):
        wb.sparse.load(tmp_path)
    assert "workbench._cli" not in set(sys.modules) - before and "workbench.__main__" not in sys.modules


def _truncate_weights(p):
    f = p / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-7])


def _garbage_weights(p):
    (p / "model.safetensors").write_bytes(b"\xff" * 64)


def _corrupt_json(p):
    (p / "architecture.json").write_text('{"format": "workbench-architecture", "modules": {"0": ')


def _not_utf8(p):
    (p / "architecture.json").write_bytes(b'{"format": "\xff\xfe"}')


def _weights_of_another_model(p):
    save_file({"0.weight": torch.zeros(8, 4), "0.bias": torch.zeros(8)}, str(p / "model.safetensors"))


def _bad_example(p):
    save_file({"input.0": torch.zeros(2, 4)}, str(p / "example.safetensors"))


def _truncated_example(p):
    f = p / "example.safetensors"
    f.write_bytes(f.read_bytes()[:20])


def _example_of_wrong_width(p):
    save_file({"input.0": torch.zeros(2, 5), "output": torch.zeros(2, 3)}, str(p / "example.safetensors"))


def _plans(p, doc):
    (p / "plan.json").write_text(json.dumps(doc))


MALFORMED = {
    "truncated-safetensors": (_truncate_weights, r"model\.safetensors is not a readable safetensors file"),
    "garbage-safetensors": (_garbage_weights, r"model\.safetensors is not a readable safetensors file"),
    "corrupted-json": (_corrupt_json, r"architecture\.json is not valid JSON \(.* line 1"),
    "not-utf8": (_not_utf8, r"architecture\.json is not UTF-8"),
    "not-an-architecture": (
        lambda p: _edit_arch(p, lambda a: a.update(format="something-else")),
        r"architecture\.json is not a workbench architecture file",
    ),
    "json-list": (
        lambda p: (p / "architecture.json").write_text("[1, 2, 3]"),
        r"architecture\.json is not a workbench architecture file",
    ),
    "missing-modules": (
        lambda p: _edit_arch(p, lambda a: a.pop("modules")),
        r"architecture\.json: 'modules' must be an object",
    ),
    "missing-tensors": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["0"].pop("tensors")),
        r"architecture\.json: modules\['0'\]\.tensors must be an object",
    ),
    "missing-type": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["0"].pop("type")),
        r"architecture\.json: modules\['0'\]\.type must be a class name",
    ),
    "shape-of-wrong-type": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["0"]["tensors"]["weight"].update(shape="8x4")),
        r"architecture\.json: modules\['0'\]\.tensors\['weight'\]\.shape must be a list of non-negative ints, got '8x4'",
    ),
    "negative-shape": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["0"]["tensors"]["weight"].update(shape=[-1, 4])),
        r"\.shape must be a list of non-negative ints",
    ),
    "dtype-that-is-a-function": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["0"]["tensors"]["weight"].update(dtype="load")),
        r"\['weight'\]\.dtype must be a torch dtype name",
    ),
    "attribute-that-is-not-a-size": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["0"]["attrs"].update(forward=1)),
        r"modules\['0'\]\.attrs must be size attributes .*got 'forward'",
    ),
    "size-of-wrong-type": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["0"]["attrs"].update(in_features="4")),
        r"attrs\['in_features'\] must be a non-negative int",
    ),
    "shapes-that-do-not-match": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["0"]["tensors"]["weight"].update(shape=[8, 5])),
        r"architecture\.json describes '0\.weight' as float32 \[8, 5\], but .*model\.safetensors holds float32 \[8, 4\]",
    ),
    "dtypes-that-do-not-match": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["2"]["tensors"]["bias"].update(dtype="float16")),
        r"describes '2\.bias' as float16 \[3\], but .* holds float32 \[3\]",
    ),
    "weights-of-another-model": (_weights_of_another_model, r"missing \['2\.weight', '2\.bias'\]"),
    "tied-to-nothing": (
        lambda p: _edit_arch(p, lambda a: a.update(tied={"2.weight": "9.weight"})),
        r"architecture\.json ties '2\.weight' to '9\.weight', but .*model\.safetensors holds no tensor '9\.weight'",
    ),
    "tied-of-wrong-type": (
        lambda p: _edit_arch(p, lambda a: a.update(tied=["2.weight"])),
        r"architecture\.json: 'tied' must be an object",
    ),
    "branches-of-wrong-type": (
        lambda p: _edit_arch(p, lambda a: a.update(removed_branches="all")),
        r"'removed_branches' must be a list of branch ids",
    ),
    "module-the-model-lacks": (
        lambda p: _edit_arch(p, lambda a: a["modules"].update({"9": a["modules"]["0"]})),
        r"the saved model has a module '9' that the given architecture lacks",
    ),
    "sparse-type-without-its-tensors": (
        lambda p: _edit_arch(p, lambda a: a["modules"]["0"].update(type="SparseLinear")),
        r"architecture\.json: module '0' \(SparseLinear\) cannot be rebuilt from its saved description",
    ),
    "plan-file-that-is-not-a-plan": (
        lambda p: _plans(p, {"plans": [{"layers": "all of them"}]}),
        r"plan\.json: plans\[0\] is not a workbench plan",
    ),
    "plan-file-of-wrong-shape": (lambda p: _plans(p, [1, 2]), r"plan\.json: the plan file must be an object"),
    "plan-file-not-json": (
        lambda p: (p / "plan.json").write_text("plans: none"),
        r"plan\.json is not valid JSON",
    ),
    "example-without-output": (_bad_example, r"example\.safetensors must hold 'input\.0', .* and 'output'"),
    "truncated-example": (_truncated_example, r"example\.safetensors is not a readable safetensors file"),
    "example-the-model-cannot-take": (
        _example_of_wrong_width,
        r"the loaded model fails on the inputs saved in .*example\.safetensors",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("sealed", [True, False], ids=["manifest-recomputed", "no-manifest"])
def test_a_malformed_export_is_an_export_error_and_nothing_runs(tmp_path, probe, case, sealed):
    name, marker = probe
    _export(tmp_path)
    _names(tmp_path, name, "Net")  # even with trust_code=True below, a malformed export imports nothing
    edit, message = MALFORMED[case]
    edit(tmp_path)
    if sealed:
        _reseal(tmp_path)
    else:
        (tmp_path / "manifest.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wb.WorkbenchWarning)  # "no manifest.json": said by its own test
        with pytest.raises(ExportError, match=message):
            wb.sparse.load(tmp_path, _net() if "model" in case or "example" in case else None, trust_code=True)
    if "model" not in case and "example" not in case:  # these fail after building: the form was fine
        assert name not in sys.modules and not marker.exists()
