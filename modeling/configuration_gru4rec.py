"""GRU4Rec configuration.

This file ships next to the weights on the Hub (``trust_remote_code=True``): it imports only ``transformers``.
"""

from __future__ import annotations

from transformers import PretrainedConfig

LOSS_TYPES = ("ce", "sampled_ce", "chunked_ce")


def _check(condition: bool, field: str, value, allowed: str) -> None:
    if not condition:
        raise ValueError(f"GRU4RecConfig.{field}={value!r} is not allowed: {field} must be {allowed}.")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class GRU4RecConfig(PretrainedConfig):
    r"""Configuration of a GRU4Rec next-item recommender.

    GRU4Rec ("Session-based Recommendations with Recurrent Neural Networks", Hidasi et al., ICLR '16) reads a history
    with a GRU; here, as in RecBole: item embedding -> dropout -> GRU -> linear projection back to the embedding
    width -> scores against the (tied) item embeddings, trained with full-softmax cross-entropy. Defaults follow
    RecBole's `gru4rec.yaml`. There is no layer norm in this model, hence no `layer_norm_eps`.

    Args:
        num_items (`int`, defaults to 3416):
            Number of real items. Item indices run from 1 to `num_items`; index 0 is padding. The output layer scores
            `num_items + 1` classes, and the padding class never scores.
        embedding_size (`int`, defaults to 64):
            Width of the item embeddings (the GRU's input and the scoring space).
        hidden_size (`int`, defaults to 128):
            Width of the GRU state.
        num_hidden_layers (`int`, defaults to 1):
            Number of stacked GRU layers.
        max_position_embeddings (`int`, defaults to 200):
            Longest history the model reads (the GRU itself has no position limit; this keeps the inputs, the
            collator and `recommend` consistent with the other models). Longer histories keep their most recent items.
        hidden_dropout_prob (`float`, defaults to 0.3):
            Dropout on the item embeddings before the GRU.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser of item embeddings and the projection (the GRU weights use
            Xavier-uniform, as RecBole).
        loss_type (`str`, defaults to `"ce"`):
            `"ce"`: full-softmax cross-entropy over all items at every labelled position; `"sampled_ce"`:
            cross-entropy over the target and `num_negatives` uniformly sampled items (training only); `"chunked_ce"`: the same
            full softmax in training, scored in chunks of positions so the `(positions, items)` logits are never
            built (less memory, same loss; the forward returns no logits in training).
        num_negatives (`int`, defaults to 256):
            Negatives per batch for `loss_type="sampled_ce"`.
        item_ids (`list[str]`, *optional*):
            The item vocabulary: `item_ids[i]` is the raw id of item index `i + 1`. Saved in `config.json`, so a
            loaded model answers in the user's own ids.
        pad_token_id (`int`, defaults to 0):
            The padding item index. Must be 0.
    """

    model_type = "gru4rec"

    def __init__(
        self,
        num_items: int = 3416,
        embedding_size: int = 64,
        hidden_size: int = 128,
        num_hidden_layers: int = 1,
        max_position_embeddings: int = 200,
        hidden_dropout_prob: float = 0.3,
        initializer_range: float = 0.02,
        loss_type: str = "ce",
        num_negatives: int = 256,
        item_ids: list[str] | None = None,
        pad_token_id: int = 0,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.num_items = num_items
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout_prob = hidden_dropout_prob
        self.initializer_range = initializer_range
        self.loss_type = loss_type
        self.num_negatives = num_negatives
        self.item_ids = list(item_ids) if item_ids is not None else None
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.validate_gru4rec()

    def validate_gru4rec(self) -> None:
        """Check every GRU4Rec field; raise `ValueError` naming the field, the value and what is allowed."""
        for field in (
            "num_items",
            "embedding_size",
            "hidden_size",
            "num_hidden_layers",
            "max_position_embeddings",
            "num_negatives",
        ):
            value = getattr(self, field)
            _check(_is_int(value) and value >= 1, field, value, "an int >= 1")
        _check(self.loss_type in LOSS_TYPES, "loss_type", self.loss_type, f"one of {LOSS_TYPES}")
        value = self.hidden_dropout_prob
        _check(
            isinstance(value, (int, float)) and 0.0 <= value < 1.0, "hidden_dropout_prob", value, "a float in [0, 1)"
        )
        value = self.initializer_range
        _check(isinstance(value, (int, float)) and value > 0, "initializer_range", value, "a float > 0")
        _check(self.pad_token_id == 0, "pad_token_id", self.pad_token_id, "0 (item index 0 is padding)")
        if self.item_ids is not None:
            _check(
                len(self.item_ids) == self.num_items,
                "item_ids",
                f"<{len(self.item_ids)} ids>",
                f"a list of exactly num_items ({self.num_items}) raw ids",
            )
            _check(
                len(set(self.item_ids)) == len(self.item_ids), "item_ids", "<list with duplicates>", "distinct raw ids"
            )
