import math
from pathlib import Path

import datasets
import evaluate
import pytest
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments
from transformers.modeling_outputs import CausalLMOutput

from hyenarec_hf.collator import NextItemCollator, add_eval_index
from hyenarec_hf.metrics import (
    RankingMetrics,
    evaluate_ranking,
    next_item_loss,
    target_ranks,
    trainer_metric_fns,
)

RANKING_SCRIPT = Path(__file__).resolve().parents[1] / "hyenarec_hf" / "evaluate_metrics" / "ranking.py"

# One user, items 1..7. Padding (index 0) scores highest and must be ignored. The target (3) ties with items 4
# and 5; items 6 and 2 score above it but are seen; the target itself is also in the seen list.
SCORES = torch.tensor([[100.0, 0.5, 3.0, 2.0, 2.0, 2.0, 5.0, 1.0]])
PACKED = torch.tensor([[3, 0, 2, 3, 6]])  # target, dataset index, seen items
RANK_EXCL_SEEN = 3  # 1 + items {4, 5}
RANK_INCL_SEEN = 5  # 1 + items {2, 4, 5, 6}


def random_eval_case(num_users=10, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_users, 1, vocab, generator=g)
    rows = []
    for i in range(num_users):
        seen = torch.randperm(vocab - 1, generator=g)[: 3 + i % 5] + 1
        target = int(torch.randint(1, vocab, (1,), generator=g))
        rows.append([target, 100 + i, *seen.tolist()])
    width = max(len(r) for r in rows)
    packed = torch.tensor([r + [-100] * (width - len(r)) for r in rows])
    return logits, packed


def batched_ranks(logits, packed, batch_size, **kwargs):
    chunks = [
        target_ranks(logits[i : i + batch_size], packed[i : i + batch_size], **kwargs)
        for i in range(0, len(logits), batch_size)
    ]
    return torch.cat(chunks)


# --- target_ranks ----------------------------------------------------------------------------------------------


def test_ranks_are_pessimistic_exclude_seen_but_not_the_target_and_ignore_padding():
    ranks = target_ranks(SCORES, PACKED)
    assert ranks[0, 0].item() == RANK_EXCL_SEEN
    assert ranks[0, 1].item() == RANK_INCL_SEEN
    assert math.isnan(ranks[0, 2].item())  # sampling off


def test_ranks_use_the_last_position_of_3d_logits():
    logits = torch.stack([torch.zeros_like(SCORES), SCORES], dim=1)  # (1, 2, vocab)
    assert target_ranks(logits, PACKED)[0, :2].tolist() == [RANK_EXCL_SEEN, RANK_INCL_SEEN]


def test_extra_minus_100_label_columns_do_not_change_ranks():
    logits, packed = random_eval_case()
    padded = torch.cat([packed, torch.full((len(packed), 7), -100)], dim=1)
    for n in (0, 5):
        torch.testing.assert_close(target_ranks(logits, padded, n), target_ranks(logits, packed, n), equal_nan=True)


def test_sampled_rank_uses_every_unseen_item_when_fewer_than_requested():
    # unseen candidates besides the target: items 1, 4, 5, 7; of those 4 and 5 tie with the target
    for n in (4, 100):
        assert target_ranks(SCORES, PACKED, num_sampled=n)[0, 2].item() == 3


def test_sampled_negatives_are_never_seen_items_padding_or_the_target():
    # seen items and padding outscore the target, unseen items score below it: any of them sampled -> rank > 1
    vocab, users = 30, 200
    scores = torch.zeros(users, vocab)
    scores[:, 0] = 9.0
    scores[:, 1:11] = 8.0  # seen
    scores[:, 11] = 5.0  # target
    packed = torch.tensor([[11, i, *range(1, 11)] for i in range(users)])
    ranks = target_ranks(scores, packed, num_sampled=10, seed=3)
    assert (ranks[:, 2] == 1).all()
    scores[:, 12:] = 6.0  # now all unseen items beat the target: rank = 1 + num_sampled
    assert (target_ranks(scores, packed, num_sampled=10, seed=3)[:, 2] == 11).all()


def test_sampled_negatives_are_uniform_over_unseen_items():
    # one probe item beats the target per row; P(probe sampled) must be num_sampled / candidates for every probe
    vocab, users, n = 12, 3000, 3  # candidates: items 2..11 (item 1 is the target)
    probe = torch.arange(users) % 10 + 2
    scores = torch.zeros(users, vocab)
    scores[:, 1] = 1.0
    scores[torch.arange(users), probe] = 2.0
    packed = torch.stack([torch.ones(users, dtype=torch.long), torch.arange(users)], dim=1)
    hit = target_ranks(scores, packed, num_sampled=n, seed=0)[:, 2] == 2
    rates = torch.stack([hit[probe == p].float().mean() for p in range(2, 12)])
    assert ((rates - 0.3).abs() < 0.1).all(), rates


def test_sampled_ranks_do_not_depend_on_batch_size_and_follow_the_seed():
    logits, packed = random_eval_case()
    reference = target_ranks(logits, packed, num_sampled=5, seed=1)
    for batch_size in (1, 3):
        assert torch.equal(batched_ranks(logits, packed, batch_size, num_sampled=5, seed=1), reference)
    assert torch.equal(target_ranks(logits, packed, num_sampled=5, seed=1), reference)
    assert not torch.equal(target_ranks(logits, packed, num_sampled=5, seed=2)[:, 2], reference[:, 2])
    torch.testing.assert_close(reference[:, :2], target_ranks(logits, packed)[:, :2])  # full ranks unaffected


def test_target_outside_vocabulary_is_an_error():
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        target_ranks(SCORES, torch.tensor([[8, 0]]))


# --- RankingMetrics --------------------------------------------------------------------------------------------


def test_metrics_match_hand_formulas():
    metrics = RankingMetrics(ks=(1, 3, 5), num_sampled=4)
    metrics.update(target_ranks(SCORES, PACKED, num_sampled=4))
    result = metrics.compute()
    # full (seen excluded): rank 3
    assert result["hr@1_full"] == 0.0 and result["hr@3_full"] == 1.0
    assert result["ndcg@3_full"] == pytest.approx(1 / math.log2(4)) == pytest.approx(0.5)
    assert result["mrr@3_full"] == pytest.approx(1 / 3)
    # seen included: rank 5
    assert result["hr@3_full_incl_seen"] == 0.0 and result["ndcg@3_full_incl_seen"] == 0.0
    assert result["ndcg@5_full_incl_seen"] == pytest.approx(1 / math.log2(6))
    assert result["mrr@5_full_incl_seen"] == pytest.approx(1 / 5)
    # sampled: rank 3
    assert result["ndcg@5_sampled4"] == pytest.approx(0.5)
    assert result["num_users"] == 1


def test_metrics_average_over_users():
    metrics = RankingMetrics(ks=(2,))
    metrics.update(torch.tensor([[1.0, 1.0, float("nan")], [2.0, 3.0, float("nan")]]))
    result = metrics.compute()
    assert result["hr@2_full"] == 1.0
    assert result["ndcg@2_full"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert result["mrr@2_full_incl_seen"] == pytest.approx(0.5)
    assert not any("sampled" in k for k in result)


def test_accumulation_is_exact_under_any_batch_size():
    logits, packed = random_eval_case(num_users=11, vocab=20)
    results = []
    for batch_size in (1, 3, 11):
        metrics = RankingMetrics(num_sampled=5)
        for i in range(0, 11, batch_size):
            metrics.update(target_ranks(logits[i : i + batch_size], packed[i : i + batch_size], 5))
        results.append(metrics.compute())
    assert results[0] == results[1] == results[2]


def test_reset_forgets_previous_users():
    metrics = RankingMetrics(ks=(1,))
    metrics.update(torch.tensor([[1.0, 1.0, 1.0]]))
    metrics.reset()
    metrics.update(torch.tensor([[2.0, 2.0, 2.0]]))
    assert metrics.compute()["hr@1_full"] == 0.0


def test_missing_sampled_ranks_are_an_error():
    with pytest.raises(ValueError, match="num_sampled"):
        RankingMetrics(num_sampled=100).update(target_ranks(SCORES, PACKED))


# --- next_item_loss ----------------------------------------------------------------------------------------------


def test_train_loss_is_mean_cross_entropy_over_labelled_positions():
    logits = torch.randn(2, 3, 6)
    labels = torch.tensor([[-100, 2, 3], [1, 5, 4]])
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 6), labels.reshape(-1))
    torch.testing.assert_close(next_item_loss({"logits": logits}, labels), expected)


def test_train_loss_with_num_items_in_batch_matches_one_big_batch_under_gradient_accumulation():
    logits = torch.randn(4, 3, 6)
    labels = torch.tensor([[-100, 2, 3], [1, 5, 4], [-100, -100, 1], [2, 2, 2]])
    total = labels.ne(-100).sum()
    split = sum(next_item_loss({"logits": logits[i : i + 2]}, labels[i : i + 2], total) for i in (0, 2))
    torch.testing.assert_close(split, next_item_loss({"logits": logits}, labels))


def test_eval_loss_is_cross_entropy_of_the_target_and_ignores_the_packed_count():
    logits = torch.randn(2, 1, 6)
    packed = torch.tensor([[3, 0, 1, 2, 5], [4, 1, 2, -100, -100]])
    expected = torch.nn.functional.cross_entropy(logits[:, 0], torch.tensor([3, 4]))
    torch.testing.assert_close(next_item_loss(CausalLMOutput(logits=logits), packed, torch.tensor(8)), expected)


def test_loss_rejects_misaligned_labels():
    with pytest.raises(ValueError, match="logits_to_keep"):
        next_item_loss({"logits": torch.randn(2, 4, 6)}, torch.ones(2, 3, dtype=torch.long))


# --- evaluate metric ---------------------------------------------------------------------------------------------


def test_evaluate_metric_loaded_by_path_gives_hand_values():
    ranking = evaluate.load(str(RANKING_SCRIPT))
    result = ranking.compute(predictions=[[5, 9, 2], [1, 2, 3], [4, 1, 8]], references=[9, 4, 4], k_values=[1, 3])
    assert result["hr@1"] == pytest.approx(1 / 3)  # user 3 at rank 1; user 1 at rank 2; user 2 missed
    assert result["hr@3"] == pytest.approx(2 / 3)
    assert result["ndcg@3"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert result["mrr@3"] == pytest.approx((1 + 1 / 2) / 3)
    with pytest.raises(ValueError, match="fewer than the largest K"):
        ranking.compute(predictions=[[5, 9]], references=[9], k_values=[3])


# --- Trainer integration -----------------------------------------------------------------------------------------


class TinyRecConfig(PretrainedConfig):
    model_type = "tiny_rec"

    def __init__(self, num_items=30, hidden_size=8, **kwargs):
        self.num_items = num_items
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class TinyRecModel(PreTrainedModel):
    """Mean of the item embeddings seen so far -> linear scores over items."""

    config_class = TinyRecConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.num_items + 1, config.hidden_size, padding_idx=0)
        self.head = nn.Linear(config.hidden_size, config.num_items + 1)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Embedding, nn.Linear)):
            nn.init.normal_(module.weight, std=1.0)

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0):
        mask = attention_mask.unsqueeze(-1).float()
        hidden = (self.embed(input_ids) * mask).cumsum(1) / mask.cumsum(1).clamp(min=1)
        return CausalLMOutput(logits=self.head(hidden[:, -logits_to_keep:]))


@pytest.fixture(scope="module")
def tiny_model_and_eval_set():
    torch.manual_seed(0)
    model = TinyRecModel(TinyRecConfig())
    g = torch.Generator().manual_seed(1)
    rows = {"input_ids": [], "target": []}
    for i in range(7):
        rows["input_ids"].append(torch.randint(1, 31, (2 + 3 * i,), generator=g).tolist())  # some > max_length
        rows["target"].append(int(torch.randint(1, 31, (1,), generator=g)))
    return model, add_eval_index(datasets.Dataset.from_dict(rows))


def test_trainer_evaluate_with_batch_eval_metrics_matches_evaluate_ranking(tiny_model_and_eval_set, tmp_path):
    model, eval_set = tiny_model_and_eval_set
    max_length, num_sampled, ks = 6, 5, (1, 5, 10)
    preprocess, compute_metrics = trainer_metric_fns(ks=ks, num_sampled=num_sampled, seed=4)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=3,  # 7 users: the last batch is partial
        batch_eval_metrics=True,
        label_names=["labels"],
        remove_unused_columns=False,
        report_to="none",
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=NextItemCollator(max_length=max_length, mode="eval"),
        eval_dataset=eval_set,
        compute_loss_func=next_item_loss,
        preprocess_logits_for_metrics=preprocess,
        compute_metrics=compute_metrics,
    )
    metrics = trainer.evaluate()
    expected = evaluate_ranking(
        model, eval_set, max_length, batch_size=2, ks=ks, num_sampled=num_sampled, seed=4, show_progress=False
    )
    assert {k: metrics[f"eval_{k}"] for k in expected} == expected
    assert expected["num_users"] == 7 and "hr@10_sampled5" in expected
    batch = NextItemCollator(max_length=max_length, mode="eval")(list(eval_set))
    with torch.no_grad():
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=1)
    assert metrics["eval_loss"] == pytest.approx(next_item_loss(outputs, batch["labels"]).item(), rel=1e-5)
    # a second evaluation starts from a clean accumulator
    assert trainer.evaluate()["eval_hr@10_full"] == metrics["eval_hr@10_full"]


def test_trainer_trains_with_next_item_loss(tiny_model_and_eval_set, tmp_path):
    model, _ = tiny_model_and_eval_set
    model = TinyRecModel(model.config)
    train_set = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3, 4], [5, 6], [7, 8, 9, 10, 11, 12, 13, 14]] * 2})
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=3,
        gradient_accumulation_steps=2,
        max_steps=2,
        learning_rate=0.1,
        remove_unused_columns=False,
        label_names=["labels"],
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
    )
    trainer = Trainer(
        model=model,
        args=args,
        data_collator=NextItemCollator(max_length=4),
        train_dataset=train_set,
        compute_loss_func=next_item_loss,
    )
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_trainer_preprocess_rejects_logits_with_more_than_one_position():
    preprocess, _ = trainer_metric_fns()
    with pytest.raises(ValueError, match="logits_to_keep=1"):
        preprocess(torch.randn(1, 2, 8), PACKED)


@pytest.mark.parametrize("model_type", ["hyenarec", "sasrec"])
def test_scoring_longest_history_first_changes_no_metric(model_type):
    # evaluate_ranking scores rows longest first in padded batches; the reference scores each user alone in the
    # file's order (batch 1: no padding at all). Same ranks, so the same metrics, sampled negatives included.
    from tiny_data import tiny_model

    g = torch.Generator().manual_seed(3)
    lengths = [2, 9, 1, 14, 5, 9, 3, 12, 7, 1, 4]  # some beyond max_length
    rows = {
        "input_ids": [torch.randint(1, 31, (n,), generator=g).tolist() for n in lengths],
        "target": torch.randint(1, 31, (len(lengths),), generator=g).tolist(),
    }
    eval_set = add_eval_index(datasets.Dataset.from_dict(rows))
    model = tiny_model(model_type, num_items=30, length=10).eval()
    collator = NextItemCollator(max_length=10, mode="eval")
    reference = RankingMetrics((1, 5, 10), num_sampled=6)
    with torch.no_grad():
        for row in eval_set:
            batch = collator([row])
            logits = model(input_ids=batch["input_ids"], logits_to_keep=1).logits
            reference.update(target_ranks(logits, batch["labels"], num_sampled=6, seed=2))
    expected = reference.compute()
    got = evaluate_ranking(model, eval_set, 10, batch_size=4, ks=(1, 5, 10), num_sampled=6, seed=2, show_progress=False)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got["num_users"] == len(lengths)
