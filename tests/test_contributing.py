"""CONTRIBUTING.md's worked examples run exactly as written (each ```python block, in order, in a fresh namespace),
and what they register is removed afterwards."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_guide_has_worked_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("i", range(len(BLOCKS)), ids=[b.splitlines()[0].lstrip("# ") for b in BLOCKS])
def test_worked_example_runs(i):
    from workbench.compare import registry as strategies
    from workbench.criteria import _registry as criteria
    from workbench.masks import granularity
    from workbench.sparse import backends

    crit, gran = dict(criteria._REGISTRY), dict(granularity._REGISTRY)
    strat, back = set(strategies.available_strategies()), set(backends.available_backends())
    try:
        exec(compile(BLOCKS[i], f"CONTRIBUTING.md block {i}", "exec"), {"__name__": f"contributing_{i}"})
    finally:  # the registries as they were: other tests see only the built-in entries
        criteria._REGISTRY.clear()
        criteria._REGISTRY.update(crit)
        granularity._REGISTRY.clear()
        granularity._REGISTRY.update(gran)
        for name in set(strategies.available_strategies()) - strat:
            strategies._REGISTRY.unregister(name)
        for name in set(backends.available_backends()) - back:
            backends._REGISTRY.unregister(name)
