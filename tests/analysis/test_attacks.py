"""The attack registry (workbench/analysis/attacks.py): what an attack may return, and registering one."""

import pytest
import torch

from workbench.analysis.attacks import _ATTACKS, AttackError, Settings, _get, available_attacks, register_attack

X = torch.rand(16, 1, 8, 8)
Y = torch.randint(0, 10, (16,))
MODEL = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
UNIT = Settings(0.0, 1.0, steps=3)  # inputs in [0, 1]


def _run(name: str, eps: float, seed: int = 0):
    return _ATTACKS[name].fn(MODEL, X.clone(), Y, eps, UNIT, torch.Generator().manual_seed(seed))


def test_perturbed_inputs_stay_in_the_data_range():
    for name in ("fgsm", "pgd", "noise"):
        xa = _run(name, 0.3)
        assert xa.min() >= 0 and xa.max() <= 1, name
        if name != "noise":
            assert (xa - X).abs().max() <= 0.3 + 1e-6, name


@pytest.mark.parametrize("name", ["fgsm", "pgd", "noise"])
def test_the_same_generator_gives_the_same_perturbation(name):
    assert torch.equal(_run(name, 0.2, seed=3), _run(name, 0.2, seed=3))


def test_substitute_replaces_about_the_share_eps_with_tokens_of_the_vocabulary():
    ids = torch.randint(0, 50, (64, 32))
    s = Settings(0.0, 49.0, vocab=50)
    same = _ATTACKS["substitute"].fn(None, ids.clone(), Y, 0.0, s, torch.Generator().manual_seed(0))
    assert torch.equal(same, ids)
    out = _ATTACKS["substitute"].fn(None, ids.clone(), Y, 1.0, s, torch.Generator().manual_seed(0))
    assert out.dtype == ids.dtype and out.min() >= 0 and out.max() < 50
    with pytest.raises(AttackError, match=r"\[0, 1\]"):
        _ATTACKS["substitute"].fn(None, ids, Y, 1.5, s, torch.Generator())


def test_the_registry_lists_by_input_kind_refuses_duplicates_and_suggests_names():
    assert set(available_attacks("float")) >= {"fgsm", "pgd", "noise"} and "substitute" in available_attacks("int")
    assert not set(available_attacks("float")) & set(available_attacks("int"))
    with pytest.raises(ValueError, match="already registered"):
        register_attack("fgsm")(lambda *a: a[1])
    with pytest.raises(ValueError, match="'float' or 'int'"):
        register_attack("x-test", inputs="bytes")
    with pytest.raises(AttackError, match="Did you mean 'pgd'"):
        _get("pdg")
    try:

        @register_attack("flip-test", description="x -> 1 - x")
        def _flip(forward, x, y, eps, s, gen):
            return s.hi - x + s.lo

        assert "flip-test" in available_attacks("float") and _get("flip-test").description == "x -> 1 - x"
        assert torch.equal(_run("flip-test", 0.1), 1 - X)
    finally:
        _ATTACKS.pop("flip-test", None)
    assert "flip-test" not in available_attacks()
