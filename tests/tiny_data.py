"""Small in-memory splits and tiny models shared by the tests."""

import datasets
import torch

from hyenarec_hf.training import MODEL_REGISTRY


def train_and_validation(histories: list[list[int]]) -> datasets.DatasetDict:
    """Train on each history without its last two items; validate on predicting the second-to-last."""
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"input_ids": [h[:-2] for h in histories]}),
            "validation": datasets.Dataset.from_dict(
                {"input_ids": [h[:-2] for h in histories], "target": [h[-2] for h in histories]}
            ),
        }
    )


def tiny_model(model_type: str, num_items: int, length: int, width: int = 16, legendre_order: int = 4, **overrides):
    """A small model of any family (no dropout unless `overrides` set it), the same weights for the same arguments."""
    config_class, model_class = MODEL_REGISTRY[model_type]
    values = dict(num_items=num_items, max_position_embeddings=length, hidden_size=width, hidden_dropout_prob=0.0)
    if model_type == "hyenarec":
        values.update(intermediate_size=2 * width, legendre_order=legendre_order)
    elif model_type == "gru4rec":
        values.update(embedding_size=width)
    else:
        values.update(intermediate_size=2 * width, num_attention_heads=2, attention_probs_dropout_prob=0.0)
    values.update(overrides)
    torch.manual_seed(0)
    return model_class(config_class(**values))
