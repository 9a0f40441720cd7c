"""The Workbench's procedures that change weights beyond masks (a mixin of `workbench.bench.Workbench`): layer-wise
language-model pruning and masked fine-tuning. Each is one history step that `undo` reverses bitwise."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._bench_history import HistoryEntry
from ._deprecate import renamed

__all__ = ["Procedures"]


class Procedures:
    """`prune_llm` (`workbench.llm`) and `finetune` (`workbench.training`)."""

    @renamed(sparsity="ratio")
    def prune_llm(
        self,
        ratio: float | None = None,
        method: str = "wanda",
        pattern: str = "unstructured",
        *,
        owl: bool = False,
        owl_lambda: float = 0.08,
        owl_m: float = 5.0,
        calib: Iterable | None = None,
        nsamples: int | None = None,
        blocks: str | None = None,
        damp: float = 0.01,
        blocksize: int = 128,
        undo: bool = True,
        evaluate: bool = True,
        label: str | None = None,
        progress: Any = False,
    ) -> HistoryEntry:
        """Prune a language model's blocks one at a time, as SparseGPT and Wanda do, as one history step.

        Each block is calibrated on the inputs the already-pruned blocks before it produce (`workbench.llm`), holding
        one block's activations. `ratio` (default 0.5; an N:M `pattern` implies 1 - N/M) of every linear layer
        inside the blocks is removed; `method` from ``wb.llm.available_methods()`` (``"magnitude"``, ``"wanda"``,
        ``"sparsegpt"``: updates the kept weights too); `pattern` ``"unstructured"``, ``"2:4"``, ``"4:8"``; ``owl=True``
        gives blocks with more outlier activations lower ratios (mean `ratio`; spread ``2 * owl_lambda``, outliers
        above `owl_m` times the layer mean). `calib`: calibration batches (default the bench's calib data), the first
        `nsamples` sequences; `blocks` the dotted name of the block list when it is not found; SparseGPT's `damp`
        (share of the mean Hessian diagonal) and `blocksize` (lazy column updates). Undo restores bitwise, SparseGPT's
        updated weights included; ``undo=False`` keeps no copy of the weights before the step (for models whose copy
        does not fit in memory): the pruned model becomes the new starting point as with `adopt`. `self.last_llm`
        keeps the run's `PruneResult` (per-block ratios and seconds).

        >>> import torch, transformers as T, workbench as wb
        >>> model = T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
        ...                                          num_key_value_heads=2, intermediate_size=64, vocab_size=100))
        >>> bench = wb.Workbench(model, [{"input_ids": torch.randint(0, 100, (4, 16))}])
        >>> bench.prune_llm(method="sparsegpt", pattern="2:4").label
        'sparsegpt 50% 2:4 (layer-wise, 4 sequences, 64 tokens)'
        >>> bench.undo().index  # bitwise, SparseGPT's updated weights included
        0
        """
        from .llm.step import prune_llm

        return prune_llm(
            self.state,
            ratio,
            method,
            pattern,
            owl=owl,
            owl_lambda=owl_lambda,
            owl_m=owl_m,
            calib=calib,
            nsamples=nsamples,
            blocks=blocks,
            damp=damp,
            blocksize=blocksize,
            undo=undo,
            evaluate=evaluate,
            label=label,
            progress=progress,
        )

    def finetune(
        self,
        epochs: int = 3,
        *,
        lr: float = 1e-3,
        optimizer: Any = "adamw",
        teacher: Any = None,
        T: float = 4.0,
        alpha: float = 0.5,
        data: Iterable | None = None,
        progress: Any = True,
        **kwargs: Any,
    ):
        """Train the pruned model with its masks enforced (pruned weights stay exactly zero), optionally distilling
        from a teacher (``"before"``: the state before the last pruning step, a history index, or a module); one
        history step (``kind="finetune"``) that undo reverses bitwise. Returns a `TrainingResult` with loss, metric
        and learning rate per epoch. More options (``schedule``, ``weight_decay``, ``seed``): see
        `workbench.training.finetune`."""
        from .training.finetune import finetune

        return finetune(
            self.state,
            epochs,
            lr=lr,
            optimizer=optimizer,
            teacher=teacher,
            T=T,
            alpha=alpha,
            data=data,
            progress=progress,
            **kwargs,
        )
