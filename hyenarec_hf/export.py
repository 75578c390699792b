"""Export a next-item scorer with `torch.export` for serving without Python model code.

The exported program maps `(input_ids, attention_mask)`, both `(batch, max_length)` and left padded with 0, to the
next-item scores `(batch, num_items + 1)` (column 0, padding, is the dtype's minimum). The batch dimension is dynamic;
the sequence length is fixed at `max_length`, so pad every history on the left to that length (histories longer than
it keep their most recent items). Mapping raw ids to indices and back stays outside the graph: the vocabulary is saved
next to the graph in the `.pt2` file (`load_scorer` returns it).

    from hyenarec_hf.export import export_scorer, load_scorer
    export_scorer(model, max_length=200, path="scorer.pt2")
    scorer, meta = load_scorer("scorer.pt2")
    scores = scorer(input_ids, attention_mask)  # (batch, num_items + 1)

HyenaRec exports with every `conv_impl` (`"fft"`, `"toeplitz"`, `"auto"`); the long-convolution kernels are computed
inside the graph from the weights on every call (the eager model's eval-mode kernel cache is Python state and is not
traced). On CPU at length 200 that recomputation shows only at batch 1, where a `"fft"` export was the fastest path
measured (`benchmarks/recommend_latency.md`); from 64 users up all paths cost the same. SASRec and BERT4Rec export
too. GRU4Rec does not yet: its left-padding check reads tensor data, which tracing cannot do. The models'
input-range check is skipped while tracing for the same reason: feed the program indices from the saved vocabulary
only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

META_FILE = "hyenarec_scorer.json"


class NextItemScorer(nn.Module):
    """Wraps a next-item model as `(input_ids, attention_mask) -> scores (batch, num_items + 1)`.

    The tensor-only signature (no `ModelOutput`, no keyword options) is what `torch.export` and serving runtimes
    want. Scores are those of `model.score_histories`."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1).logits[:, -1]


def _example_inputs(num_items: int, max_length: int, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, num_items + 1, (batch, max_length), generator=generator)
    for row, length in enumerate(torch.linspace(1, max_length, batch).long().tolist()):
        input_ids[row, : max_length - length] = 0  # left padding of different widths
    return input_ids, input_ids.ne(0)


def export_scorer(
    model: PreTrainedModel,
    max_length: int | None = None,
    path: str | os.PathLike | None = None,
    max_batch: int = 65536,
) -> torch.export.ExportedProgram:
    """Export `model`'s next-item scores with `torch.export` (dynamic batch, sequence length fixed at `max_length`).

    Args:
        model: a next-item model of this package (HyenaRec, SASRec, BERT4Rec, GRU4Rec); it is put in eval mode.
        max_length: the fixed (left padded) input length; defaults to `config.max_position_embeddings`, which it
            may not exceed.
        path: when given, save the program there with `torch.export.save` (a `.pt2` file), together with the
            vocabulary and sizes (`load_scorer` reads both).
        max_batch: the largest batch the program accepts.

    Returns the `torch.export.ExportedProgram`; `program.module()(input_ids, attention_mask)` gives `(batch,
    num_items + 1)` scores.
    """
    config = model.config
    limit = config.max_position_embeddings
    max_length = limit if max_length is None else int(max_length)
    if not 1 <= max_length <= limit:
        raise ValueError(
            f"max_length={max_length} is outside 1..{limit} (the model's max_position_embeddings); export with "
            f"max_length <= {limit}."
        )
    model.eval()
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    # Grad mode on while tracing: HyenaRec's eval kernel cache (Python state keyed on tensor storage) is only used
    # without autograd, so the kernels are traced as computations of the weights instead.
    with torch.enable_grad():
        program = torch.export.export(
            NextItemScorer(model),
            _example_inputs(config.num_items, max_length),
            dynamic_shapes=({0: batch}, {0: batch}),
        )
    if path is not None:
        meta = {
            "model_type": config.model_type,
            "num_items": config.num_items,
            "max_length": max_length,
            "padding": "left, item index 0",
            "item_ids": list(config.item_ids) if config.item_ids is not None else None,
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, path, extra_files={META_FILE: json.dumps(meta)})
    return program


def load_scorer(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Load a scorer saved by `export_scorer`: `(module, meta)`, where `module(input_ids, attention_mask)` gives the
    scores and `meta` holds `item_ids` (`item_ids[i]` is index `i + 1`), `num_items` and `max_length`."""
    extra = {META_FILE: ""}
    program = torch.export.load(path, extra_files=extra)
    return program.module(), json.loads(extra[META_FILE])
