"""`next_item_cross_entropy`, the default (`loss_type="ce"`) loss of every model: the value and gradients of
`F.cross_entropy`, with two logits-sized tensors at the backward's peak instead of three."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from modeling.next_item import mask_padding_item, next_item_cross_entropy


def reference(logits, labels, num_items_in_batch):
    flat = logits.reshape(-1, logits.shape[-1]).to(torch.promote_types(logits.dtype, torch.float32))
    if num_items_in_batch is None:
        return F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100)
    return F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, reduction="sum") / num_items_in_batch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("num_items_in_batch", [None, 57])
def test_full_softmax_loss_equals_f_cross_entropy_in_value_and_gradient(dtype, num_items_in_batch):
    num_items = 40
    generator = torch.Generator().manual_seed(0)
    scores = 3 * torch.randn(3, 11, num_items + 1, generator=generator)
    labels = torch.randint(1, num_items + 1, (3, 11), generator=generator)
    labels[0, :4] = -100  # ignored positions
    labels[2, -1] = -100
    got_logits = mask_padding_item(scores.to(dtype)).requires_grad_()
    want_logits = got_logits.detach().clone().requires_grad_()

    got = next_item_cross_entropy(got_logits, labels, num_items_in_batch)
    want = reference(want_logits, labels, num_items_in_batch)
    (2.5 * got).backward()  # an upstream gradient other than 1 must scale every row
    (2.5 * want).backward()

    assert got.dtype == want.dtype == torch.promote_types(dtype, torch.float32)
    assert got_logits.grad.dtype == dtype
    tolerance = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-7}
    torch.testing.assert_close(got, want, **tolerance)
    torch.testing.assert_close(got_logits.grad, want_logits.grad, **tolerance)
    assert got_logits.grad[0, :4].abs().max() == 0  # ignored positions get no gradient
    assert got_logits.grad[..., 0].abs().max() == 0  # nor does the padding item
    assert got_logits.grad[1].abs().max() > 0


def test_full_softmax_loss_over_no_labelled_position_is_nan_and_leaves_its_input_alone():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    before = logits.detach().clone()
    assert torch.isnan(next_item_cross_entropy(logits, torch.full((2, 3), -100)))
    next_item_cross_entropy(logits, torch.ones(2, 3, dtype=torch.long)).backward()
    assert torch.equal(logits.detach(), before)  # the logits a model returns are not overwritten by its loss


# Peak resident memory of one loss forward and backward over 8,192 x 4,097 float32 logits (134 MB), in a fresh
# process, with the logits dropped before the backward as the Trainer's `compute_loss` does; printed in units of
# the logits' size.
PEAK_SCRIPT = """
import sys
import torch
import torch.nn.functional as F
from modeling.next_item import mask_padding_item, next_item_cross_entropy

sys.path.insert(0, "benchmarks")
from scaling import peak_rss_bytes, reset_peak_rss, rss_bytes, trim_heap  # the memory probe's own RSS readers

torch.set_num_threads(1)
rows, items = 8192, 4097
hidden = torch.randn(rows, 32, requires_grad=True)
weight = (0.1 * torch.randn(items, 32)).requires_grad_()
labels = torch.randint(1, items, (rows,))
labels[:100] = -100
if sys.argv[1] == "torch":
    loss_fn = lambda logits, y: F.cross_entropy(logits, y, ignore_index=-100)
else:
    loss_fn = next_item_cross_entropy

def step(n):
    loss_fn(mask_padding_item(hidden[:n] @ weight.t()), labels[:n]).backward()

step(64)  # pages in every op's code and makes the gradient buffers
trim_heap()
baseline = rss_bytes()
assert reset_peak_rss(), "this kernel cannot reset VmHWM"
step(rows)
print((peak_rss_bytes() - baseline) / (rows * items * 4))
"""


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads and resets the peak RSS (Linux)")
def test_full_softmax_loss_holds_two_logits_sized_tensors_at_its_peak_where_f_cross_entropy_holds_three():
    root = Path(__file__).resolve().parents[1]

    def peak(loss: str) -> float:
        command = [sys.executable, "-c", PEAK_SCRIPT, loss]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True, cwd=root)
        return float(proc.stdout.split()[-1])

    torch_peak, ours = peak("torch"), peak("ours")
    assert torch_peak > 2.8  # the measurement sees F.cross_entropy's third tensor...
    assert ours < 2.2  # ...and ours does without it
