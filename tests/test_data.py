"""Tests for hyenarec_hf.data: readers, filters, vocabulary, leave-one-out splits and windowing."""

from __future__ import annotations

import gzip
import hashlib
import logging
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from datasets import Dataset

from hyenarec_hf import data
from hyenarec_hf.data import (
    DatasetDownloadError,
    Interactions,
    ItemVocab,
    build_splits,
    detect_format,
    download_dataset,
    from_dataframe,
    load_interactions,
    read_grouplens,
    read_pairs,
    read_recbole_inter,
    read_seq,
    read_table,
    window_sequences,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def as_dict(interactions: Interactions) -> dict[str, list[str]]:
    return dict(zip(interactions.users, interactions.sequences))


# ---------------------------------------------------------------------------------------------------------------
# pair / seq
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pairs.txt", "pairs.txt.gz"])
def test_read_pairs_groups_by_user_in_file_order_even_when_not_contiguous(tmp_path, name):
    path = write(tmp_path, name, "2 5\n1 7\n2 3\n\n1 5\n2 9\n")
    interactions = read_pairs(path)
    assert interactions.users == ["2", "1"]
    assert interactions.sequences == [["5", "3", "9"], ["7", "5"]]
    assert interactions.num_interactions() == 5
    assert interactions.num_items() == 4
    assert interactions.report["interactions"] == 5


@pytest.mark.parametrize(
    "bad_line", ["1 2 3", "1 abc", "x 1", "7"], ids=["three-tokens", "str-item", "str-user", "one-token"]
)
def test_read_pairs_malformed_line_raises_with_file_and_line_number(tmp_path, bad_line):
    path = write(tmp_path, "pairs.txt", f"1 1\n1 2\n{bad_line}\n2 1\n")
    with pytest.raises(ValueError, match=rf"{path} line 3: expected .*skip_malformed=True"):
        read_pairs(path)


def test_skip_malformed_counts_lines_and_logs_a_warning(tmp_path, caplog):
    path = write(tmp_path, "pairs.txt.gz", "1 1\nbad\n1 2\n1 x\n2 1\n")
    with caplog.at_level(logging.WARNING, logger="hyenarec_hf.data"):
        interactions = read_pairs(path, skip_malformed=True)
    assert as_dict(interactions) == {"1": ["1", "2"], "2": ["1"]}
    assert interactions.report["malformed_lines_skipped"] == 2
    assert interactions.report["first_malformed_lines"] == [2, 4]
    assert "skipped 2 malformed lines" in caplog.text


def test_only_malformed_lines_is_an_error_even_when_skipping(tmp_path):
    path = write(tmp_path, "pairs.txt", "a b\nc d\n")
    with pytest.raises(ValueError, match="all 2 lines were malformed"):
        read_pairs(path, skip_malformed=True)


def test_read_seq_reads_users_concatenates_repeated_users_and_rejects_bad_lines(tmp_path):
    path = write(tmp_path, "seq.txt", "10 1 2 3\n20 4\n10 5\n")
    assert as_dict(read_seq(path)) == {"10": ["1", "2", "3", "5"], "20": ["4"]}
    gz = write(tmp_path, "seq.txt.gz", "10 1 2 3\n")
    assert read_seq(gz).sequences == [["1", "2", "3"]]
    for bad in ("30", "30 1 b2"):
        path = write(tmp_path, "bad.txt", f"10 1 2\n{bad}\n")
        with pytest.raises(ValueError, match=rf"{path} line 2"):
            read_seq(path)
    assert read_seq(path, skip_malformed=True).report["malformed_lines_skipped"] == 1


@pytest.mark.parametrize(
    ("reader", "name"),
    [
        (read_pairs, "e.txt"),
        (read_pairs, "e.txt.gz"),
        (read_seq, "e.txt"),
        (read_grouplens, "ratings.dat"),
        (read_grouplens, "ratings.csv"),
        (read_recbole_inter, "e.inter"),
        (read_table, "e.csv"),
        (load_interactions, "e.txt"),
    ],
)
def test_empty_file_raises_naming_the_file(tmp_path, reader, name):
    path = write(tmp_path, name, "")
    with pytest.raises(ValueError, match=rf"{path}.*(empty|no interactions)"):
        reader(path)


def test_formats_without_ratings_reject_rating_threshold(tmp_path):
    path = write(tmp_path, "p.txt", "1 1\n")
    with pytest.raises(ValueError, match="has no ratings"):
        read_pairs(path, rating_threshold=4)
    inter = write(tmp_path, "x.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(ValueError, match="has no ratings"):
        read_recbole_inter(inter, rating_threshold=4)
    with pytest.raises(ValueError, match="pass rating_col|no ratings"):
        from_dataframe(pd.DataFrame({"user_id": [1], "item_id": [2]}), rating_threshold=4)


# ---------------------------------------------------------------------------------------------------------------
# GroupLens
# ---------------------------------------------------------------------------------------------------------------

RATINGS_DAT = "1::10::5::300\n1::11::2::100\n1::12::4::200\n1::13::4::100\n2::10::1::50\n"


@pytest.mark.parametrize("name", ["ratings.dat", "ratings.dat.gz"])
def test_grouplens_dat_sorts_by_timestamp_keeping_file_order_for_ties(tmp_path, name):
    interactions = read_grouplens(write(tmp_path, name, RATINGS_DAT))
    # 11 and 13 share timestamp 100: file order (11 first) must survive.
    assert as_dict(interactions) == {"1": ["11", "13", "12", "10"], "2": ["10"]}


def test_grouplens_rating_threshold_keeps_ratings_at_or_above_and_counts_removed(tmp_path):
    interactions = read_grouplens(write(tmp_path, "ratings.dat", RATINGS_DAT), rating_threshold=4)
    assert as_dict(interactions) == {"1": ["13", "12", "10"]}
    assert interactions.report["interactions_below_rating_threshold"] == 2
    assert interactions.report["users_removed_by_rating_threshold"] == 1


def test_grouplens_csv_and_u_data_layouts(tmp_path):
    csv = write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n1,5,3.5,20\n1,6,4.0,10\n")
    assert read_grouplens(csv).sequences == [["6", "5"]]
    assert detect_format(csv) == "grouplens"
    udata = write(tmp_path, "u.data", "196\t242\t3\t881250949\n196\t302\t3\t881250940\n")
    assert read_grouplens(udata).sequences == [["302", "242"]]
    wrong = write(tmp_path, "other.csv", "user,item\n1,2\n")
    with pytest.raises(ValueError, match="expected the GroupLens header"):
        read_grouplens(wrong)
    with pytest.raises(ValueError, match=r"line 3: expected .*\(ids must be integers\)"):
        read_grouplens(write(tmp_path, "ratings.dat", "1::10::5::300\n\n1::m10::5::300\n"))


# ---------------------------------------------------------------------------------------------------------------
# RecBole and tables
# ---------------------------------------------------------------------------------------------------------------

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\tb\t5\t30\nu1\ta\t1\t10\nu2\tc\t4\t5\nu1\tz\t3\t10\n"
)


def test_recbole_reads_string_tokens_sorted_by_time_with_stable_ties(tmp_path):
    interactions = read_recbole_inter(write(tmp_path, "x.inter", INTER))
    assert as_dict(interactions) == {"u1": ["a", "z", "b"], "u2": ["c"]}
    assert interactions.report["lines_read"] == 4
    assert as_dict(read_recbole_inter(write(tmp_path, "x.inter", INTER), rating_threshold=3)) == {
        "u1": ["z", "b"],
        "u2": ["c"],
    }


def test_recbole_custom_and_missing_columns(tmp_path):
    path = write(tmp_path, "y.inter", "uid:token\tiid:token\tts:float\nu\ta\t2\nu\tb\t1\n")
    assert read_recbole_inter(path, user_col="uid", item_col="iid", time_col="ts").sequences == [["b", "a"]]
    # The default timestamp column is absent: file order.
    assert read_recbole_inter(path, user_col="uid", item_col="iid").sequences == [["a", "b"]]
    with pytest.raises(ValueError, match=r"no column 'user_id' .*available columns: \['uid:token'"):
        read_recbole_inter(path)
    bad = write(tmp_path, "z.inter", INTER + "u3\tq\tfive\t1\n")
    with pytest.raises(ValueError, match=rf"{bad} line 6"):
        read_recbole_inter(bad)


def test_from_dataframe_sorts_by_time_converts_ids_and_flags_missing_values():
    df = pd.DataFrame(
        {
            "uid": [1.0, 1.0, 2.0, 1.0, None],
            "item": ["007", "b", "c", "d", "e"],
            "t": [3, 1, 1, 1, 0],
            "r": [5, 5, 1, 2, 5],
        }
    )
    with pytest.raises(ValueError, match=r"DataFrame row 4: .*missing user or item id.*skip_malformed=True"):
        from_dataframe(df, "uid", "item", "t")
    interactions = from_dataframe(df, "uid", "item", "t", "r", skip_malformed=True)
    assert as_dict(interactions) == {"1": ["b", "d", "007"], "2": ["c"]}
    assert interactions.report["malformed_lines_skipped"] == 1
    kept = from_dataframe(df.dropna(), "uid", "item", "t", "r", rating_threshold=4)
    assert as_dict(kept) == {"1": ["b", "007"]}
    with pytest.raises(ValueError, match=r"column 'user_id' \(user_col\) not found; available columns: \['uid'"):
        from_dataframe(df)


def test_read_table_reads_csv_parquet_and_datasets(tmp_path):
    df = pd.DataFrame({"user_id": ["7", "7", "8"], "item_id": ["01", "02", "01"], "ts": [2, 1, 0]})
    csv = tmp_path / "t.csv"
    df.to_csv(csv, index=False)
    parquet = tmp_path / "t.parquet"
    df.to_parquet(parquet)
    expected = {"7": ["02", "01"], "8": ["01"]}
    assert as_dict(read_table(csv, time_col="ts")) == expected  # "01" keeps its leading zero
    assert as_dict(read_table(parquet, time_col="ts")) == expected
    assert as_dict(read_table(Dataset.from_pandas(df), time_col="ts")) == expected
    assert as_dict(load_interactions(csv, time_col="ts")) == expected
    with pytest.raises(ValueError, match=r"column 'when' \(time_col\) not found; available columns"):
        read_table(parquet, time_col="when")


# ---------------------------------------------------------------------------------------------------------------
# Filters and dispatch
# ---------------------------------------------------------------------------------------------------------------


def test_kcore_repeats_until_stable(tmp_path):
    # min_user=3, min_item=2. Round 1 drops item 14 (1 event) so user 3 falls to 2 items and goes; that leaves item
    # 13 with 1 event, so round 2 drops it and user 4. A single pass would keep user 4.
    rows = {1: [10, 11, 12], 2: [10, 11, 12], 3: [12, 13, 14], 4: [13, 10, 11]}
    text = "".join(f"{u} {i}\n" for u, items in rows.items() for i in items)
    interactions = read_pairs(write(tmp_path, "k.txt", text), min_user_interactions=3, min_item_interactions=2)
    assert as_dict(interactions) == {"1": ["10", "11", "12"], "2": ["10", "11", "12"]}
    report = interactions.report
    assert report["kcore_rounds"] == 2
    assert (report["users_removed_by_kcore"], report["items_removed_by_kcore"]) == (2, 2)
    assert report["interactions_removed_by_kcore"] == 6


def test_max_history_length_keeps_the_most_recent_items(tmp_path):
    path = write(tmp_path, "ratings.dat", "1::10::5::4\n1::11::5::1\n1::12::5::3\n1::13::5::2\n2::10::5::1\n")
    interactions = read_grouplens(path, max_history_length=2)
    assert as_dict(interactions) == {"1": ["12", "10"], "2": ["10"]}
    assert interactions.report["interactions_removed_by_max_history_length"] == 2


def test_detect_format_and_load_interactions_dispatch(tmp_path):
    assert detect_format(write(tmp_path, "a.txt", "1 2\n1 3\n")) == "pair"
    assert detect_format(write(tmp_path, "b.txt.gz", "1 2\n1 3 4\n")) == "seq"
    assert detect_format(write(tmp_path, "c.inter", INTER)) == "recbole"
    assert detect_format(write(tmp_path, "ratings.dat", RATINGS_DAT)) == "grouplens"
    assert detect_format(write(tmp_path, "d.csv", "user_id,item_id\n1,2\n")) == "csv"
    assert load_interactions(tmp_path / "b.txt.gz").sequences == [["2", "3", "4"]]
    assert load_interactions(tmp_path / "a.txt", format="seq").sequences == [["2", "3"]]
    with pytest.raises(ValueError, match="pass format="):
        detect_format(write(tmp_path, "e.json", "{}"))
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        load_interactions(tmp_path / "a.txt", format="xml")


# ---------------------------------------------------------------------------------------------------------------
# Downloads (never a real one)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return tmp_path / "hf"


def test_download_offline_raises_with_url_target_file_and_shared_copy(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    target = hf_home / "hyenarec" / "datasets" / "ml-1m" / "ratings.dat"
    with pytest.raises(DatasetDownloadError) as err:
        download_dataset("ml-1m")
    message = str(err.value)
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in message
    assert str(target) in message and "ml-1m/ratings.dat" in message
    assert "--data-file ../shared/data/ml-1m/ml-1m.txt.gz" in message


def test_download_failure_raises_at_once_naming_url(hf_home):
    with pytest.raises(DatasetDownloadError, match=r"ml-100k\.zip \(URLError.*put its file ml-100k/u\.data at"):
        download_dataset("ml-100k")
    with pytest.raises(ValueError, match="unknown dataset 'ml-5m'"):
        download_dataset("ml-5m")


def test_download_uses_cached_ratings_file_without_network(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = hf_home / "hyenarec" / "datasets" / "ml-1m" / "ratings.dat"
    cached.parent.mkdir(parents=True)
    cached.write_text(RATINGS_DAT)
    path = download_dataset("ml-1m")
    assert path == cached
    assert read_grouplens(path).num_interactions() == 5


def test_download_extracts_a_cached_archive_after_checking_its_checksum(hf_home, tmp_path, monkeypatch):
    folder = tmp_path / "cache" / "ml-1m"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "ml-1m.zip", "w") as zf:
        zf.writestr("ml-1m/ratings.dat", RATINGS_DAT)
    remote = data.GROUPLENS_DATASETS["ml-1m"]
    monkeypatch.setitem(
        data.GROUPLENS_DATASETS, "ml-1m", data.RemoteDataset(remote.url, "0" * 32, remote.ratings_member)
    )
    with pytest.raises(ValueError, match="md5 is .*expected 0000"):
        download_dataset("ml-1m", cache_dir=tmp_path / "cache")
    md5 = hashlib.md5((folder / "ml-1m.zip").read_bytes()).hexdigest()
    monkeypatch.setitem(data.GROUPLENS_DATASETS, "ml-1m", data.RemoteDataset(remote.url, md5, remote.ratings_member))
    path = download_dataset("ml-1m", cache_dir=tmp_path / "cache")
    assert path == folder / "ratings.dat" and path.read_text() == RATINGS_DAT


# ---------------------------------------------------------------------------------------------------------------
# ItemVocab
# ---------------------------------------------------------------------------------------------------------------


def test_vocab_round_trip_first_appearance_order_and_padding():
    vocab = ItemVocab.from_sequences([["b", "a"], ["a", "c"]])
    assert vocab.to_list() == ["b", "a", "c"] and len(vocab) == 3
    assert vocab.encode(["c", "b", "a"]) == [3, 1, 2]
    assert vocab.decode(vocab.encode(["c", "b", "a"])) == ["c", "b", "a"]
    assert ItemVocab(vocab.to_list()) == vocab
    assert ItemVocab(["x", "y"]).encode(["y"]) == [2]
    for bad in (0, 4, -1):
        with pytest.raises(ValueError, match=f"index {bad} is"):
            vocab.decode([1, bad])


def test_vocab_unknown_items_error_lists_them_or_are_skipped():
    vocab = ItemVocab(["a", "b"])
    with pytest.raises(ValueError, match=r"2 item ids are not in the vocabulary .*\['x', 'y'\].*on_unknown='skip'"):
        vocab.encode(["a", "x", "y", "x"])
    assert vocab.encode(["a", "x", "b"], on_unknown="skip") == [1, 2]
    with pytest.raises(ValueError, match="convert them with str"):
        vocab.encode([1])


def test_vocab_extend_appends_only_new_ids_and_keeps_indices():
    vocab = ItemVocab(["a", "b"])
    assert vocab.extend(["b", "c", "a", "d", "c"]) == ["c", "d"]
    assert vocab.encode(["a", "b", "c", "d"]) == [1, 2, 3, 4]
    assert vocab != ItemVocab(["a", "b"])
    with pytest.raises(ValueError, match="must be unique"):
        ItemVocab(["a", "a"])
    with pytest.raises(TypeError, match="must be str"):
        ItemVocab([1, 2])


# ---------------------------------------------------------------------------------------------------------------
# Splits and windows
# ---------------------------------------------------------------------------------------------------------------


def check_leave_one_out(interactions: Interactions, splits, vocab: ItemVocab) -> None:
    """Targets are the last two items; train input_ids are exactly items[:-2] (never a held-out target)."""
    by_user = {u: vocab.encode(s) for u, s in zip(interactions.users, interactions.sequences)}
    evaluated = [u for u, s in by_user.items() if len(s) >= 3]
    train = dict(zip(*splits["train"][:].values()))
    for name, cut in (("validation", -2), ("test", -1)):
        split = splits[name][:]
        assert split["user"] == evaluated
        for user, input_ids, target in zip(split["user"], split["input_ids"], split["target"]):
            items = by_user[user]
            assert target == items[cut] and input_ids == items[:cut]
    for user, input_ids in train.items():
        items = by_user[user]
        assert input_ids == (items[:-2] if len(items) >= 3 else items)
        assert len(input_ids) >= 2


def test_build_splits_leave_one_out_and_counts_users_that_cannot_be_split(caplog):
    interactions = Interactions(
        users=["u1", "u2", "u3", "u4", "u5"],
        sequences=[["a", "b", "c", "d", "e"], ["a"], ["b", "c"], ["c", "a", "d"], ["e", "b", "a", "d"]],
    )
    with caplog.at_level(logging.WARNING, logger="hyenarec_hf.data"):
        splits, vocab = build_splits(interactions)
    assert vocab.to_list() == ["a", "b", "c", "d", "e"]
    assert splits["train"]["user"] == ["u1", "u3", "u5"]
    assert splits["train"]["input_ids"] == [[1, 2, 3], [2, 3], [5, 2]]
    assert splits["validation"]["target"] == [4, 1, 1] and splits["test"]["target"] == [5, 4, 4]
    assert splits["test"]["input_ids"][1] == [3, 1]
    check_leave_one_out(interactions, splits, vocab)
    for split in splits.values():
        assert split.features["input_ids"].feature.dtype == "int64"
    assert splits["test"].features["target"].dtype == "int64"
    counts = interactions.report["splits"]
    assert counts["users_dropped_1_item"] == 1
    assert counts["users_train_only_2_items"] == 1
    assert counts["users_without_train_pair_3_items"] == 1
    assert "users_dropped_1_item" in splits["train"].info.description
    assert "users not in every split" in caplog.text


def test_build_splits_with_given_vocab_raises_or_skips_unknown_items():
    interactions = Interactions(users=["u"], sequences=[["a", "x", "b", "c", "y"]])
    vocab = ItemVocab(["c", "b", "a"])
    with pytest.raises(ValueError, match=r"2 interactions with 2 items are not in the given vocabulary.*\['x', 'y'\]"):
        build_splits(interactions, vocab)
    splits, same = build_splits(interactions, vocab, on_unknown="skip")
    assert same is vocab
    assert splits["test"]["input_ids"] == [[3, 2]] and splits["test"]["target"] == [1]
    assert interactions.report["splits"]["unknown_interactions_skipped"] == 2


def test_window_sequences_makes_every_item_but_the_first_a_label():
    histories = [list(range(1, n + 1)) for n in range(1, 24)]
    train = Dataset.from_dict({"user": [str(len(h)) for h in histories], "input_ids": histories})
    for max_length, stride in ((4, None), (4, 1), (5, 3), (1, None)):
        windows = window_sequences(train, max_length, stride)
        by_user: dict[str, list[list[int]]] = {}
        for user, ids in zip(windows["user"], windows["input_ids"]):
            by_user.setdefault(user, []).append(ids)
        for history in histories:
            cut = by_user[str(len(history))]
            if len(history) <= max_length + 1:
                assert cut == [history]
                continue
            assert all(len(w) == max_length + 1 for w in cut)
            assert cut[-1] == history[-(max_length + 1) :] and cut[0][0] == history[0]
            # items are 1..n, so an item's value is its position + 1; labels are every window item but the first
            labels = {item for w in cut for item in w[1:]}
            assert labels == set(history[1:])
    with pytest.raises(ValueError, match="stride must be"):
        window_sequences(train, 4, stride=5)


# ---------------------------------------------------------------------------------------------------------------
# Real datasets in ../shared/data
# ---------------------------------------------------------------------------------------------------------------

REAL = {
    # file: (reader, format detected, users, items, interactions)
    "ml-1m/ml-1m.txt.gz": (read_pairs, "pair", 6_040, 3_416, 999_611),
    "amazon-beauty/Beauty.txt": (read_seq, "seq", 22_363, 12_101, 198_502),
    "amazon-video-games/Video.txt": (read_pairs, "pair", 31_013, 23_715, 287_107),
    "ml-100k/ml-100k.inter": (read_recbole_inter, "recbole", 943, 1_682, 100_000),
}


@pytest.fixture(scope="module")
def real():
    """Read each shared dataset at most once per session (the ML-1M read is the slow part)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    cache: dict[str, Interactions] = {}

    def get(name: str) -> Interactions:
        if name not in cache:
            cache[name] = REAL[name][0](SHARED_DATA / name)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(REAL))
def test_real_dataset_matches_readme_statistics(real, name):
    _, fmt, users, items, events = REAL[name]
    interactions = real(name)
    assert (interactions.num_users(), interactions.num_items(), interactions.num_interactions()) == (
        users,
        items,
        events,
    )
    assert interactions.report["malformed_lines_skipped"] == 0
    assert detect_format(SHARED_DATA / name) == fmt


@pytest.mark.parametrize("name", ["ml-100k/ml-100k.inter", "amazon-video-games/Video.txt"])
def test_real_dataset_splits_hold_out_the_last_two_items(real, name):
    interactions = real(name)
    splits, vocab = build_splits(interactions)
    assert len(vocab) == interactions.num_items()
    check_leave_one_out(interactions, splits, vocab)
    lengths = [len(s) for s in interactions.sequences]
    counts = interactions.report["splits"]
    assert counts["evaluated_users"] == sum(n >= 3 for n in lengths) == len(splits["test"])
    assert counts["users_dropped_1_item"] == lengths.count(1)
