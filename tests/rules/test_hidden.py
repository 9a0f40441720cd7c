"""The ``hidden`` granularity: a transformer's residual stream, found by probing, masked and shrunk exactly.

By construction: zeroing a hidden channel in the stream's writers and norms makes it exactly zero all along the
stream, so zeroing the readers' input columns as well changes nothing (the rule found every reader and no layer
that does not read the stream); the shrunk model (norms adjusted to count the removed channels at zero) computes
what the masked one computes; the probe forwards leave the model bitwise as it was, also when interrupted.
Models are built from configs in memory (random weights, no download).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import workbench as wb
from workbench.groups import analyze_groups
from workbench.rules import is_conv1d, linear_dims
from workbench.sparse.norms import ZeroPaddedLayerNorm

T = pytest.importorskip("transformers")
V = 50


def _ids(b: int = 2, t: int = 7) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(1))


SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48}
MODELS = {
    "llama-gqa": lambda: T.LlamaForCausalLM(T.LlamaConfig(vocab_size=V, num_key_value_heads=2, **SMALL)),
    "gemma": lambda: T.GemmaForCausalLM(T.GemmaConfig(vocab_size=V, head_dim=8, num_key_value_heads=1, **SMALL)),
    "gpt2-tied": lambda: T.GPT2LMHeadModel(T.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=16)),
    "bert": lambda: T.BertForSequenceClassification(T.BertConfig(vocab_size=V, **SMALL)),
}


def linear_or_conv1d(mod) -> bool:
    return isinstance(mod, torch.nn.Linear) or is_conv1d(mod)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _zero(model, masks):
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name][mask] = 0


@pytest.mark.parametrize("name", list(MODELS))
def test_a_zeroed_hidden_channel_is_zero_for_every_reader(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    ids = _ids()
    state = _state(model)
    analysis = analyze_groups(model, {"input_ids": ids})
    assert _state(model).keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # the probes left no trace
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    g = analysis.groups["hidden"]
    assert g.unit == "hidden" and g.size == 32 and g.supported
    shapes = {n: p.shape for n, p in model.named_parameters()}
    pruned = torch.zeros(g.size, dtype=torch.bool)
    pruned[[3, 17, 30]] = True
    masks = g.masks(pruned, shapes)
    mods = dict(model.named_modules())
    readers = []  # input slices of Linear / Conv1D layers (Conv1D holds its weight in x out)
    for m in g.members:
        mod = mods[m.param.rpartition(".")[0]]
        if m.param.endswith("weight") and linear_or_conv1d(mod) and m.dim == linear_dims(mod)[1]:
            readers.append(m)
    assert readers, "the q/k/v and MLP input projections read the stream"
    _zero(model, masks)
    full = _logits(model, ids)
    model.load_state_dict(state)
    rest = dataclasses.replace(g, members=tuple(m for m in g.members if not any(m is r for r in readers)))
    _zero(model, rest.masks(pruned, shapes))
    part = _logits(model, ids)
    model.load_state_dict(state)
    torch.testing.assert_close(full, part, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_hidden_size_shrinks_to_what_the_masked_model_computes(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    ids = _ids(4, 9)
    labels = torch.randint(0, 2, (4,)) if name == "bert" else ids
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}]
    bench = wb.Workbench(model, batches)
    dense = _state(model)
    offered = {t.name for t in bench.targets if "hidden" in t.granularities}
    assert any("embed" in n or "wte" in n for n in offered)
    bench.apply(wb.Plan.uniform(0.5, granularity="hidden"), evaluate=False)
    fast, rep = wb.sparse.compile(bench, backend="shrink")
    assert rep.removed_channels.get("rules hidden") == 16, rep.removed_channels
    assert rep.params_after < 0.6 * rep.params_before
    with torch.no_grad():
        torch.testing.assert_close(fast(**batches[0]).logits, model(**batches[0]).logits, rtol=1e-5, atol=1e-5)
        assert torch.isfinite(fast(**batches[0]).loss)
    widths = {mod.weight.shape[-1] for mod in fast.modules() if isinstance(mod, torch.nn.Embedding)}
    assert widths == {16}
    if name in ("gpt2-tied", "bert"):
        assert any(isinstance(m, ZeroPaddedLayerNorm) and m.full_size == 32 for m in fast.modules())
    if name == "gpt2-tied":
        assert fast.lm_head.weight is fast.transformer.wte.weight  # still one tensor
    bench.undo()
    assert all(torch.equal(v, dense[k]) for k, v in model.state_dict().items())


def test_hidden_and_heads_and_neurons_together_shrink_exactly():
    torch.manual_seed(0)
    model = MODELS["llama-gqa"]().eval()
    ids = _ids(4, 9)
    batches = [{"input_ids": ids, "labels": ids}]
    bench = wb.Workbench(model, batches)
    for g in ("head", "neuron", "hidden"):
        bench.apply(wb.Plan.uniform(0.5, granularity=g), evaluate=False)
    fast, rep = wb.sparse.compile(bench, backend="shrink")
    assert rep.params_after < 0.4 * rep.params_before
    with torch.no_grad():
        torch.testing.assert_close(fast(**batches[0]).logits, model(**batches[0]).logits, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        out = fast.generate(ids[:1, :3], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


def test_a_model_returning_its_hidden_states_is_refused_with_the_reason():
    model = T.BertModel(T.BertConfig(vocab_size=V, **SMALL)).eval()
    bench = wb.Workbench(model, [({"input_ids": _ids()}, torch.zeros(2, 7, 32))], task="regression")
    reason = bench.targets["embeddings.word_embeddings"].unsupported["hidden"]
    assert "returns the 32 hidden features" in reason


def test_an_unknown_writer_is_refused_with_the_reason():
    class Extra(torch.nn.Module):  # a stream writer no rule knows: a conv over the sequence, added to the stream
        def __init__(self, inner):
            super().__init__()
            self.inner, self.mix = inner, torch.nn.Conv1d(32, 32, 3, padding=1, groups=4)

        def forward(self, input_ids):
            return self.inner(input_ids=input_ids).logits

    inner = MODELS["llama-gqa"]().eval()
    emb = inner.model.embed_tokens
    model = Extra(inner)
    old = emb.forward
    emb.forward = lambda x: old(x) + model.mix(old(x).transpose(1, 2)).transpose(1, 2)
    analysis = analyze_groups(model, {"input_ids": _ids()})
    assert "hidden" not in analysis.groups
    assert "something else writes to the stream" in analysis.hidden_error


def test_an_interrupted_probe_leaves_the_weights_as_they_were():
    model = MODELS["llama-gqa"]().eval()
    state = _state(model)
    calls = [0]
    norm = model.model.norm
    old = norm.forward

    def forward(x):
        calls[0] += 1
        if calls[0] == 2:  # inside a probe: writers' slices are zeroed right now
            raise KeyboardInterrupt
        return old(x)

    norm.forward = forward
    with pytest.raises(KeyboardInterrupt):
        analyze_groups(model, {"input_ids": _ids()})
    assert calls[0] == 2
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_hidden_needs_every_writer_in_the_plan():
    model = MODELS["llama-gqa"]().eval()
    bench = wb.Workbench(model, [{"input_ids": _ids(), "labels": _ids()}])
    plan = wb.Plan(layers={"model.layers.0.mlp.down_proj": wb.LayerPlan(0.5, "hidden")})
    with pytest.raises(wb.PlanError, match="shares its channels"):
        bench.apply(plan, evaluate=False)
    dense = copy.deepcopy(model.state_dict())
    bench.apply(wb.Plan.uniform(0.25, granularity="hidden"), evaluate=False)
    bench.undo()
    assert all(torch.equal(v, dense[k]) for k, v in model.state_dict().items())
