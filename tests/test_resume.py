"""Interrupted training and determinism: a `hyenarec train` process killed (SIGKILL) between two mid-epoch checkpoints
and resumed with `--resume` ends exactly where an uninterrupted run ends; the same seed gives the same weights and
metrics; a half-written checkpoint is set aside instead of resumed from; the time budget and `train_seconds` count
the time trained before the resume."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hyenarec_hf.checkpoint import CheckpointError, last_complete_checkpoint, load_model
from hyenarec_hf.data import build_splits, read_seq
from hyenarec_hf.training import TrainSettings, train_and_evaluate

NUM_USERS = 60
BATCH_SIZE = 8
SAVE_STEPS = 3
EPOCHS = 4
TINY = ["hidden_size=8", "intermediate_size=16", "legendre_order=4", "num_hidden_layers=1"]
METRICS = ("ndcg@10_full", "hr@10_full", "mrr@10_full_incl_seen", "ndcg@10_sampled100", "num_users")


def write_sequences(path: Path, num_users: int = NUM_USERS, num_items: int = 30, seed: int = 0) -> Path:
    """A seq-format file with learnable structure (items mostly follow each other in steps of 1 or 2)."""
    rng = random.Random(seed)
    lines = []
    for user in range(1, num_users + 1):
        start = rng.randrange(num_items)
        items = [(start + i * rng.choice((1, 2))) % num_items + 1 for i in range(rng.randint(5, 20))]
        lines.append(f"{user} " + " ".join(map(str, items)))
    path.write_text("\n".join(lines) + "\n")
    return path


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_sequences(tmp_path_factory.mktemp("data") / "seq.txt")


def train_command(data_file: Path, output_dir: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "hyenarec_hf.cli", "train", "--data-file", str(data_file)]
    command += ["--output-dir", str(output_dir), "--max-length", "16", "--epochs", str(EPOCHS)]
    command += ["--batch-size", str(BATCH_SIZE), "--eval-batch-size", "32", "--save-steps", str(SAVE_STEPS)]
    command += ["--seed", "7", "--lr", "3e-3"]
    for setting in TINY:
        command += ["--set", setting]
    return command + list(extra)


def _env() -> dict[str, str]:
    # one thread: the same arithmetic in every run, and polite on a shared machine
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}


def run_train(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_same_run(a: Path, b: Path) -> None:
    """Same metrics (exactly) and the same weights (bit for bit) in two final folders."""
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    for split in ("test", "validation_best"):
        for key in METRICS:
            assert ra[split][key] == rb[split][key], (split, key)
    assert ra["global_steps"] == rb["global_steps"]
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def test_killed_mid_epoch_and_resumed_reaches_the_uninterrupted_result(data_file, tmp_path):
    reference = tmp_path / "reference"
    run_train(train_command(data_file, reference))

    interrupted = tmp_path / "interrupted"
    checkpoints = interrupted / "checkpoints"
    process = subprocess.Popen(
        train_command(data_file, interrupted), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    # Kill as soon as the second checkpoint is completely written: the process is then training the steps between
    # two saves, in the middle of the first epoch. The train clock is written last (by TrainClock.on_save, after the
    # Trainer's own files), so wait for it too: a kill between the two would leave a checkpoint without its clock.
    deadline = time.monotonic() + 180
    second = checkpoints / f"checkpoint-{2 * SAVE_STEPS}"
    clock = second / "train_clock.json"
    while not ((second / "trainer_state.json").is_file() and clock.is_file() and clock.stat().st_size > 0):
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (interrupted / "config.json").exists(), "the run finished before it was killed"
    last = last_complete_checkpoint(checkpoints)
    steps_per_epoch = json.loads((reference / "results.json").read_text())["global_steps"] // EPOCHS
    step = int(last.name.split("-")[1])
    assert step >= 2 * SAVE_STEPS and step % steps_per_epoch != 0, "the kill was not mid-epoch"

    # Mark the checkpoint's history: the resumed run's history must continue it (a run that silently started over
    # would reach the same weights too, by determinism, but without the mark).
    state_file = last / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"].append({"resume_marker": step})
    state_file.write_text(json.dumps(state))
    # The checkpoint holds the seconds trained so far; mark them too: the resumed run's clock must start there.
    clock_file = last / "train_clock.json"
    assert json.loads(clock_file.read_text())["train_seconds"] > 0
    clock_file.write_text(json.dumps({"train_seconds": 5000.0}))
    over_budget = tmp_path / "over_budget"
    shutil.copytree(interrupted, over_budget)

    done = run_train(train_command(data_file, interrupted, "--resume"))
    assert f"resuming from {last}" in done.stderr
    assert_same_run(reference, interrupted)
    results = json.loads((interrupted / "results.json").read_text())
    log = results["log_history"]
    assert {"resume_marker": step} in log
    assert 5000.0 < results["train_seconds"] < 5000.0 + 240
    assert results["resumed"] == f"resumed from {last.name}; train_seconds adds the 5000.0 s trained before it"
    assert "resumed" not in json.loads((reference / "results.json").read_text())

    # A 60-minute budget with 5000 s already spent: the resumed run stops after the epoch it resumes in.
    run_train(train_command(data_file, over_budget, "--resume", "--max-train-minutes", "60"))
    stopped = json.loads((over_budget / "results.json").read_text())
    assert stopped["epochs_run"] == step // steps_per_epoch + 1 < EPOCHS
    eval_steps = [h["step"] for h in log if "eval_ndcg@10_full" in h]
    assert eval_steps == sorted(set(eval_steps)) and len(eval_steps) >= EPOCHS * steps_per_epoch // SAVE_STEPS


def test_resume_sets_aside_a_half_written_checkpoint_and_uses_the_previous_one(tmp_path, caplog):
    checkpoints = tmp_path / "checkpoints"
    good = checkpoints / "checkpoint-3"
    good.mkdir(parents=True)
    # a real, small model folder plus the file the Trainer writes last
    model = _tiny_model()
    model.save_pretrained(good)
    (good / "trainer_state.json").write_text("{}")
    # a later save killed half-way: weights truncated, no trainer_state.json
    partial = checkpoints / "checkpoint-6"
    shutil.copytree(good, partial)
    (partial / "trainer_state.json").unlink()
    weights = partial / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    # a checkpoint whose trainer state exists but whose weights were cut short
    torn = checkpoints / "checkpoint-9"
    shutil.copytree(good, torn)
    (torn / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes()[:-10])

    assert last_complete_checkpoint(checkpoints) == good  # read-only: nothing moved
    assert partial.is_dir() and torn.is_dir()
    assert last_complete_checkpoint(checkpoints, set_aside_incomplete=True) == good
    assert sorted(p.name for p in checkpoints.iterdir()) == [
        "checkpoint-3",
        "checkpoint-6.incomplete",
        "checkpoint-9.incomplete",
    ]
    assert "checkpoint-9 is incomplete" in caplog.text and "truncated" in caplog.text
    assert "no trainer_state.json (the save was interrupted)" in caplog.text


def test_cli_resume_without_a_complete_checkpoint_says_so(data_file, tmp_path):
    from hyenarec_hf.cli import main

    (tmp_path / "run" / "checkpoints" / "checkpoint-3").mkdir(parents=True)  # empty: killed before anything
    with pytest.raises(SystemExit, match=r"--resume: no complete checkpoint under .*checkpoints; start without"):
        main(["train", "--data-file", str(data_file), "--output-dir", str(tmp_path / "run"), "--resume"])


def test_cli_refuses_to_mix_a_new_run_with_an_earlier_runs_checkpoints(data_file, tmp_path):
    from hyenarec_hf.cli import main

    (tmp_path / "run" / "checkpoints" / "checkpoint-30").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"holds checkpoints of an earlier run: pass --resume to continue it"):
        main(["train", "--data-file", str(data_file), "--output-dir", str(tmp_path / "run")])


def test_same_seed_gives_identical_weights_and_metrics(data_file, tmp_path):
    splits, vocab = build_splits(read_seq(data_file))
    settings = TrainSettings(max_length=16, epochs=2, batch_size=BATCH_SIZE, eval_batch_size=32, seed=3, patience=5)
    model_kwargs = dict(hidden_size=8, intermediate_size=16, legendre_order=4, num_hidden_layers=1)
    runs = [tmp_path / "a", tmp_path / "b"]
    for out in runs:
        train_and_evaluate(splits, vocab, out, settings, model_kwargs=model_kwargs)
    assert_same_run(*runs)
    # ... and the seed matters (a check that the comparison can fail)
    other = tmp_path / "c"
    train_and_evaluate(
        splits, vocab, other, TrainSettings(**{**settings.__dict__, "seed": 4}), model_kwargs=model_kwargs
    )
    wa, wc = load_file(runs[0] / "model.safetensors"), load_file(other / "model.safetensors")
    assert any(not torch.equal(wa[n], wc[n]) for n in wa)


def test_folder_interrupted_before_config_json_is_rejected(data_file, tmp_path, monkeypatch):
    """save_final_folder moves config.json last (and removes an older one first); a crash before that leaves a folder
    the loader refuses, even when the folder held a complete model from an earlier run."""
    from hyenarec_hf import training

    model = _tiny_model()
    out = tmp_path / "final"
    out.mkdir()
    results = {"log_history": [], "test": {}, "validation_best": {}}
    training.save_final_folder(model, results, out)
    assert load_model(out).config.num_items == 12  # an earlier, complete save
    real_replace = os.replace

    def crash_on_config(src, dst):
        if Path(src).name == "config.json":
            raise KeyboardInterrupt("killed mid-save")
        real_replace(src, dst)

    monkeypatch.setattr(training.os, "replace", crash_on_config)
    with pytest.raises(KeyboardInterrupt):
        training.save_final_folder(model, results, out)
    assert (out / "model.safetensors").is_file() and not (out / "config.json").exists()
    with pytest.raises(CheckpointError, match=r"has no config.json, so it is not a complete model folder"):
        load_model(out)


def _tiny_model():
    from hyenarec_hf import HyenaRecConfig, HyenaRecForNextItemPrediction

    torch.manual_seed(0)
    config = HyenaRecConfig(
        num_items=12,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        legendre_order=4,
        max_position_embeddings=16,
        item_ids=[str(i) for i in range(1, 13)],
    )
    return HyenaRecForNextItemPrediction(config)
