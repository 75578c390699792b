"""Baselines (SASRec, BERT4Rec, GRU4Rec, most popular): same interface, causality, padding, save/load, learning,
the masked-item collator and the Trainer path."""

import math
import os
import subprocess
import sys
import textwrap

import datasets
import pytest
import torch
from remote_code import BLOCK_PACKAGE  # tests/remote_code.py: the import blocker
from tiny_data import train_and_validation  # tests/tiny_data.py
from transformers import AutoConfig, AutoModel, set_seed

import hyenarec_hf
from hyenarec_hf import (
    BERT4RecConfig,
    BERT4RecForNextItemPrediction,
    GRU4RecConfig,
    GRU4RecForNextItemPrediction,
    SASRecConfig,
    SASRecForNextItemPrediction,
)
from hyenarec_hf.collator import NextItemCollator, add_eval_index
from hyenarec_hf.masking import MaskedItemCollator, collator_for
from hyenarec_hf.metrics import evaluate_ranking
from hyenarec_hf.popularity import MostPopular
from hyenarec_hf.training import MODEL_REGISTRY, TrainSettings, build_trainer

NUM_ITEMS = 30
MAX_LEN = 12
TINY = {
    "sasrec": (
        SASRecConfig,
        SASRecForNextItemPrediction,
        dict(hidden_size=16, num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=0.0),
    ),
    "bert4rec": (
        BERT4RecConfig,
        BERT4RecForNextItemPrediction,
        dict(hidden_size=16, num_attention_heads=2, intermediate_size=32, hidden_dropout_prob=0.0),
    ),
    "gru4rec": (
        GRU4RecConfig,
        GRU4RecForNextItemPrediction,
        dict(embedding_size=16, hidden_size=24, num_hidden_layers=2, hidden_dropout_prob=0.0),
    ),
}
MODEL_TYPES = list(TINY)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_config(model_type: str, **overrides):
    config_class, _, values = TINY[model_type]
    values = dict(values, num_items=NUM_ITEMS, max_position_embeddings=MAX_LEN)
    if model_type != "gru4rec":
        values.update(num_hidden_layers=2, attention_probs_dropout_prob=0.0)
    values.update(overrides)
    return config_class(**values)


def tiny_model(model_type: str, dtype=torch.float32, **overrides):
    torch.manual_seed(0)
    return TINY[model_type][1](tiny_config(model_type, **overrides)).to(dtype).eval()


def random_items(*shape, seed=1):
    return torch.randint(1, NUM_ITEMS + 1, shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------------------------------
# Interface, causality, padding
# ----------------------------------------------------------------------------------------------------------------------


def test_registry_and_auto_classes_know_every_baseline():
    for model_type, (config_class, model_class, _) in TINY.items():
        assert MODEL_REGISTRY[model_type] == (config_class, model_class)
        assert isinstance(AutoConfig.for_model(model_type), config_class)
        assert isinstance(AutoModel.from_config(tiny_config(model_type)), model_class)
        assert config_class.__name__ in hyenarec_hf.__all__


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_forward_shapes_loss_and_logits_to_keep(model_type):
    model = tiny_model(model_type)
    ids = random_items(3, 8)
    out = model(ids, labels=random_items(3, 8, seed=2))
    assert out.logits.shape == (3, 8, NUM_ITEMS + 1)
    assert torch.isfinite(out.loss)
    assert (out.logits[..., 0] == torch.finfo(out.logits.dtype).min).all()  # padding never scores
    last = model(ids, logits_to_keep=1, labels=torch.tensor([1, 2, 3]))
    assert last.logits.shape == (3, 1, NUM_ITEMS + 1) and torch.isfinite(last.loss)
    torch.testing.assert_close(model.score_histories(ids), last.logits[:, -1])
    if model_type != "bert4rec":  # BERT4Rec's last position reads an appended [MASK] instead
        torch.testing.assert_close(last.logits[:, 0], out.logits[:, -1])


def future_leak(model, length=10, cut=5) -> float:
    """Largest change of any output at positions <= cut when every item after `cut` is replaced."""
    items = random_items(2, length)
    changed = items.clone()
    changed[:, cut + 1 :] = random_items(2, length - cut - 1, seed=7)
    with torch.no_grad():
        a = model(items).logits[:, : cut + 1]
        b = model(changed).logits[:, : cut + 1]
    return (a - b).abs().max().item()


@pytest.mark.parametrize("model_type", ["sasrec", "gru4rec"])
def test_causal_models_do_not_see_the_future(model_type):
    assert future_leak(tiny_model(model_type, torch.float64)) < 1e-10


def test_bert4rec_is_bidirectional():
    # The negative control of the causality test: a bidirectional model does see later items.
    assert future_leak(tiny_model("bert4rec", torch.float64)) > 1e-4


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_padding_does_not_change_last_position_scores(model_type):
    model = tiny_model(model_type, torch.float64)
    history = torch.tensor([5, 9, 2, 30, 7, 7])
    scores = []
    for pad in (0, 2, MAX_LEN - len(history)):
        ids = torch.cat([torch.zeros(pad, dtype=torch.long), history])[None]
        scores.append(model.score_histories(ids, ids.ne(0))[0])
    mixed = torch.stack([torch.cat([torch.zeros(4, dtype=torch.long), history]), random_items(10)])
    scores.append(model.score_histories(mixed, mixed.ne(0))[0])
    for other in scores[1:]:
        torch.testing.assert_close(other, scores[0], atol=1e-10, rtol=1e-10)


def test_sasrec_padded_rows_give_no_nan_in_forward_or_backward():
    # A padded query has no real key before it: without its own diagonal, attention would softmax over nothing (NaN).
    model = tiny_model("sasrec", hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3).train()
    ids = torch.tensor([[0, 0, 0, 0, 0, 4], [0, 0, 0, 0, 0, 0], [1, 2, 3, 4, 5, 6]])
    labels = torch.where(ids > 0, ids % NUM_ITEMS + 1, -100)
    out = model(ids, labels=labels, output_hidden_states=True)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(h).all() for h in out.hidden_states)
    assert torch.isfinite(out.logits[..., 1:]).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bert4rec_appends_mask_and_drops_the_oldest_item_of_a_full_history():
    model = tiny_model("bert4rec", torch.float64)
    full = random_items(1, MAX_LEN)
    mask_id = model.config.mask_token_id
    assert mask_id == NUM_ITEMS + 1
    ids, attention = model.append_mask_item(full)
    assert ids.shape == (1, MAX_LEN) and ids[0, -1] == mask_id and torch.equal(ids[0, :-1], full[0, 1:])
    assert attention.all()
    expected = model(torch.cat([full[:, 1:], torch.tensor([[mask_id]])], 1), append_mask_token=False).logits[:, -1]
    torch.testing.assert_close(model.score_histories(full), expected)
    # [MASK] is an input, never an answer or a label
    assert model.score_histories(full).shape == (1, NUM_ITEMS + 1)
    with pytest.raises(ValueError, match=f"label {mask_id} is not an item index"):
        model(full, labels=torch.full((1, MAX_LEN), mask_id))
    with pytest.raises(ValueError, match=f"item index {mask_id + 1} is outside"):
        model(torch.tensor([[1, mask_id + 1]]))


def test_gru4rec_rejects_right_padding():
    model = tiny_model("gru4rec")
    with pytest.raises(ValueError, match="LEFT padded"):
        model(torch.tensor([[1, 2, 0]]), attention_mask=torch.tensor([[1, 1, 0]]))


# ----------------------------------------------------------------------------------------------------------------------
# Save / load, Auto classes, remote code
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_save_then_auto_model_gives_identical_logits(tmp_path, model_type):
    model = tiny_model(model_type, item_ids=[f"m{i}" for i in range(NUM_ITEMS)])
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"model.safetensors", "config.json", f"modeling_{model_type}.py", "next_item.py"} <= files
    assert f"configuration_{model_type}.py" in files
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    ids = random_items(3, 9)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)
        torch.testing.assert_close(loaded.score_histories(ids), model.score_histories(ids), atol=0, rtol=0)
    assert loaded.config.item_ids == [f"m{i}" for i in range(NUM_ITEMS)]


def test_remote_code_load_without_the_package(tmp_path):
    ids = random_items(2, 8)
    expected = {}
    for model_type in MODEL_TYPES:
        model = tiny_model(model_type, item_ids=[str(i) for i in range(1, NUM_ITEMS + 1)])
        model.save_pretrained(tmp_path / model_type)
        expected[model_type] = model.score_histories(ids)
    torch.save({"ids": ids, "expected": expected}, tmp_path / "expected.pt")
    script = BLOCK_PACKAGE + textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModel
        data = torch.load({str(tmp_path / "expected.pt")!r})
        for model_type, expected in data["expected"].items():
            model = AutoModel.from_pretrained({str(tmp_path)!r} + "/" + model_type, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            got = model.score_histories(data["ids"])
            assert torch.equal(got, expected), (model_type, (got - expected).abs().max())
            assert model.recommend(["1", "2"], k=2) and model.config.item_ids[0] == "1"
        print("REMOTE_OK")
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert "REMOTE_OK" in result.stdout, result.stdout + result.stderr


# ----------------------------------------------------------------------------------------------------------------------
# Learning a pattern; recommend in raw ids
# ----------------------------------------------------------------------------------------------------------------------


def successor_histories(num_items: int, lengths=(8,)) -> list[list[int]]:
    """Every history follows item i with item i % num_items + 1."""
    return [[(start + t) % num_items + 1 for t in range(n)] for start in range(num_items) for n in lengths]


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_loss_falls_and_the_true_next_item_ranks_first(model_type):
    num_items = 10
    torch.manual_seed(0)
    # A wider initialisation than the default 0.02 lets attention pick a position within a few dozen steps.
    config = tiny_config(
        model_type,
        num_items=num_items,
        max_position_embeddings=8,
        initializer_range=0.1,
        item_ids=[f"item{i}" for i in range(1, 11)],
    )
    model = TINY[model_type][1](config).train()
    collator = collator_for(config, max_length=7)  # masked-item batches for BERT4Rec, next-item batches otherwise
    rows = [{"input_ids": h} for h in successor_histories(num_items, lengths=(3, 5, 8))]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    # Masked-item training labels ~1.5 positions per history and step, next-item training every position.
    steps = 100 if model_type == "bert4rec" else 40
    losses = []
    for _ in range(steps):
        batch = collator(rows)
        loss = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.6 * sum(losses[:3]), losses
    # raw ids in, raw ids out; item 4 follows item 3, item 1 follows item 10
    assert model.recommend(["item1", "item2", "item3"], k=1) == ["item4"]
    histories = [["item8", "item9", "item10"], ["item3", "item4", "item5", "item6", "item7"]]
    assert model.recommend(histories, k=1) == [["item1"], ["item8"]]
    assert model.training  # recommend restores the mode


# ----------------------------------------------------------------------------------------------------------------------
# Configuration validation
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config_class, field, value",
    [
        (SASRecConfig, "num_items", 0),
        (SASRecConfig, "hidden_size", 1.5),
        (SASRecConfig, "num_attention_heads", 3),
        (SASRecConfig, "max_position_embeddings", 0),
        (SASRecConfig, "hidden_act", "swish"),
        (SASRecConfig, "attention_probs_dropout_prob", 1.0),
        (SASRecConfig, "layer_norm_eps", 0),
        (SASRecConfig, "loss_type", "bpr"),
        (SASRecConfig, "pad_token_id", 1),
        (BERT4RecConfig, "num_hidden_layers", 0),
        (BERT4RecConfig, "max_position_embeddings", 1),
        (BERT4RecConfig, "mask_prob", 0.0),
        (BERT4RecConfig, "last_item_only_prob", 1.5),
        (BERT4RecConfig, "initializer_range", -1),
        (BERT4RecConfig, "num_negatives", 0),
        (GRU4RecConfig, "embedding_size", 0),
        (GRU4RecConfig, "num_hidden_layers", True),
        (GRU4RecConfig, "hidden_dropout_prob", -0.1),
        (GRU4RecConfig, "loss_type", "top1"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(config_class, field, value):
    with pytest.raises(ValueError, match=rf"{config_class.__name__}\.{field}={value!r} is not allowed"):
        config_class(**{field: value})


@pytest.mark.parametrize("config_class", [SASRecConfig, BERT4RecConfig, GRU4RecConfig])
def test_config_rejects_a_vocabulary_of_the_wrong_size(config_class):
    with pytest.raises(ValueError, match="item_ids"):
        config_class(num_items=3, item_ids=["a", "b"])


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_sampled_softmax_loss_trains(model_type):
    model = tiny_model(model_type, loss_type="sampled_ce", num_negatives=8).train()
    out = model(random_items(4, 8), labels=random_items(4, 8, seed=3))
    out.loss.backward()
    assert out.logits is None and torch.isfinite(out.loss)
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------------------
# Masked-item collator
# ----------------------------------------------------------------------------------------------------------------------


def test_masked_item_collator_masks_at_the_configured_rate_and_labels_only_masked_positions():
    collator = MaskedItemCollator(max_length=20, mask_token_id=NUM_ITEMS + 1, mask_prob=0.2, last_item_only_prob=0.0)
    rows = [{"input_ids": random_items(n, seed=n).tolist()} for n in [1, 5, 20, 25] * 100]
    torch.manual_seed(0)
    batch = collator(rows)
    ids, labels, attention = batch["input_ids"], batch["labels"], batch["attention_mask"].bool()
    originals = torch.stack([torch.tensor(([0] * 20 + r["input_ids"])[-20:]) for r in rows])
    masked = ids == NUM_ITEMS + 1
    assert torch.equal(labels != -100, masked)  # labels exactly at masked positions ...
    assert torch.equal(labels[masked], originals[masked])  # ... holding the original item
    assert torch.equal(ids[~masked], originals[~masked])  # everything else untouched
    assert not (masked & ~attention).any()  # padding is never masked
    assert masked.any(dim=1).all()  # every row has a label, even one-item histories
    long_rows = masked[2::4].float().mean().item()  # rows of 20 real items: the rate is close to mask_prob
    assert 0.17 < long_rows < 0.23
    torch.manual_seed(0)
    assert torch.equal(collator(rows)["input_ids"], ids)  # seeded through torch's global generator


def test_masked_item_collator_last_item_only_rows_and_eval_rows():
    collator = MaskedItemCollator(max_length=6, mask_token_id=NUM_ITEMS + 1, last_item_only_prob=1.0)
    batch = collator([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5, 6, 7, 8, 9, 10]}])
    assert batch["input_ids"].tolist() == [[0, 0, 0, 1, 2, 31], [5, 6, 7, 8, 9, 31]]
    assert batch["labels"].tolist() == [[-100] * 5 + [3], [-100] * 5 + [10]]
    eval_rows = [{"input_ids": [1, 2, 3], "target": 4, "index": 0}, {"input_ids": [5], "target": 6, "index": 1}]
    expected = NextItemCollator(max_length=6, mode="eval")(eval_rows)
    got = collator(eval_rows)
    assert got["logits_to_keep"] == 1 and got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in ("input_ids", "attention_mask", "labels"))
    with pytest.raises(ValueError, match="empty history"):
        collator([{"input_ids": []}])


def test_collator_for_picks_masked_batches_for_bert4rec_only():
    config = tiny_config("bert4rec", mask_prob=0.3, last_item_only_prob=0.1)
    masked = collator_for(config, MAX_LEN)
    assert isinstance(masked, MaskedItemCollator)
    assert (masked.mask_token_id, masked.mask_prob, masked.last_item_only_prob) == (NUM_ITEMS + 1, 0.3, 0.1)
    for model_type in ("sasrec", "gru4rec"):
        plain = collator_for(tiny_config(model_type), MAX_LEN)
        assert isinstance(plain, NextItemCollator) and plain.mode == "auto"


# ----------------------------------------------------------------------------------------------------------------------
# Most popular
# ----------------------------------------------------------------------------------------------------------------------


def test_most_popular_metrics_by_hand():
    train = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3], [2, 3], [3]]})  # counts: 1:1, 2:2, 3:3, 4:0, 5:0
    popular = MostPopular(num_items=5).fit(train)
    assert popular.top_items(3) == [3, 2, 1] and popular.top_items(2, exclude=[3]) == [2, 1]
    evaluation = datasets.Dataset.from_dict({"input_ids": [[1], [3], [2]], "target": [2, 4, 3]})
    metrics = popular.evaluate(evaluation, batch_size=2, ks=(1, 5))
    # user 1: only item 3 beats item 2 -> rank 2 (both protocols);
    # user 2: target 4 (count 0) ties with 5 and is beaten by 1, 2 (and 3, seen) -> rank 4 unseen-only, 5 with seen;
    # user 3: item 3 is the most popular -> rank 1.
    assert metrics["num_users"] == 3
    assert metrics["hr@1_full"] == pytest.approx(1 / 3)
    assert metrics["hr@5_full"] == pytest.approx(1.0)
    assert metrics["mrr@5_full"] == pytest.approx((1 / 2 + 1 / 4 + 1) / 3)
    assert metrics["ndcg@5_full"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5) + 1) / 3)
    assert metrics["mrr@5_full_incl_seen"] == pytest.approx((1 / 2 + 1 / 5 + 1) / 3)
    with pytest.raises(ValueError, match="num_items"):
        MostPopular(num_items=2).fit(train)


# ----------------------------------------------------------------------------------------------------------------------
# Trainer path
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["sasrec", "bert4rec"])
def test_trainer_trains_one_epoch_and_evaluates(tmp_path, model_type):
    set_seed(0)
    histories = successor_histories(10)
    splits = train_and_validation(histories)
    settings = TrainSettings(
        max_length=6, epochs=1, batch_size=4, eval_batch_size=4, logging_steps=1, patience=1, num_sampled=3
    )
    config = tiny_config(model_type, num_items=10, max_position_embeddings=6)
    model = TINY[model_type][1](config)
    trainer = build_trainer(model, splits, tmp_path, settings)
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses and all(math.isfinite(x) for x in losses)
    metrics = trainer.evaluate()
    assert metrics["eval_num_users"] == 10 and math.isfinite(metrics["eval_loss"])
    direct = evaluate_ranking(
        trainer.model, add_eval_index(splits["validation"]), 6, num_sampled=3, seed=settings.seed, show_progress=False
    )
    assert {k: metrics[f"eval_{k}"] for k in direct} == pytest.approx(direct)


@pytest.mark.parametrize("model_type", ["hyenarec", *MODEL_TYPES])
def test_trainer_uses_the_models_sampled_softmax_and_never_builds_full_logits_in_training(tmp_path, model_type):
    num_items, negatives = 200, 4
    histories = random_items(40, 8, seed=3).remainder(num_items).add(1).tolist()
    splits = train_and_validation(histories)
    settings = TrainSettings(max_length=6, epochs=1, batch_size=8, eval_batch_size=8, logging_steps=1, num_sampled=0)
    overrides = dict(num_items=num_items, max_position_embeddings=6, loss_type="sampled_ce", num_negatives=negatives)
    if model_type == "hyenarec":
        config = MODEL_REGISTRY["hyenarec"][0](hidden_size=16, intermediate_size=32, legendre_order=4, **overrides)
    else:
        config = tiny_config(model_type, **overrides)
    set_seed(0)
    model = MODEL_REGISTRY[model_type][1](config)
    calls = []  # (training?, got labels?, built full logits?) for every forward the Trainer makes
    model.register_forward_hook(
        lambda m, args, kwargs, out: calls.append((m.training, "labels" in kwargs, out.logits is not None)),
        with_kwargs=True,
    )
    trainer = build_trainer(model, splits, tmp_path, settings)
    trainer.train()
    assert {c for c in calls if c[0]} == {(True, True, False)}  # training: labels in, own loss, no logits
    # A softmax over the target and 4 negatives starts near log(5) = 1.6; the full softmax would start near
    # log(201) = 5.3.
    first_loss = next(log["loss"] for log in trainer.state.log_history if "loss" in log)
    assert first_loss < math.log(1 + negatives) + 1.0
    calls.clear()
    metrics = trainer.evaluate()
    assert {c for c in calls} == {(False, False, True)}  # evaluation: the stock path, full logits, no labels
    assert metrics["eval_num_users"] == 40 and metrics["eval_loss"] > math.log(1 + negatives) + 1.0


def test_sampled_ce_model_trained_without_labels_says_no_sampled_softmax_runs(caplog):
    import logging

    logging.Logger.warning_once.cache_clear()  # transformers' warning_once: once per process and message
    model = tiny_model("sasrec", loss_type="sampled_ce", num_negatives=4).train()
    with caplog.at_level(logging.WARNING):
        model(random_items(2, 5))  # what a stock Trainer with compute_loss_func does: labels taken out
    assert "no sampled softmax runs" in caplog.text and "NextItemTrainer" in caplog.text
    caplog.clear()
    logging.Logger.warning_once.cache_clear()
    with caplog.at_level(logging.WARNING):
        model(random_items(2, 5), labels=random_items(2, 5, seed=2))  # labels given: the sampled loss runs
        model.eval()(random_items(2, 5))  # serving: nothing to say
    assert caplog.text == ""
