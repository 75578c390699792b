"""Growing the item vocabulary and fine-tuning a saved model on new interactions (new items included)."""

import json
import random

import pytest
import torch
from transformers import AutoModel

import hyenarec_hf  # noqa: F401  (registers the Auto classes)
from hyenarec_hf import (
    BERT4RecConfig,
    BERT4RecForNextItemPrediction,
    GRU4RecConfig,
    GRU4RecForNextItemPrediction,
    HyenaRecConfig,
    HyenaRecForNextItemPrediction,
    SASRecConfig,
    SASRecForNextItemPrediction,
)
from hyenarec_hf.cli import main
from hyenarec_hf.data import Interactions
from hyenarec_hf.finetune import extend_vocabulary, finetune
from hyenarec_hf.training import TrainSettings

NUM_ITEMS = 30
ITEM_IDS = [str(i) for i in range(1, NUM_ITEMS + 1)]
MODELS = {
    "hyenarec": (HyenaRecConfig, HyenaRecForNextItemPrediction, dict(intermediate_size=32, legendre_order=4)),
    "sasrec": (SASRecConfig, SASRecForNextItemPrediction, {}),
    "bert4rec": (BERT4RecConfig, BERT4RecForNextItemPrediction, {}),
    "gru4rec": (GRU4RecConfig, GRU4RecForNextItemPrediction, {}),
}


def tiny(model_type: str = "hyenarec", **overrides):
    config_class, model_class, extra = MODELS[model_type]
    values = dict(
        num_items=NUM_ITEMS,
        hidden_size=16,
        num_hidden_layers=1,
        max_position_embeddings=10,
        hidden_dropout_prob=0.0,
        item_ids=ITEM_IDS,
        **extra,
    )
    values.update(overrides)
    torch.manual_seed(0)
    return model_class(config_class(**values)).eval()


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_growing_keeps_every_learned_row_and_the_old_items_scores(model_type):
    model = tiny(model_type)
    old_table = model.get_input_embeddings().weight.detach().clone()
    histories = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 30]])
    old_scores = model.score_histories(histories)

    added = extend_vocabulary(model, ["5", "new-a", "new-b", "new-a"])

    assert added == ["new-a", "new-b"]  # known ids and repeats are ignored, order kept
    assert model.config.num_items == NUM_ITEMS + 2 and model.config.item_ids == [*ITEM_IDS, "new-a", "new-b"]
    table = model.get_input_embeddings().weight
    extra = 1 if model_type == "bert4rec" else 0
    assert table.shape == (NUM_ITEMS + 3 + extra, old_table.shape[1])
    assert torch.equal(table[: NUM_ITEMS + 1], old_table[: NUM_ITEMS + 1])
    assert model.get_input_embeddings().padding_idx == 0 and not table[0].any()
    new_scores = model.score_histories(histories)
    assert new_scores.shape[1] == NUM_ITEMS + 3
    torch.testing.assert_close(new_scores[:, : NUM_ITEMS + 1], old_scores, rtol=1e-5, atol=1e-6)
    assert model.recommend(["new-a", "3"], k=3)  # the new ids are part of the vocabulary
    assert extend_vocabulary(model, ["new-a", "1"]) == []


def test_bert4rec_mask_row_moves_to_the_new_end_and_the_output_bias_grows():
    model = tiny("bert4rec")
    with torch.no_grad():
        model.head.bias.copy_(torch.randn(NUM_ITEMS + 1))
    mask_row = model.get_input_embeddings().weight[NUM_ITEMS + 1].detach().clone()
    old_bias = model.head.bias.detach().clone()
    extend_vocabulary(model, ["x", "y", "z"])
    assert model.config.mask_token_id == NUM_ITEMS + 4
    assert torch.equal(model.get_input_embeddings().weight[NUM_ITEMS + 4], mask_row)
    assert model.head.bias.shape == (NUM_ITEMS + 4,)
    assert torch.equal(model.head.bias[: NUM_ITEMS + 1], old_bias) and not model.head.bias[NUM_ITEMS + 1 :].any()
    assert any(p is model.head.bias for p in model.parameters())  # a registered, trainable parameter


def test_new_rows_are_initialised_like_init_weights():
    model = tiny("hyenarec", initializer_range=0.05)
    extend_vocabulary(model, [f"n{i}" for i in range(4000)])
    new_rows = model.get_input_embeddings().weight[NUM_ITEMS + 1 :]
    assert new_rows.std().item() == pytest.approx(0.05, rel=0.05)
    assert abs(new_rows.mean().item()) < 0.005
    assert new_rows.requires_grad


def test_growing_needs_a_vocabulary():
    model = tiny(item_ids=None)
    with pytest.raises(ValueError, match="no saved vocabulary"):
        extend_vocabulary(model, ["a"])


def synthetic_interactions(num_users: int = 100, seed: int = 0) -> Interactions:
    """Histories where two new items follow old items most of the time."""
    rng = random.Random(seed)
    sequences = []
    for _ in range(num_users):
        seq = []
        for step in range(rng.randint(6, 12)):
            seq.append(rng.choice(["new-a", "new-b"]) if step % 2 else str(rng.randint(1, NUM_ITEMS)))
        sequences.append(seq)
    return Interactions(users=[f"u{i}" for i in range(num_users)], sequences=sequences, report={"source": "synthetic"})


QUICK = dict(max_length=10, batch_size=32, eval_batch_size=64, learning_rate=1e-2, patience=5, num_sampled=0)


def test_finetune_learns_new_items_and_saves_the_grown_vocabulary(tmp_path):
    tiny().save_pretrained(tmp_path / "base")
    history = ["4", "new-a", "17"]  # ends on an old item: a new item should come next
    before = AutoModel.from_pretrained(tmp_path / "base")
    with pytest.raises(ValueError, match="unknown"):
        before.recommend(history)

    results = finetune(
        tmp_path / "base", synthetic_interactions(), tmp_path / "tuned", TrainSettings(epochs=4, **QUICK)
    )

    assert results["data"]["new_items"] == 2 and results["data"]["finetuned_from"] == str(tmp_path / "base")
    reloaded = AutoModel.from_pretrained(tmp_path / "tuned")
    assert reloaded.config.num_items == NUM_ITEMS + 2
    assert reloaded.config.item_ids[:NUM_ITEMS] == ITEM_IDS  # old indices never move
    assert sorted(reloaded.config.item_ids[NUM_ITEMS:]) == ["new-a", "new-b"]
    assert reloaded.get_input_embeddings().weight.shape[0] == NUM_ITEMS + 3
    assert set(reloaded.recommend(history, k=2, exclude_seen=False)) == {"new-a", "new-b"}
    assert "new-b" in reloaded.recommend(history, k=1)  # new-a was seen: the other new item comes first
    saved = json.loads((tmp_path / "tuned" / "results.json").read_text())
    assert saved["data"]["new_items"] == 2
    assert "Fine-tuned from" in (tmp_path / "tuned" / "README.md").read_text()


def test_finetune_refuses_a_longer_max_length_than_the_model_reads(tmp_path):
    with pytest.raises(ValueError, match="exceeds the model's max_position_embeddings=10"):
        finetune(tiny(), synthetic_interactions(10), tmp_path, TrainSettings(**{**QUICK, "max_length": 50}))


def test_cli_finetune_without_new_items_keeps_the_vocabulary(tmp_path, capsys):
    tiny().save_pretrained(tmp_path / "base")
    data = tmp_path / "new.txt"
    lines = [f"{user} {item}" for user, seq in enumerate(synthetic_interactions(40).sequences, 1) for item in seq]
    data.write_text("\n".join(lines).replace("new-a", "101").replace("new-b", "102") + "\n")
    args = ["finetune", str(tmp_path / "base"), "--data-file", str(data), "--output-dir", str(tmp_path / "out")]
    quick = ["--epochs", "1", "--batch-size", "32", "--num-sampled", "0"]
    assert main(args + quick + ["--no-new-items"]) == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["num_items"] == NUM_ITEMS
    assert main(args + quick) == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["num_items"] == NUM_ITEMS + 2 and sorted(config["item_ids"][-2:]) == ["101", "102"]
    assert "2 new items" in capsys.readouterr().out
