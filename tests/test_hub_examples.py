"""Smoke tests of the user-facing scripts in hub_examples/: each runs as a user would run it (a subprocess from the
repository root), with tiny settings on a tiny interaction file, and nothing goes to the network."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "hub_examples"


def run(script: str, *args: str, tmp: Path) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp / "modules"), TQDM_DISABLE="1")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result.stdout


def write_pairs(path: Path, new_items: bool, seed: int) -> Path:
    """`user item` lines, each user's lines contiguous and in time order (the ML-1M file's format)."""
    rng = random.Random(seed)
    lines = []
    for user in range(1, 61):
        for step in range(rng.randint(5, 12)):
            item = rng.choice([101, 102]) if new_items and step % 2 else rng.randint(1, 30)
            lines.append(f"{user} {item}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("examples")
    data = write_pairs(tmp / "old.txt", new_items=False, seed=0)
    out = run(
        "train_ml1m.py",
        *("--data-file", data, "--output-dir", tmp / "run", "--max-users", 50, "--epochs", 1),
        *("--max-length", 16, "--hidden-size", 16),
        tmp=tmp,
    )
    assert "NDCG@10" in out
    return tmp


def test_train_example_writes_a_hub_ready_folder(trained):
    names = {p.name for p in (trained / "run").iterdir()}
    assert {"model.safetensors", "config.json", "next_item.py", "results.json", "README.md"} <= names
    assert json.loads((trained / "run" / "results.json").read_text())["test"]["num_users"] == 50


def test_load_and_recommend_example(trained):
    out = run("load_and_recommend.py", trained / "run", "--history", "1", "2", "3", "--k", "4", tmp=trained)
    assert "history: 1 2 3" in out and out.count("(score") == 4
    assert "user embeddings (3, 16), item embeddings (30, 16)" in out


def test_finetune_example_adds_new_items(trained):
    data = write_pairs(trained / "new.txt", new_items=True, seed=1)
    out = run(
        "finetune.py",
        *(trained / "run", "--data-file", data, "--output-dir", trained / "tuned", "--epochs", 1),
        tmp=trained,
    )
    assert "new items added to the vocabulary: 2" in out
    config = json.loads((trained / "tuned" / "config.json").read_text())
    assert config["num_items"] == 32 and sorted(config["item_ids"][-2:]) == ["101", "102"]


def test_push_example_dry_run(trained):
    out = run("push.py", trained / "run", "someone/hyenarec-test", "--dry-run", tmp=trained)
    assert "dry run: 8 files -> https://huggingface.co/someone/hyenarec-test" in out
    assert "model.safetensors" in out and "checkpoints" not in out
