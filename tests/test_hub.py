"""Hub upload up to the network call: which files would go, what the model card says, `--dry-run`.

Only the calls that would reach the network are replaced; `push_folder` and `HfApi.upload_folder` run for real on a
real folder written by the training pipeline's own `save_final_folder`."""

import json
import shutil

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, RepoUrl, hf_api
from huggingface_hub.utils import filter_repo_objects

import hyenarec_hf  # noqa: F401  (registers the Auto classes)
from hyenarec_hf import HyenaRecConfig, HyenaRecForNextItemPrediction
from hyenarec_hf.cli import main
from hyenarec_hf.hub import IGNORE_PATTERNS, check_folder, push_folder
from hyenarec_hf.model_card import GENERATED_MARKER
from hyenarec_hf.training import save_final_folder

REPO = "someone/hyenarec-ml1m-test"
TEST_METRICS = {
    "hr@10_full": 0.2718,
    "ndcg@10_full": 0.1414,
    "mrr@10_full": 0.1066,
    "hr@10_full_incl_seen": 0.2601,
    "ndcg@10_full_incl_seen": 0.1333,
    "hr@10_sampled100": 0.8123,
    "ndcg@10_sampled100": 0.5678,
    "num_users": 6040,
}
UPLOADED = {
    "README.md",
    "config.json",
    "configuration_hyenarec.py",
    "model.safetensors",
    "modeling_hyenarec.py",
    "next_item.py",
    "results.json",
    "training_curve.png",
}


@pytest.fixture
def folder(tmp_path):
    """A finished run's folder, plus the Trainer's checkpoints and logs that must stay behind."""
    torch.manual_seed(0)
    config = HyenaRecConfig(
        num_items=20,
        hidden_size=8,
        num_hidden_layers=1,
        intermediate_size=16,
        max_position_embeddings=10,
        legendre_order=4,
        item_ids=[str(i) for i in range(1, 21)],
    )
    out = tmp_path / "run"
    out.mkdir()
    results = {
        "model_type": "hyenarec",
        "test": TEST_METRICS,
        "data": {"source": "../shared/data/ml-1m/ml-1m.txt.gz", "num_train_users": 6040},
        "settings": {"batch_size": 128, "learning_rate": 0.001, "max_length": 10, "seed": 42},
        "epochs_run": 3.0,
        "train_seconds": 60.0,
        "log_history": [{"loss": 3.0, "step": 1}, {"eval_ndcg@10_full": 0.1, "epoch": 1.0}],
    }
    save_final_folder(HyenaRecForNextItemPrediction(config), results, out)
    checkpoint = out / "checkpoints" / "checkpoint-12"
    checkpoint.mkdir(parents=True)
    shutil.copy(out / "model.safetensors", checkpoint / "model.safetensors")
    (checkpoint / "optimizer.pt").write_bytes(b"not uploaded")
    (out / "runs").mkdir()
    (out / "runs" / "events.out.tfevents").write_bytes(b"log")
    return out


@pytest.fixture
def no_network(monkeypatch):
    """Record the Hub calls instead of making them; anything else that would reach the network fails the test."""
    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = dict(repo_id=repo_id, **kwargs)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_commit(self, repo_id, operations, **kwargs):
        calls["create_commit"] = dict(repo_id=repo_id, paths=sorted(op.path_in_repo for op in operations), **kwargs)
        return None

    def refuse(*args, **kwargs):
        raise AssertionError("a network call was attempted")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    # upload_folder asks the Hub to validate README.md's YAML, and streams through Xet when installed: both are
    # network steps (the card's YAML is checked locally below, with ModelCard.load).
    monkeypatch.setattr(HfApi, "_validate_yaml", lambda self, *args, **kwargs: None)
    monkeypatch.setattr(hf_api, "is_xet_available", lambda: False)
    monkeypatch.setattr(hf_api, "get_session", refuse, raising=False)
    return calls


def test_push_uploads_the_run_folder_without_checkpoints(folder, no_network, monkeypatch):
    recorded = {}
    real_upload_folder = HfApi.upload_folder

    def upload_folder(self, **kwargs):
        recorded.update(kwargs)
        return real_upload_folder(self, **kwargs)  # the real function, down to the commit

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    patterns_before = list(IGNORE_PATTERNS)

    url = push_folder(folder, REPO, private=True)

    assert url == f"https://huggingface.co/{REPO}"
    assert no_network["create_repo"]["repo_id"] == REPO and no_network["create_repo"]["private"] is True
    assert recorded["folder_path"] == str(folder) and recorded["repo_id"] == REPO
    assert "checkpoints/*" in recorded["ignore_patterns"]
    committed = no_network["create_commit"]["paths"]
    assert set(committed) == UPLOADED
    assert not any(path.startswith(("checkpoints/", "runs/")) for path in committed)
    # the Hub client's own filter, applied to every file in the folder, agrees with check_folder
    every_file = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert sorted(filter_repo_objects(every_file, ignore_patterns=recorded["ignore_patterns"])) == committed
    assert check_folder(folder) == committed
    assert IGNORE_PATTERNS == patterns_before  # upload_folder extends the list it is given: ours stays intact


def test_model_card_yaml_has_model_index_with_this_runs_numbers(folder, no_network):
    push_folder(folder, REPO)
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transformers" and card.data.model_name == REPO
    full = [r for r in card.data.eval_results if r.metric_name.startswith("NDCG@10 (full")]
    assert len(full) == 1 and full[0].metric_value == TEST_METRICS["ndcg@10_full"]
    assert full[0].dataset_name == "MovieLens-1M" and "leave-one-out" in full[0].dataset_split
    assert "seen items excluded" in full[0].metric_config
    sampled = [r for r in card.data.eval_results if r.metric_name.startswith("NDCG@10 (sampled")]
    assert sampled[0].metric_value == TEST_METRICS["ndcg@10_sampled100"] and "100" in sampled[0].metric_config
    assert {r.metric_value for r in card.data.eval_results} >= {0.2718, 0.1414, 0.1066, 0.8123}
    text = card.text
    assert f'AutoModel.from_pretrained("{REPO}")' in text and "trust_remote_code=True" in text
    assert "grouplens" in text.lower() and "redistributed" in text and "2603.25027" in text


def test_dry_run_checks_and_lists_without_writing_or_uploading(folder, no_network, capsys):
    card_before = (folder / "README.md").read_text()
    assert main(["push", str(folder), REPO, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: 8 files" in out and "checkpoints" not in out and "model.safetensors" in out
    assert not no_network  # neither create_repo nor a commit
    assert (folder / "README.md").read_text() == card_before


def test_a_hand_written_card_is_uploaded_as_it_is(folder, no_network):
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# My own card\n")
    push_folder(folder, REPO)
    assert (folder / "README.md").read_text().endswith("# My own card\n")
    assert GENERATED_MARKER not in (folder / "README.md").read_text()
    assert "README.md" in no_network["create_commit"]["paths"]


def test_incomplete_or_unsafe_folders_are_refused(folder):
    (folder / "ratings.dat").write_text("1::1::5::0\n")
    with pytest.raises(ValueError, match="data files.*ratings.dat.*redistribution"):
        check_folder(folder)
    (folder / "ratings.dat").unlink()
    (folder / "scorer.pt2").write_bytes(b"x")
    with pytest.raises(ValueError, match="pickle-based files.*scorer.pt2"):
        check_folder(folder)
    (folder / "scorer.pt2").unlink()
    (folder / "next_item.py").unlink()
    with pytest.raises(ValueError, match="lacks next_item.py, which modeling_hyenarec.py imports"):
        check_folder(folder)
    config = json.loads((folder / "config.json").read_text())
    assert any("modeling_hyenarec" in ref for ref in config["auto_map"].values())
    (folder / "modeling_hyenarec.py").unlink()
    with pytest.raises(ValueError, match="lacks modeling_hyenarec.py"):
        check_folder(folder)
    (folder / "model.safetensors").unlink()
    assert main(["push", str(folder), REPO, "--dry-run"]) == 2
