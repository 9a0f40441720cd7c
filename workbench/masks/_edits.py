"""What the mask store notes of the tensors it wrote, and how it tells an edit made behind its back from its own."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping

from torch import Tensor, nn

from ..errors import OutsideEditError, WorkbenchError
from ._packed import Step
from .fastops import count_nonzero


def tracked(model: nn.Module, steps: Iterable[Step]) -> dict[str, Tensor]:
    """The tensors undo/redo may write: every parameter, and the buffers a recorded training step swaps."""
    out = dict(model.named_parameters())
    for step in steps:
        swap = step.info.get("weights")
        for name in getattr(swap, "values", {}):
            if name not in out:
                try:
                    out[name] = model.get_buffer(name)
                except AttributeError:
                    pass
    return out


def changes(seen: Mapping[str, tuple[weakref.ref, tuple]], now: Mapping[str, Tensor]) -> dict[str, str]:
    """Per tensor noted in `seen` (a weak reference and `_fingerprint`) that moved since, what happened to it."""
    out: dict[str, str] = {}
    for name, (ref, (ptr, shape, dtype, device, version)) in seen.items():
        t = now.get(name)
        if t is None:
            out[name] = "is no longer on the model (a layer was removed or renamed)"
        elif ref() is not t:
            out[name] = "was replaced by another tensor (a layer or parameter was swapped)"
        elif (t.dtype, t.device) != (dtype, device):
            out[name] = f"was converted from {dtype} on {device} to {t.dtype} on {t.device}"
        elif tuple(t.shape) != shape:
            out[name] = f"changed shape from {shape} to {tuple(t.shape)}"
        elif t.data_ptr() != ptr:
            out[name] = "got new data (its .data was replaced)"
        elif t._version != version:
            out[name] = (
                f"was modified in place (version {version} -> {t._version}: an optimizer step, load_state_dict "
                "or an in-place edit)"
            )
    return out


def edit_error(edits: Mapping[str, str]) -> OutsideEditError:
    """The error naming the tensors edited behind the store's back and the ways out."""
    shown = "; ".join(f"{n!r} {why}" for n, why in list(edits.items())[:6])
    more = f" (and {len(edits) - 6} more)" if len(edits) > 6 else ""
    return OutsideEditError(
        f"{len(edits)} tensor(s) changed outside the workbench since it last wrote the model: {shown}{more}. "
        "Undo/redo would write recorded values into the edited weights and give neither the old state nor "
        "the new one, so nothing was changed. Ways out: bench.adopt() keeps the weights as they are now as "
        "the new starting point (the steps so far can no longer be undone); bench.reset(force=True) writes "
        "the recorded dense values back where the workbench pruned and clears the history; to edit weights "
        "by hand and keep undo, edit inside `with bench.edit(): ...`.",
        dict(edits),
    )


def check_written(name: str, p: Tensor, mask: Tensor, values: Tensor | None) -> None:
    """Raise unless parameter `name` (`p`) is zero where `mask` flags it and `values` are the flagged elements' old
    values (what `MaskStore.record_` records for a change already written)."""
    if values is None or values.numel() != count_nonzero(mask):
        got = "nothing" if values is None else f"{values.numel()} values"
        raise WorkbenchError(
            f"record_ needs the old values of the {count_nonzero(mask)} flagged elements of {name!r} "
            f"(before[{name!r}] = p[mask] taken before the change), got {got}"
        )
    if count_nonzero(p[mask.to(p.device)]):
        raise WorkbenchError(
            f"{name!r} has non-zero elements where its mask flags them pruned: record_ records a change already "
            "written; zero them first, or call apply_ to write the step"
        )
