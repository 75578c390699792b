"""Continue training a saved model on new interactions, growing its item vocabulary for new items.

    from hyenarec_hf.finetune import finetune
    results = finetune("runs/ml1m", "new_interactions.txt", "runs/ml1m-finetuned")

`extend_vocabulary` appends the new raw ids to `config.item_ids` (existing indices never change), grows the item
embedding table keeping every learned row, and initialises the new rows the way the model's `_init_weights` does.
`finetune` then trains with the stock `Trainer` pipeline (`training.train_and_evaluate`, the same early stopping on
validation NDCG@10 and the same Hub-ready output folder) starting from the saved weights.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

import pyarrow.compute as pc
import torch
from datasets import DatasetDict
from torch import nn
from transformers import PreTrainedModel, set_seed

from .data import Interactions, ItemVocab, build_splits, load_interactions
from .training import TrainSettings, dataset_summary, train_and_evaluate

logger = logging.getLogger(__name__)

# Embedding rows after the real items: BERT4Rec keeps its [MASK] item at index num_items + 1.
EXTRA_TRAILING_ROWS = {"bert4rec": 1}


def _per_item_output_biases(model: PreTrainedModel) -> list[tuple[nn.Module, str]]:
    """`(module, attribute)` of per-item output biases `(num_items + 1,)` that grow with the vocabulary."""
    head = getattr(model, "head", None)
    if model.config.model_type == "bert4rec" and isinstance(getattr(head, "bias", None), nn.Parameter):
        return [(head, "bias")]
    return []


@torch.no_grad()
def extend_vocabulary(model: PreTrainedModel, new_item_ids: Iterable) -> list[str]:
    """Add items to `model`'s vocabulary in place and return the raw ids that were actually new (in order).

    Ids already known are ignored (so the whole catalogue can be passed); the new ones get indices `num_items + 1,
    ...`. The item embedding table (`model.get_input_embeddings()`, padding row 0) is replaced by a larger one holding
    the old rows unchanged, so the model's scores for old items do not move. New rows are initialised by the model's
    own `_init_weights` (normal with `config.initializer_range` for the models here). BERT4Rec's `[MASK]` row moves to
    the new end (index `num_items + 1`) and its per-item output bias grows with zeros for the new items.
    `config.num_items` and `config.item_ids` are updated, so `save_pretrained` writes the grown vocabulary.
    """
    config = model.config
    if config.item_ids is None:
        raise ValueError(
            "this model has no saved vocabulary (config.item_ids), so raw ids cannot be added; give the model an "
            "ItemVocab's to_list() as config.item_ids first."
        )
    vocab = ItemVocab([str(i) for i in config.item_ids])
    added = vocab.extend([str(i) for i in new_item_ids])
    if not added:
        return []
    old_n, new_n = config.num_items, len(vocab)
    extra = EXTRA_TRAILING_ROWS.get(config.model_type, 0)
    old = model.get_input_embeddings()
    if not isinstance(old, nn.Embedding) or old.padding_idx != 0 or old.num_embeddings != old_n + 1 + extra:
        raise ValueError(
            f"{type(model).__name__}.get_input_embeddings() is not an nn.Embedding of {old_n + 1 + extra} rows with "
            "padding row 0 (padding, the items, then "
            f"{extra} extra row(s)); extend_vocabulary cannot grow it. Known layouts: items at 1..num_items, plus "
            f"trailing rows {EXTRA_TRAILING_ROWS}."
        )
    grown = nn.Embedding(
        new_n + 1 + extra,
        old.embedding_dim,
        padding_idx=0,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    model._init_weights(grown)  # new rows exactly as a fresh model's would be
    grown.weight[: old_n + 1] = old.weight[: old_n + 1]
    if extra:
        grown.weight[new_n + 1 :] = old.weight[old_n + 1 :]
    grown.weight.requires_grad_(old.weight.requires_grad)
    model.set_input_embeddings(grown)
    for module, name in _per_item_output_biases(model):
        bias = getattr(module, name)
        new_bias = torch.zeros(new_n + 1, device=bias.device, dtype=bias.dtype)
        new_bias[: old_n + 1] = bias
        setattr(module, name, nn.Parameter(new_bias, requires_grad=bias.requires_grad))
    _warn_about_other_item_sized_tensors(model, old_n, old.num_embeddings, grown)
    config.num_items = new_n
    config.item_ids = vocab.to_list()  # a new list object: recommend's id lookup is rebuilt
    if hasattr(model, "clear_kernel_cache"):
        model.clear_kernel_cache()
    logger.info("vocabulary grown from %d to %d items (%d new)", old_n, new_n, len(added))
    return added


def _warn_about_other_item_sized_tensors(
    model: PreTrainedModel, old_n: int, old_rows: int, embedding: nn.Embedding
) -> None:
    handled = {id(embedding.weight)} | {id(getattr(m, n)) for m, n in _per_item_output_biases(model)}
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if id(tensor) not in handled and tensor.dim() >= 1 and tensor.shape[0] in (old_n + 1, old_rows):
            logger.warning(
                "%s has %d rows, like the old vocabulary (%d items); extend_vocabulary did not grow it. If it is a "
                "per-item tensor, the grown model will fail or ignore the new items.",
                name,
                tensor.shape[0],
                old_n,
            )


def _load_model(model_dir_or_model: str | os.PathLike | PreTrainedModel) -> PreTrainedModel:
    if isinstance(model_dir_or_model, PreTrainedModel):
        return model_dir_or_model
    from .checkpoint import load_model

    return load_model(model_dir_or_model)  # checks the folder and the loaded weights; errors name the fix


def finetune(
    model_dir_or_model: str | os.PathLike | PreTrainedModel,
    interactions_or_splits: Interactions | DatasetDict | str | os.PathLike,
    output_dir: str | os.PathLike,
    settings: TrainSettings | None = None,
    add_new_items: bool = True,
    max_users: int | None = None,
) -> dict[str, Any]:
    """Continue training a saved model on new interactions and write a Hub-ready folder to `output_dir`.

    Args:
        model_dir_or_model: a folder written by `hyenarec train` (or `save_pretrained`), or a loaded model (changed
            in place).
        interactions_or_splits: the new data: an interaction file (any format `load_interactions` reads), an
            `Interactions`, or a `DatasetDict` already encoded with the model's vocabulary (grow it first with
            `extend_vocabulary`). Files and `Interactions` are split leave-one-out by time, as for training.
        output_dir: where the fine-tuned folder goes (weights, config with the grown vocabulary, code, results, curve,
            card); Trainer checkpoints go to `output_dir/checkpoints/`.
        settings: optimisation settings; by default `TrainSettings(max_length=<the model's>, epochs=20,
            learning_rate=5e-4, patience=3)`. `max_length` may not exceed the model's `max_position_embeddings`.
        add_new_items: grow the vocabulary with items the model has not seen (True), or drop their interactions
            (False, counted in the data report).
        max_users: keep only the first N users of each split (quick runs).

    Returns the results dictionary (`results.json`), with `data.finetuned_from` and `data.new_items` added.
    """
    model = _load_model(model_dir_or_model)
    config = model.config
    limit = config.max_position_embeddings
    if settings is None:
        settings = TrainSettings(max_length=limit, epochs=20, learning_rate=5e-4, patience=3)
    if settings.max_length > limit:
        raise ValueError(
            f"settings.max_length={settings.max_length} exceeds the model's max_position_embeddings={limit}; "
            f"fine-tune with max_length <= {limit} (the model's kernels and positions cover {limit} items)."
        )
    source = (
        str(model_dir_or_model) if not isinstance(model_dir_or_model, PreTrainedModel) else config.name_or_path
    ) or "<in-memory model>"

    new_items: list[str] = []
    data_source = "splits given"
    if isinstance(interactions_or_splits, DatasetDict):
        splits = interactions_or_splits
        if config.item_ids is None:
            raise ValueError("this model has no saved vocabulary (config.item_ids) to check the given splits against.")
        vocab = ItemVocab(config.item_ids)
        _check_encoded(splits, config.num_items)
    else:
        if isinstance(interactions_or_splits, Interactions):
            interactions = interactions_or_splits
            data_source = str(interactions.report.get("source", "interactions given"))
        else:
            data_source = str(interactions_or_splits)
            interactions = load_interactions(interactions_or_splits)
        if config.item_ids is None:
            raise ValueError(
                "this model has no saved vocabulary (config.item_ids), so raw-id interactions cannot be mapped; "
                "pass splits encoded with the model's item indices instead."
            )
        if add_new_items:
            set_seed(settings.seed)  # the new embedding rows are drawn from the seeded generator
            new_items = extend_vocabulary(model, [item for seq in interactions.sequences for item in seq])
        vocab = ItemVocab(config.item_ids)
        splits, _ = build_splits(interactions, vocab=vocab, on_unknown="error" if add_new_items else "skip")
    if max_users:
        splits = DatasetDict({name: split.select(range(min(max_users, len(split)))) for name, split in splits.items()})
    logger.info("fine-tuning %s on %s: %d new items", source, data_source, len(new_items))
    data_info = dataset_summary(splits, vocab, data_source)
    data_info.update(finetuned_from=source, new_items=len(new_items))
    return train_and_evaluate(splits, vocab, output_dir, settings, model=model, data_info=data_info)


def _check_encoded(splits: DatasetDict, num_items: int) -> None:
    for name, split in splits.items():
        for column in ("input_ids", "target"):
            if column not in split.column_names:
                continue
            values = split.data.column(column)
            if hasattr(values.type, "value_type"):  # a list column
                values = pc.list_flatten(values)
            bounds = pc.min_max(values).as_py()
            if bounds["min"] is not None and (bounds["min"] < 1 or bounds["max"] > num_items):
                raise ValueError(
                    f"splits[{name!r}][{column!r}] holds item indices {bounds['min']}..{bounds['max']}, outside "
                    f"1..{num_items:,} (the model's vocabulary); encode the data with ItemVocab(model.config.item_ids) "
                    "after extend_vocabulary, or pass the raw interactions and let finetune grow the vocabulary."
                )
