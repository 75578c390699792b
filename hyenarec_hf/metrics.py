"""Loss and ranking metrics for next-item recommendation.

Protocol (DESIGN.md section 3): leave-one-out, the target is ranked against every item (full ranking), ties are
broken against the target (pessimistic), the padding index 0 is never a candidate. Three rankings are computed
per user from one row of scores:

- `full`: the user's already-seen items are removed from the candidates (the headline number). The target itself
  is never removed, even when the user has seen it before.
- `full_incl_seen`: no item removed.
- `sampled{n}`: the target against `n` items drawn uniformly without replacement from the items the user has not
  seen. Only to compare with papers that use it; never mix it with full-ranking numbers.

Metrics are accumulated as a histogram of ranks 1..max(K), so they are exact (bit-identical under any batch size
or order) and use memory independent of the number of users.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .collator import IGNORE_INDEX, NextItemCollator, prepare_eval_dataset

logger = logging.getLogger(__name__)

_MASK32 = 0xFFFFFFFF
_INT64_MAX = torch.iinfo(torch.int64).max


def _logits_from(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict):  # includes transformers' ModelOutput
        return outputs["logits"]
    if hasattr(outputs, "logits"):
        return outputs.logits
    return outputs[0]


def _is_packed_eval(logits: torch.Tensor, labels: torch.Tensor) -> bool:
    # Packed eval labels (target, index, seen items...) are at least 2 wide and always come with
    # `logits_to_keep=1`, so logits have one position. A train batch with one position has labels of width 1.
    return logits.shape[1] == 1 and labels.shape[1] >= 2


def next_item_loss(
    outputs: Any, labels: torch.Tensor | None, num_items_in_batch: torch.Tensor | int | None = None
) -> torch.Tensor:
    """Full-softmax cross-entropy, for `Trainer(compute_loss_func=next_item_loss)`.

    Args:
        outputs: the model output; its `logits` are `(batch, seq_len, num_items + 1)`.
        labels: train: `(batch, seq_len)` next items aligned with the logits (no shift is applied), -100 ignored.
            Eval: the packed labels of [`NextItemCollator`] `(batch, 2 + S)` with logits `(batch, 1, num_items + 1)`;
            the loss is the cross-entropy of the last position against column 0 (the target).
        num_items_in_batch: train only: the Trainer's count of labelled positions over all the micro-batches of
            one optimizer step; the loss is then `sum / num_items_in_batch` so that gradient accumulation gives
            the same gradient as one large batch. Without it, the mean over labelled positions. It is ignored for
            packed eval labels, where the Trainer counts every non -100 column (seen items included).

    The two cases are told apart by shape: packed eval labels when `logits.shape[1] == 1` and
    `labels.shape[1] >= 2`; otherwise logits and labels must have the same `seq_len`.
    """
    if labels is None:
        raise ValueError(
            "next_item_loss got labels=None: pass `label_names=['labels']` to TrainingArguments and batch with "
            "NextItemCollator, which always returns `labels`."
        )
    logits = _logits_from(outputs)
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"next_item_loss expects logits (batch, seq_len, vocab) and labels (batch, width); got logits "
            f"{tuple(logits.shape)} and labels {tuple(labels.shape)}."
        )
    labels = labels.to(logits.device)
    if _is_packed_eval(logits, labels):
        return F.cross_entropy(logits[:, -1, :].float(), labels[:, 0])
    if logits.shape[1] != labels.shape[1]:
        raise ValueError(
            f"logits cover {logits.shape[1]} positions but labels {labels.shape[1]}. Train labels must be aligned "
            "with the logits (NextItemCollator mode='train'); eval batches need a model that honours "
            "`logits_to_keep=1`."
        )
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    if num_items_in_batch is None:
        num_items_in_batch = labels.ne(IGNORE_INDEX).sum().clamp(min=1)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch


# --- sampling ---------------------------------------------------------------------------------------------------
# Sampling without replacement = keep the `n` smallest of i.i.d. random keys. The keys are a hash of
# (seed, dataset index, item id), so a user's negatives depend on nothing else: not the batch size, the batch
# order, the number of processes or the device. All arithmetic stays below 2**63 in int64 (no overflow).


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """`(x * c) mod 2**32` for int64 `x` in [0, 2**32), without int64 overflow."""
    return ((x & 0xFFFF) * c + ((((x >> 16) * c) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """`lowbias32` integer hash (C. Wellons) on int64 tensors holding 32-bit values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _sampling_keys(index: torch.Tensor, seed: int, vocab_size: int) -> torch.Tensor:
    """Unique pseudo-random int64 keys `(batch, vocab_size)` determined by (seed, index, item)."""
    seed_hash = _mix32(torch.tensor((seed ^ 0x5BD1E995) & _MASK32, dtype=torch.long, device=index.device))
    row = _mix32((seed_hash + (index & _MASK32)) & _MASK32)[:, None]
    items = torch.arange(vocab_size, dtype=torch.long, device=index.device)
    hashed = _mix32((row + _mul32(items, 0x9E3779B9)[None, :]) & _MASK32)
    return hashed * vocab_size + items  # the item id in the low digits makes keys unique: no ties to break


def target_ranks(
    logits: torch.Tensor | tuple, packed_labels: torch.Tensor, num_sampled: int = 0, seed: int = 0
) -> torch.Tensor:
    """1-based pessimistic ranks of each user's target.

    Args:
        logits: `(batch, seq_len, num_items + 1)` (the last position is used) or `(batch, num_items + 1)`.
        packed_labels: `(batch, 2 + S)` from [`NextItemCollator`] in eval mode: target, dataset index, seen items,
            padded with -100 (any number of extra -100 columns is fine).
        num_sampled: number of sampled unseen negatives for column 2; 0 disables it (NaN).
        seed: sampling seed; negatives are a function of (seed, dataset index) only, see `_sampling_keys`.

    Returns:
        `(batch, 3)` float: rank = 1 + number of other non-padding candidates scoring >= the target (a NaN score
        counts as beating the target). Column 0: full ranking without the user's seen items (target kept);
        column 1: full ranking; column 2: target + `num_sampled` unseen items (all of them when the user has fewer
        unseen items than that), NaN when `num_sampled == 0`.
    """
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    scores = logits[:, -1, :] if logits.dim() == 3 else logits
    batch, vocab = scores.shape
    labels = torch.as_tensor(packed_labels).to(scores.device, torch.long)
    if labels.dim() != 2 or labels.shape[0] != batch or labels.shape[1] < 2:
        raise ValueError(
            f"packed labels must be (batch={batch}, 2 + S) [target, index, seen...]; got {tuple(labels.shape)}. "
            "Batch evaluation data with NextItemCollator(mode='eval')."
        )
    target, index, seen_items = labels[:, 0], labels[:, 1], labels[:, 2:]
    bad = (target < 1) | (target >= vocab)
    if bad.any():
        raise ValueError(
            f"target item {int(target[bad][0])} is outside the model's vocabulary (items 1..{vocab - 1}); "
            "check the item id mapping of the eval data."
        )
    is_seen = seen_items != IGNORE_INDEX
    bad = is_seen & ((seen_items < 1) | (seen_items >= vocab))
    if bad.any():
        raise ValueError(
            f"seen item {int(seen_items[bad][0])} is outside the model's vocabulary (items 1..{vocab - 1})."
        )

    scores = scores.float()
    target_score = scores.gather(1, target[:, None])
    beats = ~(scores < target_score)  # >=, pessimistic; also True for the target itself and for NaN scores
    beats[:, 0] = False
    seen = torch.zeros_like(beats)
    seen.scatter_(1, torch.where(is_seen, seen_items, 0), True)
    seen[:, 0] = False
    seen.scatter_(1, target[:, None], False)

    rank_excl = (beats & ~seen).sum(1)
    rank_incl = beats.sum(1)
    if num_sampled > 0:
        candidates = ~seen
        candidates[:, 0] = False
        candidates.scatter_(1, target[:, None], False)
        keys = _sampling_keys(index, seed, vocab).masked_fill_(~candidates, _INT64_MAX)
        chosen_keys, chosen = keys.topk(min(num_sampled, vocab), dim=1, largest=False, sorted=False)
        rank_sampled = 1 + (beats.gather(1, chosen) & (chosen_keys != _INT64_MAX)).sum(1)
        rank_sampled = rank_sampled.float()
    else:
        rank_sampled = torch.full((batch,), float("nan"), device=scores.device)
    return torch.stack([rank_excl.float(), rank_incl.float(), rank_sampled], dim=1)


class RankingMetrics:
    """Accumulates HR@K, NDCG@K and MRR@K from target ranks, batch by batch.

    Keeps a histogram of ranks 1..max(ks) per protocol, so memory does not grow with the number of users and the
    result is identical whatever the batching.

    Args:
        ks: cut-offs K.
        num_sampled: the `num_sampled` used in [`target_ranks`]; 0 means no sampled metrics.
    """

    _PROTOCOLS = ("full", "full_incl_seen")

    def __init__(self, ks: Sequence[int] = (5, 10, 20), num_sampled: int = 0) -> None:
        self.ks = tuple(int(k) for k in ks)
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {ks}.")
        self.num_sampled = int(num_sampled)
        self.protocols = self._PROTOCOLS + ((f"sampled{self.num_sampled}",) if self.num_sampled > 0 else ())
        self.reset()

    def reset(self) -> None:
        self._counts = np.zeros((len(self.protocols), max(self.ks) + 1), dtype=np.int64)
        self.num_users = 0

    def update(self, ranks: torch.Tensor | np.ndarray) -> None:
        """Add a batch of ranks `(batch, 3)` from [`target_ranks`]."""
        ranks = ranks.detach().cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)
        if ranks.ndim != 2 or ranks.shape[1] != 3:
            raise ValueError(f"ranks must be (batch, 3) from target_ranks, got shape {ranks.shape}.")
        used = ranks[:, : len(self.protocols)]
        bad = ~np.isfinite(used) | (used < 1) | (used != np.round(used))
        if bad.any():
            hint = " (sampled ranks need target_ranks(..., num_sampled > 0))" if self.num_sampled > 0 else ""
            raise ValueError(f"ranks must be whole numbers >= 1{hint}; got {used[bad][:3].tolist()}.")
        used = used.astype(np.int64)
        for p in range(len(self.protocols)):
            col = used[:, p]
            self._counts[p] += np.bincount(col[col <= max(self.ks)], minlength=max(self.ks) + 1)
        self.num_users += len(ranks)

    def compute(self) -> dict[str, float]:
        """`{hr@K_<protocol>, ndcg@K_<protocol>, mrr@K_<protocol>, ..., num_users}`."""
        if self.num_users == 0:
            raise ValueError("RankingMetrics.compute() called before any update: no users were evaluated.")
        result: dict[str, float] = {}
        for p, protocol in enumerate(self.protocols):
            counts = self._counts[p]
            for k in self.ks:
                ranks = range(1, k + 1)
                result[f"hr@{k}_{protocol}"] = sum(int(counts[r]) for r in ranks) / self.num_users
                result[f"ndcg@{k}_{protocol}"] = math.fsum(counts[r] / math.log2(r + 1) for r in ranks) / self.num_users
                result[f"mrr@{k}_{protocol}"] = math.fsum(counts[r] / r for r in ranks) / self.num_users
        result["num_users"] = self.num_users
        return result


def trainer_metric_fns(
    ks: Sequence[int] = (5, 10, 20), num_sampled: int = 0, seed: int = 0
) -> tuple[Callable[[Any, torch.Tensor], torch.Tensor], Callable[..., dict[str, float]]]:
    """`(preprocess_logits_for_metrics, compute_metrics)` for `transformers.Trainer`.

    Use with `TrainingArguments(batch_eval_metrics=True, label_names=["labels"], remove_unused_columns=False)`,
    `compute_loss_func=next_item_loss` and an eval set batched by `NextItemCollator(mode="eval")` after
    [`add_eval_index`]. `preprocess_logits_for_metrics` turns each batch's `(batch, 1, num_items + 1)` logits into
    `(batch, 3)` ranks on the device, before the Trainer gathers them across processes, so nothing of size
    users x items is kept. `compute_metrics(eval_pred, compute_result)` adds the gathered ranks to an accumulator
    and returns the metrics (and resets) when `compute_result` is True. `compute_result` defaults to True so the
    pair also works with `batch_eval_metrics=False` (one call with all ranks). The accumulator lives in the closure:
    an evaluation interrupted by an exception leaves partial counts behind, so build a new pair after one.
    """
    accumulator = RankingMetrics(ks, num_sampled)

    def preprocess_logits_for_metrics(logits: Any, labels: torch.Tensor) -> torch.Tensor:
        scores = logits[0] if isinstance(logits, (tuple, list)) else logits
        if scores.dim() == 3 and scores.shape[1] != 1:
            # The Trainer pads logits along dim 1 with -100 across processes before this call, so "the last
            # position" is only trustworthy when every process returns exactly one position.
            raise ValueError(
                f"expected logits (batch, 1, num_items + 1) in evaluation, got {tuple(scores.shape)}: the model must "
                "honour `logits_to_keep=1` (sent by NextItemCollator(mode='eval'))."
            )
        return target_ranks(scores, labels, num_sampled=num_sampled, seed=seed)

    def compute_metrics(eval_pred: Any, compute_result: bool = True) -> dict[str, float]:
        predictions = eval_pred.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        accumulator.update(predictions)
        if not compute_result:
            return {}
        result = accumulator.compute()
        accumulator.reset()
        return result

    return preprocess_logits_for_metrics, compute_metrics


@torch.no_grad()
def evaluate_ranking(
    model: torch.nn.Module,
    dataset: Iterable[dict],
    max_length: int,
    batch_size: int = 256,
    ks: Sequence[int] = (5, 10, 20),
    num_sampled: int = 0,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, float]:
    """Ranking metrics of `model` on an eval set, without the Trainer (same numbers as [`trainer_metric_fns`]).

    Args:
        model: called as `model(input_ids=..., attention_mask=..., logits_to_keep=1)`; returns logits
            `(batch, 1, num_items + 1)` (a `(batch, seq_len, num_items + 1)` output is also fine: the last position
            is used).
        dataset: a `datasets.Dataset` with `input_ids` (whole history before the target) and `target`; an
            `index` column is added with [`add_eval_index`] when missing. A list of dicts must carry `index`.
            Rows are scored longest history first ([`prepare_eval_dataset`]); the order changes no metric.
        max_length: the model's input length; longer histories keep their most recent items.
    """
    from tqdm.auto import tqdm

    if hasattr(dataset, "column_names") or isinstance(dataset, list):
        dataset = prepare_eval_dataset(dataset)  # index first, then longest history first: less padding per batch
    collator = NextItemCollator(max_length=max_length, mode="eval")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    device = next(model.parameters()).device
    metrics = RankingMetrics(ks, num_sampled)
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(loader, desc="Ranking", disable=not show_progress):
            outputs = model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                logits_to_keep=batch["logits_to_keep"],
            )
            metrics.update(target_ranks(_logits_from(outputs), batch["labels"], num_sampled=num_sampled, seed=seed))
    finally:
        model.train(was_training)
    return metrics.compute()
