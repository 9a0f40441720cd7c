"""A real SIGINT (Ctrl-C) at random moments of apply / undo / redo / reset: exactly before or exactly after.

The runs happen in a child process (a stray KeyboardInterrupt must never reach pytest itself): a timer thread sends
SIGINT to the process after a random delay within the operation's duration, 50 times per operation, and the child
checks after each run that the model is bitwise the state before or the state after, that the store's position says
which, and that the next undo/redo works.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    r"""
    import json, os, random, signal, threading, time, warnings
    import torch
    import workbench as wb

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(384, 384) for _ in range(8)])
    data = [(torch.randn(16, 384), torch.randint(0, 384, (16,)))]
    bench = wb.Workbench(model, data)

    def snap():
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def same(a, b):
        return all(torch.equal(a[k].view(torch.int32), b[k].view(torch.int32)) for k in a)

    def timed(op):
        t0 = time.perf_counter(); op(); return time.perf_counter() - t0

    rng = random.Random(0)
    out = {"runs": 0, "interrupted": 0, "before": 0, "after": 0, "bad": []}
    plans = [wb.Plan.uniform(0.5), wb.Plan.global_(0.8), wb.Plan.uniform(0.3, granularity="neuron")]
    for run in range(50):
        kind = ["apply", "undo", "redo", "reset"][run % 4]
        bench.reset()
        if kind in ("undo", "reset"):
            bench.apply(plans[run % 3], evaluate=False)
            bench.apply(wb.Plan.global_(0.9), evaluate=False)
        if kind == "redo":
            bench.apply(plans[run % 3], evaluate=False)
            bench.undo()
        op = {
            "apply": lambda: bench.apply(plans[run % 3], evaluate=False),
            "undo": bench.undo,
            "redo": bench.redo,
            "reset": bench.reset,
        }[kind]
        pos0, before = bench.store.position, snap()
        duration = timed(op)  # the fault-free run, to aim the signal inside the next one
        pos1, after = bench.store.position, snap()
        bench.goto(pos0) if kind != "apply" else bench.undo()
        if kind == "apply":
            bench.store.truncate_()
        assert same(snap(), before)
        timer = threading.Timer(rng.uniform(0, duration), os.kill, (os.getpid(), signal.SIGINT))
        hit = False
        try:
            timer.start()
            op()
            timer.join()
            for _ in range(100000):  # the signal is handled at the next bytecode boundary: give it one
                pass
        except KeyboardInterrupt:
            hit = True
            timer.join()
        now, pos = snap(), bench.store.position
        out["runs"] += 1
        out["interrupted"] += hit
        if pos == pos0 and same(now, before):
            out["before"] += 1
        elif pos == pos1 and same(now, after):
            out["after"] += 1
        else:
            out["bad"].append({"run": run, "kind": kind, "pos": pos, "pos0": pos0, "pos1": pos1})
            continue
        if bench.store.position == pos0:  # the next moves still work and reach the recorded states exactly
            op() if kind == "apply" else bench.goto(pos1)
        assert same(snap(), after), run
        bench.goto(pos0)
        assert same(snap(), before), run
    print(json.dumps(out))
    """
)


def test_real_sigint_at_random_moments_leaves_the_model_before_or_after():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["runs"] == 50
    assert out["bad"] == [], out
    assert out["before"] + out["after"] == 50
    assert out["interrupted"] >= 25, out  # the signal landed inside (or right after) most operations
