"""What every next-item model of this package shares: the output type, the loss, input checks and `recommend`.

Ships next to the weights on the Hub with each model file (relative import, torch and transformers only).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.utils import ModelOutput, logging

logger = logging.get_logger(__name__)


@dataclass
class NextItemPredictionOutput(ModelOutput):
    """Next-item prediction output.

    Args:
        loss: scalar cross-entropy, when `labels` are given.
        logits: `(batch, kept_positions, num_items + 1)` item scores, float32 (float64 for a float64 model) also
            under autocast; column 0 (padding) is the dtype's minimum.
        hidden_states: tuple of `(batch, seq_len, hidden)`, the embeddings and each block's output, when
            `output_hidden_states=True`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class Dropout(torch.nn.Dropout):
    """`nn.Dropout` with a faster CPU training path; the same distribution (keep with probability `1 - p`, scale the
    kept values by `1 / (1 - p)`), the same module, state and `eval()` behaviour.

    On CPU, `nn.Dropout` draws its mask with `bernoulli_`, which took a third of a HyenaRec block's training step
    (`benchmarks/block_speed.md`); a uniform draw compared with `p` and one multiply is about 2x faster forward +
    backward. Other devices (fused dropout kernels), `p` of 0 or 1, `inplace=True` and eval mode use `nn.Dropout`.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or input.device.type != "cpu" or not 0.0 < self.p < 1.0 or self.inplace:
            return super().forward(input)
        # Draw in float32 whatever the activation dtype: a bf16 uniform would bias the keep rate.
        keep = torch.rand(input.shape, dtype=torch.float32, device=input.device) >= self.p
        return input * keep.to(input.dtype).mul_(1.0 / (1.0 - self.p))


def score_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype item scores are computed in: float32, or float64 when the inputs are float64."""
    return torch.promote_types(torch.promote_types(hidden.dtype, weight.dtype), torch.float32)


def item_scores(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Scores `hidden @ weight.T (+ bias)` `(..., items)` in float32 (float64 for a float64 model), with autocast off
    whatever the caller runs under.

    Ranking compares scores, so their precision is the metric's: bf16 keeps 8 significant bits, which at the scale of
    trained logits (about 10) makes items 0.06 apart score the same, and a tie counts against the target. With bf16
    scores, trained ML-1M models had a tied candidate for 55% of the test users and lost 0.003 NDCG@10
    (`benchmarks/score_precision.md`). The GEMM is small next to the softmax over its output, which runs in float32
    anyway: a training step took the same time both ways there.
    """
    dtype = score_dtype(hidden, weight)
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        scores = hidden.to(dtype) @ weight.to(dtype).transpose(0, 1)
        return scores if bias is None else scores + bias.to(dtype)


class _FullSoftmaxCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `logits` `(rows, items)` against `targets` `(rows,)`, -100 ignored, that keeps one
    `(rows, items)` tensor for the backward and makes one there.

    `F.cross_entropy` saves its log-softmax, and its backward holds that, the gradient of the picked log-probabilities
    (dense, `(rows, items)`) and the gradient of the logits at once: three logits-sized tensors, which set the peak
    memory of a training step when the catalogue is large (the rest of the model holds `(rows, hidden)`-sized ones).
    Here the forward turns its log-softmax into the softmax in place and saves it; the backward writes
    `(softmax - one_hot(target)) * grad` into one new tensor. Same value and gradients up to float rounding.
    """

    @staticmethod
    def forward(ctx, logits, targets):
        keep = targets != -100
        index = torch.where(keep, targets, 0)[:, None]  # ignored rows point at column 0 and are masked out
        log_probs = torch.log_softmax(logits, dim=-1)
        total = -torch.where(keep, log_probs.gather(1, index).squeeze(1), 0).sum()
        ctx.save_for_backward(log_probs.exp_(), index, keep)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        probs, index, keep = ctx.saved_tensors
        scale = torch.where(keep, grad_output, 0).to(probs.dtype)[:, None]  # 0 on ignored rows
        # no boolean indexing, so no host-device sync on CUDA (F.cross_entropy has none either)
        return (probs * scale).scatter_add_(1, index, -scale), None


def next_item_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Full-softmax cross-entropy of `logits` `(..., num_items+1)` against `labels` `(...)`, -100 ignored.

    Mean over counted positions, or their sum divided by `num_items_in_batch` (gradient accumulation). The value and
    gradients of `F.cross_entropy(..., ignore_index=-100)`, with a third less memory in the backward (two
    logits-sized tensors at once instead of three; `_FullSoftmaxCrossEntropy`)."""
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_logits = flat_logits.to(torch.promote_types(flat_logits.dtype, torch.float32))
    flat_labels = labels.reshape(-1).to(flat_logits.device)
    total = _FullSoftmaxCrossEntropy.apply(flat_logits, flat_labels)
    # F.cross_entropy's mean over zero labelled positions is nan; so is this (0 / 0).
    divisor = (flat_labels != -100).sum() if num_items_in_batch is None else num_items_in_batch
    return total / torch.as_tensor(divisor, device=total.device, dtype=total.dtype)


def sampled_cross_entropy(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    item_weight: torch.Tensor,
    num_negatives: int,
    num_items_in_batch: int | torch.Tensor | None = None,
    item_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over the target and `num_negatives` uniform negatives shared by the batch.

    Args:
        hidden: `(..., hidden)` states; `labels` `(...)` the target item at each, -100 to ignore.
        item_weight: `(num_items + 1, hidden)` item embeddings (row 0 = padding, never sampled).
        item_bias: optional `(num_items + 1,)` per-item output bias.

    A negative equal to the target is masked out (no accidental hits). The loss is the mean over labelled positions,
    or their sum divided by `num_items_in_batch` (gradient accumulation).
    """
    keep = labels != -100
    hidden, targets = hidden[keep], labels[keep]
    num_items = item_weight.shape[0] - 1
    negatives = torch.randint(1, num_items + 1, (num_negatives,), device=hidden.device)
    neg = item_scores(hidden, item_weight[negatives])
    pos = (hidden.to(neg.dtype) * item_weight[targets].to(neg.dtype)).sum(-1, keepdim=True)
    if item_bias is not None:
        pos = pos + item_bias[targets, None].to(neg.dtype)
        neg = neg + item_bias[negatives][None, :].to(neg.dtype)
    neg = neg.masked_fill(negatives[None, :] == targets[:, None], torch.finfo(neg.dtype).min)
    logits = torch.cat([pos, neg], dim=-1)
    zeros = torch.zeros(len(targets), dtype=torch.long, device=hidden.device)
    if num_items_in_batch is None:
        return F.cross_entropy(logits, zeros)
    total = F.cross_entropy(logits, zeros, reduction="sum")
    return total / torch.as_tensor(num_items_in_batch, device=total.device, dtype=total.dtype)


# Elements of float32 logits scored at once by `chunked_cross_entropy`: 8M (32 MB), about 2,450 positions of a
# 3,416-item catalogue or 80 positions of a 100k one.
LOSS_CHUNK_ELEMENTS = 2**23


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Summed full-softmax cross-entropy of `hidden @ weight.T (+ bias)` against `targets`, scored in chunks of rows.

    The forward computes each chunk's logits, its loss and, at once, its gradients (softmax minus one-hot, times the
    chunk's states and the item table), keeps the gradients (`hidden`-sized and `weight`-sized) and drops the logits;
    the backward only scales them. So no `(positions, items)` tensor outlives its chunk, and the work is the same
    three GEMMs per chunk that autograd runs on the full logits (nothing is recomputed). Column 0 (padding) scores
    the dtype's minimum, as in `mask_padding_item`, so it gets no probability and no gradient.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_rows):
        dtype = score_dtype(hidden, weight)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=dtype, device=weight.device)
        grad_bias = None if bias is None else torch.zeros(bias.shape, dtype=dtype, device=bias.device)
        total = torch.zeros((), dtype=dtype, device=hidden.device)
        table = weight.to(dtype)
        for start in range(0, hidden.shape[0], chunk_rows):
            h = hidden[start : start + chunk_rows].to(dtype)
            t = targets[start : start + chunk_rows]
            logits = item_scores(h, table, bias)
            logits[:, 0] = torch.finfo(logits.dtype).min
            log_norm = torch.logsumexp(logits, dim=-1)
            total += (log_norm - logits.gather(1, t[:, None]).squeeze(1)).sum()
            # d(sum of losses)/d(logits) = softmax - one_hot(target), written over the logits buffer
            grad_logits = logits.sub_(log_norm[:, None]).exp_()
            grad_logits[torch.arange(len(t), device=t.device), t] -= 1.0
            # the GEMMs autograd would run through `item_scores`, in its dtype (autocast off, as there)
            with torch.autocast(device_type=h.device.type, enabled=False):
                grad_hidden[start : start + chunk_rows] = (grad_logits @ table).to(hidden.dtype)
                grad_weight += grad_logits.transpose(0, 1) @ h
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        weight_dtype, bias_dtype = ctx.dtypes
        grads = [None, None, None, None, None]
        if ctx.needs_input_grad[0]:
            grads[0] = grad_hidden * grad_output.to(grad_hidden.dtype)
        if ctx.needs_input_grad[1]:
            grads[1] = (grad_weight * grad_output).to(weight_dtype)
        if grad_bias is not None and ctx.needs_input_grad[2]:
            grads[2] = (grad_bias * grad_output).to(bias_dtype)
        return tuple(grads)


def chunked_cross_entropy(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    item_weight: torch.Tensor,
    num_items_in_batch: int | torch.Tensor | None = None,
    item_bias: torch.Tensor | None = None,
    chunk_elements: int = LOSS_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """The full-softmax cross-entropy of `next_item_cross_entropy`, without its `(positions, num_items + 1)` logits.

    Args:
        hidden: `(..., hidden)` states; `labels` `(...)` the target item at each, -100 to ignore.
        item_weight: `(num_items + 1, hidden)` item table (row 0 = padding); `item_bias` optional `(num_items + 1,)`.
        chunk_elements: logits scored at once (rows per chunk = `chunk_elements // (num_items + 1)`, at least 1).

    Only labelled positions are scored (for masked-item training, a fraction of them). Same value and gradients as the
    full softmax up to float rounding; peak memory is one chunk of logits instead of all of them (`_ChunkedCrossEntropy`).
    """
    keep = labels != -100
    hidden, targets = hidden[keep], labels[keep]
    chunk_rows = max(1, chunk_elements // item_weight.shape[0])
    total = _ChunkedCrossEntropy.apply(hidden, item_weight, item_bias, targets, chunk_rows)
    divisor = torch.as_tensor(
        targets.numel() if num_items_in_batch is None else num_items_in_batch, device=total.device, dtype=total.dtype
    )
    # F.cross_entropy's mean over zero labelled positions is nan; so is this (0 / 0), not a silent 0.
    return total / divisor


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
        if input_ids.dtype not in (torch.long, torch.int32):
            raise ValueError(
                f"input_ids must hold integer item indices (torch.long), got dtype {input_ids.dtype}; map raw ids "
                "through the saved vocabulary (config.item_ids) and pass a LongTensor."
            )
        num_items = self.config.num_items
        # The value check reads tensor data, which torch.compile / torch.export cannot trace; it is skipped there
        # (exported scorers are fed by `recommend`-style code that maps ids through the vocabulary).
        if (
            not torch.compiler.is_compiling()
            and input_ids.numel()
            and (int(input_ids.min()) < 0 or int(input_ids.max()) > num_items)
        ):
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

    # ------------------------------------------------------------------------------------------------- the head
    def get_input_embeddings(self) -> torch.nn.Embedding:
        return self.model.item_embeddings

    def set_input_embeddings(self, value: torch.nn.Embedding) -> None:
        self.model.item_embeddings = value

    def output_item_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(weight (num_items + 1, hidden), bias (num_items + 1,) or None)` that score items: the tied item
        embeddings by default (rows beyond the catalogue, such as BERT4Rec's `[MASK]`, are cut)."""
        return self.model.item_embeddings.weight[: self.config.num_items + 1], None

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Item scores `(..., num_items + 1)` from hidden states `(..., hidden)`, at least float32 (see
        `item_scores`); the padding item never scores."""
        weight, bias = self.output_item_table()
        return mask_padding_item(item_scores(hidden, weight, bias))

    @torch.no_grad()
    def score_histories(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores `(batch, num_items + 1)` of the item following each (left-padded) history."""
        return self(input_ids, attention_mask, logits_to_keep=1).logits[:, -1]

    def next_item_output(
        self,
        hidden: torch.Tensor,
        hidden_states: tuple | None,
        labels: torch.LongTensor | None,
        num_items_in_batch: int | torch.Tensor | None,
        return_dict: bool | None,
    ) -> NextItemPredictionOutput | tuple:
        """Loss and logits from the scored positions' states `hidden` `(batch, kept, hidden)`: full-softmax
        cross-entropy, or in training (with labels) the sampled softmax when `config.loss_type == "sampled_ce"` or the
        same full softmax scored in chunks, with no logits returned, when it is `"chunked_ce"`."""
        loss = logits = None
        if labels is not None:
            if labels.dim() == 1:
                labels = labels[:, None]
            if labels.shape != hidden.shape[:2]:
                raise ValueError(
                    f"labels have shape {tuple(labels.shape)} but the model scores {tuple(hidden.shape[:2])} "
                    "positions; give one next item per scored position (-100 to ignore)."
                )
            self._validate_labels(labels)
        loss_type = getattr(self.config, "loss_type", "ce")
        sampled = loss_type == "sampled_ce" and self.training
        if loss_type in ("sampled_ce", "chunked_ce") and self.training and labels is None and torch.is_grad_enabled():
            what = "no sampled softmax runs" if sampled else "the full (tokens, items) logits are built after all"
            logger.warning_once(
                f"loss_type={loss_type!r} but the model got no labels in training, so {what}: a "
                "Trainer with `compute_loss_func` takes the labels out of the batch and computes its own loss from "
                "the full logits. Train with `hyenarec_hf.training.NextItemTrainer` (as `build_trainer` does), "
                "which passes them to the model."
            )
        if labels is not None and sampled:
            weight, bias = self.output_item_table()
            loss = sampled_cross_entropy(
                hidden, labels, weight, self.config.num_negatives, num_items_in_batch, item_bias=bias
            )
        elif labels is not None and loss_type == "chunked_ce" and self.training:
            weight, bias = self.output_item_table()
            loss = chunked_cross_entropy(hidden, labels, weight, num_items_in_batch, item_bias=bias)
        else:
            logits = self.score(hidden)
            if labels is not None:
                loss = next_item_cross_entropy(logits, labels, num_items_in_batch)
        if not (return_dict if return_dict is not None else self.config.return_dict):
            return tuple(v for v in (loss, logits, hidden_states) if v is not None)
        return NextItemPredictionOutput(loss=loss, logits=logits, hidden_states=hidden_states)

    # ------------------------------------------------------------------------------------------------ serving
    # Everything below works on a model loaded with `AutoModel.from_pretrained(folder)` and nothing else: the item
    # vocabulary (`config.item_ids`) travels in config.json, so histories go in and items come out as raw ids.

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

    def _encode(self, history: Sequence) -> tuple[list[int], list]:
        """`(indices of the known items, the unknown raw ids)` of one history, in order."""
        index = self._item_index()
        encoded, unknown = [], []
        if index is None:  # no saved vocabulary: histories are item indices already
            for raw in history:
                try:  # ints, or strings of ints (the CLI passes strings); never floats or bools
                    value = int(raw) if isinstance(raw, (int, str)) and not isinstance(raw, bool) else None
                except ValueError:
                    value = None
                if value is None:
                    raise ValueError(
                        f"item id {raw!r} is not an integer: this model has no saved vocabulary (config.item_ids), so "
                        f"histories must be item indices 1..{self.config.num_items:,}."
                    )
                (encoded if 1 <= value <= self.config.num_items else unknown).append(value)
            return encoded, unknown
        for raw in history:
            idx = index.get(str(raw))
            if idx is None:
                unknown.append(raw)
            else:
                encoded.append(idx)
        return encoded, unknown

    def _unknown_error(self, unknown_by_row: dict[int, list], single: bool) -> ValueError:
        if self._item_index() is None:
            what = f"item indices outside 1..{self.config.num_items:,} (this model has no saved vocabulary)"
        else:
            what = f"item id(s) unknown to this model's vocabulary ({self.config.num_items:,} items)"

        def shown(ids: list) -> str:
            ids = list(dict.fromkeys(ids))
            return ", ".join(repr(u) for u in ids[:10]) + (f" ... ({len(ids)} distinct)" if len(ids) > 10 else "")

        if single:
            detail = shown(next(iter(unknown_by_row.values())))
            count = len(next(iter(unknown_by_row.values())))
        else:
            rows = list(unknown_by_row.items())
            detail = "; ".join(f"history {row}: {shown(ids)}" for row, ids in rows[:5])
            detail += f"; ... ({len(rows)} histories)" if len(rows) > 5 else ""
            count = sum(len(ids) for ids in unknown_by_row.values())
        return ValueError(
            f"{count} {what}: {detail}. Pass on_unknown='skip' to ignore them, or grow the vocabulary and fine-tune "
            "(hyenarec_hf.finetune.extend_vocabulary / `hyenarec finetune`)."
        )

    def encode_history(self, history: Sequence, on_unknown: str = "error") -> list[int]:
        """Raw item ids -> item indices through `config.item_ids` (indices pass through when there is none).

        Unknown ids raise `ValueError` listing them (`on_unknown="error"`) or are left out (`"skip"`)."""
        if on_unknown not in ("error", "skip"):
            raise ValueError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}.")
        encoded, unknown = self._encode(_as_list(history))
        if unknown and on_unknown == "error":
            raise self._unknown_error({0: unknown}, single=True)
        return encoded

    def decode_items(self, indices: Sequence[int]) -> list:
        """Item indices -> raw item ids (indices when the model has no saved vocabulary)."""
        item_ids = self.config.item_ids
        if item_ids is None:
            return [int(i) for i in indices]
        return [item_ids[int(i) - 1] for i in indices]

    def _encode_histories(self, histories, on_unknown: str) -> tuple[bool, list[list[int]]]:
        """`(single, indices per history)` for one history or a batch, every unknown id reported in one error."""
        if on_unknown not in ("error", "skip"):
            raise ValueError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}.")
        single, rows = _split_histories(histories)
        encoded, unknown_by_row = [], {}
        for row, history in enumerate(rows):
            ids, unknown = self._encode(history)
            if unknown:
                unknown_by_row[row] = unknown
            encoded.append(ids)
        if unknown_by_row and on_unknown == "error":
            raise self._unknown_error(unknown_by_row, single)
        empty = [row for row, ids in enumerate(encoded) if not ids]
        if empty:
            where = "the history is" if single else f"histories {empty[:10]} are"
            raise ValueError(
                f"{where} empty{' after skipping unknown ids' if unknown_by_row else ''}; a recommendation needs at "
                "least one known item (serve a most-popular list to cold-start users)."
            )
        return single, encoded

    def _left_pad(self, rows: list[list[int]]) -> torch.Tensor:
        """`(len(rows), longest)` item indices, left padded with 0 (the layout every model here reads)."""
        width = max(len(ids) for ids in rows)
        padded = torch.zeros(len(rows), width, dtype=torch.long)
        for i, ids in enumerate(rows):
            padded[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        return padded.to(self.device)

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

        Works on a model straight from `AutoModel.from_pretrained(folder_or_repo)`: the vocabulary is in the config.

        Args:
            histories: one history (raw item ids, oldest first: a list, tuple, 1-D array or tensor) or a list of
                histories of any lengths. Ids are matched as strings, so `1` and `"1"` are the same item. A history
                longer than `max_position_embeddings` keeps its most recent `max_position_embeddings` items (the
                model reads no more); `exclude_seen` still excludes every item of the whole history.
            k: number of items to return per history (1..num_items).
            exclude_seen: leave out items already in the history.
            return_scores: return `(item, score)` pairs instead of items.
            on_unknown: `"error"` (default) raises a `ValueError` listing the ids the vocabulary lacks (per
                history); `"skip"` ignores them. A history with no known item is an error either way.
            batch_size: histories scored per forward pass (histories are left padded to the longest in the pass).

        Returns: a list of `k` raw ids (or `(id, score)` pairs) for one history; a list of such lists, in input
        order, for a batch. Fewer than `k` only when the history covers nearly the whole catalogue.
        """
        num_items = self.config.num_items
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_items:
            raise ValueError(f"k must be an int between 1 and the number of items ({num_items:,}), got {k!r}.")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        single, encoded = self._encode_histories(histories, on_unknown)
        max_length = self.config.max_position_embeddings
        results = []
        was_training = self.training
        if was_training:  # only then: switching modes clears a model's eval-time caches (HyenaRec's kernels)
            self.eval()
        try:
            for start in range(0, len(encoded), batch_size):
                chunk = encoded[start : start + batch_size]
                input_ids = self._left_pad([ids[-max_length:] for ids in chunk])
                scores = self.score_histories(input_ids, input_ids.ne(0)).float()
                scores[:, 0] = float("-inf")  # padding is never an answer
                if exclude_seen:  # the whole history, not only the part the model read; padding 0 is -inf anyway
                    scores.scatter_(1, self._left_pad(chunk), float("-inf"))
                top = torch.topk(scores, k, dim=-1)
                for values, indices in zip(top.values.tolist(), top.indices.tolist()):
                    kept = [(i, v) for i, v in zip(indices, values) if v != float("-inf")]
                    items = self.decode_items([i for i, _ in kept])
                    results.append(list(zip(items, [v for _, v in kept])) if return_scores else items)
        finally:
            if was_training:
                self.train()
        return results[0] if single else results

    # ---------------------------------------------------------------------------------------------- embeddings
    @torch.no_grad()
    def history_embeddings(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None):
        """The vector `v` after each history that the model scores items with: `score_histories` is `score(v)`.

        Args:
            input_ids: `(batch, seq_len)` item indices, left padded with 0.
            attention_mask: `(batch, seq_len)`, 1 for real items; `input_ids != 0` when omitted.

        Returns `(batch, dim)` in the model's dtype (`dim` is the scoring width: `hidden_size`, or `embedding_size`
        for GRU4Rec). Every model here scores with `score(v) = v @ item_weight^T` (+ a per-item bias for BERT4Rec).
        The default reads `v` as it enters `self.score` inside `score_histories`, which is the contract of the
        models built on this mixin; a model may override it with a direct computation.
        """
        captured: list[torch.Tensor] = []
        score, caller = self.score, threading.get_ident()

        def capture(hidden: torch.Tensor) -> torch.Tensor:
            if threading.get_ident() == caller:  # a `recommend` in another thread passes straight through
                captured.append(hidden)
            return score(hidden)

        with _CAPTURE_LOCK:  # the capture is an instance attribute for the duration of one call
            self.score = capture
            try:
                self.score_histories(input_ids, attention_mask)
            finally:
                del self.score
        if not captured:
            raise NotImplementedError(
                f"{type(self).__name__}.score_histories does not score through self.score(hidden); override "
                "history_embeddings to return the vector the model scores items with."
            )
        vectors = captured[-1]
        return vectors[:, -1] if vectors.dim() == 3 else vectors  # (batch, kept_positions, dim) -> the last one

    @torch.no_grad()
    def user_embeddings(self, histories: Sequence, on_unknown: str = "error", batch_size: int = 256) -> torch.Tensor:
        """User (session) embeddings from raw-id histories: the final hidden state after each history, the vector
        whose dot products with `get_item_embeddings()` are the next-item scores.

        Args:
            histories: one history of raw item ids or a list of histories (as for `recommend`; the most recent
                `max_position_embeddings` items are read).
            on_unknown: `"error"` or `"skip"`, as for `recommend`.
            batch_size: histories per forward pass.

        Returns: a float32 tensor `(n, dim)` on the model's device, one row per history (`n = 1` for a single
        history); `dim` is `hidden_size` (`embedding_size` for GRU4Rec). For HyenaRec, SASRec and GRU4Rec,
        `user_embeddings(h) @ get_item_embeddings()[1].T` equals the next-item scores; BERT4Rec adds its per-item
        output bias (`model.head.bias[1:]`).
        """
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        _, encoded = self._encode_histories(histories, on_unknown)
        if not encoded:
            return torch.empty(0, self.get_input_embeddings().weight.shape[1], device=self.device)
        max_length = self.config.max_position_embeddings
        was_training = self.training
        if was_training:  # only then: switching modes clears a model's eval-time caches (HyenaRec's kernels)
            self.eval()
        try:
            parts = [
                self.history_embeddings(self._left_pad([ids[-max_length:] for ids in encoded[s : s + batch_size]]))
                for s in range(0, len(encoded), batch_size)
            ]
        finally:
            if was_training:
                self.train()
        return torch.cat(parts).float()

    @torch.no_grad()
    def get_item_embeddings(self) -> tuple[list, torch.Tensor]:
        """The item vectors the model scores with, keyed by raw id: `(ids, vectors)`.

        `ids[i]` is the raw id of row `i` of `vectors`, a float32 `(num_items, dim)` copy of the item embedding
        table without the padding row (and without BERT4Rec's `[MASK]` row). A list plus a matrix, not a dict, so
        it drops straight into a nearest-neighbour index: `scores = user_embeddings(h) @ vectors.T`. `ids` are the
        saved raw ids (`config.item_ids`), or the indices `1..num_items` when the model has none.

        (Not called `item_embeddings`: that is the embedding layer's attribute name in the backbones.)
        """
        num_items = self.config.num_items
        weight = self.get_input_embeddings().weight
        ids = list(self.config.item_ids) if self.config.item_ids is not None else list(range(1, num_items + 1))
        return ids, weight[1 : num_items + 1].detach().float().clone()


_CAPTURE_LOCK = threading.Lock()


def _as_list(history) -> list:
    """A history as a plain list (tensors and arrays through `tolist`, so ids are Python scalars)."""
    if isinstance(history, (str, bytes)):
        raise ValueError(
            f"a history must be a list of item ids, got the string {history!r:.60}; split a space-separated string "
            "first (history.split())."
        )
    if hasattr(history, "tolist") and not isinstance(history, (list, tuple)):
        history = history.tolist()
        return history if isinstance(history, list) else [history]
    if isinstance(history, Mapping) or not isinstance(history, Sequence):
        raise ValueError(f"a history must be a list of item ids, got {type(history).__name__}.")
    # 0-d tensors and NumPy scalars -> Python scalars, so `str(id)` is the id
    return [x.item() if getattr(x, "ndim", None) == 0 and hasattr(x, "item") else x for x in history]


def _is_history(value) -> bool:
    if isinstance(value, (str, bytes)):
        return False
    if isinstance(value, Sequence):
        return True
    return hasattr(value, "tolist") and getattr(value, "ndim", 0) >= 1


def _split_histories(histories) -> tuple[bool, list[list]]:
    """`(single, rows)`: one history (ids) or a batch (a list of histories, or a 2-D array / tensor)."""
    if hasattr(histories, "tolist") and not isinstance(histories, (list, tuple)):
        histories = histories.tolist()
    rows = _as_list(histories)
    if not rows:
        return False, []
    kinds = {_is_history(value) for value in rows}
    if kinds == {False}:
        return True, [rows]
    if kinds == {True}:
        return False, [_as_list(row) for row in rows]
    raise ValueError(
        "histories mixes item ids and lists: pass one history [id, id, ...] or a batch [[id, ...], [id, ...]]."
    )
