"""What each way of drawing training batches (`hyenarec train --batching`) costs per epoch on this machine.

For each model and batching, the Trainer that `hyenarec train` builds (bf16 autocast, its default batch) trains one epoch
on the dataset's real training histories, its validation pass included (the same for every batching); the rounds
interleave the batchings, and the table gives the median seconds, and the positions the model runs over the epoch
(each batch padded to its longest) per labelled position (1.00 = no padding). Accuracy is not measured here (see
`benchmarks/accuracy_batching.md`).

    python benchmarks/batching_speed.py --dataset ml-1m --models hyenarec sasrec

Writes `benchmarks/batching_speed_<dataset>.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time

import torch
from accuracy import DATASETS, HERE, LABELS
from bench_common import machine_info

from hyenarec_hf.data import build_splits, load_interactions
from hyenarec_hf.training import BATCHINGS, TrainSettings, build_model, build_trainer

WAYS = [("balanced", 4), ("balanced", 8), ("random", 1), ("length_grouped", 1)]


def padding_ratio(trainer) -> float:
    """Positions the model runs over one epoch (each batch padded to its longest) per labelled position."""
    lengths = [n - 1 for n in trainer.train_dataset["length"]]  # a row of n items gives n - 1 labels
    batches = [list(b) for b in trainer.get_train_dataloader().batch_sampler]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return padded / sum(lengths)


def seconds_for_an_epoch(model_type: str, batching: str, micro: int, splits, vocab, max_length: int, out: str):
    settings = TrainSettings(
        max_length=max_length, epochs=1, bf16=True, batching=batching, micro_batches=micro, num_sampled=0, patience=1
    )
    trainer = build_trainer(build_model(model_type, vocab, max_length), splits, out, settings)
    start = time.perf_counter()
    trainer.train()
    return time.perf_counter() - start, padding_ratio(trainer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m", choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["hyenarec", "sasrec"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    assert {b for b, _ in WAYS} <= set(BATCHINGS)

    spec = DATASETS[args.dataset]
    splits, vocab = build_splits(load_interactions(spec["file"]))
    batch_size = TrainSettings().batch_size  # the batch every way trains on
    steps_per_epoch = math.ceil(len(splits["train"]) / batch_size)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_type in args.models:
            times: dict[tuple[str, int], list[float]] = {way: [] for way in WAYS}
            padding = {}
            for r in range(args.rounds):
                for batching, micro in WAYS:
                    seconds, padding[(batching, micro)] = seconds_for_an_epoch(
                        model_type, batching, micro, splits, vocab, spec["max_length"], f"{tmp}/{batching}{micro}-{r}"
                    )
                    times[(batching, micro)].append(seconds)
            for (batching, micro), seconds in times.items():
                results.append(
                    {
                        "model": model_type,
                        "batching": batching,
                        "micro_batches": micro,
                        "seconds_per_epoch": round(statistics.median(seconds), 1),
                        "rounds": [round(x, 1) for x in seconds],
                        "padding_ratio": round(padding[(batching, micro)], 3),
                    }
                )
                print(results[-1], flush=True)
    out = {
        "dataset": args.dataset,
        "batch_size": batch_size,
        "steps_per_epoch": steps_per_epoch,
        "args": vars(args),
        "results": results,
    }
    out["machine"] = machine_info(torch.get_num_threads())
    stem = HERE / f"batching_speed_{args.dataset}"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# Training batches drawn four ways: cost per epoch on {spec['label']}",
        "",
        f"Produced by `python benchmarks/batching_speed.py --dataset {args.dataset}` on {torch.get_num_threads()} CPU "
        f"threads (bf16 autocast, batch {batch_size}, {steps_per_epoch} optimizer steps an epoch and one validation pass; "
        f"median of {args.rounds} interleaved rounds). `padding` counts the positions the model runs over the epoch "
        "per labelled position.",
        "",
        "| model | batching | micro-batches | s / epoch | rounds (s) | padding |",
        "|---|---|---:|---:|---|---:|",
    ]
    for r in results:
        rounds = ", ".join(f"{x:.1f}" for x in r["rounds"])
        lines.append(
            f"| {LABELS[r['model']]} | {r['batching']} | {r['micro_batches']} | {r['seconds_per_epoch']:.1f} | "
            f"{rounds} | {r['padding_ratio']:.2f} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
