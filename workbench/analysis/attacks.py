"""The attack registry that `robustness` draws from: `register_attack` adds one, `available_attacks` lists them.

`fgsm` (one signed-gradient step, Goodfellow et al. 2015) and `pgd` (iterated steps projected to the L-inf
eps-ball around the input, random start, Madry et al. 2018) are run by `captum.robust`; `noise` adds Gaussian
noise of standard deviation eps; `substitute` replaces a share eps of the tokens by random ones (the one attack
for integer token inputs). An attack draws random numbers only from the generator it is handed, so results are
reproducible.

>>> "fgsm" in available_attacks("float"), "substitute" in available_attacks("int")
(True, True)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import WorkbenchError, suggest

__all__ = ["Attack", "AttackError", "Settings", "available_attacks", "register_attack"]


class AttackError(WorkbenchError, ValueError):
    """An attack cannot run as asked: unknown, negative eps, or inputs it does not apply to."""


@dataclass(frozen=True)
class Settings:
    """What every attack may use: the clamping range, PGD's steps, the seed and (for tokens) the vocabulary."""

    lo: float
    hi: float
    steps: int = 10
    step_size: float | None = None
    seed: int = 0
    vocab: int = 0


# fn(forward, x, y, eps, settings, generator) -> perturbed x
AttackFn = Callable[[Callable[[Tensor], Tensor], Tensor, Tensor, float, Settings, torch.Generator], Tensor]


@dataclass(frozen=True)
class Attack:
    """A registered attack: `inputs` is "float" (continuous inputs) or "int" (token ids)."""

    name: str
    fn: AttackFn
    inputs: str
    description: str


_ATTACKS: dict[str, Attack] = {}


def register_attack(name: str, *, inputs: str = "float", description: str = "", overwrite: bool = False):
    """Decorator registering `fn(forward, x, y, eps, settings, generator) -> x'` as attack `name`. `forward` maps
    inputs to logits; draw random numbers from `generator` only, so results are reproducible."""
    if inputs not in ("float", "int"):
        raise ValueError(f"inputs must be 'float' or 'int', got {inputs!r}")

    def deco(fn: AttackFn) -> AttackFn:
        if name in _ATTACKS and not overwrite:
            raise ValueError(f"attack {name!r} is already registered; pass overwrite=True to replace it")
        _ATTACKS[name] = Attack(name, fn, inputs, description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def available_attacks(inputs: str | None = None) -> list[str]:
    """Names of the registered attacks, optionally only those for "float" or "int" inputs."""
    return [a.name for a in _ATTACKS.values() if inputs is None or a.inputs == inputs]


def _get(name: str) -> Attack:
    if name not in _ATTACKS:
        raise AttackError(f"unknown attack {name!r}.{suggest(str(name), _ATTACKS, 'attack')}")
    return _ATTACKS[name]


def _ce(out: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(out.float(), y, reduction="none")


@register_attack("fgsm", description="one step of eps * sign(gradient of the loss)")
def _fgsm(forward, x, y, eps, s: Settings, gen) -> Tensor:
    from captum.robust import FGSM

    attack = FGSM(forward, loss_func=_ce, lower_bound=s.lo, upper_bound=s.hi)
    attack.zero_thresh = 0.0  # captum skips gradients below 1e-6: a confident model would look robust
    return attack.perturb(x.detach().requires_grad_(), epsilon=eps, target=y)


def _with_grad(fgsm) -> None:
    """Hand captum's FGSM steps inputs that require grad (it warns on every PGD step otherwise)."""
    inner = fgsm.perturb

    def perturb(inputs, *args, **kwargs):
        inputs = tuple(t.detach().requires_grad_() for t in inputs) if isinstance(inputs, tuple) else inputs
        return inner(inputs, *args, **kwargs)

    fgsm.perturb = perturb


_RNG = threading.Lock()  # captum's random start draws from the global generator: one seeded draw at a time


@register_attack("pgd", description="iterated FGSM steps projected to the eps-ball, random start")
def _pgd(forward, x, y, eps, s: Settings, gen) -> Tensor:
    from captum.robust import PGD

    attack = PGD(forward, loss_func=_ce, lower_bound=s.lo, upper_bound=s.hi)
    attack.fgsm.zero_thresh = 0.0
    _with_grad(attack.fgsm)
    step = s.step_size if s.step_size is not None else 2.5 * eps / s.steps
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    with _RNG, torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        return attack.perturb(x, radius=eps, step_size=step, step_num=s.steps, target=y, random_start=True)


@register_attack("noise", description="Gaussian noise with standard deviation eps")
def _noise(forward, x, y, eps, s: Settings, gen) -> Tensor:
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return (x + eps * noise).clamp(s.lo, s.hi)


@register_attack("substitute", inputs="int", description="a share eps of the tokens replaced by random tokens")
def _substitute(forward, x, y, eps, s: Settings, gen) -> Tensor:
    if eps > 1:
        raise AttackError(f"substitute: eps is the share of tokens replaced and must be in [0, 1], got {eps}")
    hit = torch.rand(x.shape, generator=gen, device=x.device) < eps
    new = torch.randint(0, max(s.vocab, 1), x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return torch.where(hit, new, x)
