"""sparse/rnn.py: recurrent hidden units removed for real: SlimRNN computes what the masked LSTM/GRU/RNN computes
(outputs and final states, batch-first or not, unbatched, several layers, given zero states), compile's shrink uses
it on the demo LSTM, and the result exports and loads back."""

import pytest
import torch
from conftest import assert_deployable, snapshot

import workbench as wb
from workbench.sparse.rnn import SlimRNN, slimmable_rnn


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
@pytest.mark.parametrize("batch_first", [True, False])
def test_slim_rnn_equals_the_masked_one(cls, batch_first):
    torch.manual_seed(0)
    rnn = cls(5, 8, num_layers=2, batch_first=batch_first).eval()
    model, data = rnn, [(torch.randn(4, 6, 5) if batch_first else torch.randn(6, 4, 5), torch.zeros(4))]
    bench = wb.Workbench(torch.nn.Sequential(model), None, example_inputs=data[0][0])
    bench.apply(wb.Plan.uniform(0.5, granularity="lstm-unit"), evaluate=False)
    groups = bench.groups
    from workbench.sparse.shrink import prunable_channels

    units = prunable_channels(groups, dict(bench.model.named_parameters()), bench.masks, unit="lstm-unit")
    kept = [[u for u in range(8) if u not in units.get(f"0:l{i}", [])] for i in range(2)]
    assert all(len(k) == 4 for k in kept)
    slim = SlimRNN.from_rnn(rnn, kept).eval()
    x = data[0][0]
    with torch.no_grad():
        a, sa = rnn(x)
        b, sb = slim(x)
        assert torch.allclose(a, b, atol=1e-6)
        for p, q in zip(sa if isinstance(sa, tuple) else (sa,), sb if isinstance(sb, tuple) else (sb,)):
            assert torch.allclose(p, q, atol=1e-6)
        xu = x[0] if batch_first else x[:, 0]  # unbatched
        assert torch.allclose(rnn(xu)[0], slim(xu)[0], atol=1e-6)
        h0 = torch.zeros(2, 4, 8)
        h0[0, :, kept[0][0]] = 0.3  # kept units' states are honoured (removed units must start at zero)
        h0[1, :, kept[1][-1]] = -0.2
        hx = (h0, torch.zeros(2, 4, 8)) if cls is torch.nn.LSTM else h0
        assert torch.allclose(rnn(x, hx)[0], slim(x, hx)[0], atol=1e-6)


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
@pytest.mark.parametrize("batch_first", [True, False])
def test_bidirectional_slim_rnn_equals_the_masked_one(cls, batch_first):
    # each direction of each layer is its own coupled group: they lose different units (3 layers x 2 directions)
    torch.manual_seed(1)
    rnn = cls(5, 8, num_layers=3, batch_first=batch_first, bidirectional=True).eval()
    x = torch.randn(4, 6, 5) if batch_first else torch.randn(6, 4, 5)
    bench = wb.Workbench(torch.nn.Sequential(rnn), None, example_inputs=x)
    bench.apply(wb.Plan.uniform(0.5, granularity="lstm-unit"), evaluate=False)
    from workbench.sparse.shrink import prunable_channels

    units = prunable_channels(bench.groups, dict(bench.model.named_parameters()), bench.masks, unit="lstm-unit")
    assert len(units) == 6 and units["0:l1"] != units["0:l1_reverse"]
    sfx = ["", "_reverse"]
    kept = [[u for u in range(8) if u not in units[f"0:l{i}{sfx[d]}"]] for i in range(3) for d in range(2)]
    slim = SlimRNN.from_rnn(rnn, kept).eval()
    assert [m.hidden_size for m in slim.layers] == [4] * 6 and slim.layers[2].input_size == 8  # 4 + 4 kept
    with torch.no_grad():
        a, sa = rnn(x)
        b, sb = slim(x)
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)
        for p, q in zip(sa if isinstance(sa, tuple) else (sa,), sb if isinstance(sb, tuple) else (sb,)):
            assert p.shape == q.shape and torch.allclose(p, q, atol=1e-6)
        xu = x[0] if batch_first else x[:, 0]  # unbatched
        assert torch.allclose(rnn(xu)[0], slim(xu)[0], atol=1e-6)
        h0 = torch.zeros(6, 4, 8)
        for j in range(6):
            h0[j, :, kept[j][0]] = 0.1 * (j + 1)  # kept units' states are honoured, per layer and direction
        hx = (h0, -h0) if cls is torch.nn.LSTM else h0
        assert torch.allclose(rnn(x, hx)[0], slim(x, hx)[0], atol=1e-6)


def test_what_cannot_be_slimmed_says_why():
    assert slimmable_rnn(torch.nn.LSTM(4, 4, bidirectional=True)) == ""
    assert "proj_size" in slimmable_rnn(torch.nn.LSTM(4, 4, proj_size=2))
    assert slimmable_rnn(torch.nn.GRU(4, 4)) == ""
    with pytest.raises(ValueError, match="layers-directions"):
        SlimRNN.from_rnn(torch.nn.LSTM(4, 4, bidirectional=True), [[0, 1]])


class _BiTagger(torch.nn.Module):
    """A bidirectional two-layer LSTM reading digit rows, classified from both directions' last states."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True)
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x):
        _, (h, _) = self.lstm(x.view(-1, 8, 8))
        return self.head(torch.cat([h[-2], h[-1]], 1))


def test_compile_shrinks_a_bidirectional_lstm_and_exports(tmp_path):
    torch.manual_seed(0)
    model = _BiTagger().eval()
    x = torch.randn(32, 1, 8, 8)
    bench = wb.Workbench(model, None, example_inputs=x)
    bench.apply(wb.Plan.uniform(0.5, granularity="lstm-unit"), evaluate=False)
    before = snapshot(model)
    fast, rep = wb.sparse.compile(bench, backend="shrink", example_inputs=x)
    assert isinstance(fast.lstm, SlimRNN) and [m.hidden_size for m in fast.lstm.layers] == [8] * 4
    assert rep.removed_channels.get("units lstm") == 32 and rep.max_abs_err <= 1e-5
    assert_deployable(fast, model, x, before, tmp_path, _BiTagger())


def test_compile_shrinks_pruned_units_of_the_demo_lstm_and_exports(tmp_path):
    model, data = wb.demo.load("digits-lstm")
    bench = wb.Workbench(model, data)
    bench.apply(wb.Plan.uniform(0.5, granularity="lstm-unit"))
    before = snapshot(model)
    fast, rep = wb.sparse.compile(bench, backend="shrink")
    assert rep.removed_channels.get("units lstm") == 32 and rep.max_abs_err <= 1e-5
    assert isinstance(fast.lstm, SlimRNN) and fast.lstm.layers[0].hidden_size == 32
    assert rep.params_after < 0.4 * rep.params_before
    x = data.example if isinstance(data.example, torch.Tensor) else data.example[0]
    assert_deployable(fast, model, x, before, tmp_path, wb.demo.build("digits-lstm"))
