"""Offline text for the language-model demo: the Python standard library's own source files, split by file.

The corpus is every ``.py`` file under ``sysconfig.get_paths()["stdlib"]``, sorted by its path relative to that
root, leaving out test directories (``test``, ``tests``, ``idle_test``), installed packages (``site-packages``,
``dist-packages``), ``__pycache__``, and two folders that are data rather than code (``pydoc_data``: the help
topics as one string; ``encodings``: character-map tables). A file belongs to the validation split when the first
byte of the sha256 of its relative path (``/``-separated) is below :data:`VAL_BYTE` (about 5 % of the files): its
membership depends on its name only, not on which other files this Python has.

Every machine has a stdlib, but not the same one (3.10, 3.11 and 3.12 differ), so only the *training* of the demo
reads it; the tokenizer and the tokenized validation and calibration sequences ship with the package
(:mod:`workbench.demo.lm`), so the shipped model's perplexity is the same everywhere.

Example:
    >>> files = stdlib_files()
    >>> len(files) > 100, all(p.suffix == ".py" for p in files)
    (True, True)
    >>> train, val = split(files)
    >>> len(val) < len(train), set(train).isdisjoint(val)
    (True, True)
"""

from __future__ import annotations

import functools
import hashlib
import os
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import DataError

__all__ = [
    "EOS",
    "EXCLUDED_DIRS",
    "VAL_BYTE",
    "is_val",
    "read_text",
    "split",
    "stdlib_files",
    "stdlib_root",
    "train_tokenizer",
]

#: Folders left out of the corpus wherever they are (tests, installed packages, caches, data tables).
EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "pydoc_data", "encodings"}
)
#: A file is in the validation split when the first byte of sha256(relative path) is below this (13/256 ~ 5 %).
VAL_BYTE = 13
#: The special token between files (id 0 of the tokenizer).
EOS = "<|endoftext|>"


def stdlib_root() -> Path:
    """The standard library's directory of this Python (``sysconfig.get_paths()["stdlib"]``)."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: str | Path | None = None) -> list[Path]:
    """The corpus: ``.py`` files under ``root`` (default :func:`stdlib_root`), sorted by relative path, test
    directories, installed packages and data folders (:data:`EXCLUDED_DIRS`) left out.

    Raises:
        DataError: If ``root`` holds no such file.
    """
    base = Path(root) if root is not None else stdlib_root()
    return list(_files(base.resolve()))


@functools.lru_cache(maxsize=4)
def _files(base: Path) -> tuple[Path, ...]:
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS]  # prune: site-packages can be huge
        found.extend(
            Path(dirpath, f) for f in filenames if f.endswith(".py") and os.path.isfile(os.path.join(dirpath, f))
        )
    if not found:
        raise DataError(
            f"no Python source files under {base}: the stdlib-lm demo trains on the standard library's .py files; "
            "pass root= a folder of .py files, or use a Python installation that includes its sources"
        )
    return tuple(sorted(found, key=lambda p: p.relative_to(base).as_posix()))


def is_val(path: str | Path, root: str | Path | None = None) -> bool:
    """Whether the file at ``path`` is in the validation split: ``path`` relative to the stdlib, or absolute under
    ``root`` (default :func:`stdlib_root`).

    Example:
        >>> is_val("chunk.py"), is_val("argparse.py"), is_val("email/contentmanager.py")
        (True, False, True)
    """
    base = Path(root) if root is not None else stdlib_root()
    p = Path(path)
    rel = p.relative_to(base) if p.is_absolute() and p.is_relative_to(base) else p
    return hashlib.sha256(rel.as_posix().encode("utf-8")).digest()[0] < VAL_BYTE


def split(files: Sequence[Path], root: str | Path | None = None) -> tuple[list[Path], list[Path]]:
    """``(train, val)``: ``files`` split by :func:`is_val`, each in the given order."""
    base = Path(root).resolve() if root is not None else stdlib_root().resolve()
    train, val = [], []
    for f in files:
        (val if is_val(f, base) else train).append(f)
    return train, val


def read_text(path: Path) -> str:
    """The file's text as UTF-8 (undecodable bytes replaced), line endings normalised to ``\\n``."""
    return path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096):
    """A byte-level BPE :class:`tokenizers.Tokenizer` of ``vocab_size`` tokens trained on ``texts`` (id 0 is
    :data:`EOS`). Every byte is in the vocabulary, so any text encodes; decoding gives the text back."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok
