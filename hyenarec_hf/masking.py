"""Masked-item (Cloze) batches for BERT4Rec, and the choice of collator for each model type.

BERT4Rec learns to recover items hidden behind a `[MASK]` item from both sides of a history; it is evaluated and
served by appending a `[MASK]` after the history (the model does it when asked for `logits_to_keep=1`), so its
evaluation batches are the shared [`~hyenarec_hf.collator.NextItemCollator`]'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .collator import IGNORE_INDEX, NextItemCollator, _history, _left_pad


@dataclass
class MaskedItemCollator:
    """Turns dataset rows into masked-item training batches (and eval rows into next-item eval batches).

    Args:
        max_length (`int`): the longest input the model sees; longer histories keep their most recent items.
        mask_token_id (`int`): the `[MASK]` item index (`BERT4RecConfig.mask_token_id`, `num_items + 1`).
        mask_prob (`float`, defaults to 0.2): probability that each item is replaced by `[MASK]`; a history where
            no item was drawn gets one masked item chosen uniformly, so every row has a label.
        last_item_only_prob (`float`, defaults to 0.5): probability that a row masks only its most recent item
            instead (RecBole's `ft_ratio`), the way the model is used to recommend.
        mode (`str`, defaults to `"auto"`): `"train"` (masked rows), `"eval"` (delegates to
            `NextItemCollator(mode="eval")`), or `"auto"`: `"eval"` for rows that carry a `target`, else `"train"`
            (one collator for the Trainer, which uses the same `data_collator` for training and evaluation).
        pad_token_id (`int`, defaults to 0): the id used to pad `input_ids`.

    Randomness comes from torch's global generator, so `transformers.set_seed` (the Trainer's `seed`) makes the
    masks reproducible.

    Returns (train): `input_ids` `(batch, longest)` with masked items replaced by `mask_token_id`,
    `attention_mask` `(batch, longest)` (1 for items and `[MASK]`s) and `labels` `(batch, longest)`: the original
    item at masked positions, -100 everywhere else. Labels are aligned with the positions (no shift).
    Returns (eval): exactly what [`NextItemCollator`] returns in eval mode (`logits_to_keep=1`, packed labels).
    """

    max_length: int
    mask_token_id: int
    mask_prob: float = 0.2
    last_item_only_prob: float = 0.5
    mode: str = "auto"
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("train", "eval", "auto"):
            raise ValueError(f"mode must be 'train', 'eval' or 'auto', got {self.mode!r}.")
        if self.max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {self.max_length}.")
        if not 0.0 < self.mask_prob <= 1.0:
            raise ValueError(f"mask_prob must be in (0, 1], got {self.mask_prob}.")
        if not 0.0 <= self.last_item_only_prob <= 1.0:
            raise ValueError(f"last_item_only_prob must be in [0, 1], got {self.last_item_only_prob}.")
        if self.mask_token_id <= self.pad_token_id:
            raise ValueError(
                f"mask_token_id must be the index after the last item (num_items + 1), got {self.mask_token_id}."
            )
        self._eval_collator = NextItemCollator(max_length=self.max_length, mode="eval", pad_token_id=self.pad_token_id)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor | int]:
        if len(features) == 0:
            raise ValueError("MaskedItemCollator got an empty batch.")
        mode = self.mode
        if mode == "auto":
            mode = "eval" if "target" in features[0] else "train"
        if mode == "eval":
            return self._eval_collator(features)
        return self._train_batch(features)

    def _train_batch(self, features: list[dict]) -> dict[str, torch.Tensor]:
        rows = []
        for row, feature in enumerate(features):
            ids = _history(feature, row)
            if len(ids) == 0:
                raise ValueError(
                    f"row {row} of the batch has an empty history; masked-item training needs at least 1 item. "
                    "Filter empty users out of the training split."
                )
            if int(ids.max()) >= self.mask_token_id:
                raise ValueError(
                    f"row {row} of the batch: item id {int(ids.max())} is >= mask_token_id={self.mask_token_id}; "
                    "the [MASK] index must come after every item (num_items + 1)."
                )
            rows.append(ids[-self.max_length :])
        items = _left_pad(rows, self.pad_token_id)
        real = _left_pad([np.ones(len(r), dtype=np.int64) for r in rows], 0).bool()
        masked = (torch.rand(items.shape) < self.mask_prob) & real
        last_only = torch.rand(len(rows)) < self.last_item_only_prob
        masked[last_only] = False
        masked[last_only, -1] = True  # left padding: the last column is every row's most recent item
        empty = ~masked.any(dim=1)
        if empty.any():
            pick = torch.rand(items.shape).masked_fill(~real, -1.0).argmax(dim=1)
            masked[empty, pick[empty]] = True
        return {
            "input_ids": items.masked_fill(masked, self.mask_token_id),
            "attention_mask": real.long(),
            "labels": items.masked_fill(~masked, IGNORE_INDEX),
        }


def collator_for(config: Any, max_length: int) -> NextItemCollator | MaskedItemCollator:
    """The one `data_collator` the Trainer needs for a model with configuration `config` (train and eval rows).

    BERT4Rec (`config.model_type == "bert4rec"`) trains on masked items: [`MaskedItemCollator`] with the mask
    settings of its config. Every other model trains on next items: `NextItemCollator(mode="auto")`.
    """
    if getattr(config, "model_type", None) == "bert4rec":
        return MaskedItemCollator(
            max_length=max_length,
            mask_token_id=config.mask_token_id,
            mask_prob=config.mask_prob,
            last_item_only_prob=config.last_item_only_prob,
            pad_token_id=config.pad_token_id,
        )
    return NextItemCollator(max_length=max_length, mode="auto")
