"""Model cards generated from a run's own results, with `huggingface_hub`'s `ModelCard` / `ModelCardData`."""

from __future__ import annotations

from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

CITATION = """@inproceedings{liu2026hyenarec,
  title     = {Hyena Operator for Fast Sequential Recommendation},
  author    = {Liu, Jiahao and Li, Lin and Li, Zhiyuan and Hu, Kaixi and Shi, Kaize and Yuan, Jingling},
  booktitle = {Proceedings of the ACM Web Conference 2026 (WWW '26)},
  year      = {2026},
  note      = {arXiv:2603.25027}
}"""

DATA_TERMS = {
    "movielens": "MovieLens data (GroupLens, https://grouplens.org/datasets/movielens/) is licensed for research use; "
    "it may not be redistributed without permission and not used commercially. Cite Harper & Konstan, ACM TiiS 2015. "
    "This repository holds no data.",
    "amazon": "Amazon review data (McAuley lab, UCSD) is for research use; cite He & McAuley (WWW 2016) and McAuley "
    "et al. (SIGIR 2015). This repository holds no data.",
}

HEADLINE = ["hr@10_full", "ndcg@10_full", "mrr@10_full", "hr@20_full", "ndcg@20_full", "hr@5_full", "ndcg@5_full"]


def _dataset_label(results: dict[str, Any]) -> tuple[str, str]:
    source = str(results.get("data", {}).get("source", "custom"))
    low = source.lower()
    if "ml-1m" in low or "movielens" in low:
        return "MovieLens-1M", "movielens"
    if "ml-100k" in low:
        return "MovieLens-100k", "movielens"
    if "beauty" in low:
        return "Amazon Beauty", "amazon"
    if "video" in low:
        return "Amazon Video Games", "amazon"
    return source, "custom"


def render_model_card(results: dict[str, Any], config: Any, repo_id: str | None = None) -> ModelCard:
    """A model card whose every number comes from `results` (the run's `results.json`)."""
    dataset_name, family = _dataset_label(results)
    test = results.get("test", {})
    eval_results = [
        EvalResult(
            task_type="sequential-recommendation",
            task_name="Next-item recommendation",
            dataset_type=dataset_name.lower().replace(" ", "-"),
            dataset_name=dataset_name,
            dataset_split="test (leave-one-out, last item)",
            metric_type=name.split("_")[0].split("@")[0],
            metric_name=f"{name} (full ranking, seen items excluded)",
            metric_value=round(float(test[name]), 4),
        )
        for name in HEADLINE
        if name in test
    ]
    card_data = ModelCardData(
        library_name="transformers",
        tags=["recommendation", "sequential-recommendation", "hyena", "legendre", "hyenarec"],
        license="apache-2.0",
        model_name=repo_id or f"hyenarec-{dataset_name.lower().replace(' ', '-')}",
        eval_results=eval_results or None,
    )
    rows = "\n".join(
        f"| {name} | {test[name]:.4f} | {test.get(name.replace('_full', '_full_incl_seen'), float('nan')):.4f} |"
        for name in HEADLINE
        if name in test
    )
    sampled = {k: v for k, v in test.items() if "_sampled" in k and k.startswith(("hr@10", "ndcg@10"))}
    sampled_line = (
        "Sampled protocol (target + 100 sampled unseen items; not comparable with full ranking): "
        + ", ".join(f"{k} = {v:.4f}" for k, v in sorted(sampled.items()))
        if sampled
        else ""
    )
    settings = results.get("settings", {})
    terms = DATA_TERMS.get(family, "Check the terms of the data you train on; this repository holds no data.")
    repo = repo_id or "<this-folder-or-repo>"
    content = f"""---
{card_data.to_yaml()}
---

# HyenaRec next-item recommender ({dataset_name})

A [HyenaRec](https://arxiv.org/abs/2603.25027) sequential recommender built with
[hyenarec-hf](https://github.com/): Hyena long causal convolutions with Legendre-polynomial kernels plus a gated short
convolution, trained with the Hugging Face `Trainer`. Given a user's item history, it scores every item as the next one.

## Intended use

Top-k next-item recommendation for users of the catalogue it was trained on ({config.num_items:,} items), from
histories of up to {config.max_position_embeddings} items (longer histories keep their most recent items). Research
and prototyping; not a product ranking system without further evaluation on your own traffic.

## How to load

```python
import hyenarec_hf  # registers the Auto classes
from transformers import AutoModel

model = AutoModel.from_pretrained("{repo}")
```

Without the package installed, the code that ships in this folder is used:

```python
from transformers import AutoModel
model = AutoModel.from_pretrained("{repo}", trust_remote_code=True)
```

Raw item ids are in `model.config.item_ids` (`item_ids[i]` is item index `i + 1`; 0 is padding).

## Training data

{dataset_name}: {results.get("data", {}).get("num_train_users", "?")} training users,
{results.get("data", {}).get("num_train_interactions", "?")} training interactions. {terms}

## Evaluation protocol

Leave-one-out by time: the last item of each user is the test target, the second-to-last the validation target.
Full ranking over all {config.num_items:,} items; ties are broken against the target. Headline numbers exclude
the user's already-seen items from the candidates; the third column keeps them.

| metric (test) | seen items excluded | seen items kept |
|---|---|---|
{rows}

{sampled_line}

Training: {results.get("epochs_run", 0):.0f} epochs ({results.get("train_seconds", 0) / 60:.1f} min),
batch size {settings.get("batch_size")}, learning rate {settings.get("learning_rate")}, max length
{settings.get("max_length")}, seed {settings.get("seed")}; best validation checkpoint restored (early stopping on
validation NDCG@10).

## Limitations

- Scores only items seen in training; new items need the vocabulary grown and fine-tuning.
- Trained on one public dataset with one seed; expect variance of a few thousandths in NDCG@10 across seeds.
- The offline leave-one-out protocol measures next-item prediction, not online utility.

## Citation

```bibtex
{CITATION}
```
"""
    return ModelCard(content)
