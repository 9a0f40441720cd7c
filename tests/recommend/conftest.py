"""Shared by the tests of workbench/recommend/: the digits CNN, and one latency recommendation measured once."""

import warnings

import pytest
import torch
from conftest import snapshot

import workbench as wb
from workbench.recommend import recommend


def cnn():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, data = wb.demo.load("digits-cnn")
    return model, data


@pytest.fixture(scope="package")
def latency():
    """digits-cnn, goal latency on CPU, with one epoch of fine-tuning measured; the model's snapshot before."""
    torch.set_num_threads(1)
    model, data = cnn()
    bench = wb.Workbench(model, data)
    snap = snapshot(model)
    rec = recommend(bench, "latency", 0.01, "cpu", finetune=1)
    return bench, snap, rec
