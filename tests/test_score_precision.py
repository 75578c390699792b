"""Item scores are float32 whatever autocast the model runs under.

Ranking metrics compare scores, and bf16 keeps 8 significant bits: scores computed in bf16 tie often, and a tie
counts against the target, so every metric reported under `--bf16` was biased low until the scoring GEMM ran in
float32 (`benchmarks/score_precision.md` measures it on a trained model)."""

import sys
from pathlib import Path

import datasets
import pytest
import torch
from tiny_data import tiny_model  # tests/tiny_data.py

from hyenarec_hf.metrics import target_ranks
from modeling.next_item import (
    chunked_cross_entropy,
    item_scores,
    mask_padding_item,
    next_item_cross_entropy,
    sampled_cross_entropy,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import score_precision  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

MODEL_TYPES = ["hyenarec", "sasrec", "bert4rec", "gru4rec"]
NUM_ITEMS, LENGTH = 2000, 12


def spread_item_table(model) -> None:
    """Item embeddings at the scale of a trained model's (scores of about +-10), where bf16 ties are common."""
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, 1.0)


def histories(rows: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, NUM_ITEMS + 1, (rows, LENGTH), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_scores_under_bf16_autocast_are_the_float32_product_of_the_scored_vector(model_type):
    model = tiny_model(model_type, NUM_ITEMS, LENGTH).eval()
    spread_item_table(model)
    ids = histories()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = model.score_histories(ids)
        vectors = model.history_embeddings(ids)
    assert scores.dtype == torch.float32
    weight, bias = model.output_item_table()
    expected = vectors.float() @ weight.float().T + (0 if bias is None else bias.float())
    torch.testing.assert_close(scores[:, 1:], expected[:, 1:], rtol=1e-6, atol=1e-5)
    # float32 scores of 2,000 items hardly ever tie; the same products rounded to bf16 tie by the hundred
    distinct = [len(torch.unique(row[1:])) for row in scores]
    distinct_bf16 = [len(torch.unique(row[1:])) for row in expected.bfloat16()]
    assert min(distinct) >= NUM_ITEMS - 2
    assert max(distinct_bf16) < NUM_ITEMS - 100


def test_every_loss_scores_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    hidden = torch.randn(2, 30, 16, requires_grad=True)
    weight = torch.randn(NUM_ITEMS + 1, 16, requires_grad=True)
    labels = torch.randint(1, NUM_ITEMS + 1, (2, 30))
    reference = next_item_cross_entropy(mask_padding_item(item_scores(hidden, weight)), labels)  # no autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert item_scores(hidden, weight).dtype == torch.float32
        full = next_item_cross_entropy(mask_padding_item(item_scores(hidden, weight)), labels)
        chunked = chunked_cross_entropy(hidden, labels, weight, chunk_elements=7 * (NUM_ITEMS + 1))
        torch.manual_seed(1)
        sampled = sampled_cross_entropy(hidden, labels, weight, num_negatives=64)
    torch.manual_seed(1)
    sampled_reference = sampled_cross_entropy(hidden, labels, weight, num_negatives=64)
    # bf16 logits would be off by about 0.05 here; float32 ones agree to float32 rounding
    torch.testing.assert_close(full, reference, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sampled, sampled_reference, rtol=1e-6, atol=1e-6)
    grads = torch.autograd.grad(chunked, [hidden, weight])
    expected = torch.autograd.grad(reference, [hidden, weight])
    for got, want in zip(grads, expected):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_float64_models_keep_float64_scores():
    model = tiny_model("sasrec", 50, LENGTH).double().eval()
    assert model.score_histories(histories()[:, -5:] % 50 + 1).dtype == torch.float64


def test_score_precision_benchmark_finds_bf16_ties_and_none_in_float32_scores():
    model = tiny_model("hyenarec", NUM_ITEMS, LENGTH).eval()
    spread_item_table(model)
    rows = histories(40, seed=3).tolist()
    data = datasets.Dataset.from_dict({"input_ids": [r[:-1] for r in rows], "target": [r[-1] for r in rows]})
    result = score_precision.compare(model, data, max_length=LENGTH, batch_size=16)
    assert set(result) == set(score_precision.WAYS)
    assert result["float32 scores"]["mean_tied_candidates"] == 0
    assert result["float32"]["mean_tied_candidates"] == 0
    assert result["bf16 scores"]["users_with_a_tied_candidate"] > 0.2
    # the benchmark's float32-scores ranking is the model's own under autocast, as the Trainer evaluates it
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ids = torch.tensor([r[:-1] for r in rows])
        own = model.score_histories(ids)
    packed = torch.tensor([[r[-1], i] for i, r in enumerate(rows)])
    packed = torch.cat([packed, torch.tensor([r[:-1] for r in rows])], dim=1)
    ranks = target_ranks(own, packed)[:, 0]
    hits = (ranks <= 10).float().mean().item()
    assert hits == pytest.approx(result["float32 scores"]["hr@10"])
