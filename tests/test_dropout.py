"""The shared `Dropout` (faster CPU path): same distribution and gradients as `nn.Dropout`, identity in eval."""

import pytest
import torch

from hyenarec_hf.modeling.next_item import Dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keep_rate_and_scale(dtype):
    torch.manual_seed(0)
    p = 0.2
    x = torch.ones(400_000, dtype=dtype, requires_grad=True)
    y = Dropout(p).train()(x)
    kept = y != 0
    # 400k Bernoulli(0.8) draws: the std of the keep rate is 6e-4, so 3e-3 is a 5-sigma band; a bf16 uniform
    # (resolution 2^-8 near 0.2) or a wrong comparison would land outside it.
    assert abs(kept.float().mean().item() - (1 - p)) < 3e-3
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.to(dtype) / (1 - p))


def test_eval_and_edge_rates_are_plain_dropout():
    x = torch.randn(64, 8)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


def test_same_mask_for_same_seed():
    x = torch.randn(1000)
    torch.manual_seed(3)
    a = Dropout(0.3).train()(x)
    torch.manual_seed(3)
    b = Dropout(0.3).train()(x)
    assert torch.equal(a, b)
