"""Small in-memory splits shared by the Trainer tests."""

import datasets


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
