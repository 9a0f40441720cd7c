"""Recurrent layers with hidden units removed: what `compile`'s shrink puts in place of an `nn.LSTM`/`nn.GRU`/`nn.RNN`
whose units the ``lstm-unit`` granularity pruned.

A pruned unit (its rows in every gate, its biases and its recurrent column all zero) outputs exactly zero at every
step when it starts from a zero state (the default): LSTM ``c = 0.5 c + 0.5 * tanh(0) = 0``, ``h = o * tanh(0)``; GRU
``h = 0.5 h``; RNN ``h = tanh(0)``. `SlimRNN` runs one smaller recurrent layer per original layer, over the kept units
only (the recurrent matmuls, the bulk of the cost, shrink quadratically; a bidirectional layer gets one per
direction, each keeping its own units), and scatters the outputs back to the original width, so every consumer of the layer (a classifier reading ``h_n[-1]``, another layer) sees the shapes it
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
    if getattr(rnn, "proj_size", 0):
        return "LSTMs with proj_size > 0 are not supported"
    return ""


def _layer_cls(mode: str):
    return {"LSTM": nn.LSTM, "GRU": nn.GRU}.get(mode, nn.RNN)


class SlimRNN(nn.Module):
    """A stack of one-layer, one-direction recurrent modules over the kept units of each layer and direction,
    outputs scattered back to the original hidden size (see the module docstring).

    `kept` lists the kept units per layer and direction in ``h_n``'s order (layer 0, layer 0 reverse, layer 1,
    ...). A bidirectional layer's reverse direction runs its own module over the time-reversed sequence (what
    `nn.LSTM` computes for unpacked input), so the two directions may keep different numbers of units; the next
    layer reads both directions' kept units."""

    def __init__(
        self,
        mode: str,
        input_size: int,
        hidden_size: int,
        kept: list[list[int]],
        *,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        dirs = 2 if bidirectional else 1
        if len(kept) % dirs:
            raise ValueError(f"a bidirectional layer needs kept units for both directions, got {len(kept)} lists")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.batch_first, self.bias = len(kept) // dirs, batch_first, bias
        self.bidirectional, self.dirs = bidirectional, dirs
        cls = _layer_cls(mode)
        extra = {"nonlinearity": "relu" if mode == "RNN_RELU" else "tanh"} if cls is nn.RNN else {}
        layers = []
        for j, k in enumerate(kept):
            layer = j // dirs
            prev = input_size if layer == 0 else sum(len(kept[(layer - 1) * dirs + d]) for d in range(dirs))
            layers.append(cls(prev, len(k), batch_first=batch_first, bias=bias, **extra))
            self.register_buffer(f"kept_{j}", torch.tensor(list(k), dtype=torch.long))
        self.layers = nn.ModuleList(layers)

    def kept(self, j: int) -> Tensor:
        """Kept units of layer-direction `j` (``h_n``'s order)."""
        return getattr(self, f"kept_{j}")

    @classmethod
    def shaped_like(cls, rnn: nn.RNNBase, kept: list[list[int]]) -> SlimRNN:
        """A SlimRNN with `rnn`'s settings and the sizes of `kept`, weights not yet set (copied by `from_rnn`,
        loaded from a file by `workbench.sparse.load`)."""
        return cls(
            rnn.mode,
            rnn.input_size,
            rnn.hidden_size,
            kept,
            bias=rnn.bias,
            batch_first=rnn.batch_first,
            bidirectional=rnn.bidirectional,
        )

    @classmethod
    def from_rnn(cls, rnn: nn.RNNBase, kept: list[list[int]]) -> SlimRNN:
        """A copy of `rnn` with, per layer and direction (``h_n``'s order), only the hidden units in `kept`."""
        why = slimmable_rnn(rnn)
        if why:
            raise ValueError(why)
        dirs = 2 if rnn.bidirectional else 1
        if len(kept) != rnn.num_layers * dirs:
            raise ValueError(f"kept lists {len(kept)} layers-directions; the module has {rnn.num_layers * dirs}")
        g, h = _GATES[rnn.mode], rnn.hidden_size
        new = cls.shaped_like(rnn, kept)
        with torch.no_grad():
            for j, k in enumerate(kept):
                layer, sfx = j // dirs, "_reverse" if j % dirs else ""
                units = torch.tensor(list(k), dtype=torch.long)
                rows = torch.cat([units + i * h for i in range(g)])
                if layer == 0:
                    cols = torch.arange(rnn.input_size)
                else:  # the previous layer's kept units, forward then reverse (each block h wide in the original)
                    prev = [
                        torch.tensor(list(kept[(layer - 1) * dirs + d]), dtype=torch.long) + d * h for d in range(dirs)
                    ]
                    cols = torch.cat(prev)
                src = {
                    n: getattr(rnn, f"{n}_l{layer}{sfx}")
                    for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                    if hasattr(rnn, f"{n}_l{layer}{sfx}")
                }
                dst = new.layers[j]
                dst.weight_ih_l0.copy_(src["weight_ih"][rows][:, cols])
                dst.weight_hh_l0.copy_(src["weight_hh"][rows][:, units])
                if rnn.bias:
                    dst.bias_ih_l0.copy_(src["bias_ih"][rows])
                    dst.bias_hh_l0.copy_(src["bias_hh"][rows])
        w = rnn.weight_ih_l0
        return new.to(device=w.device, dtype=w.dtype).train(rnn.training)

    def extra_repr(self) -> str:
        sizes = [len(self.kept(j)) for j in range(len(self.layers))]
        what = "hidden units per layer and direction" if self.bidirectional else "hidden units"
        return f"{self.mode}, input_size={self.input_size}, {what} {sizes} of {self.hidden_size}"

    def _widen(self, t: Tensor, j: int) -> Tensor:
        out = t.new_zeros((*t.shape[:-1], self.hidden_size))
        return out.index_copy(t.dim() - 1, self.kept(j), t)

    def forward(self, x: Tensor, hx: Tensor | tuple[Tensor, Tensor] | None = None):
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise TypeError("SlimRNN does not take packed sequences; compile a model that pads its inputs")
        lstm = self.mode == "LSTM"
        time = 0 if x.dim() == 2 or not self.batch_first else 1
        finals_h, finals_c = [], []
        out = x
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.dirs):
                j = layer * self.dirs + d
                k = self.kept(j)
                state = None
                if hx is not None:
                    if lstm:
                        state = (hx[0][j : j + 1].index_select(-1, k), hx[1][j : j + 1].index_select(-1, k))
                    else:
                        state = hx[j : j + 1].index_select(-1, k)
                inp = out.flip(time) if d else out
                o, st = self.layers[j](inp, state)
                outs.append(o.flip(time) if d else o)
                h_n, c_n = st if lstm else (st, None)
                finals_h.append(self._widen(h_n, j))
                if lstm:
                    finals_c.append(self._widen(c_n, j))
            if layer + 1 < self.num_layers:
                out = torch.cat(outs, -1) if self.dirs > 1 else outs[0]
            else:
                widened = [self._widen(o, layer * self.dirs + d) for d, o in enumerate(outs)]
                out = torch.cat(widened, -1) if self.dirs > 1 else widened[0]
        h = torch.cat(finals_h, 0)
        return (out, (h, torch.cat(finals_c, 0))) if lstm else (out, h)
