"""The most-popular baseline: every user gets the items seen most often in training.

It is evaluated with exactly the machinery the neural models use ([`NextItemCollator`] in eval mode, [`target_ranks`],
[`RankingMetrics`]), so seen-item exclusion, pessimistic ties and sampled negatives are identical. Ties matter here:
all items with the target's count rank above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .collator import NextItemCollator, add_eval_index
from .metrics import RankingMetrics, target_ranks


class MostPopular:
    """Ranks items by how often they occur in the training histories.

    Args:
        num_items: size of the catalogue (item indices 1..num_items). Give `len(vocab)` so that items never seen in
            training are candidates too (count 0) and the sampled protocol draws the same negatives as for a model
            with `num_items` items. When omitted, the largest item index seen by `fit` is used.
    """

    def __init__(self, num_items: int | None = None) -> None:
        if num_items is not None and num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}.")
        self.num_items = num_items
        self.counts: torch.Tensor | None = None

    def fit(self, train_dataset: Iterable) -> MostPopular:
        """Count item occurrences over the `input_ids` histories of `train_dataset` (a `datasets.Dataset` or a list
        of `{"input_ids": [...]}` rows). Returns `self`."""
        if hasattr(train_dataset, "column_names"):
            histories = train_dataset["input_ids"]
        else:
            histories = [row["input_ids"] for row in train_dataset]
        flat = np.concatenate([np.asarray(h, dtype=np.int64).reshape(-1) for h in histories] or [np.zeros(0, np.int64)])
        if flat.size == 0:
            raise ValueError("MostPopular.fit got no items: the training histories are empty.")
        if flat.min() < 1:
            raise ValueError(f"item id {int(flat.min())} in the training histories; item ids start at 1 (0 = padding).")
        largest = int(flat.max())
        if self.num_items is None:
            self.num_items = largest
        elif largest > self.num_items:
            raise ValueError(f"item id {largest} in the training histories exceeds num_items={self.num_items}.")
        counts = np.bincount(flat, minlength=self.num_items + 1).astype(np.float64)
        counts[0] = 0.0
        self.counts = torch.from_numpy(counts)
        return self

    def _check_fitted(self) -> torch.Tensor:
        if self.counts is None:
            raise ValueError("MostPopular is not fitted: call .fit(train_dataset) first.")
        return self.counts

    def score_histories(self, batch_size: int) -> torch.Tensor:
        """Scores `(batch_size, num_items + 1)`: every history gets the training counts (column 0, padding, is
        never a candidate in the metrics)."""
        return self._check_fitted()[None, :].expand(batch_size, -1)

    def top_items(self, k: int = 10, exclude: Sequence[int] = ()) -> list[int]:
        """The `k` most frequent item indices, most frequent first, leaving out `exclude` (ties: lower index first)."""
        scores = self._check_fitted().clone()
        scores[0] = -float("inf")
        if len(exclude):
            scores[torch.as_tensor(list(exclude), dtype=torch.long)] = -float("inf")
        order = torch.argsort(-scores, stable=True)
        return [int(i) for i in order[:k] if scores[i] != -float("inf")]

    def evaluate(
        self,
        dataset: Iterable[dict],
        batch_size: int = 1024,
        ks: Sequence[int] = (5, 10, 20),
        num_sampled: int = 0,
        seed: int = 0,
    ) -> dict[str, float]:
        """Ranking metrics on an eval set (`input_ids` = history before the target, `target`), the same dictionary
        as [`~hyenarec_hf.metrics.evaluate_ranking`] returns for a model."""
        self._check_fitted()
        if hasattr(dataset, "column_names"):
            dataset = add_eval_index(dataset)
        # The inputs are not read; the packed labels carry the target and every seen item of the full history.
        collator = NextItemCollator(max_length=1, mode="eval")
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
        metrics = RankingMetrics(ks, num_sampled)
        for batch in loader:
            labels = batch["labels"]
            largest = int(torch.cat([labels[:, :1], labels[:, 2:]], dim=1).max())  # column 1 is the row index
            if largest > self.num_items:
                raise ValueError(
                    f"item {largest} of the eval set is outside 1..{self.num_items}; pass MostPopular(num_items="
                    "len(vocab)) so that every item of the catalogue is a candidate."
                )
            scores = self.score_histories(len(labels))
            metrics.update(target_ranks(scores, labels, num_sampled=num_sampled, seed=seed))
        return metrics.compute()
