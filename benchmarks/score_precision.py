"""What bf16 item scores did to the reported metrics: one trained model, ranked three ways on the same split.

Every accuracy run here trains and evaluates under bf16 autocast (`--bf16`). Until item scores were computed in
float32 (`modeling/next_item.py::item_scores`), autocast ran the scoring GEMM `hidden @ item_embeddings^T` in bf16 too,
and bf16 keeps 8 significant bits: at the scale of trained logits (about 5 to 20) items closer than 0.03 to 0.1 get
the same score, and the protocol counts a tie against the target. This script ranks the same users with the same
weights

- `float32`: no autocast at all (the reference);
- `bf16 scores`: the model under bf16 autocast, its scoring GEMM in bf16 (what every run before the change reported);
- `float32 scores`: the model under bf16 autocast, its scoring GEMM in float32 (what runs report now);

and counts, per user, the unseen candidates whose score equals the target's exactly.

    python benchmarks/score_precision.py runs/hyenarec-ml1m --data-file ../shared/data/ml-1m/ml-1m.txt.gz
    python benchmarks/score_precision.py --time-models hyenarec sasrec     # what float32 scores cost in training

Writes `benchmarks/score_precision.json` (merged by model folder), `score_precision_timing.json` and
`benchmarks/score_precision.md`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import torch

from hyenarec_hf.collator import NextItemCollator, add_eval_index
from hyenarec_hf.metrics import IGNORE_INDEX, RankingMetrics, target_ranks
from hyenarec_hf.modeling.next_item import item_scores, mask_padding_item

HERE = Path(__file__).resolve().parent
WAYS = ("float32", "bf16 scores", "float32 scores")


def bf16_scores(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The scoring GEMM as bf16 autocast ran it before `item_scores`: bf16 inputs, bf16 output."""
    scores = hidden.bfloat16() @ weight.bfloat16().transpose(0, 1)
    return (scores if bias is None else scores + bias.bfloat16()).float()


def tied_candidates(scores: torch.Tensor, packed_labels: torch.Tensor) -> torch.Tensor:
    """`(batch,)` number of unseen real items (the target aside) whose score equals the target's exactly."""
    target, seen = packed_labels[:, 0], packed_labels[:, 2:]
    tied = scores == scores.gather(1, target[:, None])
    tied[:, 0] = False
    tied.scatter_(1, target[:, None], False)
    tied.scatter_(1, torch.where(seen != IGNORE_INDEX, seen, 0), False)
    return tied.sum(1)


@torch.no_grad()
def compare(model, dataset, max_length: int, batch_size: int = 256) -> dict[str, dict[str, float]]:
    """Metrics (full ranking, seen excluded) and tie counts of `model` on an eval `dataset`, for each of `WAYS`."""
    loader = torch.utils.data.DataLoader(
        add_eval_index(dataset),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=NextItemCollator(max_length=max_length, mode="eval"),
    )
    model.eval()
    weight, bias = model.output_item_table()
    metrics = {way: RankingMetrics() for way in WAYS}
    ties = {way: [] for way in WAYS}
    for batch in loader:
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        hidden32 = model.history_embeddings(ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden16 = model.history_embeddings(ids, mask)  # the vector the model scores with, under autocast
        scores = {
            "float32": item_scores(hidden32, weight, bias),
            "bf16 scores": bf16_scores(hidden16, weight, bias),
            "float32 scores": item_scores(hidden16, weight, bias),
        }
        for way, s in scores.items():
            s = mask_padding_item(s)
            metrics[way].update(target_ranks(s, labels))
            ties[way].append(tied_candidates(s, labels))
    out = {}
    for way in WAYS:
        counts = torch.cat(ties[way]).float()
        result = metrics[way].compute()
        out[way] = {
            "ndcg@10": result["ndcg@10_full"],
            "hr@10": result["hr@10_full"],
            "mrr@10": result["mrr@10_full"],
            "users_with_a_tied_candidate": (counts > 0).float().mean().item(),
            "mean_tied_candidates": counts.mean().item(),
        }
    return out


def time_training_steps(
    model_type: str, rounds: int = 5, steps: int = 4, batch: int = 128, length: int = 200, num_items: int = 3416
) -> dict[str, float]:
    """Median seconds of one training step (forward, backward, AdamW) at ML-1M's shape under bf16 autocast, with
    float32 item scores (the code now) and with bf16 ones (the code before), the two interleaved round by round."""
    import statistics
    import time
    from unittest import mock

    from hyenarec_hf.modeling import next_item
    from hyenarec_hf.training import MODEL_REGISTRY

    config_class, model_class = MODEL_REGISTRY[model_type]
    torch.manual_seed(0)
    model = model_class(config_class(num_items=num_items, max_position_embeddings=length)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(1, num_items + 1, (batch, length + 1))
    inputs, labels = ids[:, :-1], ids[:, 1:]
    if model_type == "bert4rec":  # masked-item batches: labels only where the input is masked
        masked = torch.rand(inputs.shape) < 0.2
        labels = torch.where(masked, inputs, -100)
        inputs = inputs.masked_fill(masked, model.config.mask_token_id)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    times = {way: [] for way in ("float32 scores", "bf16 scores")}
    for _ in range(rounds):
        for way in times:
            patch = mock.patch.object(next_item, "item_scores", bf16_scores) if way == "bf16 scores" else None
            with patch or contextlib.nullcontext():
                step()  # warm-up
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                times[way].append((time.perf_counter() - start) / steps)
    return {way: statistics.median(t) for way, t in times.items()}


def write_markdown(results: dict, path: Path, timing: dict | None = None) -> None:
    lines = [
        "# Item scores in bf16 against float32: the same weights, ranked three ways",
        "",
        "Produced by `python benchmarks/score_precision.py MODEL_DIR --data-file FILE` (see its docstring). Full "
        "ranking, seen items excluded, ties counted against the target. `bf16 scores` is what every `--bf16` run "
        "reported before item scores were computed in float32; `float32 scores` is what runs report now; `float32` "
        "runs the whole model without autocast. `tied users`: users whose target shares its exact score with at "
        "least one unseen candidate.",
        "",
        "| model | split | ranking | NDCG@10 | HR@10 | MRR@10 | tied users | tied candidates per user |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for folder, entry in results.items():
        for split, ways in entry["splits"].items():
            for way, m in ways.items():
                lines.append(
                    f"| `{folder}` ({entry['model_type']}) | {split} | {way} | {m['ndcg@10']:.4f} | {m['hr@10']:.4f} "
                    f"| {m['mrr@10']:.4f} | {m['users_with_a_tied_candidate']:.1%} | {m['mean_tied_candidates']:.2f} |"
                )
    lines += ["", "Loss of NDCG@10 to bf16 scores (float32 scores minus bf16 scores, same weights):", ""]
    for folder, entry in results.items():
        for split, ways in entry["splits"].items():
            loss = ways["float32 scores"]["ndcg@10"] - ways["bf16 scores"]["ndcg@10"]
            lines.append(f"- `{folder}`, {split}: {loss:+.4f}")
    if timing:
        lines += [
            "",
            "## What float32 scores cost in training",
            "",
            f"Median seconds per training step (forward, backward, AdamW; batch 128, L = 200, 3,416 items, the "
            f"default config, bf16 autocast, {timing['threads']} CPU threads), float32 and bf16 item scores "
            "interleaved round by round in one process (`--time-models`):",
            "",
            "| model | float32 scores (s) | bf16 scores (s) | ratio |",
            "|---|---:|---:|---:|",
        ]
        for model_type, t in timing["models"].items():
            ratio = t["float32 scores"] / t["bf16 scores"]
            lines.append(f"| {model_type} | {t['float32 scores']:.3f} | {t['bf16 scores']:.3f} | {ratio:.2f} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    from hyenarec_hf.cli import _load_model
    from hyenarec_hf.data import ItemVocab, build_splits, load_interactions

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dirs", nargs="*", type=Path)
    parser.add_argument("--data-file", type=Path, help="the data the models were trained on (with model_dirs)")
    parser.add_argument(
        "--time-models", nargs="*", default=[], help="also time training steps of these model types both ways"
    )
    parser.add_argument("--splits", nargs="+", default=["validation", "test"], choices=["validation", "test"])
    parser.add_argument("--out", type=Path, default=HERE / "score_precision")
    args = parser.parse_args()

    if args.model_dirs and not args.data_file:
        parser.error("give --data-file, the data the models were trained on")
    json_path, timing_path = args.out.with_suffix(".json"), args.out.parent / (args.out.name + "_timing.json")
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else None
    if args.time_models:
        timing = {"threads": torch.get_num_threads(), "models": {m: time_training_steps(m) for m in args.time_models}}
        timing_path.write_text(json.dumps(timing, indent=2) + "\n")
    interactions = load_interactions(args.data_file) if args.model_dirs else None
    for folder in args.model_dirs:
        model = _load_model(folder)
        splits, _ = build_splits(interactions, vocab=ItemVocab(model.config.item_ids))
        length = model.config.max_position_embeddings
        results[str(folder)] = {
            "model_type": model.config.model_type,
            "data_file": str(args.data_file),
            "splits": {name: compare(model, splits[name], length) for name in args.splits},
        }
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out.with_suffix(".md"), timing)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
