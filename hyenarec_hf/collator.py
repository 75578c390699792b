"""Batching of user histories for next-item training and leave-one-out evaluation.

Item ids are 1..N and 0 is padding. Rows are LEFT padded so that the most recent item of every user sits at the
last position, which is the one the model scores at evaluation time (`logits_to_keep=1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100


def add_eval_index(dataset: Any) -> Any:
    """Add an `index` column (the row's position, 0..n-1) to an evaluation `datasets.Dataset`.

    [`NextItemCollator`] in `"eval"` mode packs this index into the labels so that the sampled-negatives protocol
    of [`~hyenarec_hf.metrics.target_ranks`] draws the same negatives for a user whatever the batch size, the order
    of the batches or the number of processes. A dataset that already has an `index` column is returned unchanged.
    """
    if "index" in dataset.column_names:
        return dataset
    return dataset.map(lambda batch, idx: {"index": idx}, with_indices=True, batched=True, desc="Adding eval index")


def prepare_eval_dataset(dataset: Any) -> Any:
    """An evaluation set ready for [`NextItemCollator`] in `"eval"` mode: the `index` column of [`add_eval_index`]
    (added first, so it keeps naming each user's original row), then the rows ordered longest history first.

    Evaluation batches are padded to their longest history, and the order of the rows changes no metric (each user's
    rank is computed alone and the metrics are sums over users; sampled negatives are drawn by `index`). In the order
    of the file, almost every batch holds one long history: on ML-1M at L = 1000 a batch of 128 pads to about 1,000
    positions while its users have 165 items on average. Sorted, each batch pads to about its own users' lengths.
    Longest first, so the largest batch (the peak memory) comes at once, not at the end. Accepts a `datasets.Dataset`
    or a list of row dicts (each with `index` already, as `add_eval_index` cannot number a list).
    """
    if isinstance(dataset, list):
        return sorted(dataset, key=lambda row: len(row["input_ids"]), reverse=True)
    dataset = add_eval_index(dataset)
    lengths = dataset.map(
        lambda batch: {"history_length": [len(ids) for ids in batch["input_ids"]]},
        batched=True,
        remove_columns=dataset.column_names,
        desc="History lengths",
    )["history_length"]
    # stable: users of equal length keep the file's order
    return dataset.select(np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable"))


def _history(feature: dict, row: int) -> np.ndarray:
    """The row's `input_ids` as an int64 array, checked to be item ids >= 1."""
    where = f"row {row} of the batch" + (f" (dataset index {feature['index']})" if "index" in feature else "")
    if "input_ids" not in feature:
        raise ValueError(f"{where} has no `input_ids`; every feature must carry the user's item history.")
    ids = feature["input_ids"]
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    array = np.asarray(ids)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ValueError(
            f"{where}: `input_ids` must be a flat list of integer item ids, got dtype {array.dtype} "
            f"with shape {array.shape}."
        )
    bad = array < 1
    if bad.any():
        value = int(array[bad.argmax()])
        raise ValueError(
            f"{where}: item id {value} inside the history; item ids start at 1 (0 is padding). "
            "Map raw ids to 1..N before batching and drop padding from stored histories."
        )
    return array.astype(np.int64, copy=False)


def _left_pad(rows: Sequence[np.ndarray], value: int) -> torch.Tensor:
    """Stack 1-d arrays into `(batch, longest)` LongTensor, padded with `value` on the left."""
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            out[i, width - len(r) :] = torch.from_numpy(r)
    return out


def _scalar_item(feature: dict, key: str, row: int, minimum: int) -> int:
    if key not in feature:
        hint = " Call `hyenarec_hf.collator.add_eval_index(dataset)` first." if key == "index" else ""
        raise ValueError(
            f"row {row} of the batch has no `{key}`; eval features need `input_ids`, `target`, `index`.{hint}"
        )
    value = feature[key]
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"row {row} of the batch: `{key}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


@dataclass
class NextItemCollator:
    """Turns dataset rows into model batches for next-item prediction.

    Args:
        max_length (`int`): the longest input the model sees; longer histories keep their most recent items.
        mode (`str`, defaults to `"train"`):
            - `"train"`: each row is `{"input_ids": list[int]}`, the whole chronological history. The last
              `max_length + 1` items are kept; the model input is all but the last one and `labels` is the same
              sequence shifted by one (the next item at every real position), so labels are already aligned with
              the logits and no further shift must be applied.
            - `"eval"`: each row is `{"input_ids": list[int], "target": int, "index": int}` where `input_ids` is
              the whole history before the target and `index` the row's position in the eval dataset (add it with
              [`add_eval_index`]). The last `max_length` items are the model input.
            - `"auto"`: `"eval"` for rows that carry a `target`, `"train"` otherwise (one collator for the Trainer,
              which uses the same `data_collator` for training and evaluation batches).
        pad_token_id (`int`, defaults to 0): the id used to pad `input_ids`.

    Returns (train): `input_ids`, `attention_mask`, `labels`, each `(batch, longest)`, `labels` padded with -100.

    Returns (eval): `input_ids` and `attention_mask` `(batch, longest)`, `logits_to_keep=1` (a python int, so the
    model returns logits `(batch, 1, num_items + 1)`), and packed `labels` `(batch, 2 + S)`:
    column 0 the target, column 1 the dataset index, columns 2.. the user's distinct seen items taken from the FULL
    history (also the part beyond `max_length`), sorted and padded with -100. The labels are packed into one tensor
    because the Trainer's prediction loop gathers only `labels` across processes; the model never sees them
    ([`~hyenarec_hf.metrics.next_item_loss`], given to the Trainer as `compute_loss_func`, pops them).
    """

    max_length: int
    mode: str = "train"
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("train", "eval", "auto"):
            raise ValueError(f"mode must be 'train', 'eval' or 'auto', got {self.mode!r}.")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}.")

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor | int]:
        if len(features) == 0:
            raise ValueError("NextItemCollator got an empty batch.")
        mode = self.mode
        if mode == "auto":
            mode = "eval" if "target" in features[0] else "train"
        if mode == "train":
            return self._train_batch(features)
        return self._eval_batch(features)

    def _train_batch(self, features: list[dict]) -> dict[str, torch.Tensor]:
        inputs, labels = [], []
        for row, feature in enumerate(features):
            ids = _history(feature, row)
            if len(ids) < 2:
                raise ValueError(
                    f"row {row} of the batch has {len(ids)} item(s); a training history needs at least 2 items "
                    "(one input and one next-item label). Filter short users out of the training split."
                )
            ids = ids[-(self.max_length + 1) :]
            inputs.append(ids[:-1])
            labels.append(ids[1:])
        input_ids = _left_pad(inputs, self.pad_token_id)
        return {
            "input_ids": input_ids,
            "attention_mask": _left_pad([np.ones(len(r), dtype=np.int64) for r in inputs], 0),
            "labels": _left_pad(labels, IGNORE_INDEX),
        }

    def _eval_batch(self, features: list[dict]) -> dict[str, torch.Tensor | int]:
        inputs, packed = [], []
        for row, feature in enumerate(features):
            ids = _history(feature, row)
            if len(ids) == 0:
                raise ValueError(
                    f"row {row} of the batch (dataset index {feature.get('index')}) has an empty history; "
                    "next-item evaluation needs at least one item before the target. Drop such users."
                )
            target = _scalar_item(feature, "target", row, minimum=1)
            index = _scalar_item(feature, "index", row, minimum=0)
            inputs.append(ids[-self.max_length :])
            packed.append(np.concatenate([np.array([target, index], dtype=np.int64), np.unique(ids)]))
        width = max(len(p) for p in packed)
        labels = torch.full((len(packed), width), IGNORE_INDEX, dtype=torch.long)
        for i, p in enumerate(packed):
            labels[i, : len(p)] = torch.from_numpy(p)
        return {
            "input_ids": _left_pad(inputs, self.pad_token_id),
            "attention_mask": _left_pad([np.ones(len(r), dtype=np.int64) for r in inputs], 0),
            "logits_to_keep": 1,
            "labels": labels,
        }
