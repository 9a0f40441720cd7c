"""``stdlib-lm``: a small LLaMA-style causal language model trained on the Python standard library's source.

The model is a Hugging Face :class:`transformers.LlamaForCausalLM` built from a config in memory (:func:`config`:
4 blocks, hidden size 256, 8 query heads sharing 4 key/value heads, a gated MLP of 688, context 256, a byte-level
BPE vocabulary of 4096; about 5.0M parameters), so everything the workbench does to Hugging Face models applies
(heads with grouped-query attention, gated MLP neurons, the hidden size, perplexity as the metric). Needs
``transformers`` (``pip install -e '.[lm]'``); nothing is downloaded.

What ships in ``workbench/demo/weights/`` (sha256-checked against ``manifest.json`` on every load):

- ``stdlib-lm-seed0-v1.safetensors``: the trained weights, stored in float16 (loaded to float32);
- ``stdlib-lm-tokenizer-v1.json``: the tokenizer, trained on the training files (:mod:`workbench.demo.corpus`);
- ``stdlib-lm-tokens-v1.safetensors``: the validation (32 x 256) and calibration (128 x 256) token ids (int16),
  so the perplexity the tests check does not depend on which Python's stdlib a machine has.

Only training (:func:`train_lm`, ``wb.demo.train("stdlib-lm")``) and ``data.train`` read this machine's stdlib:
the training files tokenised with the shipped tokenizer, lazily on first use (a few seconds).

The manifest entry records, measured on the shipped float16 weights with the workbench's own causal-LM metric
(:func:`workbench.evaluate`): ``val_perplexity`` (77.56 on the 32 x 255 predicted validation tokens),
``val_loss``, ``val_accuracy`` (next token) and the baseline ``unigram_val_perplexity`` (784.8: add-one-smoothed
token frequencies of the training stream), with the corpus it was trained on (Python version, files, tokens).

Example:
    >>> import workbench as wb
    >>> model, data = wb.demo.load("stdlib-lm")  # doctest: +SKIP
    >>> wb.Workbench(model, data.val).evaluate()["perplexity"]  # doctest: +SKIP
    >>> data.tokenizer.decode(data.example[0, :12])  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from . import corpus

__all__ = [
    "LM_VERSION",
    "NAME",
    "LMData",
    "LMRecipe",
    "available",
    "build_lm",
    "config",
    "make_lm_data",
    "train_lm",
    "unigram_perplexity",
]

NAME = "stdlib-lm"
#: Bump when the architecture, tokenizer, data or recipe changes: it is part of the shipped files' names.
LM_VERSION = 1
SEQ_LEN = 256
VOCAB_SIZE = 4096
N_VAL, N_CALIB, N_EXAMPLE = 32, 128, 8
VAL_BATCH = CALIB_BATCH = TRAIN_BATCH = 8
TRAIN_BATCHES = 64  # data.train's length: an epoch of fine-tuning is 64 x 8 windows, about a minute on one core
CALIB_SEED = 0  # the calibration windows' starts in the training stream (fixed: they ship)
WEIGHTS_FILE = f"{NAME}-seed0-v{LM_VERSION}.safetensors"
TOKENIZER_FILE = f"{NAME}-tokenizer-v{LM_VERSION}.json"
TOKENS_FILE = f"{NAME}-tokens-v{LM_VERSION}.safetensors"
REASON = (
    "the stdlib-lm demo is a Hugging Face LlamaForCausalLM: pip install -e '.[lm]' (transformers; its weights and "
    "tokenizer ship in the package, nothing is downloaded)"
)


def available() -> tuple[bool, str]:
    """(True, "") when ``transformers`` is installed, else (False, what to install)."""
    try:
        import tokenizers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False, REASON
    return True, ""


def _require() -> None:
    ok, why = available()
    if not ok:
        raise ModuleNotFoundError(why)


def config():
    """The model's :class:`transformers.LlamaConfig` (untied input and output embeddings, no dropout)."""
    _require()
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=SEQ_LEN,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )


def build_lm() -> nn.Module:
    """A freshly initialised ``LlamaForCausalLM`` of :func:`config` (float32, CPU, seeded by the caller's RNG)."""
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(config()).to(dtype=torch.float32)


# --------------------------------------------------------------------------- tokenizer and token ids


def _weights_dir() -> Path:
    from .shipped import WEIGHTS_DIR

    return WEIGHTS_DIR


def load_tokenizer(path: Path | None = None):
    """The shipped tokenizer as a :class:`transformers.PreTrainedTokenizerFast` (``eos``/``bos``/``pad`` are
    ``<|endoftext|>``, id 0)."""
    _require()
    from transformers import PreTrainedTokenizerFast

    path = Path(path) if path is not None else _weights_dir() / TOKENIZER_FILE
    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        eos_token=corpus.EOS,
        bos_token=corpus.EOS,
        pad_token=corpus.EOS,
        model_max_length=SEQ_LEN,
    )


def stream(files: list[Path], tokenizer) -> Tensor:
    """The files' token ids concatenated, each file followed by ``<|endoftext|>`` (int32, 1-D)."""
    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    eos = backend.token_to_id(corpus.EOS)
    encs = backend.encode_batch([corpus.read_text(f) for f in files], add_special_tokens=False)
    ids: list[int] = []
    for e in encs:
        ids.extend(e.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int32)


@functools.lru_cache(maxsize=2)
def _train_stream(root: str, tokenizer_file: str) -> Tensor:
    train_files, _ = corpus.split(corpus.stdlib_files(root), root)
    return stream(train_files, load_tokenizer(Path(tokenizer_file)))


def train_stream(root: str | Path | None = None, tokenizer_file: str | Path | None = None) -> Tensor:
    """This machine's training files (:func:`workbench.demo.corpus.split`) tokenised with the shipped tokenizer
    (or ``tokenizer_file``); computed once per process."""
    base = Path(root) if root is not None else corpus.stdlib_root()
    tok = Path(tokenizer_file) if tokenizer_file is not None else _weights_dir() / TOKENIZER_FILE
    return _train_stream(str(base.resolve()), str(tok.resolve())).clone()


def windows(ids: Tensor, starts: Tensor) -> Tensor:
    """Rows ``ids[s : s + SEQ_LEN]`` for each start (int64, ``(len(starts), SEQ_LEN)``)."""
    offsets = torch.arange(SEQ_LEN)
    return ids.long()[starts.long().unsqueeze(1) + offsets]


def make_token_ids(train_ids: Tensor, val_ids: Tensor) -> dict[str, Tensor]:
    """The token ids that ship: ``val``, :data:`N_VAL` windows evenly spaced through the validation stream, and
    ``calib``, :data:`N_CALIB` windows at random starts (seed :data:`CALIB_SEED`) in the training stream (int16)."""
    if len(val_ids) < N_VAL * SEQ_LEN or len(train_ids) < N_CALIB * SEQ_LEN:
        raise ValueError(
            f"the corpus is too small: {len(val_ids)} validation / {len(train_ids)} training tokens, the demo needs "
            f"{N_VAL * SEQ_LEN} / {N_CALIB * SEQ_LEN}"
        )
    val_starts = torch.linspace(0, len(val_ids) - SEQ_LEN, N_VAL).floor().long()
    g = torch.Generator().manual_seed(CALIB_SEED)
    calib_starts = torch.randint(0, len(train_ids) - SEQ_LEN + 1, (N_CALIB,), generator=g)
    return {"val": windows(val_ids, val_starts).short(), "calib": windows(train_ids, calib_starts).short()}


def load_token_ids(path: Path | None = None) -> dict[str, Tensor]:
    """The shipped validation and calibration token ids (int64)."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else _weights_dir() / TOKENS_FILE
    return {k: v.long() for k, v in load_file(str(path)).items()}


# --------------------------------------------------------------------------- data


def _batch_dicts(rows: Tensor, batch_size: int) -> list[dict[str, Tensor]]:
    out = []
    for i in range(0, len(rows), batch_size):
        ids = rows[i : i + batch_size].clone()
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    return out


def _collate(rows: list[Tensor]) -> dict[str, Tensor]:
    ids = torch.stack(rows)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}


class TrainWindows(Dataset):
    """``n`` windows of :data:`SEQ_LEN` tokens at random starts (seeded) in this machine's training stream. The
    starts are drawn as fractions up front, so the length is known before the stdlib is tokenised (on first
    ``__getitem__``)."""

    def __init__(self, n: int, seed: int, source: Callable[[], Tensor] = train_stream) -> None:
        self.fractions = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        self._source = source
        self._ids: Tensor | None = None

    def __len__(self) -> int:
        return len(self.fractions)

    def __getitem__(self, i: int) -> Tensor:
        if self._ids is None:
            self._ids = self._source()
        start = int(self.fractions[i] * (len(self._ids) - SEQ_LEN + 1))
        return self._ids[start : start + SEQ_LEN].long()


@dataclass(frozen=True)
class LMData:
    """The language-model demo's data, in Hugging Face form: each batch is ``{"input_ids", "attention_mask",
    "labels"}`` with ``labels`` equal to ``input_ids`` (the model shifts them), all ``(B, 256)`` int64.

    Attributes:
        name: ``"stdlib-lm"``.
        train: DataLoader of 64 batches of 8 random windows of this machine's training files, tokenised lazily on
            first iteration (the training recipe draws its own, more).
        val: 32 windows of the validation files (4 batches of 8), shipped: the same on every machine.
        calib: 128 windows of the training files (16 batches of 8), shipped.
        tokenizer: The shipped byte-level BPE tokenizer (``transformers.PreTrainedTokenizerFast``).
        example: The first 8 validation sequences' ``input_ids``, ``(8, 256)``: ``model(data.example).logits``.
        seq_len: 256, the model's context.
        vocab_size: 4096.
    """

    name: str
    train: DataLoader
    val: list
    calib: list
    tokenizer: Any
    example: Tensor
    seq_len: int = SEQ_LEN
    vocab_size: int = VOCAB_SIZE


def train_loader(n_batches: int, seed: int, source: Callable[[], Tensor] = train_stream) -> DataLoader:
    """``n_batches`` batches of 8 random training windows (starts seeded by ``seed``), Hugging Face dicts."""
    return DataLoader(TrainWindows(n_batches * TRAIN_BATCH, seed, source), batch_size=TRAIN_BATCH, collate_fn=_collate)


def make_lm_data(seed: int = 0, train_batches: int = TRAIN_BATCHES, weights_dir: Path | None = None) -> LMData:
    """The :class:`LMData` from the shipped tokenizer and token ids (sha256-checked against the manifest);
    ``seed`` draws the training windows only (the shipped val and calib are fixed).

    Raises:
        DemoWeightsError: If a shipped file is missing or does not match the manifest.
    """
    from .shipped import shipped_file, verified

    root = Path(weights_dir) if weights_dir is not None else _weights_dir()
    _, entry = shipped_file(NAME, root, LM_VERSION, "LM_VERSION")
    tok_path = verified(root / entry["tokenizer"]["file"], entry["tokenizer"]["sha256"], NAME, "demo tokenizer")
    ids_path = verified(root / entry["tokens"]["file"], entry["tokens"]["sha256"], NAME, "demo token ids")
    source = functools.partial(train_stream, tokenizer_file=tok_path)
    return make_lm_data_from(load_token_ids(ids_path), load_tokenizer(tok_path), seed, train_batches, source)


def make_lm_data_from(
    ids: dict[str, Tensor],
    tokenizer: Any,
    seed: int = 0,
    train_batches: int = TRAIN_BATCHES,
    source: Callable[[], Tensor] = train_stream,
) -> LMData:
    """The :class:`LMData` of given ``val``/``calib`` token ids and tokenizer (what :func:`make_lm_data` and the
    shipping script share)."""
    return LMData(
        name=NAME,
        train=train_loader(train_batches, seed, source),
        val=_batch_dicts(ids["val"].long(), VAL_BATCH),
        calib=_batch_dicts(ids["calib"].long(), CALIB_BATCH),
        tokenizer=tokenizer,
        example=ids["val"][:N_EXAMPLE].long().clone(),
    )


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class LMRecipe:
    """AdamW, linear warm-up then cosine decay to 10 %, gradient clipping; ``steps`` batches of 8 random windows of
    256 tokens (800 x 2048 = 1.6M tokens, about 60 % of the training stream): 0.83 s a step on one idle CPU thread
    (11 minutes); the shipped weights took 21 minutes on a 2-core machine shared with other work."""

    steps: int = 800
    lr: float = 2e-3
    warmup: int = 40
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    clip: float = 1.0


def _lr_factor(step: int, recipe: LMRecipe) -> float:
    if step < recipe.warmup:
        return (step + 1) / recipe.warmup
    t = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def train_lm(
    model: nn.Module,
    seed: int = 0,
    recipe: LMRecipe | None = None,
    log: Callable[[int, float, float], Any] | None = None,
    ids: Tensor | None = None,
) -> nn.Module:
    """Train ``model`` in place on this machine's stdlib (deterministic for a given seed, stdlib, CPU and torch);
    returns it in ``eval()`` mode. ``ids``: the training stream (default :func:`train_stream`, the shipped
    tokenizer on this machine's training files). Runs on one intra-op thread (restored afterwards); seeds the
    global RNG (the caller is expected to have forked it). ``log(step, loss, seconds)`` every 50 steps if given."""
    recipe = recipe or LMRecipe()
    loader = train_loader(recipe.steps, seed, train_stream if ids is None else (lambda: ids))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
        rest = [p for n, p in model.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": rest, "weight_decay": 0.0}],
            lr=recipe.lr,
            betas=recipe.betas,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, recipe))
        model.train()
        start = time.perf_counter()
        for step, batch in enumerate(loader):
            loss = model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip)
            opt.step()
            sched.step()
            if log is not None and (step % 50 == 0 or step == recipe.steps - 1):
                log(step, loss.item(), time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def unigram_perplexity(train_ids: Tensor, val_rows: Tensor) -> float:
    """Perplexity of the add-one-smoothed unigram distribution of ``train_ids`` on the tokens a causal LM predicts
    in ``val_rows`` (every position but the first of each row): the baseline a model must beat."""
    counts = torch.bincount(train_ids.long(), minlength=VOCAB_SIZE).double() + 1.0
    logp = (counts / counts.sum()).log()
    targets = val_rows[:, 1:].reshape(-1).long()
    return float(torch.exp(-logp[targets].mean()))
