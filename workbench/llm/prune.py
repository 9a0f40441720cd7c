"""One-shot layer-wise pruning of a language model: magnitude, Wanda or SparseGPT, with OWL ratios, in place.

`prune_` runs the layer-wise calibration (`workbench.llm.calibrate.layerwise`): for each block in order it collects
the input statistics its method needs on the inputs the already-pruned blocks produce, prunes each linear layer of
the block (``nn.Linear`` and Hugging Face's ``Conv1D``; embeddings and the LM head stay dense, as in the papers) and
runs the pruned block to give the next block its inputs. With ``owl=True`` a first layer-wise pass over the dense
model measures each block's outlier ratio (`workbench.llm.owl`) and the blocks get their own sparsities, with mean
`sparsity`. The model is written in place; `Workbench.prune_llm` records it as one undoable step.

>>> import torch, transformers as T
>>> _ = torch.manual_seed(0)
>>> model = T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4,
...                                          num_key_value_heads=2, intermediate_size=64, vocab_size=100))
>>> calib = [{"input_ids": torch.randint(0, 100, (4, 16))}]
>>> masks, res = prune_(model, calib, 0.5, method="sparsegpt", pattern="2:4")
>>> res.blocks, res.block_ratios, len(masks), round(float(model.model.layers[0].mlp.up_proj.weight.eq(0).float().mean()), 2)
('model.layers', (0.5, 0.5), 14, 0.5)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DataError, PlanError
from ..plan import check_ratio
from ..rules import is_conv1d
from . import sparsegpt as _sparsegpt  # noqa: F401  (registers sparsegpt)
from .blocks import block_layers, find_blocks
from .calibrate import Block, LayerStats, calibration_inputs, layerwise, weight_2d
from .methods import Pattern, get_method, parse_pattern
from .owl import outlier_ratio, owl_ratios

__all__ = ["PruneResult", "prune_"]


@dataclass(frozen=True)
class PruneResult:
    """What a layer-wise pruning run did, as plain data: the method and its settings, the blocks' dotted name, each
    block's sparsity (OWL: different; else all `sparsity`) and outlier ratio (OWL), seconds per block (statistics,
    pruning and the forward to the next block) and in the method alone, the calibration size, and the sparsity
    reached per pruned layer (by dotted name)."""

    method: str
    sparsity: float
    pattern: str
    owl: dict[str, float] | None
    blocks: str
    block_ratios: tuple[float, ...]
    outlier_ratios: tuple[float, ...] | None
    block_seconds: tuple[float, ...]
    method_seconds: tuple[float, ...]
    sequences: int
    tokens: int
    layers: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        owl = f" + OWL (lambda {self.owl['lambda']:g})" if self.owl else ""
        return (
            f"{self.method} {self.sparsity:.0%} {self.pattern}{owl} (layer-wise, {self.sequences} sequences, "
            f"{self.tokens} tokens)"
        )


def _sparsity(sparsity: float | None, pattern: Pattern | None) -> float:
    if pattern is None:
        return check_ratio(0.5 if sparsity is None else sparsity, "prune_llm (sparsity=)")
    if sparsity is not None and abs(float(sparsity) - pattern.sparsity) > 1e-9:
        raise PlanError(
            f"pattern {pattern} prunes {pattern.sparsity:.0%} of every row, but sparsity={sparsity!r} was asked; "
            f"pass sparsity={pattern.sparsity:g} (or leave it out) with this pattern"
        )
    return pattern.sparsity


def _tokens(inputs: list) -> tuple[int, int]:
    from ..adapter import primary, size

    seqs = sum(size(x) for x in inputs)
    toks = 0
    for x in inputs:
        p = primary(x)
        toks += int(p.shape[0] * p.shape[1]) if p is not None and p.dim() >= 2 else size(x)
    return seqs, toks


def prune_(
    model: nn.Module,
    calib: Iterable,
    sparsity: float | None = None,
    method: str = "wanda",
    pattern: str | None = "unstructured",
    *,
    owl: bool = False,
    owl_lambda: float = 0.08,
    owl_m: float = 5.0,
    nsamples: int | None = None,
    blocks: str | None = None,
    damp: float = 0.01,
    blocksize: int = 128,
    adapter: Any = None,
    current: Callable[[str], Tensor | None] | None = None,
    on_write: Callable[[str, Tensor, Tensor, bool], Any] | None = None,
    progress: Any = False,
) -> tuple[dict[str, Tensor], PruneResult]:
    """Prune the linear layers of every block of `model` in place, layer-wise on `calib` (batches in any form the
    adapter reads; the first `nsamples` sequences). Returns the masks (True = pruned, by full parameter name, in
    the parameter's layout) and a `PruneResult`.

    `sparsity`: share of each layer's weights pruned (default 0.5; an N:M `pattern` implies 1 - N/M). `method`: a
    name of `available_methods()` (``"magnitude"``, ``"wanda"``, ``"sparsegpt"``). `pattern`: ``"unstructured"``,
    ``"2:4"``, ``"4:8"`` or any ``"N:M"``. `owl`: per-block sparsities from outlier ratios (`owl_lambda`, `owl_m`;
    unstructured only). `damp` (share of the mean Hessian diagonal) and `blocksize` are SparseGPT's. `blocks`: the
    dotted name of the block list when it is not found. `current(name)`: elements already pruned (they stay pruned
    and count). `on_write(name, param, mask, updates)` is called before each parameter is written (to keep what
    undo needs). `progress`: True for a progress bar, or a callable ``(block_index, n_blocks, seconds)``.
    """
    t_start = time.perf_counter()
    pat = parse_pattern(pattern)
    s = _sparsity(sparsity, pat)
    meth = get_method(method)
    if owl and pat is not None:
        raise PlanError(
            f"OWL sets a sparsity per block, which pattern {pat} fixes at {pat.sparsity:.0%}; use owl=False with N:M, "
            "or pattern='unstructured' with OWL"
        )
    if nsamples is not None and (isinstance(nsamples, bool) or not isinstance(nsamples, int) or nsamples < 1):
        raise DataError(f"nsamples must be a positive int (calibration sequences), got {nsamples!r}")
    if not 0.0 <= damp:
        raise PlanError(f"damp (SparseGPT's dampening, a share of the mean Hessian diagonal) must be >= 0, got {damp}")
    inputs = calibration_inputs(model, calib, adapter, nsamples)
    if not inputs:
        raise DataError("the calibration data yielded no batches; pass calib= a non-empty list of batches")
    seqs, toks = _tokens(inputs)
    options = {"damp": damp, "blocksize": blocksize}
    path, seq = find_blocks(model, blocks)
    n_blocks = len(seq)
    if pat is not None:  # refused before anything is written
        for i, module in enumerate(seq):
            for n, m in block_layers(module).items():
                width = weight_2d(m).shape[1]
                if width % pat.m:
                    raise PlanError(
                        f"pattern {pat} needs the input width of '{path}.{i}.{n}' ({width}) to be a multiple of "
                        f"{pat.m}; use 'unstructured' or another M"
                    )

    outliers: list[float] | None = None
    ratios: list[float] | None = None
    if owl:
        outliers = []

        def measure(block: Block) -> None:
            stats = block.collect({"norms"}, advance=True)
            ws = [weight_2d(m).float() for m in block.layers.values()]
            outliers.append(outlier_ratio(ws, [stats[n].sq for n in block.layers], owl_m))

        layerwise(model, inputs, measure, blocks=path)
        ratios = owl_ratios(outliers, s, owl_lambda)

    masks: dict[str, Tensor] = {}
    layer_sparsity: dict[str, float] = {}
    block_ratios: list[float] = []
    block_seconds: list[float] = []
    method_seconds: list[float] = []
    bar = None
    t_block = [time.perf_counter()]

    def visit(block: Block) -> None:
        r = s if ratios is None else ratios[block.index]
        block_ratios.append(r)
        kinds = set() if meth.needs == "weights" else {meth.needs}
        stats = block.collect(kinds) if kinds else {n: None for n in block.layers}
        t0 = time.perf_counter()
        for name in list(block.layers):
            m = block.layers[name]
            st = stats.pop(name)
            if meth.needs == "hessian" and st is not None and any(v is st for v in stats.values()):
                st = LayerStats(st.rows, st.sq, None if st.hessian is None else st.hessian.clone())  # shared: a copy
            pname = f"{name}.weight"
            w = weight_2d(m)
            work = w.to(torch.float64 if w.dtype == torch.float64 else torch.float32, copy=True)  # methods may write it
            cur = None if current is None else current(pname)
            if cur is not None:
                cur = cur.to(w.device)
                cur = cur.t() if is_conv1d(m) else cur
            mask = _run(meth, pname, work, st, r, pat, cur, options)
            pmask = mask.t().contiguous() if is_conv1d(m) else mask
            p = m.weight
            if on_write is not None:
                on_write(pname, p, pmask, meth.updates)
            with torch.no_grad():
                if meth.updates:
                    p.detach().copy_(work.t() if is_conv1d(m) else work)
                    p.detach().masked_fill_(pmask, 0.0)
                else:
                    p.detach().masked_fill_(pmask, 0.0)
            masks[pname] = pmask
            layer_sparsity[name] = float(pmask.sum()) / pmask.numel()
            del work, st
        method_seconds.append(time.perf_counter() - t0)

    def done(block: Block) -> None:
        now = time.perf_counter()
        block_seconds.append(now - t_block[0])
        t_block[0] = now
        if callable(progress):
            progress(block.index, n_blocks, block_seconds[-1])
        elif bar is not None:
            bar.update(1)

    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_blocks, desc=f"{meth.name} {s:.0%}", unit="block")
    try:
        t_block[0] = time.perf_counter()
        layerwise(model, inputs, visit, blocks=path, progress=done)
    finally:
        if bar is not None:
            bar.close()
    result = PruneResult(
        method=meth.name,
        sparsity=s,
        pattern="unstructured" if pat is None else str(pat),
        owl={"lambda": owl_lambda, "m": owl_m} if owl else None,
        blocks=path,
        block_ratios=tuple(block_ratios),
        outlier_ratios=None if outliers is None else tuple(outliers),
        block_seconds=tuple(block_seconds),
        method_seconds=tuple(method_seconds),
        sequences=seqs,
        tokens=toks,
        layers=layer_sparsity,
        seconds=time.perf_counter() - t_start,
    )
    return masks, result


def _run(meth, pname: str, work: Tensor, stats, ratio: float, pat, cur, options) -> Tensor:
    """The method on one layer, with the layer named in its errors."""
    from ..errors import WorkbenchError

    try:
        mask = meth.fn(work, stats, ratio, pat, cur, options)
    except WorkbenchError as e:
        raise type(e)(f"{meth.name} on {pname!r}: {e}") from None
    if mask.shape != work.shape or mask.dtype != torch.bool:
        raise PlanError(
            f"method {meth.name!r} returned a {mask.dtype} mask of shape {tuple(mask.shape)} for {pname!r}; it must "
            f"return a bool mask of the weight's (out, in) shape {tuple(work.shape)}"
        )
    return mask
