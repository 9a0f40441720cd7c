import pickle
import warnings

import pytest
import torch
from torch import nn
from zoo import ZOO, make

import workbench as wb
from workbench.errors import ModelError, TargetError, WorkbenchWarning


def bench(name):
    model, data = make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WorkbenchWarning)
        return wb.Workbench(model, data), model


def test_targets_of_a_residual_concat_depthwise_grouped_cnn():
    b, _ = bench("rescat")
    t = b.targets
    assert t.names == ["stem.0", "stem.1", "a", "a_bn", "b", "dw", "pw", "pw_bn", "g", "g_bn", "head"]
    assert t["stem.0"].kind == "conv" and t["stem.1"].kind == "norm" and t["head"].kind == "linear"
    assert t["stem.0"].shape == (8, 1, 3, 3) and t["stem.0"].numel == 72
    # the residual add couples stem and a; the concat puts b beside them; the depthwise conv joins them
    assert t["a"].groups == t["stem.0"].groups
    assert set(t["dw"].groups) == set(t["stem.0"].groups) | set(t["b"].groups)
    for name in ("stem.0", "a", "b", "dw"):
        assert "filter" in t[name].granularities, (name, t[name].unsupported)
    # a grouped conv keeps as many channels in each of its groups: its units are positions inside a group
    for name in ("pw", "g"):
        assert "filter" in t[name].granularities, (name, t[name].unsupported)
        (gid,) = t[name].groups
        assert b.groups.groups[gid].blocks == b.model.g.groups
    # the head's outputs are the model's outputs: no neuron pruning
    assert "neuron" not in t["head"].granularities
    assert "outputs of the model" in t["head"].unsupported["neuron"]
    with pytest.raises(TargetError, match=r"Did you mean .*'stem\.0'"):
        t["stem.O"]


@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_a_grouped_conv_loses_the_same_channels_in_every_group(ratio):
    b, model = bench("rescat")
    b.apply(wb.Plan({n: wb.LayerPlan(ratio, "filter") for n in ("pw", "g")}), evaluate=False)
    groups, per = model.g.groups, model.g.in_channels // model.g.groups
    for name in ("pw", "g"):
        dead = (b.masks[f"{name}.weight"].flatten(1).all(1)).view(groups, -1)
        assert dead[0].sum() > 0 and all(torch.equal(row, dead[0]) for row in dead)  # same positions everywhere
    cols = b.masks["g.weight"].flatten(2).all(2)  # [out, in / groups]: a pruned input position, in every row
    dead_in = b.masks["pw.weight"].flatten(1).all(1).view(groups, per)[0]
    assert torch.equal(cols.all(0), dead_in)
    b.undo()


def test_lstm_and_attention_targets_and_why_structure_is_refused():
    b, _ = bench("lstm")
    t = b.targets
    assert t["lstm"].kind == "lstm"
    assert t["lstm"].params == ("weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1")
    # Torch-Pruning traces the LSTM as an element-wise op and would couple inp with out: we refuse it
    assert "neuron" not in t["inp"].granularities
    assert "not known to be channel-wise" in t["inp"].unsupported["neuron"]
    b, _ = bench("mha")
    t = b.targets
    assert t["attn"].kind == "attention" and t["attn"].params == ("in_proj_weight",)
    assert t["attn.out_proj"].kind == "linear"
    assert "neuron" in t["ff1"].granularities  # the feed-forward hidden units are fine
    assert "neuron" not in t["embed"].granularities  # the residual stream goes through LayerNorm
    assert t["norm"].kind == "norm"


def test_tied_weights_warn_and_are_pruned_once():
    model, data = make("tied")
    with pytest.warns(WorkbenchWarning, match="shares its weights"):
        b = wb.Workbench(model, data)
    assert b.targets["emb"].kind == "embedding"
    assert b.targets["dec"].tied_to == "emb" and b.targets["dec"].granularities == ()
    b.apply(wb.Plan.uniform(0.5, include=["emb", "dec", "mid"]))
    assert b.store.current("emb.weight").sum() == 40
    assert "dec.weight" not in b.masks
    assert (model.dec.weight == 0).sum() == 40  # the same tensor


def test_no_prunable_layers_is_a_clear_error():
    class Nothing(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ModelError, match="no prunable layers"):
        wb.Workbench(Nothing(), [(torch.randn(2, 3), torch.zeros(2, dtype=torch.long))])


@pytest.mark.parametrize("name", ZOO)
def test_targets_tables_print_and_pickle(name):
    b, _ = bench(name)
    text = repr(b.targets)
    assert all(n in text for n in b.targets.names)
    assert "<table>" in b.targets._repr_html_()
    assert pickle.loads(pickle.dumps(b.targets.names)) == b.targets.names


def test_targets_without_example_inputs_offer_weight_only():
    model, _ = make("rescat")
    t = wb.find_targets(model)
    assert all(x.granularities == ("weight",) for x in t)
    assert "example input" in t["a"].unsupported["filter"]


def test_a_plan_naming_a_layer_that_lacks_the_granularity_says_so():
    class Net(torch.nn.Module):  # 'a' feeds an LSTM: it has no neuron granularity
        def __init__(self):
            super().__init__()
            self.a, self.lstm, self.h = (
                torch.nn.Linear(4, 8),
                torch.nn.LSTM(8, 8, batch_first=True),
                torch.nn.Linear(8, 3),
            )

        def forward(self, x):
            return self.h(self.lstm(self.a(x))[0][:, -1])

    b = wb.Workbench(Net(), [(torch.randn(2, 5, 4), torch.tensor([0, 1]))])
    assert "neuron" not in b.targets["a"].granularities
    with pytest.raises(wb.GranularityError, match=r"includes 'a' by name.*neuron"):
        b.preview(wb.Plan.uniform(0.5, granularity="neuron", include=["a", "h"]))
    b.preview(wb.Plan.uniform(0.5, granularity="weight", include=["a", "h"]))  # a granularity it has: fine
