"""A time bound for code that may never return (Torch-Pruning's graph on some models, torch.fx)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class TraceTimeout(BaseException):
    """Raised inside a bounded trace when its time is up. A BaseException (like KeyboardInterrupt), so the traced
    code's ``except Exception`` cannot swallow it; it is raised again every half second until the block ends."""


@contextmanager
def time_bound(seconds: float | None) -> Iterator[None]:
    """Raise `TraceTimeout` in this thread if the block runs longer than `seconds` (None: no bound).

    A watchdog thread raises the exception asynchronously in the traced thread (`PyThreadState_SetAsyncExc`), so a
    pure-Python loop that never returns is stopped at its next bytecode; a pending exception is cleared when the
    block ends first.
    """
    if seconds is None:
        yield
        return
    import ctypes

    tid = threading.get_ident()
    lock = threading.Lock()
    running = [True]

    stop = threading.Event()

    def fire() -> None:
        if stop.wait(seconds):
            return
        while True:
            with lock:
                if not running[0]:
                    return
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(TraceTimeout))
            if stop.wait(0.5):  # raised again if something in the block caught it and went on
                return

    # the exception can land in a weakref callback or __del__ that runs meanwhile, where Python can only report it
    # as "Exception ignored in ..."; it is raised again half a second later anyway, so such reports are dropped
    previous = sys.unraisablehook

    def unraisable(info) -> None:
        if not (isinstance(info.exc_type, type) and issubclass(info.exc_type, TraceTimeout)):
            previous(info)

    sys.unraisablehook = unraisable
    timer = threading.Thread(target=fire, name="workbench: trace time bound", daemon=True)
    timer.start()
    try:
        yield
    finally:
        with lock:
            running[0] = False
            stop.set()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), None)  # clear one not delivered yet
        if sys.unraisablehook is unraisable:
            sys.unraisablehook = previous
