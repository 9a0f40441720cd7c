"""Ctrl-C held back while tensors are written: a write either completes or is rolled back, never left half done.

Python delivers SIGINT (Ctrl-C) to the main thread as a `KeyboardInterrupt` at an arbitrary bytecode, which can land
between two tensor writes of one pruning step. `deferred_interrupt` installs a handler that only notes the signal,
and raises the `KeyboardInterrupt` once the outermost deferred block has finished. Nested blocks share the outer one's
handler. In threads other than the main thread (which never receive SIGINT) it does nothing.

>>> with deferred_interrupt():
...     pass
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["deferred_interrupt", "settle"]

_state = threading.local()


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold SIGINT back for the duration of the block; raise `KeyboardInterrupt` right after it if one arrived."""
    if threading.current_thread() is not threading.main_thread() or getattr(_state, "depth", 0):
        _state.depth = getattr(_state, "depth", 0) + 1
        try:
            yield
        finally:
            _state.depth -= 1
        return
    hits: list[int] = []
    try:
        old = signal.signal(signal.SIGINT, lambda sig, frame: hits.append(sig))
    except ValueError:  # not allowed here (an embedded interpreter, a signal-less platform)
        old = None
        installed = False
    else:
        installed = True
    _state.depth = 1
    try:
        yield
    finally:
        _state.depth = 0
        if installed:
            signal.signal(signal.SIGINT, old if old is not None else signal.default_int_handler)
        if hits:
            raise KeyboardInterrupt


def settle(done: Callable[[], bool], step: Callable[[], Any]) -> None:
    """Call `step` until `done()` holds, also when Ctrl-C interrupts it (it must be all-or-nothing, like the mask
    store's moves), and raise the `KeyboardInterrupt` afterwards. For clean-up that must happen: going back to a
    history position in a ``finally``, dropping a step whose evaluation was interrupted."""
    interrupted = False
    while not done():
        try:
            step()
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
