"""analysis/distributed.py: a scan on Dask worker processes equals the local scan, and a worker that dies mid-scan
has its points rerun."""

import numpy as np
import pytest
from conftest import assert_bitwise, snapshot

import workbench as wb

from .conftest import RATIOS


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes (not threads): what a scan on a real Dask cluster sees."""
    distributed = pytest.importorskip("dask.distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
        ) as c,
        distributed.Client(c) as client,
    ):
        yield client


def test_a_scan_on_dask_worker_processes_equals_the_local_scan(cluster):
    model, data = wb.demo.load("digits-cnn")
    bench = wb.Workbench(model, data)
    before = snapshot(model)
    local = bench.sensitivity(RATIOS, granularity="filter", criterion="l1", progress=False)
    for executor in (cluster, cluster.get_executor()):
        remote = bench.sensitivity(RATIOS, granularity="filter", criterion="l1", executor=executor, progress=False)
        assert remote.complete and remote.layers == local.layers and "dask" in remote.engine
        np.testing.assert_allclose(remote.values, local.values, atol=1e-6, rtol=0)
    assert_bitwise(model, before)


def test_a_worker_that_dies_mid_scan_has_its_points_rerun(cluster):
    import os

    model, data = wb.demo.load("digits-mlp")
    bench = wb.Workbench(model, data)
    ratios = np.linspace(0.1, 0.9, 9)
    local = bench.sensitivity(ratios, progress=False)
    import signal

    pids = cluster.run(os.getpid)  # worker address -> its process
    killed = []

    def kill_one(done, total):
        if done == 2 and not killed:  # a point is back: the others are queued or running on both workers
            pid = pids[sorted(pids)[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    remote = bench.sensitivity(ratios, executor=cluster, progress=kill_one)
    assert killed and remote.complete
    np.testing.assert_allclose(remote.values, local.values, atol=1e-6, rtol=0)
    cluster.wait_for_workers(2, timeout=120)  # the nanny restarts the worker
