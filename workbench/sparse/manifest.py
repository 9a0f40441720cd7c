"""The sha256 manifest of an export folder: `export` writes it last, `load` checks it first.

``manifest.json`` lists every other file the export wrote with its size and sha256, so a file that was changed,
truncated or deleted after the export is named before anything is read from it:

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     d = pathlib.Path(d)
...     _ = (d / "plan.json").write_text('{"plans": []}')
...     write_manifest(d, ["plan.json"])
...     sorted(verify_manifest(d))
['plan.json']
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ExportError

__all__ = ["MANIFEST", "sha256_of", "verify_manifest", "write_manifest"]

MANIFEST = "manifest.json"
_FORMAT = "workbench-manifest"
_VERSION = 1


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path, names: Iterable[str]) -> None:
    """Write ``manifest.json`` for `names` (files in `folder`), atomically: a half-written manifest never exists."""
    files = {n: {"bytes": (folder / n).stat().st_size, "sha256": sha256_of(folder / n)} for n in names}
    doc = {"format": _FORMAT, "version": _VERSION, "algorithm": "sha256", "files": files}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, folder / MANIFEST)


def _plain_name(name: Any) -> bool:
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name and "\\" not in name


def _entries(path: Path) -> dict[str, dict[str, Any]]:
    again = "export the model again"
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{path} is not valid JSON ({e}): the manifest was changed or truncated; {again}") from None
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("version") != _VERSION:
        raise ExportError(f"{path} is not a workbench manifest of version {_VERSION}; {again}")
    files = doc.get("files")
    if not isinstance(files, dict) or doc.get("algorithm") != "sha256":
        raise ExportError(f"{path} has no 'files' table of sha256 digests; {again}")
    for name, e in files.items():
        ok = (
            _plain_name(name)
            and isinstance(e, dict)
            and isinstance(e.get("sha256"), str)
            and len(e["sha256"]) == 64
            and isinstance(e.get("bytes"), int)
            and not isinstance(e["bytes"], bool)
        )
        if not ok:
            raise ExportError(
                f"{path}: entry {name!r} must be a plain file name with 'bytes' (int) and 'sha256' (64 hex digits), "
                f"got {e!r}; {again}"
            )
    return files


def verify_manifest(folder: Path) -> dict[str, dict[str, Any]] | None:
    """The files the manifest of `folder` lists (name -> bytes, sha256), each checked; None without a manifest.

    Raises `ExportError` naming the first file that is missing or whose size or sha256 differs.
    """
    path = folder / MANIFEST
    if not path.is_file():
        return None
    files = _entries(path)
    for name, e in files.items():
        f = folder / name
        if not f.is_file():
            raise ExportError(
                f"{f} is missing: {path} lists it as part of the export. It was deleted or the folder was copied "
                "in part; copy the whole folder again or export the model again"
            )
        size = f.stat().st_size
        digest = sha256_of(f) if size == e["bytes"] else None
        if digest != e["sha256"]:
            what = f"{size:,} bytes, {e['bytes']:,} when exported" if size != e["bytes"] else "its sha256 differs"
            raise ExportError(
                f"{f} was changed or truncated after the export ({what}; {path} records sha256 "
                f"{e['sha256'][:16]}...). Copy the folder again from where it was exported, or export the model again"
            )
    return files
