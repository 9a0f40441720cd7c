"""Recurrent layers with hidden units removed: what `compile`'s shrink puts in place of an `nn.LSTM`/`nn.GRU`/`nn.RNN`
whose units the ``lstm-unit`` granularity pruned.

A pruned unit (its rows in every gate, its biases and its recurrent column all zero) outputs exactly zero at every
step when it starts from a zero state (the default): LSTM ``c = 0.5 c + 0.5 * tanh(0) = 0``, ``h = o * tanh(0)``; GRU
``h = 0.5 h``; RNN ``h = tanh(0)``. `SlimRNN` runs one smaller recurrent layer per original layer, over the kept units
only (the recurrent matmuls, the bulk of the cost, shrink quadratically), and scatters the outputs back to the
original width, so every consumer of the layer (a classifier reading ``h_n[-1]``, another layer) sees the shapes it
expects and the same numbers: no need to trace who reads the output. Equal to the masked layer when the removed
units' initial state is zero (the default); `compile` checks the outputs before it keeps it.

>>> import torch
>>> lstm = torch.nn.LSTM(5, 8, num_layers=2, batch_first=True).eval()
>>> slim = SlimRNN.from_rnn(lstm, [list(range(8)), list(range(8))]).eval()
>>> x = torch.randn(3, 4, 5)
>>> torch.allclose(slim(x)[0], lstm(x)[0], atol=1e-6)
True
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SlimRNN", "slimmable_rnn"]

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def slimmable_rnn(rnn: nn.Module) -> str:
    """Why `rnn` cannot be replaced by a slim copy ("" if it can)."""
    if not isinstance(rnn, nn.RNNBase) or rnn.mode not in _GATES:
        return f"{type(rnn).__name__} is not an nn.LSTM / nn.GRU / nn.RNN"
    if rnn.bidirectional:
        return "bidirectional layers are not slimmed yet (both directions share one hidden size)"
    if getattr(rnn, "proj_size", 0):
        return "LSTMs with proj_size > 0 are not supported"
    return ""


def _layer_cls(mode: str):
    return {"LSTM": nn.LSTM, "GRU": nn.GRU}.get(mode, nn.RNN)


class SlimRNN(nn.Module):
    """A stack of one-layer recurrent modules over the kept units of each layer, outputs scattered back to the
    original hidden size (see the module docstring)."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        kept: list[list[int]],
        *,
        bias: bool = True,
        batch_first: bool = False,
    ) -> None:
        super().__init__()
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.batch_first, self.bias = len(kept), batch_first, bias
        cls = _layer_cls(mode)
        extra = {"nonlinearity": "relu" if mode == "RNN_RELU" else "tanh"} if cls is nn.RNN else {}
        layers, prev = [], input_size
        for i, k in enumerate(kept):
            layers.append(cls(prev, len(k), batch_first=batch_first, bias=bias, **extra))
            self.register_buffer(f"kept_{i}", torch.tensor(list(k), dtype=torch.long))
            prev = len(k)
        self.layers = nn.ModuleList(layers)

    def kept(self, i: int) -> Tensor:
        return getattr(self, f"kept_{i}")

    @classmethod
    def from_rnn(cls, rnn: nn.RNNBase, kept: list[list[int]]) -> SlimRNN:
        """A copy of `rnn` with, per layer, only the hidden units listed in `kept`."""
        why = slimmable_rnn(rnn)
        if why:
            raise ValueError(why)
        g, h = _GATES[rnn.mode], rnn.hidden_size
        new = cls(rnn.mode, rnn.input_size, h, kept, bias=rnn.bias, batch_first=rnn.batch_first)
        with torch.no_grad():
            for i, k in enumerate(kept):
                units = torch.tensor(list(k), dtype=torch.long)
                rows = torch.cat([units + j * h for j in range(g)])
                cols = torch.arange(rnn.input_size) if i == 0 else torch.tensor(list(kept[i - 1]), dtype=torch.long)
                src = {
                    n: getattr(rnn, f"{n}_l{i}")
                    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                    if hasattr(rnn, f"{n}_l{i}")
                }
                dst = new.layers[i]
                dst.weight_ih_l0.copy_(src["weight_ih"][rows][:, cols])
                dst.weight_hh_l0.copy_(src["weight_hh"][rows][:, units])
                if rnn.bias:
                    dst.bias_ih_l0.copy_(src["bias_ih"][rows])
                    dst.bias_hh_l0.copy_(src["bias_hh"][rows])
        w = rnn.weight_ih_l0
        return new.to(device=w.device, dtype=w.dtype).train(rnn.training)

    def extra_repr(self) -> str:
        sizes = [len(self.kept(i)) for i in range(self.num_layers)]
        return f"{self.mode}, input_size={self.input_size}, hidden units {sizes} of {self.hidden_size}"

    def _widen(self, t: Tensor, i: int) -> Tensor:
        out = t.new_zeros((*t.shape[:-1], self.hidden_size))
        return out.index_copy(t.dim() - 1, self.kept(i), t)

    def forward(self, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None):
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise TypeError("SlimRNN does not take packed sequences; compile a model that pads its inputs")
        lstm = self.mode == "LSTM"
        finals_h, finals_c = [], []
        out = x
        for i, layer in enumerate(self.layers):
            k = self.kept(i)
            state = None
            if hx is not None:
                if lstm:
                    state = (hx[0][i : i + 1].index_select(-1, k), hx[1][i : i + 1].index_select(-1, k))
                else:
                    state = hx[i : i + 1].index_select(-1, k)
            out, st = layer(out, state)
            h_n, c_n = st if lstm else (st, None)
            finals_h.append(self._widen(h_n, i))
            if lstm:
                finals_c.append(self._widen(c_n, i))
            if i + 1 < self.num_layers:
                continue
            out = self._widen(out, i)
        h = torch.cat(finals_h, 0)
        return (out, (h, torch.cat(finals_c, 0))) if lstm else (out, h)
