"""`loss_type="chunked_ce"`: the full-softmax cross-entropy scored a chunk of positions at a time.

It must give the loss and the gradients of `loss_type="ce"` (up to float rounding) for every model, in the Trainer
too, and never hold the `(positions, items)` logits in training.
"""

import pytest
import torch
from tiny_data import tiny_model as tiny  # tests/tiny_data.py
from tiny_data import train_and_validation
from torch.profiler import ProfilerActivity, profile
from transformers import set_seed

from hyenarec_hf.training import TrainSettings, build_trainer
from modeling.next_item import (
    LOSS_CHUNK_ELEMENTS,
    chunked_cross_entropy,
    mask_padding_item,
    next_item_cross_entropy,
)

MODEL_TYPES = ["hyenarec", "sasrec", "bert4rec", "gru4rec"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def items(num_items: int, *shape, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, num_items + 1, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("num_items_in_batch", [None, 57])
def test_chunked_loss_equals_the_full_softmax_in_value_and_every_gradient(with_bias, num_items_in_batch):
    num_items, hidden_size = 40, 8
    torch.manual_seed(0)
    hidden = torch.randn(3, 11, hidden_size, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(num_items + 1, hidden_size, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(num_items + 1, dtype=torch.float64, requires_grad=True) if with_bias else None
    labels = items(num_items, 3, 11)
    labels[0, :4] = -100  # ignored positions
    labels[2, -1] = -100

    full_logits = hidden @ weight.t() + (bias if with_bias else 0)
    full = next_item_cross_entropy(mask_padding_item(full_logits), labels, num_items_in_batch)
    expected = torch.autograd.grad(full, [hidden, weight] + ([bias] if with_bias else []))
    # 3 rows per chunk: the 27 labelled positions take 9 chunks
    chunked = chunked_cross_entropy(
        hidden, labels, weight, num_items_in_batch, item_bias=bias, chunk_elements=3 * (num_items + 1)
    )
    got = torch.autograd.grad(chunked, [hidden, weight] + ([bias] if with_bias else []))

    torch.testing.assert_close(chunked, full)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)
    assert got[1][0].abs().max() == 0  # the padding item gets no gradient
    assert got[0][0, :4].abs().max() == 0  # nor do ignored positions


def test_chunked_loss_under_bf16_autocast_stays_close_to_the_full_softmax():
    num_items = 300
    torch.manual_seed(0)
    hidden = torch.randn(2, 64, 32, requires_grad=True)
    weight = (0.1 * torch.randn(num_items + 1, 32)).requires_grad_()
    labels = items(num_items, 2, 64)
    results = []
    for use_chunks in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if use_chunks:
                loss = chunked_cross_entropy(hidden, labels, weight, chunk_elements=16 * (num_items + 1))
            else:
                loss = next_item_cross_entropy(mask_padding_item(hidden @ weight.t()), labels)
        results.append((loss, *torch.autograd.grad(loss, [hidden, weight])))
    for full, chunked in zip(*results):
        assert chunked.dtype == full.dtype
        torch.testing.assert_close(chunked, full, rtol=2e-2, atol=2e-3)


def test_chunked_loss_over_no_labelled_position_is_nan_like_the_full_softmax():
    hidden = torch.randn(1, 3, 4, requires_grad=True)
    weight = torch.randn(6, 4, requires_grad=True)
    labels = torch.full((1, 3), -100)
    assert torch.isnan(chunked_cross_entropy(hidden, labels, weight))
    assert torch.isnan(next_item_cross_entropy(mask_padding_item(hidden @ weight.t()), labels))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_model_trains_with_the_chunked_loss_exactly_as_with_the_full_softmax(model_type):
    num_items, length = 50, 10
    ids, labels = items(num_items, 4, length), items(num_items, 4, length, seed=2)
    ids[0, :3] = 0  # left padding
    labels[0, :3] = -100
    results = {}
    for loss_type in ("ce", "chunked_ce"):
        model = tiny(model_type, num_items, length, loss_type=loss_type).train()
        out = model(ids, labels=labels)
        out.loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results[loss_type] = (out, grads)
        # evaluation and serving still score every item
        model.eval()
        assert model(ids, labels=labels).logits.shape == (4, length, num_items + 1)
    (full, full_grads), (chunked, chunked_grads) = results["ce"], results["chunked_ce"]
    assert chunked.logits is None and full.logits is not None  # no logits in training
    torch.testing.assert_close(chunked.loss, full.loss)
    assert chunked_grads.keys() == full_grads.keys() and "model.item_embeddings.weight" in chunked_grads
    for name in full_grads:
        torch.testing.assert_close(chunked_grads[name], full_grads[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("model_type", ["hyenarec", "bert4rec"])
def test_trainer_run_with_the_chunked_loss_follows_the_full_softmax_run(tmp_path, model_type):
    """Real Trainer runs (dropout on, BERT4Rec's random masking): same seed, same losses and metrics, but the chunked
    run's training forwards get the labels and return no logits."""
    num_items, length = 120, 8
    histories = items(num_items, 48, length + 2, seed=5).tolist()
    settings = TrainSettings(
        max_length=length, epochs=2, batch_size=8, eval_batch_size=16, logging_steps=1, num_sampled=0, seed=0
    )
    runs = {}
    for loss_type in ("ce", "chunked_ce"):
        set_seed(0)
        model = tiny(model_type, num_items, length, loss_type=loss_type, hidden_dropout_prob=0.2)
        calls = []
        model.register_forward_hook(
            lambda m, args, kwargs, out, calls=calls: calls.append(
                (m.training, "labels" in kwargs, out.logits is not None)
            ),
            with_kwargs=True,
        )
        trainer = build_trainer(model, train_and_validation(histories), tmp_path / loss_type, settings)
        trainer.train()
        losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
        runs[loss_type] = (losses, trainer.evaluate(), {c for c in calls if c[0]})
    (full_losses, full_metrics, full_calls), (losses, metrics, calls) = runs["ce"], runs["chunked_ce"]
    assert full_calls == {(True, False, True)}  # stock path: labels taken out, full logits
    assert calls == {(True, True, False)}  # chunked: labels in, the model's own loss, no logits
    assert len(losses) == len(full_losses) == 12
    assert losses == pytest.approx(full_losses, rel=1e-4)
    for key in ("eval_loss", "eval_ndcg@10_full"):
        assert metrics[key] == pytest.approx(full_metrics[key], rel=1e-3, abs=1e-6)


def test_training_step_with_the_chunked_loss_never_allocates_the_full_logits():
    """At 4,000 positions x 5,001 items the logits are 80 MB; the chunked loss scores 32 MB at a time."""
    num_items, length, batch = 5000, 500, 8
    logits_bytes = batch * length * (num_items + 1) * 4
    assert logits_bytes > 2 * LOSS_CHUNK_ELEMENTS * 4
    ids, labels = items(num_items, batch, length), items(num_items, batch, length, seed=2)
    largest = {}
    for loss_type in ("ce", "chunked_ce"):
        model = tiny("hyenarec", num_items, length, loss_type=loss_type).train()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model(ids, labels=labels).loss.backward()
        largest[loss_type] = max(event.cpu_memory_usage for event in prof.events())
    assert largest["ce"] >= logits_bytes  # the profiler does see the full logits when they are built
    assert largest["chunked_ce"] <= LOSS_CHUNK_ELEMENTS * 4 * 1.05 < logits_bytes


def test_chunked_ce_model_trained_without_labels_says_the_full_logits_are_built(caplog):
    import logging

    logging.Logger.warning_once.cache_clear()  # transformers' warning_once: once per process and message
    model = tiny("sasrec", 30, 6, loss_type="chunked_ce").train()
    with caplog.at_level(logging.WARNING):
        out = model(items(30, 2, 5))  # what a stock Trainer with compute_loss_func does: labels taken out
    assert out.logits is not None
    assert "full (tokens, items) logits are built" in caplog.text and "NextItemTrainer" in caplog.text
    caplog.clear()
    logging.Logger.warning_once.cache_clear()
    with caplog.at_level(logging.WARNING):
        model(items(30, 2, 5), labels=items(30, 2, 5, seed=2))  # labels given: the chunked loss runs
        model.eval()(items(30, 2, 5))  # serving: nothing to say
    assert caplog.text == ""
