"""Architectures written only for tests: the workbench must not special-case the demos."""

from __future__ import annotations

import torch
from torch import nn


class ResCat(nn.Module):
    """Residual add (identity and projection), channel concat, depthwise and grouped convs, BatchNorm."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.a = nn.Conv2d(8, 8, 3, padding=1)
        self.a_bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.pw_bn = nn.BatchNorm2d(16)
        self.g = nn.Conv2d(16, 16, 1, groups=4)
        self.g_bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        y = torch.relu(self.a_bn(self.a(x)) + x)
        z = torch.relu(self.b(x))
        c = torch.cat([y, z], 1)
        c = torch.relu(self.pw_bn(self.pw(self.dw(c))))
        c = torch.relu(self.g_bn(self.g(c)))
        return self.head(c.mean((2, 3)))


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(8, 12)
        self.lstm = nn.LSTM(12, 16, num_layers=2, batch_first=True)
        self.out = nn.Linear(16, 5)

    def forward(self, x):
        _, (h, _) = self.lstm(torch.relu(self.inp(x.flatten(1, 2) if x.dim() == 4 else x)))
        return self.out(h[-1])


class MHANet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.ff1 = nn.Linear(16, 32)
        self.ff2 = nn.Linear(32, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        h = self.embed(x)
        h = self.norm(h + self.attn(h, h, h, need_weights=False)[0])
        h = h + self.ff2(torch.relu(self.ff1(h)))
        return self.head(h.mean(1))


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.mid = nn.Linear(8, 8)
        self.dec = nn.Linear(8, 10, bias=False)
        self.dec.weight = self.emb.weight

    def forward(self, x):
        return self.dec(torch.relu(self.mid(self.emb(x).mean(1))))


def make(name: str, seed: int = 0):
    """(model, data): a test architecture with random weights and a few batches of random data."""
    torch.manual_seed(seed)
    if name == "rescat":
        model, x = ResCat(), torch.randn(64, 1, 8, 8)
    elif name == "lstm":
        model, x = LSTMNet(), torch.randn(64, 6, 8)
    elif name == "mha":
        model, x = MHANet(), torch.randn(64, 6, 4)
    elif name == "tied":
        model, x = Tied(), torch.randint(0, 10, (64, 5))
    else:
        raise KeyError(name)
    model.eval()
    n_out = 10 if name == "tied" else 5
    y = torch.randint(0, n_out, (64,))
    data = [(x[:32], y[:32]), (x[32:], y[32:])]
    return model, data


ZOO = ("rescat", "lstm", "mha", "tied")
