"""wanda: input feature norms per layer kind against brute force, and the per-row variant."""

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_bitwise, assert_plain, snapshot

import workbench as wb
from workbench.criteria.wanda import input_norms

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


def run(model, x):
    return input_norms(model, [(x, torch.zeros(x.shape[0], dtype=torch.long))])


@pytest.mark.parametrize(
    "conv",
    [
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=6, kernel_size=(2, 3), stride=2, dilation=(2, 1), padding=(1, 0)),
        dict(in_channels=4, out_channels=8, kernel_size=3, groups=2, padding="same"),
        dict(in_channels=4, out_channels=4, kernel_size=3, groups=4, padding=1, padding_mode="reflect"),
    ],
)
def test_conv2d_norms_are_the_inputs_each_weight_multiplies(conv):
    torch.manual_seed(0)
    m = torch.nn.Conv2d(**conv)
    x = torch.randn(3, 4, 7, 6)
    got = run(torch.nn.Sequential(m), x)["0.weight"]
    # brute force: d(sum_o y_o^2 / 2)... simpler: the gradient of y[n, o, i, j] w.r.t. w[o] is the input patch, so
    # summing squared per-position gradients gives, per weight, the sum of squares of what it multiplies
    expect = torch.zeros_like(m.weight, dtype=torch.float64)
    y = m(x)
    for n in range(y.shape[0]):
        for i in range(y.shape[2]):
            for j in range(y.shape[3]):
                (g,) = torch.autograd.grad(y[n, :, i, j].sum(), m.weight, retain_graph=True)
                expect += g.double().square()
    torch.testing.assert_close(got.expand_as(expect), expect)


def test_linear_embedding_layernorm():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4)
    lin, ln = torch.nn.Linear(4, 2), torch.nn.LayerNorm(4)
    s = run(torch.nn.Sequential(ln, lin), x)
    torch.testing.assert_close(s["1.weight"][0], F.layer_norm(x, (4,)).double().square().sum((0, 1)))
    torch.testing.assert_close(s["0.weight"], F.layer_norm(x, (4,)).double().square().sum((0, 1)))
    emb = torch.nn.Embedding(6, 2)
    tokens = torch.tensor([[1, 1, 2], [5, 1, 0]])
    counts = run(torch.nn.Sequential(emb), tokens)["0.weight"][:, 0]
    assert counts.tolist() == [1, 3, 1, 0, 0, 1]


def test_conv1d_scores_are_the_transposed_linear_scores():
    T = pytest.importorskip("transformers")
    torch.manual_seed(0)
    conv = T.pytorch_utils.Conv1D(6, 4)  # Hugging Face's Conv1D (GPT-2): weight 4 x 6 (in x out)
    lin = torch.nn.Linear(4, 6)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.T)
    x = torch.randn(5, 3, 4)
    sc, sl = run(torch.nn.Sequential(conv), x)["0.weight"], run(torch.nn.Sequential(lin), x)["0.weight"]
    assert sc.shape == (4, 1) and sl.shape == (1, 4)
    torch.testing.assert_close(sc.T, sl)
    ctx = wb.criteria.ScoreContext("0.weight", "0", conv, torch.nn.Sequential(conv), 0, [(x, x[..., 0])], {})
    ctx_l = wb.criteria.ScoreContext("0.weight", "0", lin, torch.nn.Sequential(lin), 0, [(x, x[..., 0])], {})
    score_c = wb.criteria.get_criterion("wanda").score(conv.weight, ctx)
    score_l = wb.criteria.get_criterion("wanda").score(lin.weight, ctx_l)
    torch.testing.assert_close(score_c.T, score_l)


def test_lstm_hidden_inputs_are_the_previous_hidden_states():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = lstm

        def forward(self, x):
            return self.lstm(x)[0]

    x = torch.randn(2, 5, 3)
    s = run(Net(), x)
    out = lstm(x)[0].detach().double()  # (B, T, 2H): the last layer's states
    torch.testing.assert_close(s["lstm.weight_hh_l1"][0], out[:, :-1, :4].square().sum((0, 1)))
    torch.testing.assert_close(s["lstm.weight_hh_l1_reverse"][0], out[:, 1:, 4:].square().sum((0, 1)))
    first = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    first.load_state_dict({k: v for k, v in lstm.state_dict().items() if "_l0" in k})
    mid = first(x)[0].detach().double()
    torch.testing.assert_close(s["lstm.weight_ih_l1"][0], mid.square().sum((0, 1)))
    torch.testing.assert_close(s["lstm.weight_ih_l0"][0], x.double().square().sum((0, 1)))


def test_attention_in_and_out_projection_inputs():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = mha

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    x = torch.randn(3, 4, 8)
    s = run(Net(), x)
    sq = x.double().square().sum((0, 1))
    torch.testing.assert_close(s["attn.in_proj_weight"], sq.expand(24, 8))
    # the context by hand: per-head softmax(q k^T / sqrt(d)) v, before the output projection
    q, k, v = F.linear(x, mha.in_proj_weight, mha.in_proj_bias).chunk(3, -1)
    heads = [slice(0, 4), slice(4, 8)]
    ctx = torch.cat([torch.softmax(q[..., h] @ k[..., h].transpose(1, 2) / 2.0, -1) @ v[..., h] for h in heads], -1)
    torch.testing.assert_close(s["attn.out_proj.weight"][0], ctx.detach().double().square().sum((0, 1)))


def test_transformer_encoder_layers_are_seen_and_model_is_untouched():
    model, data = wb.demo.load("digits-transformer", pretrained=False)
    model.train()
    snap = snapshot(model)
    bench = wb.Workbench(model, data)
    sel = bench.preview(wb.Plan.uniform(0.5, criterion="wanda"))
    assert "encoder.layers.0.self_attn.out_proj.weight" in sel.masks
    assert_bitwise(model, snap)
    assert_plain(model)
    assert model.training and all(m.training for m in model.modules())


def test_wanda_row_prunes_the_same_share_of_every_row():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    x = torch.randn(32, 8) * torch.linspace(0.1, 3, 8)
    bench = wb.Workbench(model, [(x, torch.zeros(32, dtype=torch.long))])
    bench.apply(wb.Plan.global_(0.5, criterion="wanda-row"), evaluate=False)
    assert (model[0].weight == 0).sum(1).tolist() == [4] * 6
    assert (model[2].weight == 0).sum(1).tolist() == [3] * 3
    bench.undo()
    bench.apply(wb.Plan.global_(0.5, criterion="wanda"), evaluate=False)
    assert len(set((model[0].weight == 0).sum(1).tolist())) > 1  # across rows, rows lose different shares


def test_packed_sequences_are_refused_clearly():
    class Packed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(3, 4, batch_first=True)

        def forward(self, x):
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, [x.shape[1]] * x.shape[0], batch_first=True)
            return self.lstm(packed)[1][0][-1]

    bench = wb.Workbench(Packed(), [(torch.randn(2, 5, 3), torch.zeros(2, dtype=torch.long))])
    with pytest.raises(wb.CriterionError, match="PackedSequence"):
        bench.preview(wb.Plan.uniform(0.5, criterion="wanda"))
