"""Regenerate the shipped ``stdlib-lm`` files and its manifest entry (a maintainer's script; see
:mod:`workbench.demo.ship`: ``python -m workbench.demo.ship --only stdlib-lm``).

Steps, all on this machine's standard library (:mod:`workbench.demo.corpus`): train the byte-level BPE tokenizer on
the training files; tokenise both splits; cut the validation and calibration windows that ship
(:func:`~workbench.demo.lm.make_token_ids`); train the model (:func:`~workbench.demo.lm.train_lm`, seed 0, one
thread); store its weights in float16; load them back into a fresh model and measure the validation perplexity
with the workbench's own causal-LM metric (:func:`workbench.evaluate.evaluate`), next to the unigram baseline.
The manifest entry records every file's sha256 and those numbers; other entries are kept.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import corpus, lm
from .shipped import MANIFEST_NAME, SHIPPED_SEED, WEIGHTS_DIR, load_shipped, manifest, sha256

__all__ = ["check_lm", "ship_lm"]


def _save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(path)


def write_entry(root: Path, name: str, entry: dict[str, Any]) -> None:
    """Put ``entry`` under ``name`` in ``root``'s manifest, keeping the other entries (atomic write)."""
    path = root / MANIFEST_NAME
    doc = manifest(root) if path.is_file() else {"about": "", "models": {}}
    doc["models"][name] = entry
    tmp = root / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def measure(model: torch.nn.Module, val: list) -> dict[str, float]:
    """The workbench's causal-LM metrics of ``model`` on ``val``: perplexity, loss, next-token accuracy, tokens."""
    from ..evaluate import evaluate

    r = evaluate(model, val)
    return {k: r[k] for k in ("perplexity", "loss", "accuracy", "tokens")}


def ship_lm(out: str | Path | None = None, log=print, recipe: lm.LMRecipe | None = None) -> dict[str, Any]:
    """Train the tokenizer and the model on this machine's stdlib, write the three files into ``out`` (default:
    the package's weights directory) and its manifest entry; returns the entry."""
    recipe = recipe or lm.LMRecipe()
    root = Path(out) if out is not None else WEIGHTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    files = corpus.stdlib_files()
    train_files, val_files = corpus.split(files)
    tok = corpus.train_tokenizer((corpus.read_text(f) for f in train_files), vocab_size=lm.VOCAB_SIZE)
    tok_path = root / lm.TOKENIZER_FILE
    tok.save(str(tok_path), pretty=False)
    tokenizer = lm.load_tokenizer(tok_path)
    train_ids, val_ids = lm.stream(train_files, tokenizer), lm.stream(val_files, tokenizer)
    log(
        f"corpus: {len(train_files)} training files ({len(train_ids):,} tokens), {len(val_files)} validation files "
        f"({len(val_ids):,} tokens), tokenizer {time.perf_counter() - start:.1f} s"
    )
    ids = lm.make_token_ids(train_ids, val_ids)
    tokens_path = root / lm.TOKENS_FILE
    _save(ids, tokens_path, {"python": platform.python_version(), "seq_len": str(lm.SEQ_LEN)})

    torch.manual_seed(SHIPPED_SEED)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SHIPPED_SEED)
        model = lm.train_lm(
            lm.build_lm(),
            SHIPPED_SEED,
            recipe,
            log=lambda s, loss, sec: log(f"  step {s:4d}  loss {loss:.3f}  {sec:6.1f} s"),
            ids=train_ids,
        )
    train_seconds = time.perf_counter() - t0
    weights_path = root / lm.WEIGHTS_FILE
    meta = {"name": lm.NAME, "seed": str(SHIPPED_SEED), "version": str(lm.LM_VERSION), "torch": torch.__version__}
    _save({k: v.half() for k, v in model.state_dict().items()}, weights_path, meta)

    import tokenizers
    import transformers

    entry: dict[str, Any] = {
        "file": weights_path.name,
        "sha256": sha256(weights_path),
        "name": lm.NAME,
        "seed": SHIPPED_SEED,
        "model_version": lm.LM_VERSION,
        "dtype": "float16",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "tokenizer": {"file": tok_path.name, "sha256": sha256(tok_path), "vocab_size": tok.get_vocab_size()},
        "tokens": {"file": tokens_path.name, "sha256": sha256(tokens_path), "val": list(ids["val"].shape)},
        "corpus": {
            "python": platform.python_version(),
            "train_files": len(train_files),
            "val_files": len(val_files),
            "train_tokens": len(train_ids),
            "val_tokens": len(val_ids),
        },
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_steps": recipe.steps,
        "train_tokens_seen": recipe.steps * lm.TRAIN_BATCH * lm.SEQ_LEN,
        "train_seconds": round(train_seconds, 1),
    }
    # the metric is measured on the shipped (float16-rounded) weights, loaded as every user loads them
    write_entry(root, lm.NAME, entry)
    shipped = load_shipped(lm.build_lm(), lm.NAME, root, lm.LM_VERSION, "LM_VERSION").eval()
    val = lm.make_lm_data_from(ids, tokenizer).val
    m = measure(shipped, val)
    entry.update(
        val_perplexity=m["perplexity"],
        val_loss=m["loss"],
        val_accuracy=m["accuracy"],
        val_tokens=m["tokens"],
        unigram_val_perplexity=lm.unigram_perplexity(train_ids, ids["val"]),
    )
    write_entry(root, lm.NAME, entry)
    log(
        f"{lm.NAME}: val perplexity {m['perplexity']:.3f} (unigram {entry['unigram_val_perplexity']:.1f}), "
        f"{entry['parameters']:,} parameters, {weights_path.stat().st_size:,} bytes, trained {train_seconds:.0f} s"
    )
    return entry


def check_lm(weights_dir: str | Path | None = None) -> list[str]:
    """Problems with the shipped ``stdlib-lm`` files: a missing entry or file, a sha256 that differs, or a
    recomputed validation perplexity that differs from the manifest's (relative 1e-6). Empty when all match."""
    ok, why = lm.available()
    if not ok:
        return [f"{lm.NAME}: not checked ({why})"]
    root = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    entry = manifest(root)["models"].get(lm.NAME)
    if entry is None:
        return [f"{lm.NAME}: no entry in {root / MANIFEST_NAME}"]
    try:
        model = load_shipped(lm.build_lm(), lm.NAME, root, lm.LM_VERSION, "LM_VERSION").eval()
        data = lm.make_lm_data(weights_dir=root)
    except Exception as exc:
        return [f"{lm.NAME}: {exc}"]
    ppl = measure(model, data.val)["perplexity"]
    if not math.isclose(ppl, entry["val_perplexity"], rel_tol=1e-6):
        return [f"{lm.NAME}: val perplexity {ppl!r} on this machine, the manifest says {entry['val_perplexity']!r}"]
    return []


if __name__ == "__main__":
    ship_lm(sys.argv[1] if len(sys.argv) > 1 else None)
