"""BERT4Rec: bidirectional self-attention trained to recover masked items (Sun et al., CIKM '19).

Reads top to bottom: the output transform (`BERT4RecPredictionHead`) -> the backbone (`BERT4RecModel`, SASRec's
blocks with a bidirectional mask) -> the task head (`BERT4RecForNextItemPrediction`).

How next-item scores are read: a `[MASK]` item (index `num_items + 1`) is appended after the left-padded history and
the model scores that position. The rule: `forward(..., logits_to_keep=k)` with k > 0 appends the `[MASK]` (dropping
the oldest position when the sequence is already `max_position_embeddings` long), so `logits_to_keep=1` (evaluation,
`score_histories`, `recommend`) gives the next-item scores; `logits_to_keep=0` (training on masked batches from
`hyenarec_hf.masking.MaskedItemCollator`) scores the input as given. `append_mask_token=True/False` overrides it.

This file ships next to the weights on the Hub (``trust_remote_code=True``): it imports only torch and transformers,
and its siblings through relative imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_bert4rec import BERT4RecConfig
from .modeling_sasrec import SASRecBlock, attention_mask_for
from .next_item import Dropout, NextItemMixin, NextItemPredictionOutput


class BERT4RecPredictionHead(nn.Module):
    """BERT's output transform before the tied item embeddings: `LN(act(dense(h)))`, plus a per-item output bias."""

    def __init__(self, config: BERT4RecConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = F.gelu if config.hidden_act == "gelu" else F.relu
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.num_items + 1))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(hidden_states)))


@dataclass
class BERT4RecModelOutput(ModelOutput):
    """Backbone output.

    Args:
        last_hidden_state: `(batch, seq_len, hidden)` after the final layer norm.
        hidden_states: tuple of `(batch, seq_len, hidden)`, the embeddings and each block's output, when
            `output_hidden_states=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class BERT4RecPreTrainedModel(NextItemMixin, PreTrainedModel):
    config_class = BERT4RecConfig
    config: BERT4RecConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["SASRecBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        # `init.*` leave tensors that were loaded from a checkpoint untouched (transformers 5 marks them).
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            weight = torch.randn(module.weight.shape, device=module.weight.device) * std
            if module.padding_idx is not None:
                weight[module.padding_idx] = 0.0
            init.copy_(module.weight, weight)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, BERT4RecPredictionHead):
            init.zeros_(module.bias)

    def _validate_input_ids(self, input_ids: torch.Tensor) -> None:
        # The [MASK] item is a valid input (never a valid label); check everything else as for the other models.
        super()._validate_input_ids(input_ids.masked_fill(input_ids == self.config.mask_token_id, 0))


class BERT4RecModel(BERT4RecPreTrainedModel):
    """The BERT4Rec backbone: item + position embeddings -> LN -> bidirectional blocks -> final layer norm."""

    def __init__(self, config: BERT4RecConfig):
        super().__init__(config)
        # rows: 0 padding, 1..num_items items, num_items + 1 the [MASK] item
        self.item_embeddings = nn.Embedding(config.num_items + 2, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.embedding_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList([SASRecBlock(config) for _ in range(config.num_hidden_layers)])
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.item_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BERT4RecModelOutput | tuple:
        """Encode item sequences.

        Args:
            input_ids: `(batch, seq_len)` item indices, 0 = padding (left padded), `num_items + 1` = `[MASK]`.
            attention_mask: `(batch, seq_len)`, 1 for real items and `[MASK]`s; `input_ids != 0` when omitted.
        """
        self._validate_input_ids(input_ids)
        length = input_ids.shape[1]
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        mask = attention_mask.to(self.item_embeddings.weight.dtype)
        # Positions count back from the last position, so left padding does not shift them.
        positions = torch.arange(length - 1, -1, -1, device=input_ids.device)
        hidden = self.item_embeddings(input_ids) + self.position_embeddings(positions)[None]
        hidden = self.dropout(self.embedding_norm(hidden)) * mask[..., None]
        attn_mask = attention_mask_for(attention_mask, causal=False)
        all_hidden = (hidden,) if output_hidden_states else None
        for layer in self.layers:
            hidden = layer(hidden, attn_mask)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden,)
        hidden = self.final_norm(hidden)
        if not (return_dict if return_dict is not None else self.config.return_dict):
            return tuple(v for v in (hidden, all_hidden) if v is not None)
        return BERT4RecModelOutput(last_hidden_state=hidden, hidden_states=all_hidden)


class BERT4RecForNextItemPrediction(BERT4RecPreTrainedModel):
    """BERT4Rec with the item head: `logits = transform(h) @ item_embeddings[:num_items + 1]^T + bias` (tied).

    See the module docstring for when a `[MASK]` item is appended (`logits_to_keep > 0`)."""

    _tied_weights_keys: dict[str, str] = {}

    def __init__(self, config: BERT4RecConfig):
        super().__init__(config)
        self.model = BERT4RecModel(config)
        self.head = BERT4RecPredictionHead(config)
        self.post_init()

    def append_mask_item(
        self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.LongTensor, torch.Tensor]:
        """Append `[MASK]` after each left-padded history: `(batch, seq_len)` -> `(batch, min(seq_len + 1, l_max))`.

        When the result would exceed `max_position_embeddings`, its first column goes: the oldest item of the
        longest histories (shorter ones lose only padding)."""
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        batch, keep = input_ids.shape[0], self.config.max_position_embeddings
        mask_column = input_ids.new_full((batch, 1), self.config.mask_token_id)
        input_ids = torch.cat([input_ids, mask_column], dim=1)[:, -keep:]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)[:, -keep:]
        return input_ids, attention_mask

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        append_mask_token: bool | None = None,
    ) -> NextItemPredictionOutput | tuple:
        """Score items at every position, or the next item after each history.

        Args:
            input_ids: `(batch, seq_len)` item indices, 0 = padding, left padded; may contain `[MASK]`
                (`config.mask_token_id`) items.
            attention_mask: `(batch, seq_len)`, 1 for real items.
            labels: `(batch, kept_positions)` items to recover (-100 = ignore); with `logits_to_keep=1` a `(batch,)`
                tensor of next items is accepted too.
            logits_to_keep: 0 scores every input position (masked-item training); k > 0 appends `[MASK]` (unless
                `append_mask_token=False`) and scores the last k positions, the last being the next item.
            append_mask_token: override the rule above; None follows it.

        `hidden_states` (when asked) cover the sequence the blocks saw, the appended `[MASK]` included.
        """
        if append_mask_token is None:
            append_mask_token = logits_to_keep > 0
        if append_mask_token:
            self._validate_input_ids(input_ids)  # before appending, so the length check sees the user's history
            input_ids, attention_mask = self.append_mask_item(input_ids, attention_mask)
        outputs = self.model(input_ids, attention_mask, output_hidden_states=output_hidden_states, return_dict=True)
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        hidden = self.head(hidden)
        return self.next_item_output(hidden, outputs.hidden_states, labels, num_items_in_batch, return_dict)

    def output_item_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Tied item embeddings without the `[MASK]` row, plus the per-item output bias."""
        return self.model.item_embeddings.weight[: self.config.num_items + 1], self.head.bias

    @torch.no_grad()
    def score_histories(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores `(batch, num_items + 1)` of the item following each (left-padded) history."""
        return self(input_ids, attention_mask, logits_to_keep=1, append_mask_token=True).logits[:, -1]


__all__ = ["BERT4RecModel", "BERT4RecForNextItemPrediction", "BERT4RecPreTrainedModel"]
