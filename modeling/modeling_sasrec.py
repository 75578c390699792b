"""SASRec: causal self-attention over item histories for next-item recommendation (Kang and McAuley, ICDM '18).

Reads top to bottom: the attention mask and the sampled softmax (functions) -> attention (`SASRecAttention`) -> the
feed-forward network -> the block (`SASRecBlock`) -> the backbone (`SASRecModel`) -> the task head
(`SASRecForNextItemPrediction`). BERT4Rec reuses the same blocks with a bidirectional mask.

This file ships next to the weights on the Hub (``trust_remote_code=True``): it imports only torch and transformers,
and the configuration through a relative import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from .configuration_sasrec import SASRecConfig
from .next_item import Dropout, NextItemMixin, NextItemPredictionOutput

# ----------------------------------------------------------------------------------------------------------------------
# Functions
# ----------------------------------------------------------------------------------------------------------------------


def attention_mask_for(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean attention mask `(batch, 1, seq_len, seq_len)` for `scaled_dot_product_attention` (True = attend).

    A query attends to real keys (`mask` `(batch, seq_len)`, True for real items), only earlier ones when `causal`.
    Every query also attends to itself: a padded query would otherwise have no key at all, and a fully masked row
    makes the softmax return NaN. Real queries already attend to themselves; padded outputs are never used.
    """
    length = mask.shape[1]
    allowed = mask.bool()[:, None, None, :]
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=mask.device).tril()
    return allowed | torch.eye(length, dtype=torch.bool, device=mask.device)


# ----------------------------------------------------------------------------------------------------------------------
# Attention, feed-forward, block
# ----------------------------------------------------------------------------------------------------------------------


class SASRecAttention(nn.Module):
    """Multi-head self-attention through `F.scaled_dot_product_attention` (flash / memory-efficient kernels)."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = config.attention_probs_dropout_prob

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """`hidden_states` `(batch, seq_len, hidden)`, `attention_mask` `(batch, 1, seq_len, seq_len)` bool."""
        batch, length, width = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq_len, head_dim)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width))


class SASRecFeedForward(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = F.gelu if config.hidden_act == "gelu" else F.relu
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down(self.dropout(self.act(self.up(hidden_states))))


class SASRecBlock(GradientCheckpointingLayer):
    """Pre-norm residual block: `x + dropout(attention(LN(x)))`, then `x + dropout(FFN(LN(x)))`.

    Takes any configuration with SASRec's trunk fields (BERT4Rec's does)."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SASRecAttention(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = SASRecFeedForward(config)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.dropout(self.attention(self.attention_norm(hidden_states), attention_mask))
        return hidden_states + self.dropout(self.ffn(self.ffn_norm(hidden_states)))


# ----------------------------------------------------------------------------------------------------------------------
# Backbone and head
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class SASRecModelOutput(ModelOutput):
    """Backbone output.

    Args:
        last_hidden_state: `(batch, seq_len, hidden)` after the final layer norm.
        hidden_states: tuple of `(batch, seq_len, hidden)`, the embeddings and each block's output, when
            `output_hidden_states=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class SASRecPreTrainedModel(NextItemMixin, PreTrainedModel):
    config_class = SASRecConfig
    config: SASRecConfig
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


class SASRecModel(SASRecPreTrainedModel):
    """The SASRec backbone: item + position embeddings -> causal blocks -> final layer norm."""

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        self.item_embeddings = nn.Embedding(config.num_items + 1, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
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
    ) -> SASRecModelOutput | tuple:
        """Encode item histories.

        Args:
            input_ids: `(batch, seq_len)` item indices, 0 = padding (left padding, the most recent item last).
            attention_mask: `(batch, seq_len)`, 1 for real items; derived from `input_ids != 0` when omitted.
                Histories longer than `max_position_embeddings` must be cut to their most recent items first.
        """
        self._validate_input_ids(input_ids)
        length = input_ids.shape[1]
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        mask = attention_mask.to(self.item_embeddings.weight.dtype)
        # Positions count back from the most recent item, so left padding does not shift them.
        positions = torch.arange(length - 1, -1, -1, device=input_ids.device)
        hidden = self.item_embeddings(input_ids) * math.sqrt(self.config.hidden_size)
        hidden = self.dropout(hidden + self.position_embeddings(positions)[None]) * mask[..., None]
        attn_mask = attention_mask_for(attention_mask, causal=True)
        all_hidden = (hidden,) if output_hidden_states else None
        for layer in self.layers:
            hidden = layer(hidden, attn_mask)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden,)
        hidden = self.final_norm(hidden)
        if not (return_dict if return_dict is not None else self.config.return_dict):
            return tuple(v for v in (hidden, all_hidden) if v is not None)
        return SASRecModelOutput(last_hidden_state=hidden, hidden_states=all_hidden)


class SASRecForNextItemPrediction(SASRecPreTrainedModel):
    """SASRec with the next-item head: `logits = LN(h) @ item_embeddings^T` (tied; no second matrix)."""

    _tied_weights_keys: dict[str, str] = {}

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        self.model = SASRecModel(config)
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


__all__ = [
    "SASRecModel",
    "SASRecForNextItemPrediction",
    "SASRecPreTrainedModel",
    "attention_mask_for",
]
