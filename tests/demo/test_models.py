"""demo/models.py: the five architectures' structure (residuals, concat, depthwise, LSTM, attention whose hooks fire
on the fused path), torch.export, and copy / pickle / state_dict round trips of the shipped models."""

from __future__ import annotations

import copy
import io
import operator
import pickle

import pytest
import torch
from torch import nn

from workbench import demo

from .conftest import NAMES


@pytest.mark.parametrize("name", NAMES)
def test_copy_pickle_and_state_dict_roundtrip(name, trained):
    model, data = trained(name)
    with torch.no_grad():
        ref = model(data.example)
        dup = copy.deepcopy(model)
        assert torch.equal(dup(data.example), ref)
        unpickled = pickle.loads(pickle.dumps(model))
        assert torch.equal(unpickled(data.example), ref)

        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        buf.seek(0)
        fresh, _ = demo.load(name, pretrained=False, seed=123)
        fresh.load_state_dict(torch.load(buf, weights_only=True))
        assert torch.equal(fresh(data.example), ref)


def _fx_targets(model: nn.Module) -> list:
    gm = torch.fx.symbolic_trace(model)
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_mlp_structure():
    model, _ = demo.load("digits-mlp", pretrained=False)
    layers = list(model.children())
    assert isinstance(layers[0], nn.Flatten)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 128), (128, 64), (64, 10)]


def test_cnn_structure():
    model, _ = demo.load("digits-cnn", pretrained=False)
    mods = dict(model.named_modules())
    assert isinstance(mods["features.0"], nn.Conv2d) and isinstance(mods["features.3"], nn.Conv2d)
    assert isinstance(mods["features"], nn.Sequential) and isinstance(mods["classifier"], nn.Sequential)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 3
    assert not any(getattr(m, "inplace", False) for m in model.modules())


def test_resnet_structure():
    model, data = demo.load("digits-resnet", pretrained=False)
    targets = _fx_targets(model)
    assert torch.cat in targets
    assert targets.count(operator.add) + targets.count(torch.add) >= 2  # two residual additions
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert any(m.groups == m.in_channels > 1 for m in convs)  # depthwise
    assert any(m.kernel_size == (1, 1) and m.groups == 1 and m.in_channels > 1 for m in convs)  # pointwise
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)
    # one block has a 1x1 conv + BN projection shortcut, another an identity shortcut
    shortcuts = [m for name, m in model.named_modules() if name.endswith("shortcut")]
    assert any(isinstance(s, nn.Identity) for s in shortcuts)
    assert any(isinstance(s, nn.Sequential) and isinstance(s[0], nn.Conv2d) for s in shortcuts)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert model(data.example).shape == (8, 10)


def test_lstm_structure():
    model, _ = demo.load("digits-lstm", pretrained=False)
    lstms = [m for m in model.modules() if isinstance(m, nn.LSTM)]
    assert len(lstms) == 1
    assert lstms[0].batch_first and lstms[0].input_size == 8 and lstms[0].hidden_size == 64


def test_transformer_structure_and_hooks_fire():
    model, data = demo.load("digits-transformer", pretrained=False)
    attns = [m for m in model.modules() if isinstance(m, nn.MultiheadAttention)]
    assert len(attns) == 2 and all(a.embed_dim == 32 and a.num_heads == 4 and a.batch_first for a in attns)
    assert any(isinstance(m, nn.TransformerEncoder) for m in model.modules())
    assert any(isinstance(p, nn.Parameter) and p.shape == (1, 16, 32) for p in model.parameters())
    # In eval/no_grad the encoder may take a fused fast path; a hook on a submodule must still fire.
    seen = []
    handle = attns[0].register_forward_hook(lambda m, i, o: seen.append(o[0].shape))
    try:
        with torch.no_grad():
            model(data.example)
    finally:
        handle.remove()
    assert seen == [torch.Size([8, 16, 32])]


@pytest.mark.filterwarnings("ignore:The tensor attributes self.lstm._flat_weights:UserWarning")
@pytest.mark.parametrize("name", NAMES)
def test_torch_export(name):
    model, data = demo.load(name, pretrained=False)
    exported = torch.export.export(model, (data.example,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(data.example), model(data.example))
