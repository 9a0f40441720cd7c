"""The mask machinery on a CUDA model: selection equals the CPU one, the store's fast ops fall back to torch's,
undo/redo are bitwise. Skipped without a GPU; run with ``pytest -m cuda`` on one."""

import copy

import pytest
import torch
from conftest import assert_bitwise, snapshot
from torch import nn

import workbench as wb
import workbench.masks.fastops as F
from workbench.masks.topk import lowest_k

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _stack() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(300, 500), nn.ReLU(), nn.Linear(500, 200), nn.ReLU(), nn.Linear(200, 10)).eval()


def test_lowest_k_on_cuda_equals_the_cpu_result():
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(300, 200, generator=g), torch.randn(50_000, generator=g)]
    ts[0][:3] = float("-inf")
    k = 40_000
    cpu = lowest_k([lambda t=t: t for t in ts], k, sample=1024)
    gpu = lowest_k([lambda t=t: t.cuda() for t in ts], k, sample=1024)
    assert all(m.is_cuda for m in gpu)
    assert all(torch.equal(a, b.cpu()) for a, b in zip(cpu, gpu))


def test_global_plan_on_a_cuda_model_equals_cpu_and_undo_is_bitwise():
    cpu = _stack()
    gpu = copy.deepcopy(cpu).cuda()
    plan = wb.Plan.global_(0.7)
    a, b = wb.Workbench(cpu), wb.Workbench(gpu)
    a.apply(plan, evaluate=False)
    before = snapshot(gpu)
    b.apply(plan, evaluate=False)
    for (n, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert torch.equal(p, q.cpu()), n
    assert b.report(evaluate=False).sparsity == a.report(evaluate=False).sparsity
    b.undo()
    assert_bitwise(gpu, before)
    b.redo()
    for (n, p), (_, q) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert torch.equal(p, q.cpu()), n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fast_ops_on_cuda_equal_torch(dtype):
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    g = torch.Generator(device="cuda").manual_seed(0)
    t = torch.randn(1000, 300, device="cuda", generator=g).to(dtype)
    t[0, :5] = torch.tensor([0.0, -0.0, float("nan"), float("inf"), -1.0], device="cuda").to(dtype)
    mask = torch.rand(t.shape, device="cuda", generator=g) < 0.5
    assert torch.equal(F.compress(t, mask).view(bits), t[mask].view(bits))
    want = t.clone().masked_fill_(mask, 0)
    assert torch.equal(F.zero_(t.clone(), mask).view(bits), want.view(bits))
    assert F.count_nonzero(want) == int(torch.count_nonzero(want))
    assert not F.all_finite(t) and F.all_finite(torch.ones(10, device="cuda", dtype=dtype))
