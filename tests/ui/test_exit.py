"""A script that ends while dashboard work runs exits cleanly: the running task is asked to stop, the worker is
joined before the interpreter finalizes (a worker torn down inside torch's C++ code aborts the process with
"terminate called without an active exception"), and the model is exactly as before or after the step.

Each case runs a small script in a subprocess: a model of wide linear layers (the worker spends its time in
matmuls, outside the GIL, which is where finalization used to kill it), a job started with the dashboard's own
buttons, and an exit while it runs. A hook registered before the dashboard exists runs after the dashboard's
exit hook and prints what state the model is in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = """
import atexit, copy, sys, time
import torch
from torch import nn
import workbench as wb

torch.manual_seed(0)
torch.set_num_threads(1)
model = nn.Sequential(nn.Linear(768, 768), nn.ReLU(), nn.Linear(768, 768), nn.ReLU(), nn.Linear(768, 10))
data = [(torch.randn(512, 768), torch.randint(0, 10, (512,))) for _ in range(3)]
plan = wb.Plan({"0": wb.LayerPlan(0.5)})
twin = copy.deepcopy(model)
wb.Workbench(twin, data).apply(plan)  # what the model holds once the step is applied
before = {k: v.clone() for k, v in model.state_dict().items()}
after = {k: v.clone() for k, v in twin.state_dict().items()}
bench = wb.Workbench(model, data, metric="accuracy")


def state():  # registered first, so it runs last: after the dashboard's exit hook
    now = model.state_dict()
    for name, ref in (("before", before), ("after", after)):
        if all(torch.equal(now[k], v) for k, v in ref.items()):
            print("model:", name, flush=True)
            return
    print("model: neither before nor after", flush=True)


atexit.register(state)
dash = bench.show()
"""

JOBS = {
    "apply": """
dash.editor.rows["0"].slider.value = 0.5
dash.actions.apply_button.click()
""",
    "exact scan": """
dash.tabs["sensitivity"].mode.value = "exact"
dash.tabs["sensitivity"].scan_button.click()
""",
    "estimate scan": """
dash.tabs["sensitivity"].mode.value = "estimate"
dash.tabs["sensitivity"].scan_button.click()
""",
}

EXIT = """
print("running at exit:", dash.busy.running, flush=True)
"""


def _run(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


@pytest.mark.parametrize("job", list(JOBS))
def test_script_exits_cleanly_while_dashboard_work_runs(job):
    p = _run(textwrap.dedent(PRELUDE) + JOBS[job] + EXIT)
    assert "terminate called" not in p.stderr, p.stderr
    assert p.returncode == 0, f"exit code {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "running at exit: True" in p.stdout, p.stdout  # the exit really happened while the work ran
    expect = "model: after" if job == "apply" else "model: before"  # a scan is an analysis: the model is restored
    assert expect in p.stdout, p.stdout
