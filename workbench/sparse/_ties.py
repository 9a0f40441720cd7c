"""Tied (shared) parameters in `compile`: every name of a tensor, and keeping one tensor one tensor."""

from __future__ import annotations

from torch import Tensor, nn

from .backends import CompileError


def _aliases(model: nn.Module) -> dict[str, str]:
    """Every further name of a shared (tied) parameter -> the one name `named_parameters()` keeps for it.

    `named_parameters()` lists a tensor held by two modules once (``head.weight = emb.weight`` gives only
    ``emb.weight``), while `state_dict()`, the coupled groups and the mask store name it per module.
    """
    first: dict[int, str] = {}
    out: dict[str, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            out[name] = first[id(p)]
        else:
            first[id(p)] = name
    return out


def _tied_names(aliases: dict[str, str]) -> dict[str, list[str]]:
    """Every name of a tied parameter -> the other names of the same tensor."""
    sets: dict[str, list[str]] = {}
    for alias, canon in aliases.items():
        sets.setdefault(canon, [canon]).append(alias)
    return {n: [m for m in names if m != n] for names in sets.values() for n in names}


def _by_every_name(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
    """Parameters under every name they are reachable by, and the tied ones' other names."""
    return dict(model.named_parameters(remove_duplicate=False)), _tied_names(_aliases(model))


def _masks_by_every_name(masks: dict[str, Tensor] | None, params: dict[str, Tensor], tied: dict[str, list[str]]):
    """The store's masks (keyed by the name it prunes a tied tensor as) under every name of that tensor."""
    if masks is None:
        return None
    out = {k: v for k, v in masks.items() if k in params}
    for name, others in tied.items():
        if name not in out:
            got = next((masks[o] for o in others if o in masks), None)
            if got is not None:
                out[name] = got
    return out


def _untied_groups(found: dict[str, list[int]], groups, tied: dict[str, list[str]], notes: list[str], what: str):
    """`found` without the groups that would cut a tied tensor: the cut copy would hold two tensors where the
    model holds one (Torch-Pruning and the slim modules replace each module's parameter on its own)."""
    keep = {}
    for gid, idx in found.items():
        hit = next((m.param for m in groups.groups[gid].members if m.param in tied), None)
        if hit is None:
            keep[gid] = idx
        else:
            notes.append(
                f"{what} of group {gid!r} not removed: they cut {hit!r}, which is tied to "
                f"{', '.join(map(repr, tied[hit]))}; the pruned {what} stay masked"
            )
    return keep


def _check_ties(ref: nn.Module, out: nn.Module) -> None:
    """Each tensor `ref` shares between modules is still one tensor in `out` wherever both names remain."""
    params = dict(out.named_parameters(remove_duplicate=False))
    for alias, canon in _aliases(ref).items():
        if alias in params and canon in params and params[alias] is not params[canon]:
            raise CompileError(
                f"the compiled copy holds {alias!r} and {canon!r} as two tensors, but the model ties them; "
                "this is a bug, please report it with the model"
            )
