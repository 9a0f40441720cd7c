"""Module-tree rules (workbench.rules): heads and MLP neurons of real Hugging Face blocks, masked exactly.

By construction: zeroing a head's q/k/v rows and output-projection columns gives the same outputs as zeroing only
its output-projection columns (so the rule's indices hit that head and no other), and the same holds for an MLP
neuron and the output projection's column. Models are built from configs in memory (random weights, no download).
"""

from __future__ import annotations

import time

import pytest
import torch

import workbench as wb
from workbench.groups import TraceTimeout, analyze_groups, time_bound

T = pytest.importorskip("transformers")
V = 50


def _ids(b: int = 2, t: int = 7) -> torch.Tensor:
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(1))


def _models():
    yield (
        "llama-gqa",
        T.LlamaForCausalLM(
            T.LlamaConfig(
                vocab_size=V,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                intermediate_size=48,
            )
        ),
    )
    yield "gpt2", T.GPT2LMHeadModel(T.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=16))
    yield (
        "bert",
        T.BertForSequenceClassification(
            T.BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
        ),
    )
    yield (
        "neox",
        T.GPTNeoXForCausalLM(
            T.GPTNeoXConfig(
                vocab_size=V,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=48,
                max_position_embeddings=16,
            )
        ),
    )
    yield (
        "distilbert",
        T.DistilBertForSequenceClassification(
            T.DistilBertConfig(vocab_size=V, dim=32, n_layers=2, n_heads=4, hidden_dim=48)
        ),
    )


MODELS = dict(_models())


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _zero(model, masks):
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name][mask] = 0


@pytest.mark.parametrize("name", list(MODELS))
def test_rule_groups_zero_exactly_one_unit(name):
    torch.manual_seed(0)
    model = MODELS[name].eval()
    ids = _ids()
    t0 = time.perf_counter()
    analysis = analyze_groups(model, {"input_ids": ids})
    assert time.perf_counter() - t0 < 60  # grouped-query attention used to hang Torch-Pruning's graph here
    units = {g.unit for g in analysis.groups.values() if g.supported}
    assert "head" in units and "channel" in units, analysis.error
    shapes = {n: p.shape for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    checked = 0
    for g in analysis.groups.values():
        if not g.supported or not (":heads" in g.id or (g.unit == "channel" and len(g.members) >= 2)):
            continue
        pruned = torch.zeros(g.size, dtype=torch.bool)
        pruned[g.size // 2] = True
        masks = g.masks(pruned, shapes)
        consumer = [g.members[-1]]  # the output projection's input slice: the rules list it last
        assert consumer[0].param.endswith("weight"), g.id
        _zero(model, masks)
        full = _logits(model, ids)
        model.load_state_dict(state)
        only = {m.param: masks[m.param] for m in consumer}
        _zero(model, only)
        part = _logits(model, ids)
        model.load_state_dict(state)
        torch.testing.assert_close(full, part, rtol=1e-5, atol=1e-5, msg=lambda s, g=g: f"{g.id}: {s}")
        checked += 1
    assert checked >= 2
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_t5_heads_go_from_a_whole_stack_and_shrink_runs():
    # T5's first layer computes one position bias per head and every later layer of the stack adds it: head h of a
    # stack is one unit (all its layers and its bias column), so the shrunk layers keep equal head counts
    model = T.T5ForConditionalGeneration(
        T.T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, decoder_start_token_id=0)
    ).eval()
    ids = _ids()
    analysis = analyze_groups(model, {"input_ids": ids, "decoder_input_ids": ids})
    assert not analysis.refused
    heads = {g.id: g for g in analysis.groups.values() if g.unit == "head"}
    assert set(heads) == {
        "encoder.block.*.layer.*.SelfAttention:heads",
        "decoder.block.*.layer.*.SelfAttention:heads",
        "decoder.block.*.layer.*.EncDecAttention:heads",
    }
    enc = heads["encoder.block.*.layer.*.SelfAttention:heads"]
    assert enc.supported and enc.size == 4
    assert enc.modules == ("encoder.block.0.layer.0.SelfAttention", "encoder.block.1.layer.0.SelfAttention")
    bias = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
    masks = enc.masks(torch.tensor([False, True, False, False]), {n: p.shape for n, p in model.named_parameters()})
    assert masks[bias][:, 1].all() and not masks[bias][:, [0, 2, 3]].any()
    for layer in enc.modules:  # head 1 is rows 8..15 of q/k/v and columns 8..15 of o in every layer
        assert masks[f"{layer}.q.weight"][8:16].all() and masks[f"{layer}.q.weight"].sum() == 8 * 32
        assert masks[f"{layer}.o.weight"][:, 8:16].all() and masks[f"{layer}.o.weight"].sum() == 8 * 32

    bench = wb.Workbench(model, [{"input_ids": ids, "labels": ids}])
    bench.apply(wb.Plan.uniform(0.5, granularity="head"), evaluate=False)
    batch = {"input_ids": ids, "decoder_input_ids": ids}
    small, _ = wb.sparse.compile(bench, backend="shrink")
    with torch.no_grad():
        torch.testing.assert_close(small(**batch).logits, model(**batch).logits, rtol=1e-5, atol=1e-5)
    counts = {m.n_heads for n, m in small.named_modules() if type(m).__name__ == "T5Attention"}
    assert counts == {2}
    assert small.generate(ids[:1, :4], max_new_tokens=3, do_sample=False).shape[1] >= 4


def test_time_bound_stops_an_endless_loop():
    t0 = time.perf_counter()
    with pytest.raises(TraceTimeout), time_bound(0.5):
        while True:
            pass
    assert time.perf_counter() - t0 < 5
    with time_bound(5):  # a block that ends first: nothing is raised later
        pass
    time.sleep(0.1)


def test_a_stop_landing_in_a_weakref_callback_is_not_reported_as_ignored(monkeypatch):
    import sys
    import weakref

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)

    class Thing:
        pass

    def slow_callback() -> None:  # runs from C when the object goes: an exception here is "ignored"
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            pass

    thing = Thing()
    weakref.finalize(thing, slow_callback)
    with pytest.raises(TraceTimeout):
        with time_bound(0.3):
            del thing  # the stop is delivered inside the callback first, then again in the loop below
            while True:
                pass
    assert seen == []
    assert sys.unraisablehook == seen.append  # the hook is given back


def test_a_trace_stopped_mid_forward_leaves_no_hooks():
    class Slow(torch.nn.Module):  # its forward never ends: the bound stops the trace inside it
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(4, 8), torch.nn.Linear(8, 2)

        def forward(self, x):
            h = self.a(x)
            while True:
                h = h + 0

    model = Slow()
    analysis = analyze_groups(model, torch.randn(2, 4), timeout=1.0)
    assert "did not finish" in analysis.error
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_hanging_dependency_graph_is_stopped(monkeypatch):
    import torch_pruning as tp

    def forever(*args, **kwargs):
        while True:
            pass

    monkeypatch.setattr(tp.DependencyGraph, "get_pruning_group", forever)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).train()
    t0 = time.perf_counter()
    analysis = analyze_groups(model, torch.randn(2, 4), timeout=1.0)
    assert time.perf_counter() - t0 < 10
    assert "did not finish within 1 s" in analysis.error
    assert all(m.training for m in model.modules())  # the trace's eval mode is undone after a stop too
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("name", list(MODELS))
def test_shrink_cuts_heads_and_neurons_and_computes_what_the_masked_model_computes(name):
    import copy

    import workbench as wb

    torch.manual_seed(0)
    model = copy.deepcopy(MODELS[name]).eval()
    ids = _ids(4, 9)
    labels = torch.randint(0, 2, (4,)) if "bert" in name else ids
    batches = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}]
    bench = wb.Workbench(model, batches)
    bench.apply(wb.Plan.uniform(0.5, granularity="head"), evaluate=False)
    bench.apply(wb.Plan.uniform(0.5, granularity="neuron"), evaluate=False)
    fast, rep = wb.sparse.compile(bench, backend="shrink")
    assert rep.params_after < 0.8 * rep.params_before
    assert any(k.startswith("rules") for k in rep.removed_channels), rep.removed_channels
    with torch.no_grad():
        torch.testing.assert_close(fast(**batches[0]).logits, model(**batches[0]).logits, rtol=1e-5, atol=1e-5)
        assert torch.isfinite(fast(**batches[0]).loss)  # the model's own call, labels included
    for mod in fast.modules():  # sizes follow the weights, head counts follow the heads kept
        if isinstance(mod, torch.nn.Linear):
            assert (mod.out_features, mod.in_features) == tuple(mod.weight.shape)
        kv = getattr(mod, "num_key_value_heads", None)
        if kv is not None and hasattr(mod, "k_proj"):
            assert mod.k_proj.out_features == kv * mod.head_dim
