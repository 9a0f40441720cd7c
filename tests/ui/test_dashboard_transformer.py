"""The dashboard on a Hugging Face transformer with more than 100 targets: rows grouped by block, one slider per
kind of layer, previews and Apply through the same bench, and the model unchanged by building it."""

import pytest
import torch
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb

pytest.importorskip("ipywidgets")
T = pytest.importorskip("transformers")

SYNC = {"threaded": False, "scheduler": lambda delay, fn: fn()}
LAYERS = 16


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    cfg = T.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    model = T.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (4, 12), generator=torch.Generator().manual_seed(0))
    return model, [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}]


def test_a_transformer_dashboard_groups_its_sliders_and_applies(llama):
    model, data = llama
    snap = snapshot(model)
    bench = wb.Workbench(model, data)
    assert len(bench.targets) > 100
    d = bench.show(new=True, **SYNC)
    d.widget()
    assert_bitwise(model, snap)
    assert "perplexity" in d.header.metric.value
    ed = d.editor
    assert ed.sections is not None and len(ed.sections.children) == LAYERS + 1  # every block, and the rest
    assert ed.sections.get_title(3).startswith("model.layers.2 — ")
    down = ed.kind_sliders["mlp.down_proj"]
    down.value = 0.5
    rows = [r for n, r in ed.rows.items() if n.endswith("mlp.down_proj")]
    assert len(rows) == LAYERS and all(r.slider.value == 0.5 for r in rows)
    assert "parameters kept" in ed.preview_label.value
    kept = ed.last_preview.params_kept
    ed.kind_sliders["self_attn.q_proj"].value = 0.5
    assert ed.last_preview.params_kept < kept  # the preview follows every kind slider
    ed.rows["model.layers.0.self_attn.k_proj"].granularity.value = "head"  # a coupled group over q/k/v/o
    ed.rows["model.layers.0.self_attn.k_proj"].slider.value = 0.5
    preview = ed.last_preview
    d.actions.apply_button.click()
    assert bench.store.position == 1
    pruned = sum(int(m.sum()) for m in bench.store.masks().values())
    assert preview.params_removed == pruned  # the preview counted exactly what Apply pruned, overlaps included
    d.actions.undo_button.click()
    assert_bitwise(model, snap)
    assert_plain(model)
