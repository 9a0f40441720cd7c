"""`python -m workbench`: the demo story runs in a fresh interpreter and shows what it claims (how long it takes is
benchmarks/cli.py's to report)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "workbench", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def demo_output() -> str:
    import workbench as wb

    wb.demo.load("digits-cnn")  # the shipped weights load (sha256-checked) before the demo runs
    proc = _run("demo")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_demo_shows_model_and_targets(demo_output: str):
    assert "digits-cnn" in demo_output
    assert "== targets" in demo_output
    for header in ("name", "kind", "shape", "params", "granularities"):
        assert header in demo_output
    for layer in ("features.0", "features.3", "features.7", "classifier.1"):
        assert layer in demo_output
    assert "dense accuracy:" in demo_output


def test_demo_applies_two_steps(demo_output: str):
    assert "step 1: apply Plan(uniform 0.5 filter/l1)" in demo_output
    assert "step 2: apply Plan(global 0.8 weight/magnitude)" in demo_output
    sparsity = {
        step: float(m.group(1)) / 100
        for step in (1, 2)
        for m in [re.search(rf"^step {step}: accuracy [0-9.]+.*sparsity ([0-9.]+)%", demo_output, re.M)]
        if m
    }
    assert set(sparsity) == {1, 2}, demo_output
    assert 0.5 <= sparsity[1] < sparsity[2]
    assert sparsity[2] == pytest.approx(0.8, abs=0.01)
    assert "total" in demo_output and "steps applied: 2" in demo_output


def test_demo_restores_bitwise(demo_output: str):
    assert "undo: weights bitwise equal to before step 2: yes" in demo_output
    assert "redo: weights bitwise equal to after step 2: yes" in demo_output
    assert "reset: weights bitwise equal to dense: yes" in demo_output
    assert ": NO" not in demo_output


def test_help():
    proc = _run("--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout and "usage:" in proc.stdout
    proc = _run("demo", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--model" in proc.stdout and "--seed" in proc.stdout


def test_no_subcommand_prints_help():
    proc = _run(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout and "demo" in proc.stdout


def test_unknown_model_is_a_clear_error():
    proc = _run("demo", "--model", "digits-cnnn", timeout=60)
    assert proc.returncode == 2
    assert "digits-cnn" in proc.stderr and "Available" in proc.stderr
