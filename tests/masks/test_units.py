"""Attention heads and recurrent hidden units: our own coupling rules (workbench/groups.py) and their masks."""

import copy

import pytest
import torch
import torch_pruning as tp
from conftest import assert_bitwise, snapshot
from torch import nn
from zoo import make

import workbench as wb
from workbench.errors import GranularityError


def test_torch_pruning_couples_through_an_lstm_as_if_it_were_elementwise():
    """Why the LSTM needs its own rule: Torch-Pruning traces the LSTM as an element-wise op, couples the Linear
    before it with the Linear after it, and pruning that group breaks the model."""
    model, data = make("lstm")
    x = data[0][0][:2]
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=(x,), forward_fn=lambda m, x: m(*x))
    group = dg.get_pruning_group(model.inp, tp.prune_linear_out_channels, [0, 1])
    assert model.out in {item.dep.target.module for item in group}  # wrongly coupled across the LSTM
    group.prune()
    with pytest.raises(RuntimeError, match="input_size"):
        model(x)
    bench = wb.Workbench(*make("lstm"))  # ours marks that group unsupported and uses lstm-unit instead
    assert "neuron" not in bench.targets["inp"].granularities
    assert "lstm-unit" in bench.targets["lstm"].granularities


def _pruned_heads(mha: nn.MultiheadAttention) -> list[int]:
    d = mha.head_dim
    return [h for h in range(mha.num_heads) if (mha.out_proj.weight[:, h * d : (h + 1) * d] == 0).all()]


def test_head_masks_compute_what_removing_the_heads_computes():
    model, data = make("mha")
    bench = wb.Workbench(model, data)
    dense = copy.deepcopy(model)
    snap = snapshot(model)
    bench.apply(wb.Plan.uniform(0.5, granularity="head"), evaluate=False)
    heads = _pruned_heads(model.attn)
    assert len(heads) == 2
    d, e = model.attn.head_dim, model.attn.embed_dim
    for h in heads:
        for part in range(3):  # q, k, v rows and biases of the head
            rows = slice(part * e + h * d, part * e + (h + 1) * d)
            assert (model.attn.in_proj_weight[rows] == 0).all() and (model.attn.in_proj_bias[rows] == 0).all()
    # reference: the dense model with only the heads' output columns zeroed, i.e. the heads removed
    with torch.no_grad():
        for h in heads:
            dense.attn.out_proj.weight[:, h * d : (h + 1) * d] = 0
    x = data[0][0]
    with torch.inference_mode():
        torch.testing.assert_close(model(x), dense(x), atol=1e-6, rtol=1e-6)
    bench.undo()
    assert_bitwise(model, snap)


def test_heads_are_ranked_and_never_all_removed():
    model, data = make("mha")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.99, granularity="head"), evaluate=False)
    assert len(_pruned_heads(model.attn)) == 3  # of 4: a layer is never emptied
    bench.undo()
    with torch.no_grad():
        model.attn.in_proj_weight[16 + 4 : 16 + 8] *= 1e-3  # head 1's keys are tiny: it goes first
        d = model.attn.head_dim
        for part in (0, 2):
            model.attn.in_proj_weight[part * 16 + d : part * 16 + 2 * d] *= 1e-3
        model.attn.out_proj.weight[:, d : 2 * d] *= 1e-3
    bench.apply(wb.Plan.uniform(0.25, granularity="head", criterion="l1"), evaluate=False)
    assert _pruned_heads(model.attn) == [1]


def test_heads_of_a_transformer_encoder_compile_to_the_same_outputs():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, batch_first=True), 2, enable_nested_tensor=False)
    model = nn.Sequential(enc, nn.Flatten(), nn.Linear(5 * 16, 3)).eval()
    data = [(torch.randn(16, 5, 16), torch.randint(0, 3, (16,)))]
    bench = wb.Workbench(model, data)
    assert all(bench.targets[f"0.layers.{i}.self_attn"].supports("head") for i in range(2))
    bench.apply(wb.Plan.uniform(0.5, granularity="head"), evaluate=False)
    fast, _ = wb.sparse.compile(bench, batch_size=8, repeats=3)
    x = data[0][0]
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), model(x), atol=1e-5, rtol=1e-5)


def _smaller_lstm_net(model, keep: list[torch.Tensor]):
    """LSTMNet with only the `keep` units of each layer, built by slicing (the physical shrink)."""
    h = model.lstm.hidden_size
    small = copy.deepcopy(model)
    small.lstm = nn.LSTM(model.lstm.input_size, len(keep[0]), num_layers=2, batch_first=True)
    with torch.no_grad():
        for layer, kept in enumerate(keep):
            rows = torch.cat([kept + g * h for g in range(4)])
            cols_in = keep[layer - 1] if layer else torch.arange(model.lstm.input_size)
            getattr(small.lstm, f"weight_ih_l{layer}").copy_(
                getattr(model.lstm, f"weight_ih_l{layer}")[rows][:, cols_in]
            )
            getattr(small.lstm, f"weight_hh_l{layer}").copy_(getattr(model.lstm, f"weight_hh_l{layer}")[rows][:, kept])
            for b in ("bias_ih", "bias_hh"):
                getattr(small.lstm, f"{b}_l{layer}").copy_(getattr(model.lstm, f"{b}_l{layer}")[rows])
        small.out = nn.Linear(len(keep[1]), model.out.out_features)
        small.out.weight.copy_(model.out.weight[:, keep[1]])
        small.out.bias.copy_(model.out.bias)
    return small.eval()


def test_lstm_unit_masks_compute_what_a_smaller_lstm_computes():
    model, data = make("lstm")
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    bench.apply(wb.Plan.uniform(0.5, granularity="lstm-unit", criterion="l2"), evaluate=False)
    h = model.lstm.hidden_size
    keep = []
    for layer in range(2):
        w = getattr(model.lstm, f"weight_hh_l{layer}")
        dead = torch.stack([(w[g * h : (g + 1) * h] == 0).all(1) for g in range(4)]).all(0)
        assert int(dead.sum()) == h // 2
        keep.append((~dead).nonzero().flatten())
    bench_x = data[0][0]
    dense_copy = copy.deepcopy(model)
    bench.undo()
    small = _smaller_lstm_net(model, keep)
    bench.redo()
    with torch.inference_mode():
        torch.testing.assert_close(model(bench_x), small(bench_x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dense_copy(bench_x), model(bench_x))
    bench.reset()
    assert_bitwise(model, snap)


@pytest.mark.parametrize("cls", [nn.GRU, nn.LSTM, nn.RNN])
def test_pruned_units_output_exact_zeros_bidirectional(cls):
    torch.manual_seed(0)
    rnn = cls(6, 8, num_layers=2, bidirectional=True, batch_first=True)
    model = nn.Sequential(rnn).eval()
    bench = wb.Workbench(
        model, [(torch.randn(4, 5, 6), torch.zeros(4, dtype=torch.long))], example_inputs=torch.randn(2, 5, 6)
    )
    assert len(bench.targets["0"].groups) == 4  # 2 layers x 2 directions
    bench.apply(wb.Plan.uniform(0.25, granularity="lstm-unit"), evaluate=False)
    out = rnn(torch.randn(3, 7, 6))[0]  # (batch, time, 2 * hidden) of the last layer
    w = rnn.weight_hh_l1
    for d, sfx in enumerate(["", "_reverse"]):
        w = getattr(rnn, f"weight_hh_l1{sfx}")
        dead = (w.view(-1, 8, 8) == 0).all(2).all(0)  # every gate's row of the unit is zero
        assert int(dead.sum()) == 2
        assert (out[..., d * 8 : (d + 1) * 8][..., dead] == 0).all()


def test_units_that_cannot_be_pruned_say_why():
    model = nn.Sequential(nn.Linear(4, 8))
    model.attn = nn.MultiheadAttention(8, 1, batch_first=True)
    model.rnn = nn.LSTM(8, 6, proj_size=3)
    groups = wb.Workbench(model).targets  # no example inputs: nothing traced
    assert "example input" in groups["attn"].unsupported["head"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 1, batch_first=True)
            self.rnn = nn.LSTM(8, 6, proj_size=3, batch_first=True)

        def forward(self, x):
            return self.rnn(self.attn(x, x, x)[0])[0].mean((1, 2))

    bench = wb.Workbench(Net(), [(torch.randn(4, 3, 8), torch.zeros(4))], example_inputs=torch.randn(2, 3, 8))
    assert "single head" in bench.targets["attn"].unsupported["head"]
    assert "proj_size" in bench.targets["rnn"].unsupported["lstm-unit"]
    with pytest.raises(GranularityError, match=r"'attn'.*single head"):
        bench.apply(wb.Plan({"attn": wb.LayerPlan(0.5, "head")}), evaluate=False)
