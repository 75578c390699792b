import datasets
import pytest
import torch

from hyenarec_hf.collator import NextItemCollator, add_eval_index, prepare_eval_dataset


def test_train_batch_is_left_padded_with_labels_shifted_by_one():
    batch = NextItemCollator(max_length=10)([{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5, 6, 7, 8]}])
    assert batch["input_ids"].tolist() == [[0, 0, 1, 2], [4, 5, 6, 7]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, -100, 2, 3], [5, 6, 7, 8]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_train_truncation_keeps_the_most_recent_items():
    batch = NextItemCollator(max_length=3)([{"input_ids": [1, 2, 3, 4, 5, 6, 7, 8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7]]
    assert batch["labels"].tolist() == [[6, 7, 8]]


def test_eval_batch_packs_target_index_and_seen_items_from_beyond_max_length():
    features = [
        {"input_ids": [4, 2, 4, 9, 7], "target": 3, "index": 5},
        {"input_ids": [1], "target": 2, "index": 6},
    ]
    batch = NextItemCollator(max_length=2, mode="eval")(features)
    assert batch["input_ids"].tolist() == [[9, 7], [0, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1], [0, 1]]
    assert batch["logits_to_keep"] == 1 and isinstance(batch["logits_to_keep"], int)
    # items 2 and 4 were cut from the model input but are still "seen"; seen items are distinct and sorted
    assert batch["labels"].tolist() == [[3, 5, 2, 4, 7, 9], [2, 6, 1, -100, -100, -100]]


def test_add_eval_index_numbers_rows_and_is_idempotent():
    ds = datasets.Dataset.from_dict({"input_ids": [[1, 2], [3], [4, 5, 6]], "target": [3, 4, 1]})
    ds = add_eval_index(ds)
    assert ds["index"] == [0, 1, 2]
    assert add_eval_index(ds.select([2, 0]))["index"] == [2, 0]  # an existing index follows its row
    batch = NextItemCollator(max_length=2, mode="eval")(list(ds))
    assert batch["labels"][:, :2].tolist() == [[3, 0], [4, 1], [1, 2]]


def test_prepare_eval_dataset_orders_longest_first_and_each_row_keeps_its_index():
    ds = datasets.Dataset.from_dict(
        {"input_ids": [[1, 2], [3, 4, 5, 6, 7], [8], [9, 1, 2, 3, 4], [5, 6, 7]], "target": [10, 11, 12, 13, 14]}
    )
    prepared = prepare_eval_dataset(ds)
    # longest first; the two 5-item users keep the file's order (stable)
    assert prepared["index"] == [1, 3, 4, 0, 2]
    assert prepared["target"] == [11, 13, 14, 10, 12]  # every column follows its row
    assert [len(ids) for ids in prepared["input_ids"]] == [5, 5, 3, 2, 1]
    # the index names the row of the original set, whatever order the rows are scored in
    assert all(ds[row["index"]]["input_ids"] == row["input_ids"] for row in prepared)
    # an index that is already there is kept, not renumbered
    assert prepare_eval_dataset(add_eval_index(ds).select([2, 1]))["index"] == [1, 2]
    rows = [{"input_ids": [1], "target": 2, "index": 0}, {"input_ids": [1, 2, 3], "target": 4, "index": 1}]
    assert [row["index"] for row in prepare_eval_dataset(rows)] == [1, 0]


def test_sorted_eval_batches_pad_fewer_positions():
    # histories of 1..40 items in a shuffled order, as users come in a file: batches of 8 pad to their longest
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0)).tolist()
    ds = datasets.Dataset.from_dict({"input_ids": [list(range(1, n + 2)) for n in order], "target": [1] * 40})
    collator = NextItemCollator(max_length=30, mode="eval")

    def positions(dataset):
        return sum(collator(list(dataset.select(range(s, s + 8))))["input_ids"].numel() for s in range(0, 40, 8))

    real = sum(min(len(ids), 30) for ids in ds["input_ids"])
    in_file_order, sorted_ = positions(add_eval_index(ds)), positions(prepare_eval_dataset(ds))
    # sorted: batch k pads to its longest, min(40 - 8k, 30) items: 8 * (30 + 30 + 24 + 16 + 8)
    assert sorted_ == 8 * (30 + 30 + 24 + 16 + 8) < in_file_order
    assert real <= sorted_


@pytest.mark.parametrize(
    ("mode", "feature", "message"),
    [
        ("train", {"input_ids": [5]}, "at least 2 items"),
        ("eval", {"input_ids": [], "target": 1, "index": 0}, "empty history"),
        ("train", {"input_ids": [3, 0, 4]}, "item id 0"),
        ("eval", {"input_ids": [3, -2], "target": 1, "index": 0}, "item id -2"),
        ("train", {"input_ids": [1.0, 2.0]}, "integer item ids"),
        ("eval", {"input_ids": [3], "target": 1}, "add_eval_index"),
        ("eval", {"input_ids": [3], "target": 0, "index": 0}, "`target` must be an integer >= 1"),
    ],
)
def test_invalid_rows_raise_errors_naming_the_problem(mode, feature, message):
    with pytest.raises(ValueError, match=message):
        NextItemCollator(max_length=4, mode=mode)([{"input_ids": [1, 2], "target": 1, "index": 9}, feature])


def test_error_names_the_row():
    with pytest.raises(ValueError, match="row 1 of the batch"):
        NextItemCollator(max_length=4)([{"input_ids": [1, 2]}, {"input_ids": [1, 0]}])


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mode"):
        NextItemCollator(max_length=4, mode="test")
