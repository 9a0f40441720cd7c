"""sparse/backends.py: a model-level backend is one registration, found by `compile` and tried by `auto`."""

import copy

import workbench as wb

from .conftest import _pruned_bench


def test_a_model_backend_is_one_registration():
    """Adding a model-level backend: a `build(state)` returning the rewritten copy (or None), and one
    `register_backend` line; `compile` finds it by name and `auto` tries it."""
    calls = []

    def build(state):
        calls.append(state.backend)
        new = copy.deepcopy(state.ref)
        state.removed["demo"] = 0
        return new

    wb.sparse.register_backend(wb.sparse.Backend("copy-demo", "a copy", "model", ("cpu",), build=build))
    try:
        _compile_with_a_new_backend(calls)
    finally:
        wb.sparse.backends._REGISTRY.unregister("copy-demo")  # registered for this test only
    assert "copy-demo" not in wb.sparse.available_backends()


def _compile_with_a_new_backend(calls):
    model, _, bench = _pruned_bench("mha")
    fast, rep = wb.sparse.compile(bench, backend="copy-demo", repeats=1)
    assert (
        fast is not model and calls == ["copy-demo"] and rep.removed_channels == {"demo": 0} and rep.max_abs_err <= 1e-5
    )
    wb.sparse.compile(bench, backend="auto", repeats=1)
    assert calls[-1] == "auto"
