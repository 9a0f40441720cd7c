from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Mapping

import pytest
import torch

# notebook key-result checks are loaded by tests/test_notebooks.py, not collected as test modules
collect_ignore = ["nbchecks"]


# Under CI=true a skip means the project forgot to install something (make test installs the browser, transformers,
# dask and the MiniLM extra): it fails, unless the test is marked `cuda` (no GPU is a fact about the machine).
_STRICT = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _forgot(what: str, report) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    return (
        f"{what} was skipped under CI=true ({reason}): make test installs everything the tests use, so this is a "
        "missing install step or a test that cannot run; only tests marked @pytest.mark.cuda may skip"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if _STRICT and report.skipped and item.get_closest_marker("cuda") is None and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = _forgot(item.nodeid, report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if _STRICT and report.skipped:  # a module-level importorskip
        report.outcome = "failed"
        report.longrepr = _forgot(collector.nodeid, report)


@pytest.fixture(autouse=True)
def _no_demo_training(request, monkeypatch):
    """Tests run on the demo weights shipped with the package: training one (which gives other weights on another
    CPU) fails the test, unless it is marked ``trains_demo`` because training is what it tests."""
    if request.node.get_closest_marker("trains_demo") is None:
        import workbench.demo

        def refuse(model, name, seed):
            raise AssertionError(
                f"{request.node.nodeid} trained demo model {name!r} (seed {seed}); tests use the shipped weights "
                "(wb.demo.load(name) with seed 0). Mark the test @pytest.mark.trains_demo if training is what it tests."
            )

        monkeypatch.setattr(workbench.demo, "train_model", refuse)
    yield


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (tiny models train faster and steadier on one), restoring the count after.
    Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A bitwise copy of every parameter and buffer."""
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


def assert_bitwise(model: torch.nn.Module, snap: dict[str, torch.Tensor]) -> None:
    now = model.state_dict(keep_vars=True)
    assert now.keys() == snap.keys()
    for k, v in snap.items():
        a = now[k].detach()
        assert a.dtype == v.dtype and a.shape == v.shape, k
        # compare bits, so -0.0 vs 0.0 and NaN payloads count as differences
        assert torch.equal(_bits(a), _bits(v)), k


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8) if t.is_floating_point() else t


def assert_plain(model: torch.nn.Module) -> None:
    """No hooks, no parametrizations: the model stays a plain nn.Module."""
    from torch.nn.utils import parametrize

    for name, m in model.named_modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, name
        assert not m._backward_hooks and not getattr(m, "_backward_pre_hooks", None), name
        assert not parametrize.is_parametrized(m), name
    assert not torch.nn.modules.module._global_forward_hooks


def assert_deployable(fast, model, x, before, path, fresh: torch.nn.Module) -> None:
    """A compiled `fast` computes what the masked `model` computes on `x`, the live model is bitwise `before`, and
    `fast` exports (ONNX checked in onnxruntime) and loads back into `fresh` with the same outputs."""
    import workbench as wb

    model.eval()
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-5)
    assert_bitwise(model, before)
    er = wb.sparse.export(fast, path, formats=("safetensors", "onnx"))
    assert er.onnx_max_abs_err is not None and er.onnx_max_abs_err < 1e-4
    back = wb.sparse.load(path, fresh)  # check=True reproduces the saved outputs
    with torch.no_grad():
        assert torch.allclose(back(x), fast(x), atol=1e-5)


def val_batches(name: str = "digits-cnn"):
    """(model, data, batches): a shipped demo model and four batches of 60 of its validation samples."""
    import workbench as wb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, data = wb.demo.load(name)
    x, y = data.val.dataset.tensors
    batches = [(x[i : i + 60], y[i : i + 60]) for i in range(0, 240, 60)]
    return model, data, batches


class _FreshDemos(Mapping):
    """name -> (model, data): a fresh deep copy of the shipped demo model and its data at every lookup, from one
    load per session (nothing trains)."""

    def __init__(self, loaded: dict):
        self._loaded = loaded

    def _load(self, name: str):
        if name not in self._loaded:
            import workbench as wb

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._loaded[name] = wb.demo.load(name)
        return self._loaded[name]

    def __getitem__(self, name: str):
        return copy.deepcopy(self._load(name))

    def __iter__(self):
        import workbench as wb

        return iter(wb.demo.available())

    def __len__(self) -> int:
        return len(list(iter(self)))


@pytest.fixture(scope="session")
def _demo_cache() -> dict:
    return {}


@pytest.fixture
def demo_models(_demo_cache):
    """The demo models with the weights shipped in the package (seed 0; nothing trains): each lookup
    ``demo_models[name]`` gives a fresh copy of ``(model, data)``, so a test may prune it freely."""
    return _FreshDemos(_demo_cache)
