"""workbench/_bench_procedures.py: `finetune` and `prune_llm` on the bench are one history step each that undo
reverses bitwise, and take what the procedures they call take (with the same defaults)."""

import inspect

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb


def _params(f, skip=1):
    return {k: (v.kind, v.default) for k, v in list(inspect.signature(f).parameters.items())[skip:]}


def test_the_facades_take_the_parameters_of_the_procedures_with_their_defaults():
    from workbench.llm.step import prune_llm
    from workbench.training.finetune import finetune

    assert _params(wb.Workbench.prune_llm, 2) == _params(prune_llm, 2)  # after (self, ratio) vs (state, ratio)
    facade, target = _params(wb.Workbench.finetune), _params(finetune)
    named = {k: v for k, v in facade.items() if v[0] is not inspect.Parameter.VAR_KEYWORD}
    assert named.items() <= target.items()  # the rest reaches it through **kwargs
    assert "kwargs" in facade and {"schedule", "weight_decay", "seed"} <= target.keys() - named.keys()


def test_finetune_is_one_step_that_keeps_pruned_weights_zero_and_undo_reverses_bitwise():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)) for _ in range(2)]
    bench = wb.Workbench(model, data, train=data)
    bench.apply(wb.Plan.uniform(0.5), evaluate=False)
    before, masks = snapshot(model), bench.store.masks()
    res = bench.finetune(2, lr=1e-2, progress=False, seed=0)
    assert bench.current.kind == "finetune" and bench.store.position == 2 and len(res.epoch) >= 2
    assert not torch.equal(model[0].bias, before["0.bias"])  # it trained
    assert all((model.get_parameter(n)[m] == 0).all() for n, m in masks.items())
    bench.undo()
    assert_bitwise(model, before)
    assert_plain(model)


def test_prune_llm_is_one_step_undone_bitwise():
    T = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = T.LlamaConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=64, vocab_size=100)  # fmt: skip
    model = T.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 100, (4, 16), generator=torch.Generator().manual_seed(0))
    bench = wb.Workbench(model, [{"input_ids": ids}])
    before = snapshot(model)
    entry = bench.prune_llm(0.5, "magnitude", evaluate=False)
    assert entry.label.startswith("magnitude 50%") and bench.store.position == 1 and bench.last_llm is not None
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
    assert all(float((model.get_submodule(n).weight == 0).float().mean()) == 0.5 for n in linear)
    bench.undo()
    assert_bitwise(model, before)
