"""recommend/candidates.py: bad goals, budgets, devices, strategies, epochs and timers are refused before any work."""

import pytest

import workbench as wb
from workbench.recommend import RecommendationError, recommend

from .conftest import cnn

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is fastest and steadiest


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"goal": "speed"}, "unknown goal 'speed'.*latency"),
        ({"goal": "latency", "budget": -0.1}, "largest metric drop"),
        ({"goal": "accuracy", "budget": 0.5}, "size ratio you need"),
        ({"goal": "size", "budget": float("nan")}, "finite number"),
        ({"device": "tpu"}, "device must be 'cpu' or 'cuda'"),
        ({"strategies": ["global-magnitud"]}, "global-magnitude"),
        ({"strategies": []}, "strategies is empty"),
        ({"finetune": -1}, "epochs >= 0"),
        ({"timer": "gpu"}, "timer must be"),
    ],
)
def test_bad_input_is_refused_before_any_work(kwargs, match):
    model, data = cnn()
    bench = wb.Workbench(model, data)
    with pytest.raises(RecommendationError, match=match):
        recommend(bench, **kwargs)
