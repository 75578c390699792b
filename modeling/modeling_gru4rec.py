"""GRU4Rec: a GRU over item histories for next-item recommendation (Hidasi et al., ICLR '16; RecBole's variant).

Reads top to bottom: the padding-side helpers (functions) -> the backbone (`GRU4RecModel`) -> the task head
(`GRU4RecForNextItemPrediction`).

Inputs are left padded like every model of this package. A GRU started on left padding would carry a state built
from padding into the real items (its biases move the state even on zero inputs), so the backbone rolls every row
to right padding, runs the GRU (outputs at real positions only depend on earlier, real positions) and rolls the
outputs back.

This file ships next to the weights on the Hub (``trust_remote_code=True``): it imports only torch and transformers,
and its siblings through relative imports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_gru4rec import GRU4RecConfig
from .next_item import Dropout, NextItemMixin, NextItemPredictionOutput


def roll_rows(values: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """`out[b, t] = values[b, (t + shift[b]) % seq_len]` for `values` `(batch, seq_len, ...)`, `shift` `(batch,)`.

    With `shift` = the number of padding positions, a left-padded row becomes right padded; `-shift` undoes it."""
    length = values.shape[1]
    index = (torch.arange(length, device=values.device)[None, :] + shift[:, None]) % length
    index = index.view(*index.shape, *([1] * (values.dim() - 2))).expand_as(values)
    return values.gather(1, index)


@dataclass
class GRU4RecModelOutput(ModelOutput):
    """Backbone output.

    Args:
        last_hidden_state: `(batch, seq_len, embedding_size)`, the GRU output projected to the embedding width.
        hidden_states: `(embeddings (batch, seq_len, embedding_size), GRU output (batch, seq_len, hidden_size))`, when
            `output_hidden_states=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class GRU4RecPreTrainedModel(NextItemMixin, PreTrainedModel):
    config_class = GRU4RecConfig
    config: GRU4RecConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"

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
        elif isinstance(module, nn.GRU):
            for name, parameter in module.named_parameters():
                if name.startswith("weight"):
                    init.xavier_uniform_(parameter)
                else:
                    init.zeros_(parameter)


class GRU4RecModel(GRU4RecPreTrainedModel):
    """The GRU4Rec backbone: item embeddings -> dropout -> GRU -> linear projection to the embedding width."""

    def __init__(self, config: GRU4RecConfig):
        super().__init__(config)
        self.item_embeddings = nn.Embedding(config.num_items + 1, config.embedding_size, padding_idx=0)
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.gru = nn.GRU(config.embedding_size, config.hidden_size, config.num_hidden_layers, batch_first=True)
        self.projection = nn.Linear(config.hidden_size, config.embedding_size)
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
    ) -> GRU4RecModelOutput | tuple:
        """Encode item histories.

        Args:
            input_ids: `(batch, seq_len)` item indices, 0 = padding (left padding, the most recent item last).
            attention_mask: `(batch, seq_len)`, 1 for real items; derived from `input_ids != 0` when omitted. Must
                be left padding: zeros, then ones.
        """
        self._validate_input_ids(input_ids)
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        mask = attention_mask.bool()
        if mask.shape[1] > 1 and (mask[:, :-1] & ~mask[:, 1:]).any():
            raise ValueError(
                "GRU4Rec expects LEFT padded rows (attention_mask zeros then ones, the most recent item last); "
                "batch with NextItemCollator or pad on the left."
            )
        shift = (~mask).sum(1)  # padding positions per row
        hidden = self.dropout(self.item_embeddings(input_ids)) * mask[..., None].to(self.item_embeddings.weight.dtype)
        gru_out, _ = self.gru(roll_rows(hidden, shift))  # right padded: real items first
        gru_out = roll_rows(gru_out, -shift)  # back to left padding
        out = self.projection(gru_out)
        all_hidden = (hidden, gru_out) if output_hidden_states else None
        if not (return_dict if return_dict is not None else self.config.return_dict):
            return tuple(v for v in (out, all_hidden) if v is not None)
        return GRU4RecModelOutput(last_hidden_state=out, hidden_states=all_hidden)


class GRU4RecForNextItemPrediction(GRU4RecPreTrainedModel):
    """GRU4Rec with the next-item head: `logits = projection(GRU(h)) @ item_embeddings^T` (tied)."""

    _tied_weights_keys: dict[str, str] = {}

    def __init__(self, config: GRU4RecConfig):
        super().__init__(config)
        self.model = GRU4RecModel(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
    ) -> NextItemPredictionOutput | tuple:
        """Score the next item at every position (or the last `logits_to_keep` ones).

        Args:
            input_ids: `(batch, seq_len)` item indices, 0 = padding, left padded.
            attention_mask: `(batch, seq_len)`, 1 for real items.
            labels: `(batch, kept_positions)` next-item indices (-100 = ignore); with `logits_to_keep=1` a
                `(batch,)` tensor of targets is accepted too.
            logits_to_keep: 0 scores every position; k > 0 scores only the last k (evaluation and serving use 1).
        """
        outputs = self.model(input_ids, attention_mask, output_hidden_states=output_hidden_states, return_dict=True)
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return self.next_item_output(hidden, outputs.hidden_states, labels, num_items_in_batch, return_dict)


__all__ = ["GRU4RecModel", "GRU4RecForNextItemPrediction", "GRU4RecPreTrainedModel", "roll_rows"]
