"""The dashboard in a real browser: JupyterLab on loopback, Debian's Chromium driven by Playwright.

Runs the tour notebook (from a temporary copy, so autosave cannot write outputs into the repo), waits for the
dashboard, moves a ratio slider with the keyboard, applies, checks the metric changed and the heatmap is
there, undoes and checks the metric came back. Screenshots land in tests/artifacts/ on success and failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed and could not be installed (make test installs it as root)")
    pytest.importorskip("playwright")
    work = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    port = _free_port()
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
        "JUPYTER_CONFIG_DIR": str(work / "config"),
        "PYTHONPATH": str(ROOT),
    }
    jupyter = [sys.executable, "-m", "jupyterlab"]
    subprocess.run(
        [*jupyter[:2], "jupyter", "labextension", "disable", "@jupyterlab/apputils-extension:announcements"],
        env=env,
        capture_output=True,
    )
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(
        [
            *jupyter,
            "--no-browser",
            "--allow-root",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ServerApp.token=",
            "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True",
            f"--notebook-dir={work / 'notebooks'}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "/api/status", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("jupyter lab exited:\n" + (work / "lab.log").read_text()) from None
                time.sleep(0.5)
        else:
            raise RuntimeError("jupyter lab did not answer in 120 s:\n" + (work / "lab.log").read_text())
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _browser(p):
    return p.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )


def _run_all(page, lab: str, notebook: str) -> None:
    """Open `notebook` in JupyterLab, wait for its kernel and run all its cells."""
    page.goto(f"{lab}/lab/tree/{notebook}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    select = page.locator(".jp-Dialog button.jp-mod-accept")  # a kernel picker, if JupyterLab asks
    try:
        select.click(timeout=5_000)
    except Exception:
        pass
    page.wait_for_function(
        "() => { const e = document.querySelector('.jp-Notebook-ExecutionIndicator');"
        " return (e && e.getAttribute('data-status') === 'idle')"
        " || document.body.textContent.includes('Kernel status: Idle'); }",
        timeout=90_000,
    )
    page.click("text=Run", timeout=10_000)
    page.click("text=Run All Cells", timeout=10_000)


def test_tour_dashboard_in_chromium(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            _run_all(page, lab, "00_tour.ipynb")
            dashboard = page.wait_for_selector(".wb-dashboard", timeout=180_000)
            dashboard.scroll_into_view_if_needed()
            page.wait_for_selector(".wb-dashboard .wb-metric-now", timeout=60_000)
            page.wait_for_selector(".wb-dashboard img", timeout=60_000)
            dense = page.inner_text(".wb-dashboard .wb-metric-now")
            page.screenshot(path=str(ARTIFACTS / "dashboard-loaded.png"), full_page=False)

            handle = page.locator(".wb-dashboard .wb-ratio .noUi-handle").first
            handle.scroll_into_view_if_needed()
            handle.focus()
            for _ in range(10):  # 10 steps of 0.05: ratio 0.5 on the first layer
                page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "() => document.querySelector('.wb-dashboard .wb-preview').innerText.includes('kept')"
            )
            preview = page.inner_text(".wb-dashboard .wb-preview")
            page.click(".wb-dashboard .wb-apply")
            page.wait_for_function(
                "(dense) => { const e = document.querySelector('.wb-dashboard .wb-metric-now');"
                " return e && e.innerText !== dense; }",
                arg=dense,
                timeout=60_000,
            )
            pruned = page.inner_text(".wb-dashboard .wb-metric-now")
            # apply finished: the header redraws first, the history after it, then the buttons come back
            page.wait_for_selector(".wb-dashboard .wb-apply:not([disabled])", timeout=60_000)
            assert page.locator(".wb-dashboard img").count() >= 1  # the heatmap and plots are images
            assert "↷" not in page.inner_text(".wb-dashboard .wb-history")
            page.screenshot(path=str(ARTIFACTS / "dashboard-applied.png"), full_page=False)

            # the effects of that step, before vs after, in their tabs: each computes, draws and states its numbers
            effects = {}
            for title, what, expect in (
                ("Interpretability", "interpretability", "Spearman"),
                ("Robustness", "robustness", "clean accuracy"),
                ("Bias", "bias", "accuracy"),
            ):
                page.click(f".wb-dashboard .lm-TabBar-tab:has-text('{title}')", timeout=10_000)
                button = page.locator(f".wb-dashboard .wb-{what}-compute")
                button.scroll_into_view_if_needed()
                button.click(timeout=10_000)
                page.wait_for_function(
                    "([sel, text]) => { const e = document.querySelector(sel); return e && e.innerText.includes(text); }",
                    arg=[f".wb-dashboard .wb-{what}-summary", expect],
                    timeout=120_000,
                )
                page.wait_for_selector(".wb-dashboard .wb-apply:not([disabled])", timeout=120_000)  # task finished
                effects[what] = page.inner_text(f".wb-dashboard .wb-{what}-summary")
                visible = page.locator(
                    ".wb-dashboard .lm-TabPanel img:visible, .wb-dashboard .widget-tab-contents img:visible"
                )
                assert visible.count() >= 1, f"the {title} tab drew no chart"
                page.locator(f".wb-dashboard .wb-{what}-summary").scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / f"dashboard-{what}.png"), full_page=False)
            assert "step 1" in effects["interpretability"] and "→" in effects["robustness"] and "→" in effects["bias"]

            # a sensitivity scan from the panel: the estimate includes the Fisher term, and the panel says so
            page.click(".wb-dashboard .lm-TabBar-tab:has-text('Sensitivity')", timeout=10_000)
            page.locator(".wb-dashboard button:has-text('Scan')").first.click(timeout=10_000)
            page.wait_for_function(
                "() => { const e = document.querySelector('.wb-dashboard .wb-sensitivity-source');"
                " return e && e.innerText.includes('Fisher'); }",
                timeout=120_000,
            )
            page.wait_for_selector(".wb-dashboard .wb-apply:not([disabled])", timeout=120_000)  # scan finished
            page.screenshot(path=str(ARTIFACTS / "dashboard-sensitivity.png"), full_page=False)

            page.click(".wb-dashboard .wb-undo")
            page.wait_for_function(
                "(dense) => document.querySelector('.wb-dashboard .wb-metric-now').innerText === dense",
                arg=dense,
                timeout=60_000,
            )
            page.screenshot(path=str(ARTIFACTS / "dashboard-undone.png"), full_page=False)
            assert pruned != dense and "parameters kept" in preview
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "dashboard-failure.png"), full_page=True)
            raise
        finally:
            browser.close()


def test_transformer_dashboard_in_chromium(lab):
    """The chapter on Hugging Face models: a LLaMA-style decoder's dashboard groups its 58 rows by block and kind;
    one kind slider moves that layer in every block, Apply prunes it (perplexity changes), Undo brings it back."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            _run_all(page, lab, "07_transformers.ipynb")
            dashboard = page.wait_for_selector(".wb-dashboard", timeout=240_000)
            dashboard.scroll_into_view_if_needed()
            page.wait_for_selector(".wb-dashboard .wb-metric-now", timeout=60_000)
            assert "perplexity" in page.inner_text(".wb-dashboard")
            dense = page.inner_text(".wb-dashboard .wb-metric-now")
            page.click(".wb-dashboard .lm-TabBar-tab:has-text('by kind')", timeout=10_000)
            kinds = page.locator(".wb-dashboard .wb-kind-ratio")
            assert kinds.count() == 7  # q/k/v/o and gate/up/down, repeated in every block
            assert "self_attn.q_proj" in page.inner_text(".wb-dashboard")
            page.screenshot(path=str(ARTIFACTS / "transformer-loaded.png"), full_page=False)
            handle = kinds.first.locator(".noUi-handle")
            handle.scroll_into_view_if_needed()
            handle.focus()
            for _ in range(10):  # ratio 0.5 on that kind of layer, in all 8 blocks
                page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "() => document.querySelector('.wb-dashboard .wb-preview').innerText.includes('kept')"
            )
            page.click(".wb-dashboard .wb-apply")
            page.wait_for_function(
                "(dense) => { const e = document.querySelector('.wb-dashboard .wb-metric-now');"
                " return e && e.innerText !== dense; }",
                arg=dense,
                timeout=60_000,
            )
            page.wait_for_selector(".wb-dashboard .wb-apply:not([disabled])", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "transformer-applied.png"), full_page=False)
            page.click(".wb-dashboard .wb-undo")
            page.wait_for_function(
                "(dense) => document.querySelector('.wb-dashboard .wb-metric-now').innerText === dense",
                arg=dense,
                timeout=60_000,
            )
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "transformer-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
