"""Shared by the tests of workbench/sparse/: a pruned test model (tests/zoo) on a Workbench."""

from zoo import make

import workbench as wb


def _pruned_bench(name: str):
    model, data = make(name)
    bench = wb.Workbench(model, data)
    if name == "rescat":
        bench.apply(wb.Plan.uniform(0.5, granularity="filter", criterion="l1", exclude=["g"]), evaluate=False)
    bench.apply(wb.Plan.global_(0.9), evaluate=False)
    return model, data, bench
