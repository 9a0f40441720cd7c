"""Regenerate the demo weights that ship with the package, and their manifest (a maintainer's script).

Usage::

    python -m workbench.demo.ship              # retrain all five digits models (seed 0) into workbench/demo/weights/
    python -m workbench.demo.ship --only stdlib-lm  # the language model: tokenizer, token ids, weights (~12 min)
    python -m workbench.demo.ship --check      # verify the shipped files against the manifest; write nothing
    python -m workbench.demo.ship --out DIR    # write somewhere else (e.g. to compare two machines)

Run it after changing an architecture, a training recipe or the data, having bumped
:data:`~workbench.demo.models.MODEL_VERSION`, and commit the files it writes. Each model is trained with
:func:`workbench.demo.train` (``seed=0``), saved atomically as ``<name>-seed0-v<MODEL_VERSION>.safetensors`` and
evaluated on the validation split; ``manifest.json`` records for each file its sha256, the model name, seed,
MODEL_VERSION, the torch version it was trained with and the validation accuracy it reaches. Entries of models not
retrained (``stdlib-lm``, shipped by :mod:`workbench.demo.ship_lm`) are kept; weights files no entry lists are
removed. Training is deterministic for a given CPU and torch version only, so
regenerating on another machine may give other weights (and other conclusions in the notebooks and tests that
state their margins on the shipped ones): check those after regenerating.

Example:
    >>> problems = check()  # the shipped files match their manifest
    >>> problems
    []
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import train
from .data import make_data
from .models import MODEL_VERSION, available, build
from .ship_lm import check_lm, ship_lm
from .shipped import MANIFEST_NAME, SHIPPED_SEED, WEIGHTS_DIR, load_shipped, manifest, sha256
from .trainer import evaluate, save_weights

__all__ = ["check", "ship"]


def _file_name(name: str) -> str:
    return f"{name}-seed{SHIPPED_SEED}-v{MODEL_VERSION}.safetensors"


def ship(out: str | Path | None = None, log=print) -> dict[str, Any]:
    """Train every demo model with seed 0, write the weights and the manifest into ``out`` (default: the package's
    weights directory) and return the manifest."""
    root = Path(out) if out is not None else WEIGHTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    data = make_data(seed=SHIPPED_SEED)
    models: dict[str, Any] = {}
    for name in available():
        start = time.perf_counter()
        model = train(name, seed=SHIPPED_SEED)
        path = root / _file_name(name)
        meta = {"name": name, "seed": str(SHIPPED_SEED), "version": str(MODEL_VERSION), "torch": torch.__version__}
        if not save_weights(model, path, metadata=meta):
            raise OSError(f"could not write {path}")
        acc = evaluate(model, data.val)
        models[name] = {
            "file": path.name,
            "sha256": sha256(path),
            "name": name,
            "seed": SHIPPED_SEED,
            "model_version": MODEL_VERSION,
            "torch": torch.__version__,
            "val_accuracy": acc,
            "val_samples": len(data.val.dataset),
        }
        log(f"{name}: val accuracy {acc:.4f}, {path.stat().st_size} bytes, {time.perf_counter() - start:.1f} s")
    old = manifest(root)["models"] if (root / MANIFEST_NAME).is_file() else {}
    models.update({k: v for k, v in old.items() if k not in models})  # e.g. stdlib-lm
    doc = {
        "about": "trained weights of the workbench demo models; regenerate with `python -m workbench.demo.ship`",
        "models": models,
    }
    tmp = root / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(root / MANIFEST_NAME)
    keep = {m["file"] for m in models.values()} | {m["tokens"]["file"] for m in models.values() if "tokens" in m}
    for stale in root.glob("*.safetensors"):
        if stale.name not in keep:
            stale.unlink()
            log(f"removed {stale.name} (not in the new manifest)")
    return doc


def check(weights_dir: str | Path | None = None) -> list[str]:
    """Problems with the shipped weights in ``weights_dir`` (default: the package's): a model without an entry, a
    file whose sha256, MODEL_VERSION or recomputed validation accuracy (``stdlib-lm``: perplexity,
    :func:`~workbench.demo.ship_lm.check_lm`) differs from its manifest entry. Empty when everything matches."""
    root = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    problems = []
    entries = manifest(root)["models"]
    data = make_data(seed=SHIPPED_SEED)
    for name in available():
        if name not in entries:
            problems.append(f"{name}: no entry in {root / MANIFEST_NAME}")
            continue
        try:
            model = load_shipped(build(name), name, root)
        except Exception as exc:
            problems.append(f"{name}: {exc}")
            continue
        acc = evaluate(model.eval(), data.val)
        if not math.isclose(acc, entries[name]["val_accuracy"], rel_tol=0.0, abs_tol=1e-9):
            problems.append(
                f"{name}: val accuracy {acc!r} on this machine, the manifest says {entries[name]['val_accuracy']!r}"
            )
    return problems + check_lm(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.demo.ship", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"output directory (default: {WEIGHTS_DIR})")
    parser.add_argument("--check", action="store_true", help="verify the files against the manifest; write nothing")
    parser.add_argument("--only", choices=["digits", "stdlib-lm"], default="digits", help="what to retrain")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for p in problems:
            print(p)
        print("shipped demo weights: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
        return 1 if problems else 0
    if args.only == "stdlib-lm":
        ship_lm(args.out)
    else:
        ship(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
