"""What every next-item model of this package shares: the output type, the loss, input checks and `recommend`.

Ships next to the weights on the Hub with each model file (relative import, torch and transformers only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput


@dataclass
class NextItemPredictionOutput(ModelOutput):
    """Next-item prediction output.

    Args:
        loss: scalar cross-entropy, when `labels` are given.
        logits: `(batch, kept_positions, num_items + 1)` item scores; column 0 (padding) is the dtype's minimum.
        hidden_states: tuple of `(batch, seq_len, hidden)`, the embeddings and each block's output, when
            `output_hidden_states=True`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


def next_item_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Full-softmax cross-entropy of `logits` `(..., num_items+1)` against `labels` `(...)`, -100 ignored.

    Mean over counted positions, or their sum divided by `num_items_in_batch` (gradient accumulation)."""
    flat_logits = logits.reshape(-1, logits.shape[-1]).float()
    flat_labels = labels.reshape(-1).to(flat_logits.device)
    if num_items_in_batch is None:
        return F.cross_entropy(flat_logits, flat_labels, ignore_index=-100)
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=-100, reduction="sum")
    return total / torch.as_tensor(num_items_in_batch, device=total.device, dtype=total.dtype)


def mask_padding_item(logits: torch.Tensor) -> torch.Tensor:
    """Set the padding item's score (column 0) to the dtype's minimum, so it is never recommended."""
    index = torch.zeros(1, dtype=torch.long, device=logits.device)
    return logits.index_fill(-1, index, torch.finfo(logits.dtype).min)


class NextItemMixin:
    """Input checks and the serving API shared by the next-item models (needs `config.num_items`,
    `config.max_position_embeddings`, `config.item_ids` and a `score_histories` method)."""

    def _validate_input_ids(self, input_ids: torch.Tensor) -> None:
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must be (batch, seq_len) item indices, got shape {tuple(input_ids.shape)}; "
                "wrap a single history as [history]."
            )
        num_items = self.config.num_items
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) > num_items):
            bad = input_ids[(input_ids < 0) | (input_ids > num_items)]
            raise ValueError(
                f"item index {int(bad[0])} is outside the model's vocabulary (1..{num_items:,}, 0 = padding); "
                "map raw ids through the saved vocabulary (config.item_ids, or model.recommend which does it) or "
                "grow the vocabulary and fine-tune."
            )
        if input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"history length {input_ids.shape[1]} exceeds max_position_embeddings="
                f"{self.config.max_position_embeddings}; keep the most recent items, "
                f"input_ids[:, -{self.config.max_position_embeddings}:] (model.recommend does it)."
            )

    def _validate_labels(self, labels: torch.Tensor) -> None:
        valid = labels[labels != -100]
        if valid.numel() and (int(valid.min()) < 1 or int(valid.max()) > self.config.num_items):
            bad = int(valid[(valid < 1) | (valid > self.config.num_items)][0])
            raise ValueError(
                f"label {bad} is not an item index (1..{self.config.num_items:,}); use -100 for positions "
                "without a target."
            )

    # ------------------------------------------------------------------------------------------------ serving
    def _item_index(self) -> dict[str, int] | None:
        """raw id -> index, built once from `config.item_ids` (rebuilt if the vocabulary object changes)."""
        item_ids = self.config.item_ids
        if item_ids is None:
            return None
        cache = getattr(self, "_item_index_cache", None)
        if cache is None or cache[0] is not item_ids or len(cache[1]) != len(item_ids):
            cache = (item_ids, {str(raw): i + 1 for i, raw in enumerate(item_ids)})
            self._item_index_cache = cache
        return cache[1]

    def encode_history(self, history: Sequence, on_unknown: str = "error") -> list[int]:
        """Raw item ids -> item indices through `config.item_ids` (indices pass through when there is none)."""
        index = self._item_index()
        if index is None:
            out = [int(i) for i in history]
            bad = [i for i in out if not 1 <= i <= self.config.num_items]
            if bad:
                raise ValueError(
                    f"item indices {bad[:10]} are outside 1..{self.config.num_items:,} and this model has no saved "
                    "vocabulary (config.item_ids) to map raw ids."
                )
            return out
        encoded, unknown = [], []
        for raw in history:
            idx = index.get(str(raw))
            if idx is None:
                unknown.append(raw)
            else:
                encoded.append(idx)
        if unknown and on_unknown == "error":
            shown = ", ".join(repr(u) for u in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise ValueError(
                f"{len(unknown)} item id(s) unknown to this model's vocabulary: {shown}. Pass on_unknown='skip' to "
                "ignore them, or grow the vocabulary and fine-tune."
            )
        return encoded

    def decode_items(self, indices: Sequence[int]) -> list:
        item_ids = self.config.item_ids
        if item_ids is None:
            return [int(i) for i in indices]
        return [item_ids[int(i) - 1] for i in indices]

    @torch.no_grad()
    def recommend(
        self,
        histories: Sequence,
        k: int = 10,
        exclude_seen: bool = True,
        return_scores: bool = False,
        on_unknown: str = "error",
        batch_size: int = 256,
    ) -> list:
        """Top-`k` next items for one history or a batch of histories, in the user's raw item ids.

        Args:
            histories: one history (a list of raw item ids, oldest first) or a list of histories of any lengths.
                Histories longer than `max_position_embeddings` keep their most recent items.
            k: number of items to return per history.
            exclude_seen: leave out items already in the history.
            return_scores: return `(item, score)` pairs instead of items.
            on_unknown: `"error"` (default) raises on ids the vocabulary lacks, listing them; `"skip"` ignores them.
            batch_size: histories scored per forward pass.

        Returns: a list of `k` items (or pairs) for one history; a list of such lists for a batch.
        """
        if on_unknown not in ("error", "skip"):
            raise ValueError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}.")
        if isinstance(histories, (str, bytes)) or not isinstance(histories, Sequence):
            raise ValueError("histories must be a list of item ids, or a list of such lists.")
        single = len(histories) > 0 and not isinstance(histories[0], (list, tuple))
        batch = [histories] if single else list(histories)
        num_items = self.config.num_items
        if not 1 <= k <= num_items:
            raise ValueError(f"k must be between 1 and the number of items ({num_items:,}), got {k}.")
        encoded = []
        for row, history in enumerate(batch):
            ids = self.encode_history(history, on_unknown)
            if not ids:
                raise ValueError(
                    f"history {row} is empty{' after skipping unknown ids' if history else ''}; a recommendation "
                    "needs at least one known item (use a most-popular list for cold-start users)."
                )
            encoded.append(ids)
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        max_length = self.config.max_position_embeddings
        results = []
        for start in range(0, len(encoded), batch_size):
            chunk = [ids[-max_length:] for ids in encoded[start : start + batch_size]]
            width = max(len(ids) for ids in chunk)
            input_ids = torch.zeros(len(chunk), width, dtype=torch.long, device=device)
            for i, ids in enumerate(chunk):
                input_ids[i, width - len(ids) :] = torch.tensor(ids, device=device)
            scores = self.score_histories(input_ids, input_ids.ne(0)).float()
            scores[:, 0] = float("-inf")  # padding is never an answer
            if exclude_seen:
                for i, ids in enumerate(encoded[start : start + batch_size]):
                    scores[i, torch.tensor(ids, device=device)] = float("-inf")
            top = torch.topk(scores, k, dim=-1)
            for values, indices in zip(top.values.tolist(), top.indices.tolist()):
                # fewer than k answers when the history covers almost the whole catalogue
                kept = [(i, v) for i, v in zip(indices, values) if v != float("-inf")]
                items = self.decode_items([i for i, _ in kept])
                results.append(list(zip(items, [v for _, v in kept])) if return_scores else items)
        if was_training:
            self.train()
        return results[0] if single else results
