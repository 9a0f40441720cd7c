"""adapter/core.py: an Adapter detects the task from the first batch (class ids, float targets, next-token ids, token
labels), feeds the model exactly `n` samples for timing, builds causal-LM targets and seq2seq decoder inputs the
Hugging Face way, and refuses what it cannot measure with the accepted forms or the fix."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from workbench.adapter import IGNORE, Adapter
from workbench.errors import DataError


class TokenModel(nn.Module):
    """(B, T) ids -> (B, T, V) logits."""

    def __init__(self, v: int = 7):
        super().__init__()
        self.emb = nn.Embedding(v, v)

    def forward(self, input_ids, attention_mask=None):
        return self.emb(input_ids)


def _task(model, batch):
    ad = Adapter(model)
    return ad.detect([batch]).name


def test_the_task_is_detected_from_the_first_batch():
    x = torch.randn(4, 3)
    assert _task(nn.Linear(3, 5), (x, torch.tensor([0, 1, 4, 2]))) == "classification"
    assert _task(nn.Linear(3, 1), (x, torch.randn(4, 1))) == "regression"
    ids = torch.randint(0, 7, (2, 5))
    assert _task(TokenModel(), {"input_ids": ids, "labels": ids}) == "causal-lm"  # the labels are the inputs
    assert _task(TokenModel(), {"input_ids": ids, "labels": (ids + 1) % 7}) == "token-classification"
    assert _task(TokenModel(), {"input_ids": ids}) == "causal-lm"  # no labels: next-token over the inputs
    with pytest.raises(DataError, match=r"no labels.*task='causal-lm'"):
        _task(nn.Linear(3, 5), x)
    assert Adapter(nn.Linear(3, 5), task="regression").detect([]).name == "regression"  # given: no batch needed


def test_bad_tasks_batch_functions_and_empty_data_are_named():
    with pytest.raises(DataError, match=r"task must be one of \('classification'.*got 'ranking'"):
        Adapter(nn.Linear(2, 2), task="ranking")
    with pytest.raises(DataError, match=r"batch_fn must be a callable batch -> \(inputs, target\), got int"):
        Adapter(nn.Linear(2, 2), batch_fn=3)
    ad = Adapter(nn.Linear(2, 2))
    for fn in (ad.example, ad.detect, lambda d: ad.rows(d, 4)):
        with pytest.raises(DataError, match=r"yielded no batches.*Accepted forms"):
            fn([])


@pytest.mark.parametrize("n", [1, 3, 5, 7, 12])
def test_rows_are_exactly_n_samples_in_order_repeating_a_short_dataset(n):
    data = [(torch.arange(3.0)[:, None] + 10 * i, torch.zeros(3, dtype=torch.long)) for i in range(2)]  # 6 samples
    rows = Adapter(nn.Linear(1, 2)).rows(data, n)
    order = torch.tensor([0.0, 1, 2, 10, 11, 12])
    assert torch.equal(rows[:, 0], order.repeat(2)[:n])
    assert torch.equal(Adapter(nn.Linear(1, 2)).example(data, 2)[:, 0], order[:2])


def test_the_example_and_batches_follow_the_model_dtype():
    model = nn.Linear(2, 2).double()
    x = Adapter(model).example([(torch.randn(3, 2), torch.zeros(3, dtype=torch.long))])
    assert x.dtype == torch.float64 and x.shape == (2, 2)


def test_causal_lm_targets_are_the_ids_with_padding_ignored():
    ad = Adapter(TokenModel())
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    task = ad.detect([{"input_ids": ids, "attention_mask": mask}])
    assert torch.equal(
        ad.target(task, {"input_ids": ids, "attention_mask": mask}, None), torch.tensor([[1, 2, 3], [IGNORE, 5, 6]])
    )
    labels = torch.ones(2, 3, dtype=torch.long)
    assert ad.target(task, {"input_ids": ids}, labels) is labels
    with pytest.raises(DataError, match="task 'classification' needs labels in every batch"):
        ad.target(Adapter(nn.Linear(2, 2), task="classification").task, torch.zeros(1, 2), None)


def test_seq2seq_decoder_inputs_are_the_labels_shifted_right():
    model = nn.Module()
    model.config = SimpleNamespace(decoder_start_token_id=9, pad_token_id=0)
    ad = Adapter(model, task="seq2seq")
    y = torch.tensor([[5, 6, IGNORE], [7, IGNORE, IGNORE]])
    x, _ = ad.split({"input_ids": torch.ones(2, 4, dtype=torch.long), "labels": y})
    assert torch.equal(x["decoder_input_ids"], torch.tensor([[9, 5, 6], [9, 7, 0]]))  # -100 becomes padding
    given = torch.zeros(2, 3, dtype=torch.long)
    x, _ = ad.split({"input_ids": torch.ones(2, 4, dtype=torch.long), "decoder_input_ids": given, "labels": y})
    assert x["decoder_input_ids"] is given  # decoder inputs in the batch are kept
    model.prepare_decoder_input_ids_from_labels = lambda labels: labels + 100  # the model's own way wins
    x, _ = ad.split({"input_ids": torch.ones(2, 4, dtype=torch.long), "labels": y})
    assert torch.equal(x["decoder_input_ids"], y + 100)
    bare = Adapter(nn.Module(), task="seq2seq")
    with pytest.raises(DataError, match=r"decoder_input_ids.*decoder_start_token_id"):
        bare.split({"input_ids": torch.ones(1, 2, dtype=torch.long), "labels": y[:1]})


def test_the_accumulator_measures_the_task_metrics_and_refuses_what_it_cannot():
    ad = Adapter(TokenModel())
    ids = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(0))
    acc = ad.accumulator()
    with torch.no_grad():
        acc.add(ad.call({"input_ids": ids}), {"input_ids": ids}, None)
    res = acc.result(None)
    assert res["task"] == "causal-lm" and res["tokens"] == 2 * 4 and res["n"] == 2
    assert res["metric_name"] == "perplexity" and res["perplexity"] == pytest.approx(
        torch.tensor(res["loss"]).exp().item()
    )
    with pytest.raises(
        DataError, match=r"metric 'f1' is not measured for task 'causal-lm'; its metrics are \('perplexity'"
    ):
        acc.result("f1")
    empty = Adapter(nn.Linear(2, 2)).accumulator()
    with pytest.raises(DataError, match="yielded no samples"):
        empty.result(None)
    ignored = ad.accumulator()
    all_ignored = torch.full((1, 5), IGNORE)
    with torch.no_grad():
        ignored.add(ad.call({"input_ids": ids[:1]}), {"input_ids": ids[:1]}, all_ignored)
    with pytest.raises(DataError, match=r"every target of the data is ignored \(-100\)"):
        ignored.result(None)
