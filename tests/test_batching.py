"""How training batches are drawn (`TrainSettings.batching`), checked through real Trainer runs.

"balanced" (the default) must give the optimizer step of "random": the same histories and the same loss (the mean
over all the step's labelled positions), only split into length-balanced micro-batches with less padding.
"length_grouped" is the older, cheaper order that trains worse (`benchmarks/accuracy_batching.md`); its sampler is
the stock Trainer's, unchanged."""

import pytest
import torch
from tiny_data import tiny_model, train_and_validation  # tests/tiny_data.py

from hyenarec_hf.training import TrainSettings, build_trainer

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NUM_ITEMS, LENGTH = 60, 16


def histories(n: int = 48, seed: int = 0) -> list[list[int]]:
    """Histories of 4 to 18 items (2 held out for validation and test), so lengths differ a lot within a batch."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, LENGTH + 3, (n,), generator=g).tolist()
    return [torch.randint(1, NUM_ITEMS + 1, (k,), generator=g).tolist() for k in lengths]


def trainer_for(tmp_path, batching: str, batch_size: int, seed: int = 0, epochs: int = 1, **extra):
    settings = TrainSettings(
        max_length=LENGTH, epochs=epochs, batch_size=batch_size, eval_batch_size=64, learning_rate=0.5,
        num_sampled=0, seed=seed, batching=batching, patience=epochs, logging_steps=1, extra_args=extra,
    )  # fmt: skip
    model = tiny_model("hyenarec", NUM_ITEMS, LENGTH)  # no dropout: two runs see the same numbers
    return build_trainer(model, train_and_validation(histories()), tmp_path / batching, settings)


def epoch_batches(trainer) -> list[list[int]]:
    """The dataset rows of each (micro-)batch of the first epoch, in order, as the Trainer's dataloader draws them."""
    return [list(batch) for batch in trainer.get_train_dataloader().batch_sampler]


def test_balanced_steps_take_batch_size_random_histories_in_length_balanced_micro_batches(tmp_path):
    trainer = trainer_for(tmp_path, "balanced", batch_size=16)
    micro = epoch_batches(trainer)
    assert len(micro) == 12  # 48 histories: 3 steps of 4 micro-batches
    steps = [sum(micro[i : i + 4], []) for i in range(0, 12, 4)]
    assert all(len(step) == len(set(step)) == 16 for step in steps)
    assert sorted(sum(steps, [])) == list(range(48))  # every history once an epoch
    lengths = [len(r) for r in trainer.train_dataset["input_ids"]]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in micro)
    padded_as_steps = sum(len(s) * max(lengths[i] for i in s) for s in steps)
    assert padded < padded_as_steps  # the point of the micro-batches: less padding than one batch a step
    # the run's seed, not the stock sampler's fixed one, draws the batches
    assert epoch_batches(trainer_for(tmp_path / "again", "balanced", batch_size=16)) == micro
    assert epoch_batches(trainer_for(tmp_path / "other", "balanced", batch_size=16, seed=1)) != micro


def test_a_balanced_step_is_the_step_of_one_batch_of_the_same_histories(tmp_path):
    """One optimizer step over all 48 histories (SGD, so the update is the gradient itself): 4 accumulated
    micro-batches and one padded batch give the same weights and the same logged loss."""
    weights, losses = {}, {}
    for batching in ("balanced", "random"):
        trainer = trainer_for(tmp_path, batching, batch_size=48, optim="sgd")
        trainer.train()
        assert trainer.state.global_step == 1
        weights[batching] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        losses[batching] = next(log["loss"] for log in trainer.state.log_history if "loss" in log)
    start = tiny_model("hyenarec", NUM_ITEMS, LENGTH).state_dict()
    moved = [k for k in start if not torch.equal(start[k], weights["random"][k])]
    assert moved  # the step did change the weights
    for name in weights["random"]:
        torch.testing.assert_close(weights["balanced"][name], weights["random"][name], rtol=1e-4, atol=1e-6)
    assert losses["balanced"] == pytest.approx(losses["random"], rel=1e-4)


def test_the_cli_takes_a_batching_and_reads_random_batches_as_random_only():
    from hyenarec_hf.cli import _batching, build_parser

    def batching(*flags: str) -> str:
        return _batching(build_parser().parse_args(["train", "--output-dir", "x", *flags]))

    assert batching() == "balanced"
    assert batching("--batching", "length_grouped") == "length_grouped"
    assert batching("--random-batches") == batching("--batching", "random") == "random"
    with pytest.raises(SystemExit, match="--random-batches means --batching random"):
        batching("--random-batches", "--batching", "balanced")
