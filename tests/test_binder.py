"""binder/ builds the environment the project declares: its requirements agree with pyproject.toml.

mybinder.org itself cannot be reached from the tests; these checks cover what can go wrong in the files: a
dependency missing or pinned outside the project's range, a CUDA or vision build of torch, the package not
installed, a launch URL pointing at a notebook that does not exist.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
FORBIDDEN = ("torchvision", "torchaudio", "triton")  # and any nvidia-* CUDA runtime wheel


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _project_requirements(*extras: str) -> dict[str, Requirement]:
    project = _pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return {canonicalize_name(r.name): r for r in reqs}


def _binder_lines() -> tuple[list[str], list[Requirement]]:
    options, reqs = [], []
    for raw in (BINDER / "requirements.txt").read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            options.append(line)
        else:
            reqs.append(Requirement(line))
    return options, reqs


def _binder_requirements() -> dict[str, Requirement]:
    return {canonicalize_name(r.name): r for r in _binder_lines()[1]}


def _pin(req: Requirement) -> Version | None:
    """The version of an exact pin (``==X``), else None."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
        return Version(specs[0].version)
    return None


def compatible(binder: Requirement, project: Requirement) -> tuple[bool, str]:
    """Whether binder's requirement can only select versions the project allows: an exact pin inside the project's
    range, or the very same specifier set."""
    pin = _pin(binder)
    if pin is not None:
        ok = project.specifier.contains(pin, prereleases=True)
        return ok, f"{binder} pins {pin}, outside pyproject's {project.specifier or 'any version'}"
    ok = SpecifierSet(str(binder.specifier)) == SpecifierSet(str(project.specifier))
    return ok, f"{binder} differs from pyproject's {project}; use the same specifier or an exact pin inside it"


def test_compatible_rejects_what_it_should():
    p = Requirement("numpy>=1.24")
    assert compatible(Requirement("numpy==2.0"), p)[0]
    assert compatible(Requirement("numpy>=1.24"), p)[0]
    assert not compatible(Requirement("numpy==1.20"), p)[0]
    assert not compatible(Requirement("numpy>=1.20"), p)[0]
    assert not compatible(Requirement("numpy"), p)[0]
    assert compatible(Requirement("torch==2.13.0+cpu"), Requirement("torch>=2.1,<=2.14.1"))[0]
    assert not compatible(Requirement("torch==2.15.0+cpu"), Requirement("torch>=2.1,<=2.14.1"))[0]


def test_every_runtime_and_ui_dependency_is_there_and_compatible():
    binder = _binder_requirements()
    problems = []
    for name, req in _project_requirements("ui").items():
        if name not in binder:
            problems.append(f"{req} (pyproject) is missing from binder/requirements.txt")
            continue
        ok, why = compatible(binder[name], req)
        if not ok:
            problems.append(why)
    assert not problems, "\n".join(problems)


def test_binder_adds_nothing_the_project_does_not_declare():
    project = _pyproject()["project"]
    declared = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    for reqs in project["optional-dependencies"].values():
        declared |= {canonicalize_name(Requirement(r).name) for r in reqs}
    extra = sorted(set(_binder_requirements()) - declared)
    assert not extra, f"binder/requirements.txt installs {extra}, which pyproject.toml does not declare"


def test_torch_is_a_cpu_build_pinned_inside_the_project_range():
    options, _ = _binder_lines()
    torch = _binder_requirements()["torch"]
    pin = _pin(torch)
    assert pin is not None, f"pin torch exactly in binder/requirements.txt (got {torch})"
    project = _project_requirements()["torch"]
    assert project.specifier.contains(pin, prereleases=True), f"torch {pin} is outside pyproject's {project.specifier}"
    assert pin.local in (None, "cpu"), f"torch {pin} is not a CPU build"
    assert any(re.fullmatch(rf"--(extra-)?index-url[ =]{re.escape(CPU_INDEX)}/?", o) for o in options), (
        f"binder/requirements.txt must take torch from {CPU_INDEX} (--extra-index-url), or pip may pull CUDA wheels"
    )


def test_torch_is_the_version_the_tests_run_with():
    makefile = (ROOT / "Makefile").read_text()
    m = re.search(r"pip install torch==([\w.+]+)", makefile)
    assert m, "the Makefile no longer pins torch; update this test with where the tested version is defined"
    assert _pin(_binder_requirements()["torch"]).public == Version(m[1]).public


def test_no_gpu_or_vision_packages():
    names = set(_binder_requirements())
    bad = sorted(n for n in names if n in FORBIDDEN or n.startswith("nvidia-"))
    assert not bad, f"binder must stay CPU-only and without torchvision: remove {bad}"


def test_postbuild_installs_the_package_with_the_widgets():
    post = BINDER / "postBuild"
    assert post.is_file() and os.access(post, os.X_OK), "binder/postBuild must exist and be executable"
    text = post.read_text()
    m = re.search(r"pip install[^\n]*?(?:-e\s+)?['\"]?\.(?:\[([\w,-]+)\])?['\"]?(?:\s|$)", text)
    assert m, "binder/postBuild must install the workbench itself (pip install -e .)"
    extras = m[1].split(",") if m[1] else []
    optional = _pyproject()["project"]["optional-dependencies"]
    assert all(e in optional for e in extras), f"postBuild names extras {extras}; pyproject has {sorted(optional)}"
    ui = {canonicalize_name(Requirement(r).name) for r in optional["ui"]}
    installed = set(_binder_requirements())
    for e in extras:
        installed |= {canonicalize_name(Requirement(r).name) for r in optional[e]}
    assert ui <= installed, f"the widgets need {sorted(ui - installed)} in the Binder image"


def test_python_version_is_allowed():
    runtime = BINDER / "runtime.txt"
    if not runtime.exists():
        pytest.skip("no binder/runtime.txt: repo2docker's default Python is used")
    m = re.fullmatch(r"python-(\d+\.\d+)", runtime.read_text().strip())
    assert m, f"binder/runtime.txt must read python-X.Y, got {runtime.read_text()!r}"
    requires = SpecifierSet(_pyproject()["project"]["requires-python"])
    assert requires.contains(m[1]), f"Python {m[1]} is outside requires-python {requires}"


def test_launch_url_opens_the_tour():
    readme = (BINDER / "README.md").read_text()
    paths = re.findall(r"urlpath=lab/tree/([\w./-]+\.ipynb)", readme)
    assert paths, "binder/README.md must give the launch URL with urlpath=lab/tree/notebooks/00_tour.ipynb"
    assert "notebooks/00_tour.ipynb" in paths
    for p in paths:
        assert (ROOT / p).is_file(), f"the Binder launch URL opens {p}, which does not exist"
