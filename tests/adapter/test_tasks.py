"""adapter/tasks.py: each task's loss equals its formula (next-token shift for causal LMs, -100 ignored for token
tasks, squared error per sample for regression), hits skip ignored targets, bad labels are errors that say what to
do, and Hugging Face class names give the task."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from workbench.adapter import IGNORE, TASKS, check_labels, task_of_model
from workbench.errors import DataError


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["causal-lm", "masked-lm", "seq2seq", "token-classification"]), st.integers(0, 2**16))
def test_token_losses_are_the_cross_entropy_of_the_counted_tokens(name, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 6, 5, generator=g)
    target = torch.randint(0, 5, (2, 6), generator=g)
    target[torch.rand(2, 6, generator=g) < 0.3] = IGNORE
    task = TASKS[name]
    total, count = task.loss_sum(logits, target)
    z, t = (logits[:, :-1], target[:, 1:]) if task.shift else (logits, target)  # causal: predict the next token
    keep = t != IGNORE
    assert count == int(keep.sum())
    if count:
        torch.testing.assert_close(total / count, F.cross_entropy(z[keep], t[keep]))
    unchecked, n_all = task.loss_sum(logits, target, check=False)  # under vmap: same loss, every position counted
    torch.testing.assert_close(unchecked, total)
    assert n_all == t.numel()
    got_t, hit = task.hits(logits, target)
    assert torch.equal(got_t, t[keep]) and torch.equal(hit, z.argmax(-1)[keep] == t[keep])


def test_classification_and_regression_losses():
    logits, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    total, n = TASKS["classification"].loss_sum(logits, y)
    assert n == 4
    torch.testing.assert_close(total, F.cross_entropy(logits, y, reduction="sum"))
    out, t = torch.randn(4, 1), torch.randn(4)  # (n, 1) outputs against (n,) targets: one value per sample
    total, n = TASKS["regression"].loss_sum(out, t)
    assert n == 4
    torch.testing.assert_close(total, ((out.squeeze(1) - t) ** 2).sum())
    out, t = torch.randn(3, 2), torch.randn(3, 2)  # several outputs: the mean per sample, summed over samples
    torch.testing.assert_close(TASKS["regression"].loss_sum(out, t)[0], ((out - t) ** 2).mean(1).sum())


def test_token_tasks_need_token_shaped_logits_and_say_so():
    with pytest.raises(DataError, match=r"task 'causal-lm' needs \(batch, tokens, vocabulary\).*\(4, 3\).*task="):
        TASKS["causal-lm"].loss_sum(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


def test_labels_must_index_the_classes():
    check_labels(torch.tensor([0, 2]), 3)
    check_labels(torch.tensor([IGNORE, 1]), 3, ignore=True)
    check_labels(torch.full((2,), IGNORE), 3, ignore=True)  # nothing counted: nothing to check
    with pytest.raises(DataError, match=r"class labels must be integers, got torch\.float32.*task='regression'"):
        check_labels(torch.tensor([0.0, 1.0]), 3)
    with pytest.raises(
        DataError, match=r"class label 3 but the model outputs 3 classes \(labels must be in \[0, 2\]\)"
    ):
        check_labels(torch.tensor([0, 3]), 3)
    with pytest.raises(DataError, match=r"class label -100 .*\[0, 2\]\)"):
        check_labels(torch.tensor([IGNORE, 1]), 3)  # -100 is a label unless the task ignores it
    with pytest.raises(DataError, match=r"class label 5 .*or -100 to ignore"):
        check_labels(torch.tensor([IGNORE, 5]), 3, ignore=True)


@pytest.mark.parametrize(
    ("cls", "config", "task"),
    [
        ("LlamaForCausalLM", None, "causal-lm"),
        ("GPT2LMHeadModel", None, "causal-lm"),
        ("BertForMaskedLM", None, "masked-lm"),
        ("T5ForConditionalGeneration", None, "seq2seq"),
        ("BertForTokenClassification", None, "token-classification"),
        ("BertForSequenceClassification", {"num_labels": 3}, "classification"),
        ("BertForSequenceClassification", {"num_labels": 1}, "regression"),
        ("BertForSequenceClassification", {"num_labels": 3, "problem_type": "regression"}, "regression"),
        ("ViTForImageClassification", None, "classification"),
        ("Sequential", None, None),
    ],
)
def test_the_task_a_hugging_face_class_names(cls, config, task):
    model = type(cls, (nn.Module,), {})()
    if config is not None:
        model.config = SimpleNamespace(**config)
    assert task_of_model(model) == task
