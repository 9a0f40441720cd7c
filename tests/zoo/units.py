"""A tiny model whose units are known by construction: one dead, one that barely varies, one spread out."""

from __future__ import annotations

import torch
from torch import nn

import workbench as wb


class Toy(nn.Module):
    """fc's unit 0 is dead (weights and bias zero -> constant 0 after ReLU), unit 1 barely varies."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.out = nn.Linear(3, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.0, 0, 0, 0], [1e-3, 0, 0, 0], [1.0, -1.0, 0.5, 2.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, 0.5, 0.0]))

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


def toy_bench():
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    data = [(x[:64], torch.randint(0, 2, (64,))), (x[64:], torch.randint(0, 2, (64,)))]
    return wb.Workbench(Toy(), data)
