"""Small demo architectures for 8x8 digits; every model maps ``(B, 1, 8, 8)`` images to ``(B, 10)`` logits.

Models are plain :class:`torch.nn.Module` s made of standard layers (no hooks, no custom autograd),
defined at module level so they pickle and deepcopy. Register a new one with :func:`_register`.

Example:
    >>> import torch
    >>> model = build("digits-cnn")
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["MODEL_VERSION", "available", "build"]

#: Bump when any architecture or the training recipe changes: it is part of the cache file name.
MODEL_VERSION = 1

_MODELS: dict[str, Callable[[], nn.Module]] = {}


def _register(name: str) -> Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]:
    """Decorator adding a zero-argument model factory to the registry under ``name``."""

    def deco(fn: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
        if name in _MODELS:
            raise ValueError(f"demo model {name!r} registered twice")
        _MODELS[name] = fn
        return fn

    return deco


def available() -> list[str]:
    """Names of the registered demo models, in registration order."""
    return list(_MODELS)


def build(name: str) -> nn.Module:
    """Instantiate the (untrained) model ``name``; seed the RNG beforehand for reproducibility."""
    return _MODELS[name]()


def _conv_bn(c_in: int, c_out: int, k: int = 3, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class BasicBlock(nn.Module):
    """Residual block ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    The shortcut is the identity when shapes match, else a 1x1 conv + BatchNorm projection.
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class InceptionBlock(nn.Module):
    """Two parallel branches (1x1 conv, 3x3 conv) concatenated along the channel dimension."""

    def __init__(self, c_in: int, c_branch: int) -> None:
        super().__init__()
        self.branch1 = _conv_bn(c_in, c_branch, k=1)
        self.branch3 = _conv_bn(c_in, c_branch, k=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 conv (``groups == channels``) + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.depthwise = _conv_bn(c_in, c_in, k=3, groups=c_in)
        self.pointwise = _conv_bn(c_in, c_out, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class DigitsResNet(nn.Module):
    """Stem -> residual (identity) -> inception concat -> residual (projection) -> depthwise-separable
    -> global average pool -> linear head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _conv_bn(1, 16)
        self.layer1 = BasicBlock(16, 16)
        self.mix = InceptionBlock(16, 16)  # -> 32 channels
        self.layer2 = BasicBlock(32, 48, stride=2)  # 8x8 -> 4x4, projection shortcut
        self.dwsep = DepthwiseSeparable(48, 64)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.mix(x)
        x = self.layer2(x)
        x = self.dwsep(x)
        return self.fc(self.flatten(self.pool(x)))


class DigitsLSTM(nn.Module):
    """Reads the image row by row: 8 time steps of 8 features -> LSTM -> last hidden state -> linear."""

    def __init__(self, hidden: int = 64, num_layers: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, hidden, num_layers=num_layers, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.reshape(x.shape[0], 8, 8)  # (B, 1, 8, 8) -> (B, rows, features)
        _, (h_n, _) = self.lstm(seq)
        return self.fc(h_n[-1])


class DigitsTransformer(nn.Module):
    """ViT-style: 2x2 patches (16 tokens of dim 4) -> linear embedding + learned positions
    -> 2-layer ``nn.TransformerEncoder`` -> mean pooling -> LayerNorm -> linear head."""

    def __init__(self, d_model: int = 32, nhead: int = 4, num_layers: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        self.patch = 2
        n_tokens = (8 // self.patch) ** 2
        self.embed = nn.Linear(self.patch * self.patch, d_model)
        self.pos = nn.Parameter(torch.zeros(1, n_tokens, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=d_model, nhead=nhead, dim_feedforward=64, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, p = x.shape[0], self.patch
        # (B, 1, 8, 8) -> (B, 4, 2, 4, 2) -> (B, 4, 4, 2, 2) -> (B, 16 tokens, 4)
        tokens = x.reshape(b, 8 // p, p, 8 // p, p).permute(0, 1, 3, 2, 4).reshape(b, -1, p * p)
        h = self.encoder(self.embed(tokens) + self.pos)
        return self.head(self.norm(h.mean(dim=1)))


@_register("digits-mlp")
def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


class DigitsCNN(nn.Module):
    """``features`` (3 conv+BN+ReLU, one max-pool, global average pool) -> ``classifier`` MLP."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),  # features.0
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),  # features.3
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),  # features.7
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@_register("digits-cnn")
def _cnn() -> nn.Module:
    return DigitsCNN()


@_register("digits-resnet")
def _resnet() -> nn.Module:
    return DigitsResNet()


@_register("digits-lstm")
def _lstm() -> nn.Module:
    return DigitsLSTM()


@_register("digits-transformer")
def _transformer() -> nn.Module:
    return DigitsTransformer()
