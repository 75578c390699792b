"""`torch.export` of the next-item scorer: same scores and top-k as the eager model, dynamic batch, `.pt2` round trip."""

import pytest
import torch

import hyenarec_hf  # noqa: F401  (registers the Auto classes)
from hyenarec_hf import (
    BERT4RecConfig,
    BERT4RecForNextItemPrediction,
    HyenaRecConfig,
    HyenaRecForNextItemPrediction,
    SASRecConfig,
    SASRecForNextItemPrediction,
)
from hyenarec_hf.export import export_scorer, load_scorer

NUM_ITEMS, MAX_LENGTH = 60, 24
ITEM_IDS = [f"i{i}" for i in range(NUM_ITEMS)]


def hyenarec(conv_impl: str) -> HyenaRecForNextItemPrediction:
    torch.manual_seed(0)
    config = HyenaRecConfig(
        num_items=NUM_ITEMS,
        hidden_size=16,
        num_hidden_layers=2,
        intermediate_size=32,
        max_position_embeddings=MAX_LENGTH,
        legendre_order=6,
        conv_impl=conv_impl,
        item_ids=ITEM_IDS,
    )
    return HyenaRecForNextItemPrediction(config).eval()


def random_histories(batch: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded histories of random lengths 1..length."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, NUM_ITEMS + 1, (batch, length), generator=generator)
    for row, keep in enumerate(torch.randint(1, length + 1, (batch,), generator=generator).tolist()):
        input_ids[row, : length - keep] = 0
    return input_ids, input_ids.ne(0)


def assert_same_ranking(exported: torch.Tensor, eager: torch.Tensor) -> None:
    torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-5)
    assert torch.equal(exported[:, 1:].topk(10).indices, eager[:, 1:].topk(10).indices)


@pytest.mark.parametrize("conv_impl", ["fft", "toeplitz"])
def test_exported_hyenarec_scores_match_eager_for_any_batch(conv_impl, tmp_path):
    model = hyenarec(conv_impl)
    path = tmp_path / "scorer.pt2"
    export_scorer(model, MAX_LENGTH, path)
    scorer, meta = load_scorer(path)
    assert meta["item_ids"] == ITEM_IDS and meta["max_length"] == MAX_LENGTH and meta["num_items"] == NUM_ITEMS
    for batch, seed in ((1, 0), (7, 1), (33, 2)):  # the batch dimension is dynamic
        input_ids, mask = random_histories(batch, MAX_LENGTH, seed)
        with torch.no_grad():
            eager = model.score_histories(input_ids, mask)  # eval mode: the cached-kernel path
            exported = scorer(input_ids, mask)
        assert exported.shape == (batch, NUM_ITEMS + 1)
        assert_same_ranking(exported, eager)


def test_exported_program_gives_the_same_top_k_as_recommend():
    model = hyenarec("auto")
    program = export_scorer(model, max_length=8)  # shorter than the model reads: fixed length 8
    history = ["i3", "i14", "i15", "i9", "i26"]
    ids = [ITEM_IDS.index(x) + 1 for x in history]
    input_ids = torch.tensor([[0] * (8 - len(ids)) + ids])
    with torch.no_grad():
        scores = program.module()(input_ids, input_ids.ne(0))[0]
    scores[ids] = float("-inf")
    assert [ITEM_IDS[i - 1] for i in scores.topk(5).indices.tolist()] == model.recommend(history, k=5)


@pytest.mark.parametrize(
    "config_class,model_class",
    [(SASRecConfig, SASRecForNextItemPrediction), (BERT4RecConfig, BERT4RecForNextItemPrediction)],
)
def test_attention_baselines_export_too(config_class, model_class):
    torch.manual_seed(0)
    config = config_class(num_items=NUM_ITEMS, hidden_size=16, num_hidden_layers=1, max_position_embeddings=MAX_LENGTH)
    model = model_class(config).eval()
    program = export_scorer(model)
    input_ids, mask = random_histories(5, MAX_LENGTH, 3)
    with torch.no_grad():
        assert_same_ranking(program.module()(input_ids, mask), model.score_histories(input_ids, mask))


def test_export_refuses_a_length_the_model_cannot_read():
    with pytest.raises(ValueError, match="max_length=25 is outside 1..24"):
        export_scorer(hyenarec("fft"), max_length=MAX_LENGTH + 1)
