"""End to end on a slice of real MovieLens-1M: the CLI trains with the stock Trainer, evaluates with full ranking,
writes a Hub-ready folder, reloads it through AutoModel and recommends; the model must beat most-popular."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModel

import hyenarec_hf  # noqa: F401
from hyenarec_hf.cli import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ML1M = DATA / "ml-1m" / "ml-1m.txt.gz"

pytestmark = pytest.mark.skipif(not ML1M.is_file(), reason=f"{ML1M} is absent (../shared/data is not beside the repo)")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "hyenarec-ml1m-slice"
    code = main(
        [
            "train",
            "--data-file",
            str(ML1M),
            "--output-dir",
            str(out),
            "--max-users",
            "800",
            "--max-length",
            "50",
            "--epochs",
            "6",
            "--batch-size",
            "64",
            "--lr",
            "3e-3",
            "--num-sampled",
            "100",
            "--set",
            "hidden_size=32",
            "--set",
            "intermediate_size=64",
            "--set",
            "legendre_order=8",
            "--set",
            "hidden_dropout_prob=0.1",
        ]
    )
    assert code == 0
    return out


def test_training_writes_a_hub_ready_folder(trained):
    names = {p.name for p in trained.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "modeling_hyenarec.py",
        "configuration_hyenarec.py",
        "next_item.py",
        "results.json",
        "training_curve.png",
        "README.md",
    } <= names
    assert not (trained / ".staging").exists()
    card = (trained / "README.md").read_text()
    results = json.loads((trained / "results.json").read_text())
    # the card's numbers are this run's own
    assert f"{results['test']['ndcg@10_full']:.4f}" in card
    # the CPU that the run's times come from
    from hyenarec_hf.training import cpu_has_native_bf16, cpu_model_name

    assert results["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert results["environment"]["cpu_bf16"] == cpu_has_native_bf16()
    assert results["environment"]["cpu_model"] == cpu_model_name()
    assert "MovieLens" in card and "grouplens" in card.lower()
    assert (trained / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_loss_falls_and_model_beats_most_popular(trained):
    from datasets import DatasetDict

    from hyenarec_hf.data import build_splits, load_interactions
    from hyenarec_hf.popularity import MostPopular

    results = json.loads((trained / "results.json").read_text())
    losses = [h["loss"] for h in results["log_history"] if "loss" in h]
    assert len(losses) >= 3 and losses[-1] < losses[0] - 0.5
    splits, vocab = build_splits(load_interactions(ML1M))
    splits = DatasetDict({k: v.select(range(800)) for k, v in splits.items()})
    popular = MostPopular(num_items=len(vocab)).fit(splits["train"]).evaluate(splits["test"])
    assert results["test"]["num_users"] == 800
    assert results["test"]["ndcg@10_full"] > popular["ndcg@10_full"]
    assert results["test"]["hr@10_full"] > popular["hr@10_full"]


def test_reloaded_model_recommends_raw_ids_and_matches_saved_metrics(trained):
    from datasets import DatasetDict

    from hyenarec_hf.data import ItemVocab, build_splits, load_interactions
    from hyenarec_hf.metrics import evaluate_ranking

    model = AutoModel.from_pretrained(trained).eval()
    vocab = ItemVocab(model.config.item_ids)
    splits, _ = build_splits(load_interactions(ML1M), vocab=vocab)
    test = DatasetDict({k: v.select(range(800)) for k, v in splits.items()})["test"]
    metrics = evaluate_ranking(model, test, max_length=50, num_sampled=100, seed=42, show_progress=False)
    saved = json.loads((trained / "results.json").read_text())["test"]
    for key in ("ndcg@10_full", "hr@10_full", "mrr@10_full_incl_seen", "ndcg@10_sampled100"):
        assert metrics[key] == pytest.approx(saved[key], abs=1e-6), key
    history = vocab.decode(test[0]["input_ids"])
    recs = model.recommend(history, k=10)
    assert len(recs) == 10 and len(set(recs)) == 10
    assert set(recs) <= set(model.config.item_ids) and not set(recs) & set(history)
    # the same answer as ranking the scores by hand
    ids = torch.tensor([vocab.encode(history[-50:])])
    scores = model.score_histories(ids)[0]
    scores[vocab.encode(history)] = float("-inf")
    scores[0] = float("-inf")
    assert vocab.decode(scores.topk(10).indices.tolist()) == recs


def test_cli_recommend_and_evaluate(trained, capsys, tmp_path):
    code = main(["recommend", str(trained), "--history", "1 2 3", "--k", "5"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("(score") == 5
    code = main(["evaluate", str(trained), "--data-file", str(ML1M), "--output", str(tmp_path / "m.json")])
    assert code == 0
    metrics = json.loads((tmp_path / "m.json").read_text())["test"]
    assert metrics["num_users"] == 6040 and 0 < metrics["ndcg@10_full"] < 1
    assert main(["recommend", str(trained), "--history", "no-such-item"]) == 2
    assert "unknown to this model's vocabulary" in capsys.readouterr().err
