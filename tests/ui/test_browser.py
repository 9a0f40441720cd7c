"""The dashboard in a real browser: JupyterLab on loopback, Debian's Chromium driven by Playwright.

Runs the tour notebook (from a temporary copy, so autosave cannot write outputs into the repo), waits for the
dashboard, moves a ratio slider with the keyboard, applies, checks the metric changed and the heatmap is
there, undoes and checks the metric came back. A one-cell notebook with a 121-layer model runs a refine
sensitivity scan from the dashboard and stops it midway. Screenshots land in tests/artifacts/ on success and failure.
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


def _run_all(page, lab: str, notebook: str, workspace: str = "") -> None:
    """Open `notebook` in JupyterLab, wait for its kernel and run all its cells. In a `workspace` of its own, the
    notebook is the only tab (not the notebooks earlier tests left open, whose cells and kernels answer too)."""
    page.goto(f"{lab}/lab/workspaces/{workspace}/tree/{notebook}" if workspace else f"{lab}/lab/tree/{notebook}")
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
            # a click on a cell of the table sets that layer's slider to the cell's ratio: the preview follows
            preview = page.inner_text(".wb-dashboard .wb-preview")
            page.locator(".wb-dashboard .wb-cell[title$=' at 90%']").first.click(timeout=10_000)
            page.wait_for_function(
                "(before) => document.querySelector('.wb-dashboard .wb-preview').innerText !== before",
                arg=preview,
                timeout=30_000,
            )
            page.locator(".wb-dashboard .wb-cells").screenshot(path=str(ARTIFACTS / "dashboard-sensitivity-table.png"))

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


# A model "at this size" (issue 17, part 4): 60 residual blocks of two linear layers and a head, 121 targets, so a
# refine scan has 1089 cells and lasts long enough (dozens of estimates' worth of passes) to be stopped midway.
_REFINE_NOTEBOOK = """\
import torch
from torch import nn

import workbench as wb

torch.set_num_threads(1)  # the test machine is shared: intra-op threads would fight the other processes
torch.manual_seed(0)


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(x)))


class Deep(nn.Module):
    def __init__(self, n=60, width=64):
        super().__init__()
        self.blocks = nn.ModuleList(Block(width) for _ in range(n))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


model = Deep().eval()
x = torch.randn(512, 64)
with torch.no_grad():
    y = model(x).argmax(1)  # labels from the model itself, like a trained one's: pruning can only hurt
bench = wb.Workbench(model, [(x[i : i + 128], y[i : i + 128]) for i in range(0, 512, 128)])
bench.show()
"""

# the exact-cell count in the sensitivity caption ("...; 173/1089 cells exact (marked •)"), once it exceeds `prev`
_EXACT_ABOVE = """(prev) => {
    const e = document.querySelector('.wb-dashboard .wb-sensitivity-source');
    const m = e && e.innerText.match(/(\\d+)\\/(\\d+) cells exact/);
    return m && +m[1] > prev ? [+m[1], +m[2], e.innerText] : null;
}"""


# from now on, every exact-cell count the caption takes on the page, in order
_RECORD_COUNTS = """() => {
    const e = document.querySelector('.wb-dashboard .wb-sensitivity-source');
    window.wbCounts = [];
    new MutationObserver(() => {
        const m = e.innerText.match(/(\\d+)\\/\\d+ cells exact/);
        if (m && window.wbCounts.at(-1) !== +m[1]) window.wbCounts.push(+m[1]);
    }).observe(e, {subtree: true, childList: true, characterData: true});
}"""

# the note between the heatmap and the table ("click a cell ..." once the table is shown)
_NOTE = """() => [...document.querySelectorAll('.wb-dashboard .widget-html')]
    .map(e => e.innerText).find(t => /table|click/i.test(t)) || null"""

# how many cells of the sensitivity table are marked exact (their text starts with •)
_MARKED = """() => [...document.querySelectorAll('.wb-dashboard .wb-cell')]
    .filter(b => b.innerText.trim().startsWith('•')).length"""


def _upload_notebook(lab: str, name: str, source: str) -> None:
    """Write a one-cell notebook into the lab's notebook directory (the server's contents API)."""
    import json

    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    body = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
    req = urllib.request.Request(
        f"{lab}/api/contents/{name}", data=body, method="PUT", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(req, timeout=30).read()


def test_sensitivity_refine_fills_in_and_stop_keeps_it_in_chromium(lab):
    """Issue 17, part 4, as a user does it on a model with 121 targets: the Sensitivity tab, mode "refine", Scan;
    the map starts from the estimate (its trust figure in the caption) and the caption, read from the page, counts
    more exact cells as they land; a slider still answers meanwhile; Stop ends the scan midway and the map keeps
    the exact cells it had, each marked • in the table too. Screenshots: refine-*.png in tests/artifacts/."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _upload_notebook(lab, "refine_at_size.ipynb", _REFINE_NOTEBOOK)
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        console_errors: list[str] = []  # for the message of a failure below
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
        try:
            _run_all(page, lab, "refine_at_size.ipynb", workspace="refine")
            page.wait_for_selector(".wb-dashboard .wb-sensitivity-source", state="attached", timeout=180_000)
            page.click(".wb-dashboard .lm-TabBar-tab:has-text('Sensitivity')", timeout=10_000)
            page.click(".wb-dashboard .widget-toggle-buttons button:has-text('refine')", timeout=10_000)
            page.evaluate(_RECORD_COUNTS)
            page.locator(".wb-dashboard button:has-text('Scan')").first.click(timeout=10_000)

            n0, total, first = page.wait_for_function(_EXACT_ABOVE, arg=-1, timeout=120_000).json_value()
            assert "refine scan" in first and "estimate trust" in first and total == 121 * 9, first
            n1, _, _ = page.wait_for_function(_EXACT_ABOVE, arg=n0, timeout=60_000).json_value()

            # the kernel still answers a slider while the scan runs: the preview follows it
            page.click(".wb-dashboard .lm-TabBar-tab:has-text('by kind')", timeout=10_000)
            preview = page.inner_text(".wb-dashboard .wb-preview")
            handle = page.locator(".wb-dashboard .wb-kind-ratio .noUi-handle").first
            handle.focus()
            for _ in range(6):
                page.keyboard.press("ArrowRight")
            page.wait_for_function(
                "(before) => document.querySelector('.wb-dashboard .wb-preview').innerText !== before",
                arg=preview,
                timeout=30_000,
            )

            n2, _, _ = page.wait_for_function(_EXACT_ABOVE, arg=n1, timeout=60_000).json_value()
            # the table fills in with the heatmap (each redraw sends it before the caption)
            live = page.evaluate(_MARKED)
            assert live >= n1, f"{live} cells marked • in the table while the caption counts {n2} exact"
            page.locator(".wb-dashboard .wb-sensitivity-source").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "refine-running.png"), full_page=False)
            page.locator(".wb-dashboard button:has-text('Stop'):visible").click(timeout=10_000)
            page.wait_for_selector(".wb-dashboard .wb-apply:not([disabled])", timeout=60_000)  # the scan ended

            caption = page.inner_text(".wb-dashboard .wb-sensitivity-source")
            kept = page.evaluate(_EXACT_ABOVE, -1)
            assert kept is not None, caption
            n, _, _ = kept
            assert n2 <= n < total, caption  # Stop kept every cell it had measured, and the scan had not ended
            # every count the page showed, in order: it only grew, and Stop left the last one (a browser that falls
            # behind applies queued updates at once, so not every redraw's count is painted)
            counts = page.evaluate("window.wbCounts")
            assert {n0, n1, n2} <= set(counts) and counts == sorted(set(counts)) and counts[-1] == n, counts
            # the table marks the same cells • (it follows the heatmap as cells land, one message a redraw, sent
            # before the caption)
            try:
                page.wait_for_function(f"(n) => ({_MARKED})() === n", arg=n, timeout=30_000)
            except Exception:
                marked, cells = page.evaluate(_MARKED), page.locator(".wb-dashboard .wb-cell").count()
                buttons = page.locator(".wb-dashboard .widget-button").count()
                note = page.evaluate(_NOTE)
                raise AssertionError(
                    f"{marked} of {cells} cells marked • in the table ({buttons} buttons in the dashboard; the note "
                    f"above the table says {note!r}; browser console errors: {console_errors[-5:]}), the caption "
                    f"says {caption!r}; the log says: " + page.inner_text(".wb-dashboard .wb-log")
                ) from None
            squashed = page.evaluate(  # rows of the table lower than their buttons (which then overlap)
                "() => [...new Set([...document.querySelectorAll('.wb-dashboard .wb-cell')].map(b => b.parentElement))]"
                ".filter(r => r.offsetHeight < r.querySelector('.wb-cell').offsetHeight).length"
            )
            assert squashed == 0, f"{squashed} rows of the table are lower than their buttons"
            cut = page.evaluate(  # cells whose text does not fit ("•+0.0…")
                "() => [...document.querySelectorAll('.wb-dashboard .wb-cell')]"
                ".filter(b => b.scrollWidth > b.clientWidth).map(b => b.innerText).slice(0, 5)"
            )
            assert not cut, f"cells cut short in the table: {cut}"
            page.locator(".wb-dashboard .wb-sensitivity-source").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "refine-stopped.png"), full_page=False)
            page.set_viewport_size({"width": 1400, "height": 3400})  # the whole heatmap (121 rows) on screen
            heatmap = page.locator(".wb-dashboard .wb-sensitivity-source ~ .wb-plot")
            heatmap.scroll_into_view_if_needed()
            heatmap.screenshot(path=str(ARTIFACTS / "refine-stopped-heatmap.png"))
            table = page.locator(".wb-dashboard .wb-cell").first.locator("xpath=../..")  # its rows, scrolled
            table.scroll_into_view_if_needed()
            table.screenshot(path=str(ARTIFACTS / "refine-stopped-table.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "refine-failure.png"), full_page=True)
            raise
        finally:
            browser.close()
