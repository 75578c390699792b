"""BERT4Rec configuration.

This file ships next to the weights on the Hub (``trust_remote_code=True``): it imports only ``transformers``.
"""

from __future__ import annotations

from transformers import PretrainedConfig

HIDDEN_ACTS = ("gelu", "relu")
LOSS_TYPES = ("ce", "sampled_ce", "chunked_ce")


def _check(condition: bool, field: str, value, allowed: str) -> None:
    if not condition:
        raise ValueError(f"BERT4RecConfig.{field}={value!r} is not allowed: {field} must be {allowed}.")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class BERT4RecConfig(PretrainedConfig):
    r"""Configuration of a BERT4Rec next-item recommender.

    BERT4Rec ("Sequential Recommendation with Bidirectional Encoder Representations from Transformer", Sun et al.,
    CIKM '19) trains bidirectional self-attention blocks to recover randomly masked items of a history (a Cloze
    task). To recommend, a `[MASK]` item is appended after the history and the model scores that position. The item
    index `num_items + 1` is the `[MASK]` item: the embedding table has `num_items + 2` rows, but logits cover only
    `0..num_items` (padding and `[MASK]` are never recommended). Defaults follow RecBole's `bert4rec.yaml`
    (`mask_ratio 0.2`, `ft_ratio 0.5`, dropouts 0.2), with 200 positions as in the paper's ML-1M setting.

    Args:
        num_items (`int`, defaults to 3416):
            Number of real items. Item indices run from 1 to `num_items`; index 0 is padding, `num_items + 1` the
            `[MASK]` item (`mask_token_id`).
        hidden_size (`int`, defaults to 64):
            Width of item and position embeddings and of every block.
        num_hidden_layers (`int`, defaults to 2):
            Number of bidirectional self-attention blocks.
        num_attention_heads (`int`, defaults to 2):
            Attention heads per block; must divide `hidden_size`.
        intermediate_size (`int`, defaults to 256):
            Width of the position-wise feed-forward network in each block.
        hidden_act (`str`, defaults to `"gelu"`):
            Activation of the feed-forward network and of the output transform: `"gelu"` or `"relu"`.
        max_position_embeddings (`int`, defaults to 200):
            Longest sequence the model reads, the `[MASK]` item included: to score the next item after a history of
            this length, the oldest item is dropped to make room for the `[MASK]`.
        hidden_dropout_prob (`float`, defaults to 0.2):
            Dropout on the embeddings and on each residual branch.
        attention_probs_dropout_prob (`float`, defaults to 0.2):
            Dropout on the attention probabilities (training only).
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser of linear layers and embeddings.
        layer_norm_eps (`float`, defaults to 1e-12):
            Epsilon of the layer norms (RecBole's value).
        mask_prob (`float`, defaults to 0.2):
            Training: probability that each item of a history is replaced by `[MASK]` (at least one item of every
            history is masked). Read by `hyenarec_hf.masking.MaskedItemCollator`; not used by the model itself.
        last_item_only_prob (`float`, defaults to 0.5):
            Training: probability that a history masks only its most recent item instead (RecBole's `ft_ratio`,
            the paper's "samples that only mask the last item"), which matches how the model is used to recommend.
        loss_type (`str`, defaults to `"ce"`):
            `"ce"`: full-softmax cross-entropy over all items at every masked position; `"sampled_ce"`:
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

    model_type = "bert4rec"

    def __init__(
        self,
        num_items: int = 3416,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        intermediate_size: int = 256,
        hidden_act: str = "gelu",
        max_position_embeddings: int = 200,
        hidden_dropout_prob: float = 0.2,
        attention_probs_dropout_prob: float = 0.2,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        mask_prob: float = 0.2,
        last_item_only_prob: float = 0.5,
        loss_type: str = "ce",
        num_negatives: int = 256,
        item_ids: list[str] | None = None,
        pad_token_id: int = 0,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.mask_prob = mask_prob
        self.last_item_only_prob = last_item_only_prob
        self.loss_type = loss_type
        self.num_negatives = num_negatives
        self.item_ids = list(item_ids) if item_ids is not None else None
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.validate_bert4rec()

    @property
    def mask_token_id(self) -> int:
        """The `[MASK]` item index, `num_items + 1`."""
        return self.num_items + 1

    def validate_bert4rec(self) -> None:
        """Check every BERT4Rec field; raise `ValueError` naming the field, the value and what is allowed."""
        for field in (
            "num_items",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "num_negatives",
        ):
            value = getattr(self, field)
            _check(_is_int(value) and value >= 1, field, value, "an int >= 1")
        _check(
            self.hidden_size % self.num_attention_heads == 0,
            "num_attention_heads",
            self.num_attention_heads,
            f"a divisor of hidden_size ({self.hidden_size})",
        )
        lmax = self.max_position_embeddings
        _check(
            _is_int(lmax) and lmax >= 2,
            "max_position_embeddings",
            lmax,
            "an int >= 2 (one history item plus the [MASK] item)",
        )
        _check(self.hidden_act in HIDDEN_ACTS, "hidden_act", self.hidden_act, f"one of {HIDDEN_ACTS}")
        _check(self.loss_type in LOSS_TYPES, "loss_type", self.loss_type, f"one of {LOSS_TYPES}")
        for field in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, field)
            _check(isinstance(value, (int, float)) and 0.0 <= value < 1.0, field, value, "a float in [0, 1)")
        value = self.mask_prob
        _check(isinstance(value, (int, float)) and 0.0 < value <= 1.0, "mask_prob", value, "a float in (0, 1]")
        value = self.last_item_only_prob
        _check(
            isinstance(value, (int, float)) and 0.0 <= value <= 1.0, "last_item_only_prob", value, "a float in [0, 1]"
        )
        for field in ("initializer_range", "layer_norm_eps"):
            value = getattr(self, field)
            _check(isinstance(value, (int, float)) and value > 0, field, value, "a float > 0")
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
