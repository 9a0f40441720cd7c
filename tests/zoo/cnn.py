"""Hand-written CNNs with the channel couplings real CNN families use (timm-style fused BatchNorm + activation,
DenseNet concatenation, depthwise-separable and grouped convolutions, Res2Net split/concat, GhostNet's cheap
features), small and random, fed 3x16x16 images."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's BatchNormAct2d: a BatchNorm2d subclass whose forward also applies the activation."""

    def __init__(self, c: int):
        super().__init__(c)
        self.act = nn.ReLU()

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training, 0.1, self.eps)
        return self.act(x)


def _cbr(cin: int, cout: int, k: int = 3, groups: int = 1, fused: bool = False) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False)
    return nn.Sequential(conv, BatchNormAct2d(cout)) if fused else nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    def __init__(self, c: int, classes: int = 3):
        super().__init__()
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


class FusedBNAct(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(_cbr(3, 16, fused=True), _cbr(16, 24, fused=True), _cbr(24, 24, fused=True))
        self.head = Head(24)

    def forward(self, x):
        return self.head(self.body(x))


class DenseNetLike(nn.Module):
    def __init__(self, growth: int = 8):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.l1 = _cbr(16, growth)
        self.l2 = _cbr(16 + growth, growth)
        self.trans = _cbr(16 + 2 * growth, 16, k=1)
        self.head = Head(16)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([x, self.l1(x)], 1)
        x = torch.cat([x, self.l2(x)], 1)
        return self.head(self.trans(x))


class DepthwiseSeparable(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.dw = _cbr(16, 16, groups=16)
        self.pw = _cbr(16, 32, k=1)
        self.dw2 = _cbr(32, 32, groups=32)
        self.pw2 = _cbr(32, 24, k=1)
        self.head = Head(24)

    def forward(self, x):
        return self.head(self.pw2(self.dw2(self.pw(self.dw(self.stem(x))))))


class ResNeXtLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.reduce = _cbr(16, 32, k=1)
        self.grouped = _cbr(32, 32, groups=4)
        self.expand = nn.Sequential(nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = Head(16)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.relu(x + self.expand(self.grouped(self.reduce(x)))))


class Res2NetLike(nn.Module):
    def __init__(self, scale: int = 4, width: int = 6):
        super().__init__()
        self.stem = _cbr(3, scale * width)
        self.convs = nn.ModuleList(_cbr(width, width) for _ in range(scale - 1))
        self.width = width
        self.fuse = _cbr(scale * width, 16, k=1)
        self.head = Head(16)

    def forward(self, x):
        parts = torch.split(self.stem(x), self.width, 1)
        out, y = [], None
        for i, conv in enumerate(self.convs):
            y = conv(parts[i] if y is None else parts[i] + y)
            out.append(y)
        out.append(parts[-1])
        return self.head(self.fuse(torch.cat(out, 1)))


class GhostModule(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.cout = cout
        init = (cout + 1) // 2
        self.primary = _cbr(cin, init, k=1)
        self.cheap = _cbr(init, init, groups=init)

    def forward(self, x):
        a = self.primary(x)
        return torch.cat([a, self.cheap(a)], 1)[:, : self.cout]


class GhostNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 16)
        self.g1 = GhostModule(16, 24)
        self.g2 = GhostModule(24, 16)
        self.head = Head(16)

    def forward(self, x):
        return self.head(self.g2(self.g1(self.stem(x))))


def _images(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(2)]


CNNS = {
    "fused-bn-act": FusedBNAct,
    "densenet-like": DenseNetLike,
    "depthwise-separable": DepthwiseSeparable,
    "resnext-like": ResNeXtLike,
    "res2net-like": Res2NetLike,
    "ghostnet-like": GhostNetLike,
}


def calibrated(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():  # non-trivial BatchNorm statistics, so a wrong slice shows in the outputs
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
    return model.eval()


class CachedBiasAttention(nn.Module):
    """LeViT/EfficientFormer-style: per-head attention biases gathered once in eval mode and kept in a dict."""

    def __init__(self, dim: int, heads: int = 2, res: int = 4):
        super().__init__()
        self.heads, self.d = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        pts = torch.stack(torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij"), -1).reshape(-1, 2)
        offsets = (pts[:, None] - pts[None]).abs()
        idxs = offsets[..., 0] * res + offsets[..., 1]
        self.attention_biases = nn.Parameter(torch.randn(heads, res * res) * 0.1)
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)
        self.attention_bias_cache: dict[str, torch.Tensor] = {}

    def biases(self, device):
        if self.training:
            return self.attention_biases[:, self.attention_bias_idxs]
        key = str(device)
        if key not in self.attention_bias_cache:
            self.attention_bias_cache[key] = self.attention_biases[:, self.attention_bias_idxs]
        return self.attention_bias_cache[key]

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.d).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) * self.d**-0.5 + self.biases(x.device)
        return self.proj((att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class LeViTLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 4, stride=4, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.attn = CachedBiasAttention(16)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        t = self.stem(x).flatten(2).transpose(1, 2)
        return self.fc(self.attn(t).mean(1))
