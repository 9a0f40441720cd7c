"""__main__.py: ``python -m workbench`` exits with what the CLI returns, and importing the module runs nothing.
(The CLI itself, in a fresh interpreter: tests/test_cli.py.)"""

import importlib
import runpy
import sys

import pytest

import workbench._cli as cli


def test_running_the_package_exits_with_the_clis_return_code(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["workbench"])
    monkeypatch.setattr(cli, "main", lambda: 7)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("workbench", run_name="__main__")
    assert exit_.value.code == 7


def test_importing_the_module_runs_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "main", lambda: calls.append(1) or 0)
    sys.modules.pop("workbench.__main__", None)
    try:
        importlib.import_module("workbench.__main__")
    finally:
        sys.modules.pop("workbench.__main__", None)  # runpy warns about a __main__ already imported
    assert calls == []


def test_help_exits_zero_and_names_the_demo(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["workbench", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("workbench", run_name="__main__")
    assert exit_.value.code == 0 and "demo" in capsys.readouterr().out
