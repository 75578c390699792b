"""Serving API shared by every model (`NextItemMixin`): `recommend` in raw ids, user and item embeddings."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from remote_code import BLOCK_PACKAGE  # tests/remote_code.py: the import blocker
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

NUM_ITEMS, MAX_LENGTH = 40, 12
ITEM_IDS = [f"movie-{i}" for i in range(100, 100 + NUM_ITEMS)]  # raw ids that are not the indices
MODELS = {
    "hyenarec": (HyenaRecConfig, HyenaRecForNextItemPrediction, dict(intermediate_size=32, legendre_order=4)),
    "sasrec": (SASRecConfig, SASRecForNextItemPrediction, {}),
    "bert4rec": (BERT4RecConfig, BERT4RecForNextItemPrediction, {}),
    "gru4rec": (GRU4RecConfig, GRU4RecForNextItemPrediction, {}),
}


def tiny(model_type: str = "hyenarec", item_ids=ITEM_IDS):
    config_class, model_class, extra = MODELS[model_type]
    torch.manual_seed(0)
    config = config_class(
        num_items=NUM_ITEMS,
        hidden_size=16,
        num_hidden_layers=1,
        max_position_embeddings=MAX_LENGTH,
        hidden_dropout_prob=0.0,
        item_ids=item_ids,
        **extra,
    )
    return model_class(config).eval()


def ranked_by_hand(model, history: list[str], k: int, exclude_seen: bool = True) -> list[str]:
    """The reference answer: encode, keep the last MAX_LENGTH, score, mask, rank, decode."""
    index = {raw: i + 1 for i, raw in enumerate(ITEM_IDS)}
    ids = [index[item] for item in history]
    scores = model.score_histories(torch.tensor([ids[-MAX_LENGTH:]]))[0].clone()
    scores[0] = float("-inf")
    if exclude_seen:
        scores[ids] = float("-inf")
    return [ITEM_IDS[i - 1] for i in scores.topk(k).indices.tolist()]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serving") / "model"
    tiny().save_pretrained(folder)
    return folder


def test_recommend_right_after_from_pretrained_answers_in_raw_ids(saved):
    model = AutoModel.from_pretrained(saved)
    history = ["movie-101", "movie-105", "movie-120"]
    recs = model.recommend(history, k=5)
    assert recs == ranked_by_hand(model, history, 5)
    assert all(isinstance(item, str) and item in ITEM_IDS for item in recs)
    assert not set(recs) & set(history)
    pairs = model.recommend(history, k=5, return_scores=True)
    assert [item for item, _ in pairs] == recs
    scores = [score for _, score in pairs]
    assert scores == sorted(scores, reverse=True)


def test_a_batch_of_different_lengths_matches_one_history_at_a_time():
    model = tiny()
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(ITEM_IDS, size=n)) for n in (1, 4, 9, 3, 12, 7)]
    one_by_one = [model.recommend(h, k=6) for h in histories]
    assert model.recommend(histories, k=6) == one_by_one
    assert model.recommend(histories, k=6, batch_size=4) == one_by_one  # split over passes, order kept
    assert [ranked_by_hand(model, h, 6) for h in histories] == one_by_one


def test_unknown_ids_raise_an_error_listing_them_or_are_skipped():
    model = tiny()
    with pytest.raises(ValueError, match=r"unknown.*'nope'.*on_unknown='skip'"):
        model.recommend(["movie-101", "nope"])
    histories = [["movie-101"], ["movie-102", "ghost-1", "ghost-2"], ["ghost-3", "movie-103"]]
    with pytest.raises(ValueError) as err:
        model.recommend(histories)
    message = str(err.value)
    assert "history 1: 'ghost-1', 'ghost-2'" in message and "history 2: 'ghost-3'" in message
    assert model.recommend(histories, on_unknown="skip") == model.recommend(
        [["movie-101"], ["movie-102"], ["movie-103"]]
    )
    with pytest.raises(ValueError, match="empty after skipping unknown ids"):
        model.recommend([["movie-101"], ["ghost-1"]], on_unknown="skip")
    with pytest.raises(ValueError, match="on_unknown"):
        model.recommend(["movie-101"], on_unknown="ignore")


def test_long_histories_keep_their_most_recent_items():
    model = tiny()
    rng = np.random.default_rng(1)
    long = list(rng.choice(ITEM_IDS, size=3 * MAX_LENGTH))
    recent = long[-MAX_LENGTH:]
    assert model.recommend(long, k=8, exclude_seen=False) == model.recommend(recent, k=8, exclude_seen=False)
    # exclusion still covers the whole history, not only the part the model reads
    recs = model.recommend(long, k=8)
    assert not set(recs) & set(long)
    assert recs == ranked_by_hand(model, long, 8)


def test_ids_may_be_ints_arrays_or_tensors():
    model = tiny(item_ids=[str(i) for i in range(1, NUM_ITEMS + 1)])
    expected = model.recommend(["3", "7", "9"], k=4)
    assert model.recommend([3, 7, 9], k=4) == expected
    assert model.recommend(np.array([3, 7, 9]), k=4) == expected
    assert model.recommend(torch.tensor([3, 7, 9]), k=4) == expected
    assert model.recommend([torch.tensor([3, 7, 9]), [5]], k=4)[0] == expected
    assert model.recommend(torch.tensor([[3, 7, 9], [1, 2, 5]]), k=4)[0] == expected
    assert model.recommend([torch.tensor(3), np.int64(7), 9], k=4) == expected  # scalars from a tensor or array


def test_bad_requests_name_the_problem():
    model = tiny()
    with pytest.raises(ValueError, match="mixes item ids and lists"):
        model.recommend(["movie-101", ["movie-102"]])
    with pytest.raises(ValueError, match="split a space-separated string"):
        model.recommend("movie-101 movie-102")
    with pytest.raises(ValueError, match="k must be"):
        model.recommend(["movie-101"], k=NUM_ITEMS + 1)
    assert model.recommend([]) == []


def test_history_covering_the_catalogue_returns_fewer_items():
    model = tiny()
    recs = model.recommend(ITEM_IDS[:-2], k=5)
    assert len(recs) == 2 and set(recs) == set(ITEM_IDS[-2:])


def test_recommend_restores_training_mode():
    model = tiny().train()
    model.recommend(["movie-101"])
    model.user_embeddings(["movie-101"])
    assert model.training
    assert "score" not in vars(model)  # the embedding capture leaves no instance attribute behind


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_user_embeddings_dot_item_embeddings_are_the_scores(model_type):
    model = tiny(model_type)
    histories = [["movie-101", "movie-102"], ITEM_IDS[:30], ["movie-139"]]
    users = model.user_embeddings(histories)
    ids, items = model.get_item_embeddings()
    assert ids == ITEM_IDS and items.shape == (NUM_ITEMS, users.shape[1]) and users.shape[0] == 3
    assert users.dtype == items.dtype == torch.float32
    index = {raw: i + 1 for i, raw in enumerate(ITEM_IDS)}
    batch = model._left_pad([[index[x] for x in h][-MAX_LENGTH:] for h in histories])
    scores = model.score_histories(batch)[:, 1:]
    bias = model.head.bias[1:] if model_type == "bert4rec" else 0.0  # BERT4Rec's per-item output bias
    torch.testing.assert_close(users @ items.T + bias, scores, rtol=1e-5, atol=1e-5)
    # one history gives one row; the backbone output after the last item is that row
    torch.testing.assert_close(model.user_embeddings(histories[0]), users[:1])


def test_item_embeddings_leave_out_padding_and_the_bert4rec_mask_row():
    model = tiny("bert4rec")
    _, items = model.get_item_embeddings()
    table = model.get_input_embeddings().weight
    assert table.shape[0] == NUM_ITEMS + 2
    torch.testing.assert_close(items, table[1 : NUM_ITEMS + 1])


def test_recommend_and_embeddings_work_with_remote_code_only(saved, tmp_path):
    model = AutoModel.from_pretrained(saved)
    history = ["movie-110", "movie-111", "movie-139"]
    expected_recs = model.recommend(history, k=5)
    torch.save({"users": model.user_embeddings(history)}, tmp_path / "expected.pt")
    script = BLOCK_PACKAGE + textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(saved)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert model.recommend({history!r}, k=5) == {expected_recs!r}, model.recommend({history!r}, k=5)
        expected = torch.load({str(tmp_path / "expected.pt")!r})["users"]
        torch.testing.assert_close(model.user_embeddings({history!r}), expected)
        print("REMOTE_OK")
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert "REMOTE_OK" in result.stdout, result.stdout + result.stderr
