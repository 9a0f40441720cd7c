"""What every panel shares: a busy runner (background thread, Stop flag, disabled buttons), a debouncer with
an injectable scheduler, a log, and rendering matplotlib figures to PNG without pyplot (no figure leaks).

When the interpreter exits while a task runs (a script ends after clicking Apply, a kernel shuts down), every
running task is asked to stop and its worker is joined before Python finalizes: a worker torn down inside torch's
C++ code aborts the process ("terminate called without an active exception"), and a model could be left between
two states. Tasks that check Stop end at their next progress tick; others (Apply, export) run to their end.

While a task runs, the objects that existed when it started are left out of garbage collections (`frozen_gc`): a
full collection stops every thread, the notebook's included, and in a process that imported transformers (about
200k objects) took 0.1 s idle and up to 0.45 s during a sensitivity scan, long enough to stall a slider.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401  (its exit hook joins pool threads; ours must run before it)
import gc
import html
import io
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import ipywidgets as W

__all__ = ["Busy", "Debouncer", "Log", "Panel", "frozen_gc", "image_widget", "render_png"]

_RUNNING: set[Busy] = set()  # runners whose worker thread is alive; joined at interpreter exit
_FROZEN = [0]  # tasks inside frozen_gc; the first freezes, the last unfreezes
_FROZEN_LOCK = threading.Lock()


@contextmanager
def frozen_gc() -> Iterator[None]:
    """Leave the objects that exist now out of garbage collections until the block ends (`gc.freeze`): collections
    then scan only what the block creates. Nested and concurrent blocks count; a freeze someone else made is left as
    it is (nothing is frozen or unfrozen then)."""
    with _FROZEN_LOCK:
        mine = _FROZEN[0] > 0 or gc.get_freeze_count() == 0
        if mine:
            if _FROZEN[0] == 0:
                gc.freeze()
            _FROZEN[0] += 1
    try:
        yield
    finally:
        if mine:
            with _FROZEN_LOCK:
                _FROZEN[0] -= 1
                if _FROZEN[0] == 0:
                    gc.unfreeze()


def render_png(draw: Callable[[Any], Any], size: tuple[float, float] = (6.0, 3.5), ncols: int = 1) -> bytes:
    """PNG bytes of a new `matplotlib.figure.Figure` (not pyplot: nothing is left open) drawn by
    `draw(ax)` (or `draw(axes)` with several columns).

    A figure is tens of thousands of objects in reference cycles (a heatmap of 169 layers: 22k left after it is
    dropped). Rendered with automatic collections on, they outlive the young collections that run meanwhile and
    reach the oldest generation, where only full collections, which stop every thread, free them: redrawn twice a
    second during a scan, they made those collections take 70-120 ms, in the middle of a slider event. So no
    automatic collection runs while the figure is built (see `_young`), the figure is cleared, and one collection of
    the youngest generation frees it (a few ms)."""
    from matplotlib.figure import Figure

    with _young():
        fig = Figure(figsize=size, dpi=96, layout="constrained")
        axes = fig.subplots(1, ncols)
        draw(axes)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        fig.clear()
        del fig, axes
    return buf.getvalue()


_YOUNG_LOCK = threading.Lock()
_YOUNG = [0, False]  # blocks inside `_young` now; whether the first one turned automatic collections off


@contextmanager
def _young() -> Iterator[None]:
    """No automatic garbage collection while the block runs (nested and concurrent blocks count: the last one out
    turns them back on, if the first one in turned them off); then one collection of the youngest generation, which
    holds everything the block made and dropped. A user who turned collections off keeps them off."""
    with _YOUNG_LOCK:
        if _YOUNG[0] == 0:
            _YOUNG[1] = gc.isenabled()
            gc.disable()
        _YOUNG[0] += 1
    try:
        yield
    finally:
        with _YOUNG_LOCK:
            _YOUNG[0] -= 1
            if _YOUNG[0] == 0 and _YOUNG[1]:
                gc.enable()
        gc.collect(0)


def image_widget() -> W.Image:
    """An empty PNG image widget for a rendered plot, as wide as the dashboard's plots."""
    img = W.Image(format="png", layout=W.Layout(max_width="720px"))
    img.add_class("wb-plot")
    return img


class Log:
    """An append-only message panel; errors never escape into a dead widget, they land here."""

    def __init__(self, max_lines: int = 50):
        self.lines: list[tuple[str, str]] = []
        self.max_lines = max_lines
        self.widget = W.HTML(layout=W.Layout(max_height="140px", overflow="auto", width="100%"))
        self.widget.add_class("wb-log")

    def __call__(self, message: str, level: str = "info") -> None:
        self.lines.append((level, message))
        del self.lines[: -self.max_lines]
        colors = {"error": "var(--jp-error-color1, #c62828)", "warn": "var(--jp-warn-color1, #b26a00)"}

        def fmt(level_: str, text: str) -> str:
            c = colors.get(level_)
            return f"<span style='color:{c}'>{html.escape(text)}</span>" if c else html.escape(text)

        self.widget.value = "<br>".join(fmt(lv, m) for lv, m in self.lines[-12:])

    def error(self, e: BaseException) -> None:
        self(f"{type(e).__name__}: {e}", "error")

    @property
    def last(self) -> str:
        return self.lines[-1][1] if self.lines else ""


class Busy:
    """Runs long work off the kernel's main thread (so Stop can be clicked), with a progress bar, a Stop
    button and every registered button disabled meanwhile. Tests pass ``threaded=False``.

    At interpreter exit a running task is stopped and waited for, at most `exit_timeout` seconds (the process then
    ends with exit code 1 and a message naming the task, rather than tearing the worker down mid-step)."""

    exit_timeout = 60.0

    def __init__(self, log: Log, threaded: bool = True):
        self.log = log
        self.threaded = threaded
        self.buttons: list[W.Button] = []
        self.progress = W.FloatProgress(value=0, min=0, max=1, layout=W.Layout(width="220px", visibility="hidden"))
        self.label = W.Label("")
        self.stop_button = W.Button(
            description="Stop", icon="stop", button_style="warning", layout=W.Layout(visibility="hidden", width="80px")
        )
        self.stop_button.on_click(lambda _: self.stop())
        self.widget = W.HBox([self.progress, self.stop_button, self.label])
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.running = False
        self.on_idle: list[Callable[[], None]] = []  # re-derive button states (e.g. Undo) once work ends

    def stop(self) -> None:
        self._stop.set()
        self.label.value = "stopping..."

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def tick(self, done: int, total: int) -> None:
        """A `progress=` callback for analyses: updates the bar, raises KeyboardInterrupt once Stop is hit."""
        self.progress.max = max(total, 1)
        self.progress.value = done
        if self._stop.is_set():
            raise KeyboardInterrupt

    def run(self, what: str, work: Callable[[], Any], done: Callable[[Any], None] | None = None) -> None:
        if self.running:
            self.log(f"busy with another task; {what} ignored", "warn")
            return
        self.running = True
        self._stop.clear()
        for b in self.buttons:
            b.disabled = True
        self.progress.value = 0
        self.progress.layout.visibility = "visible"
        self.stop_button.layout.visibility = "visible"
        self.label.value = what + "..."
        t0 = time.perf_counter()

        def body() -> None:
            try:
                with frozen_gc():
                    result = work()
                if done is not None:
                    done(result)
                if self._stop.is_set():  # the work caught the Stop itself and returned what it had (a refine scan)
                    self.log(f"{what}: stopped after {time.perf_counter() - t0:.2f} s; kept what it computed", "warn")
                else:
                    self.log(f"{what}: done in {time.perf_counter() - t0:.2f} s")
            except KeyboardInterrupt:
                self.log(f"{what}: stopped", "warn")
            except Exception as e:  # an error is shown, never a frozen dashboard
                self.log.error(e)
                self.last_traceback = traceback.format_exc()
            finally:
                try:
                    for b in self.buttons:
                        b.disabled = False
                    for fn in self.on_idle:
                        fn()
                finally:
                    self.running = False
                    self.progress.layout.visibility = "hidden"
                    self.stop_button.layout.visibility = "hidden"
                    self.label.value = ""
                    _RUNNING.discard(self)

        if self.threaded:
            self.thread = threading.Thread(target=body, name=f"workbench: {what}", daemon=True)
            _RUNNING.add(self)
            self.thread.start()
        else:
            body()

    def wait(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def _stop_at_exit() -> None:
    """Stop every running task and join its worker before the interpreter finalizes (see the module docstring)."""
    running = [b for b in list(_RUNNING) if b.thread is not None and b.thread.is_alive()]
    for b in running:
        b._stop.set()
    for b in running:
        b.thread.join(b.exit_timeout)
    stuck = [b for b in running if b.thread.is_alive()]
    if stuck:
        names = ", ".join(repr(b.thread.name.removeprefix("workbench: ")) for b in stuck)
        sys.stderr.write(
            f"workbench: the dashboard task {names} was asked to stop at exit and was still running after "
            f"{max(b.exit_timeout for b in stuck):g} s; ending the process without finalizing Python, so the "
            "task is not torn down mid-step. Let the task finish (or press Stop) before the script ends, or raise "
            "workbench.ui.Busy.exit_timeout.\n"
        )
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(1)


# threading's exit hooks run before non-daemon threads are joined and before atexit's, most recent first: this
# one runs before concurrent.futures' (which joins its pool threads and so would strand a scan that waits on
# them). atexit is the fallback where threading has no such hook.
_register = getattr(threading, "_register_atexit", None)
if _register is not None:
    _register(_stop_at_exit)
else:  # pragma: no cover
    import atexit

    atexit.register(_stop_at_exit)


class Debouncer:
    """Calls the last scheduled function `delay` seconds after the last call. The scheduler is injectable:
    `scheduler(delay, fn)`; tests use ``lambda d, f: f()`` to run synchronously."""

    def __init__(self, delay: float = 0.05, scheduler: Callable[[float, Callable[[], None]], Any] | None = None):
        self.delay = delay
        self.scheduler = scheduler or _loop_scheduler
        self._token = 0

    def __call__(self, fn: Callable[[], None]) -> None:
        self._token += 1
        token = self._token

        def fire() -> None:
            if token == self._token:
                fn()

        self.scheduler(self.delay, fire)


def _loop_scheduler(delay: float, fn: Callable[[], None]) -> None:
    try:
        asyncio.get_running_loop().call_later(delay, fn)
    except RuntimeError:  # no running loop (plain Python): run now
        fn()


class Panel:
    """A part of the dashboard: holds widgets and a reference to the bench; `widget()` returns its box.
    `refresh()` is called after every change of the model (apply, undo, redo, reset, goto).

    Work asked for while another task runs (a recomputation after Apply, a re-run with new constraints) is deferred
    with `run_or_defer`: a panel that overrides `rerun` has it called once the running task ends, inside that task's
    worker (still marked running), so two tasks never touch the model at the same time. Its errors go to the log,
    named by `task` (default: the title)."""

    title = "panel"
    task = ""  # the name the log gives a deferred run (`rerun`); the title when empty

    def __init__(self, dashboard):
        self.dashboard = dashboard
        self.bench = dashboard.bench
        self.log = dashboard.log
        self.busy = dashboard.busy
        self._pending = False  # work was asked for while another task ran: `rerun` once it ends
        if type(self).rerun is not Panel.rerun:
            self.busy.on_idle.append(self._after_task)

    def widget(self) -> W.Widget:
        raise NotImplementedError

    def refresh(self) -> None:
        pass

    def run_or_defer(self, run: Callable[[], None]) -> None:
        """`run()` now if no task is running; else `rerun()` once the running task ends (see the class docstring)."""
        if self.busy.running:
            self._pending = True
        else:
            run()

    def rerun(self) -> str | None:
        """The deferred work, run synchronously as the running task ends; returns what to log (None: nothing)."""
        return None

    def _after_task(self) -> None:
        """Called by the busy runner as each task ends: the deferred `rerun`, if one is pending; a Stop or an error
        lands in the log, never in a dead widget."""
        if not self._pending:
            return
        self._pending = False
        name = self.task or self.title
        try:
            message = self.rerun()
        except KeyboardInterrupt:
            self.log(f"{name}: stopped", "warn")
        except Exception as e:
            self.log(f"{name}: {type(e).__name__}: {e}", "error")
        else:
            if message:
                self.log(message)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget())
