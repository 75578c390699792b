"""Several processes on CPU (`accelerate launch`, gloo): training runs and writes one complete folder, and evaluation
over 2 processes gives exactly the single-process metrics, with no user dropped or counted twice at an uneven tail.

Note: with accelerate 1.15, `accelerate launch --cpu --num_processes 2` starts ONE process (its CPU launcher spreads
over processes only through mpirun); `--multi_gpu --num_processes 2` on a machine without a visible GPU starts two
processes that train on CPU with gloo (`DistributedType.MULTI_CPU`), which is what these tests use.

This file is also the worker script that `accelerate launch` runs for the evaluation test (see `__main__`).
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

NUM_USERS = 61  # odd: the processes never get the same number of users
EPOCHS = 2
TRAIN_BATCH_SIZE = 8
EVAL_BATCH_SIZES = (4, 5, 64)  # 16 batches (partial tail), 13 (one process gets a whole padded batch), 1
LAUNCH = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
LAUNCH += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
TINY = ["hidden_size=8", "intermediate_size=16", "legendre_order=4", "num_hidden_layers=1"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TOKENIZERS_PARALLELISM": "false"}


def write_sequences(path: Path) -> Path:
    rng = random.Random(1)
    lines = []
    for user in range(1, NUM_USERS + 1):
        start = rng.randrange(30)
        items = [(start + i * rng.choice((1, 2))) % 30 + 1 for i in range(rng.randint(5, 20))]
        lines.append(f"{user} " + " ".join(map(str, items)))
    path.write_text("\n".join(lines) + "\n")
    return path


def evaluate_worker(model_dir: str, data_file: str, out_dir: str) -> None:
    """Run under `accelerate launch`: the Trainer's evaluation of a saved model on the test split, for each eval batch
    size; every process writes what it computed."""
    from hyenarec_hf.checkpoint import load_model
    from hyenarec_hf.cli import close_process_group
    from hyenarec_hf.collator import add_eval_index
    from hyenarec_hf.data import ItemVocab, build_splits, read_seq
    from hyenarec_hf.training import TrainSettings, build_trainer

    model = load_model(model_dir)
    splits, _ = build_splits(read_seq(data_file), vocab=ItemVocab(model.config.item_ids))
    results = {}
    for batch_size in EVAL_BATCH_SIZES:
        settings = TrainSettings(max_length=model.config.max_position_embeddings, eval_batch_size=batch_size, seed=0)
        trainer = build_trainer(model, splits, Path(out_dir) / "trainer", settings)
        metrics = trainer.evaluate(add_eval_index(splits["test"]), metric_key_prefix="test")
        results[batch_size] = {"world_size": trainer.args.world_size, "metrics": metrics}
    Path(out_dir, f"rank{trainer.args.process_index}.json").write_text(json.dumps(results))
    close_process_group()


if __name__ == "__main__" and sys.argv[1:2] == ["evaluate-worker"]:
    evaluate_worker(*sys.argv[2:5])
    sys.exit(0)

# ---------------------------------------------------------------------------------------------------------- tests
import pytest  # noqa: E402
import torch  # noqa: E402

from hyenarec_hf.checkpoint import load_model  # noqa: E402
from hyenarec_hf.data import ItemVocab, build_splits, read_seq  # noqa: E402
from hyenarec_hf.metrics import evaluate_ranking  # noqa: E402

pytestmark = pytest.mark.skipif(
    subprocess.run(["accelerate", "--help"], capture_output=True).returncode != 0, reason="no accelerate CLI"
)


def launch(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(LAUNCH + args, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    return write_sequences(tmp_path_factory.mktemp("data") / "seq.txt")


@pytest.fixture(scope="module")
def trained(data_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "two-processes"
    command = ["-m", "hyenarec_hf.cli", "train", "--data-file", str(data_file), "--output-dir", str(out)]
    command += ["--max-length", "16", "--epochs", str(EPOCHS), "--batch-size", str(TRAIN_BATCH_SIZE)]
    command += ["--eval-batch-size", "16", "--num-sampled", "7", "--seed", "0"]
    for setting in TINY:
        command += ["--set", setting]
    done = launch(command)
    (out.parent / "stdout.txt").write_text(done.stdout)
    return out


def reference_metrics(model_dir: Path, data_file: Path, num_sampled: int, seed: int) -> dict[str, float]:
    """Single process, no Trainer, every user in one batch."""
    torch.set_num_threads(1)
    model = load_model(model_dir)
    splits, _ = build_splits(read_seq(data_file), vocab=ItemVocab(model.config.item_ids))
    return evaluate_ranking(
        model,
        splits["test"],
        max_length=model.config.max_position_embeddings,
        batch_size=256,
        num_sampled=num_sampled,
        seed=seed,
        show_progress=False,
    )


def test_two_process_training_writes_one_complete_folder(trained, data_file):
    results = json.loads((trained / "results.json").read_text())
    splits, _ = build_splits(read_seq(data_file))
    # each process takes every other batch: half the optimizer steps of one process
    batches = math.ceil(len(splits["train"]) / TRAIN_BATCH_SIZE)
    assert results["global_steps"] == EPOCHS * math.ceil(batches / 2)
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "model.safetensors", "modeling_hyenarec.py", "next_item.py", "results.json"} <= names
    assert not (trained / ".staging").exists()
    # the test metrics computed by 2 processes during training equal a single-process evaluation of the saved model
    reference = reference_metrics(trained, data_file, num_sampled=7, seed=0)
    assert results["test"]["num_users"] == NUM_USERS
    for key, value in reference.items():
        assert results["test"][key] == value, key
    # both processes ran the command; the results table and the folder line are printed once, by the first
    stdout = (trained.parent / "stdout.txt").read_text()
    assert stdout.count("hyenarec on ") == 1 and stdout.count("Hub-ready folder: ") == 1, stdout


def test_two_process_evaluation_equals_single_process_at_every_uneven_tail(trained, data_file, tmp_path):
    launch([__file__, "evaluate-worker", str(trained), str(data_file), str(tmp_path)])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    reference = reference_metrics(trained, data_file, num_sampled=100, seed=0)
    assert reference["num_users"] == NUM_USERS
    for batch_size in map(str, EVAL_BATCH_SIZES):
        for rank in ranks:  # every process gets the same metrics: they drive early stopping on each of them
            assert rank[batch_size]["world_size"] == 2
            for key, value in reference.items():
                assert rank[batch_size]["metrics"][f"test_{key}"] == value, (batch_size, key)


def test_two_process_finetune_adds_new_items_and_prints_once(trained, data_file, tmp_path):
    # new events for the same users plus 5 items the trained model has never seen
    lines = data_file.read_text().split("\n")
    new_lines = [f"{line} {31 + i % 5}" for i, line in enumerate(filter(None, lines))]
    new_data = tmp_path / "new_events.txt"
    new_data.write_text("\n".join(new_lines) + "\n")
    out = tmp_path / "finetuned"
    command = ["-m", "hyenarec_hf.cli", "finetune", str(trained), "--data-file", str(new_data)]
    command += ["--output-dir", str(out), "--epochs", "1", "--batch-size", str(TRAIN_BATCH_SIZE), "--seed", "0"]
    done = launch(command)
    assert done.stdout.count("fine-tuned on ") == 1 and done.stdout.count("Hub-ready folder: ") == 1, done.stdout
    base = load_model(trained)
    model = load_model(out)
    assert model.config.num_items == base.config.num_items + 5
    assert not (out / ".staging").exists()
    results = json.loads((out / "results.json").read_text())
    assert results["data"]["new_items"] == 5 and results["test"]["num_users"] == NUM_USERS
