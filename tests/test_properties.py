"""Property-based tests (hypothesis): whatever the histories, ids, batch composition and padding, the readers, the
split, the windows, the collator and the model give every user exactly their own most recent items."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import datasets
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyenarec_hf import HyenaRecConfig, HyenaRecForNextItemPrediction
from hyenarec_hf.collator import IGNORE_INDEX, NextItemCollator
from hyenarec_hf.data import Interactions, build_splits, read_pairs, read_seq, window_sequences

datasets.disable_progress_bars()
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NUM_ITEMS = 30
histories = st.lists(st.integers(1, NUM_ITEMS), min_size=1, max_size=25)


def unpadded(row: torch.Tensor, pad: int) -> list[int]:
    """The values after the left padding; asserts that padding only occurs on the left."""
    values = row.tolist()
    start = next((i for i, v in enumerate(values) if v != pad), len(values))
    assert pad not in values[start:], "padding inside a row"
    return values[start:]


# ---------------------------------------------------------------------------------------------------------------
# Collator
# ---------------------------------------------------------------------------------------------------------------


@FAST
@given(batch=st.lists(histories, min_size=1, max_size=6), max_length=st.integers(1, 12), data=st.data())
def test_eval_rows_are_each_users_most_recent_items_whatever_the_batch(batch, max_length, data):
    collator = NextItemCollator(max_length=max_length, mode="eval")
    targets = data.draw(st.lists(st.integers(1, NUM_ITEMS), min_size=len(batch), max_size=len(batch)))
    features = [{"input_ids": h, "target": t, "index": i} for i, (h, t) in enumerate(zip(batch, targets))]
    out = collator(features)
    for i, history in enumerate(batch):
        assert unpadded(out["input_ids"][i], 0) == history[-max_length:]
        assert out["attention_mask"][i].sum() == len(history[-max_length:])
        assert out["attention_mask"][i].tolist() == [int(v != 0) for v in out["input_ids"][i].tolist()]
        labels = [v for v in out["labels"][i].tolist() if v != IGNORE_INDEX]
        assert labels == [targets[i], i, *sorted(set(history))]  # seen items: the whole history, beyond max_length
        # the same row alone: identical once the padding is stripped
        alone = collator([features[i]])
        assert unpadded(alone["input_ids"][0], 0) == unpadded(out["input_ids"][i], 0)
    assert out["input_ids"].shape[1] == max(len(h[-max_length:]) for h in batch)  # no more padding than needed


@FAST
@given(batch=st.lists(st.lists(st.integers(1, NUM_ITEMS), min_size=2, max_size=25), min_size=1, max_size=6),
       max_length=st.integers(1, 12))  # fmt: skip
def test_train_rows_are_the_most_recent_window_with_next_item_labels(batch, max_length):
    out = NextItemCollator(max_length=max_length)([{"input_ids": h} for h in batch])
    for i, history in enumerate(batch):
        window = history[-(max_length + 1) :]
        inputs = unpadded(out["input_ids"][i], 0)
        labels = unpadded(out["labels"][i], IGNORE_INDEX)
        assert inputs == window[:-1] and labels == window[1:]
        # labels sit exactly under the inputs they follow
        width = out["input_ids"].shape[1]
        assert out["labels"][i, width - len(labels) :].tolist() == labels
        assert (out["labels"][i, : width - len(labels)] == IGNORE_INDEX).all()


# ---------------------------------------------------------------------------------------------------------------
# Model: padding and batch-mates never change a user's scores
# ---------------------------------------------------------------------------------------------------------------

_MODEL = None


def tiny_model() -> HyenaRecForNextItemPrediction:
    global _MODEL
    if _MODEL is None:
        torch.manual_seed(0)
        config = HyenaRecConfig(
            num_items=NUM_ITEMS,
            hidden_size=8,
            intermediate_size=16,
            num_hidden_layers=2,
            legendre_order=4,
            max_position_embeddings=12,
            hidden_dropout_prob=0.0,
        )
        _MODEL = HyenaRecForNextItemPrediction(config).eval()
    return _MODEL


@SLOW
@given(batch=st.lists(histories, min_size=2, max_size=5))
def test_a_users_scores_do_not_depend_on_batch_mates_or_padding(batch):
    model = tiny_model()
    collator = NextItemCollator(max_length=12, mode="eval")
    features = [{"input_ids": h, "target": 1, "index": i} for i, h in enumerate(batch)]
    together = collator(features)
    with torch.no_grad():
        scores = model(together["input_ids"], together["attention_mask"], logits_to_keep=1).logits[:, -1]
        for i, feature in enumerate(features):
            alone = collator([feature])
            own = model(alone["input_ids"], alone["attention_mask"], logits_to_keep=1).logits[0, -1]
            torch.testing.assert_close(scores[i], own, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Leave-one-out split and windows
# ---------------------------------------------------------------------------------------------------------------

raw_sequences = st.lists(st.lists(st.sampled_from([f"i{k}" for k in range(15)]), min_size=1, max_size=12), max_size=8)


@FAST
@given(sequences=raw_sequences.filter(lambda s: len(s) > 0))
def test_splits_are_prefixes_of_each_users_chronological_sequence(sequences):
    users = [f"u{k}" for k in range(len(sequences))]
    interactions = Interactions(users=users, sequences=[list(s) for s in sequences])
    splits, vocab = build_splits(interactions)
    assert sorted(vocab.to_list()) == sorted({i for s in sequences for i in s})
    by_user = dict(zip(users, sequences))
    train = {row["user"]: vocab.decode(row["input_ids"]) for row in splits["train"]}
    for name, cut in (("validation", 2), ("test", 1)):
        rows = {row["user"]: row for row in splits[name]}
        assert set(rows) == {u for u, s in by_user.items() if len(s) >= 3}
        for user, row in rows.items():
            seq = by_user[user]
            assert vocab.decode(row["input_ids"]) == seq[:-cut]  # the whole history before the target
            assert vocab.decode([row["target"]]) == [seq[-cut]]
    for user, seq in by_user.items():
        if len(seq) >= 4:
            assert train[user] == seq[:-2]  # never sees the validation or test target
        elif len(seq) == 2:
            assert train[user] == seq  # not evaluated: the whole sequence trains
        else:
            assert user not in train
    counts = interactions.report["splits"]
    assert counts["users_dropped_1_item"] == sum(len(s) == 1 for s in sequences)


@FAST
@given(
    history=st.lists(st.integers(1, 1000), min_size=1, max_size=40, unique=True),  # distinct: a window's place is known
    max_length=st.integers(1, 10),
    data=st.data(),
)
def test_windows_are_slices_that_cover_every_label(history, max_length, data):
    stride = data.draw(st.integers(1, max_length))
    train = datasets.Dataset.from_dict({"user": ["u"], "input_ids": [history]})
    windows = window_sequences(train, max_length, stride=stride)["input_ids"]
    starts = []
    for window in windows:
        assert 1 <= len(window) <= max_length + 1
        start = next(s for s in range(len(history)) if history[s : s + len(window)] == window)
        starts.append(start)
    assert windows[-1] == history[-(max_length + 1) :]  # the most recent window is always there
    assert starts == sorted(starts) and starts[0] == 0
    labelled = {start + k for start, window in zip(starts, windows) for k in range(1, len(window))}
    assert labelled == set(range(1, len(history)))


# ---------------------------------------------------------------------------------------------------------------
# Readers round-trip
# ---------------------------------------------------------------------------------------------------------------

user_sequences = st.dictionaries(
    st.integers(0, 10**6).map(str),
    st.lists(st.integers(0, 10**9).map(str), min_size=1, max_size=10),
    min_size=1,
    max_size=8,
)


def _write(text: str, folder: str, compress: bool) -> Path:
    path = Path(folder) / ("data.txt.gz" if compress else "data.txt")
    if compress:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@FAST
@given(users=user_sequences, compress=st.booleans(), data=st.data())
def test_pair_files_round_trip_whatever_the_line_interleaving(users, compress, data):
    events = [(user, item) for user, items in users.items() for item in items]
    order = data.draw(st.permutations(range(len(events))))
    # any interleaving of users that keeps each user's own order
    per_user = {user: iter(items) for user, items in users.items()}
    lines = [f"{events[k][0]} {next(per_user[events[k][0]])}" for k in order]
    with tempfile.TemporaryDirectory() as folder:
        interactions = read_pairs(_write("\n".join(lines) + "\n", folder, compress))
    assert dict(zip(interactions.users, interactions.sequences)) == users
    assert interactions.report["interactions"] == len(events)


@FAST
@given(users=user_sequences, compress=st.booleans(), data=st.data())
def test_seq_files_round_trip_with_users_split_over_lines(users, compress, data):
    lines = []
    for user, items in users.items():
        cut = data.draw(st.integers(1, len(items)))
        lines.append(" ".join([user, *items[:cut]]))
        if cut < len(items):
            lines.append(" ".join([user, *items[cut:]]))
    with tempfile.TemporaryDirectory() as folder:
        interactions = read_seq(_write("\n".join(lines) + "\n", folder, compress))
    assert dict(zip(interactions.users, interactions.sequences)) == users
