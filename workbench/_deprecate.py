"""Renamed and keyword-only parameters, kept working for one release with a DeprecationWarning (as timm and
Torch-Pruning do when they rename).

>>> import warnings
>>> @renamed(final="ratio")
... def gradual(bench=None, *, ratio=0.9):
...     return ratio
>>> with warnings.catch_warnings(record=True) as w:
...     warnings.simplefilter("always")
...     print(gradual(final=0.5), w[0].message)
0.5 gradual(final=...) is deprecated: use gradual(ratio=...)
>>> @keyword_only_after(1, old_order=("granularity", "criterion"))
... def uniform(ratio, *, granularity="weight", criterion="magnitude"):
...     return ratio, granularity, criterion
>>> with warnings.catch_warnings():
...     warnings.simplefilter("ignore")
...     uniform(0.5, "filter")
(0.5, 'filter', 'magnitude')
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["keyword_only_after", "renamed"]


def renamed(**old_to_new: str) -> Callable[[F], F]:
    """Accept the old keyword names of a function's parameters, warning once per call site."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got both {old}= (deprecated) and {new}=; pass only {new}=")
                    warnings.warn(
                        f"{fn.__name__}({old}=...) is deprecated: use {fn.__name__}({new}=...)",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def keyword_only_after(n: int, *, old_order: tuple[str, ...]) -> Callable[[F], F]:
    """Parameters after the first `n` positional ones became keyword-only; positional values given in `old_order`
    (the signature before) still work, with a warning that names the keywords to use."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            extra = args[n:]
            if extra:
                if len(extra) > len(old_order):
                    raise TypeError(f"{fn.__name__}() takes at most {n + len(old_order)} positional arguments")
                names = old_order[: len(extra)]
                spelled = ", ".join(f"{k}={v!r}" for k, v in zip(names, extra))
                warnings.warn(
                    f"{fn.__qualname__}: pass {', '.join(names)} by keyword ({spelled}); positional use is deprecated",
                    DeprecationWarning,
                    stacklevel=2,
                )
                for k, v in zip(names, extra):
                    if k in kwargs:
                        raise TypeError(f"{fn.__name__}() got multiple values for argument {k!r}")
                    kwargs[k] = v
            return fn(*args[:n], **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
