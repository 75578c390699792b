"""What ordering the evaluation rows longest history first saves, per validation pass, on the real datasets.

Evaluation batches are padded to their longest history. In the file's order nearly every batch holds one long
history, so the model runs far more positions than there are items; `prepare_eval_dataset` (what training and
`evaluate_ranking` use) orders the rows longest first. For each dataset and model, the Trainer that `hyenarec train`
builds (bf16 autocast, evaluation batch 128 as in `benchmarks/accuracy.py`, untrained weights: the cost does not
depend on them) runs the whole validation pass both ways, the two interleaved in rounds; the table gives the fastest
round of each, the positions the model runs per item of the users' histories, and validation NDCG@10 both ways
(the order must change no metric).

    OMP_NUM_THREADS=1 python benchmarks/eval_order.py

Writes `benchmarks/eval_order.json` and `.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import torch
from accuracy import DATASETS, HERE, LABELS
from bench_common import command_line, machine_info

from hyenarec_hf.collator import add_eval_index, prepare_eval_dataset
from hyenarec_hf.data import build_splits, load_interactions
from hyenarec_hf.training import TrainSettings, build_model, build_trainer

DEFAULT_CASES = ["ml-1m", "ml-1m-1000", "beauty", "video"]


def positions_run(dataset, max_length: int, batch_size: int) -> int:
    """Positions the model runs over one pass in this order: each batch padded to its longest (capped) history."""
    lengths = [min(len(ids), max_length) for ids in dataset["input_ids"]]
    return sum(
        len(lengths[s : s + batch_size]) * max(lengths[s : s + batch_size]) for s in range(0, len(lengths), batch_size)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=DEFAULT_CASES, choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["hyenarec", "sasrec"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument("--out", default=str(HERE / "eval_order"))
    args = parser.parse_args()

    results = []
    for name in args.datasets:
        spec = DATASETS[name]
        max_length = spec["max_length"]
        splits, vocab = build_splits(load_interactions(spec["file"]))
        orders = {
            "file": add_eval_index(splits["validation"]),
            "sorted": prepare_eval_dataset(splits["validation"]),
        }
        items = sum(min(len(ids), max_length) for ids in splits["validation"]["input_ids"])
        for model_type in args.models:
            settings = TrainSettings(
                max_length=max_length, bf16=True, eval_batch_size=args.eval_batch_size, num_sampled=0
            )
            torch.manual_seed(0)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = build_trainer(build_model(model_type, vocab, max_length), splits, tmp, settings)
                seconds = {order: [] for order in orders}
                ndcg = {}
                for _ in range(args.rounds):
                    for order, dataset in orders.items():
                        start = time.perf_counter()
                        metrics = trainer.evaluate(dataset)
                        seconds[order].append(time.perf_counter() - start)
                        ndcg[order] = metrics["eval_ndcg@10_full"]
            row = {
                "dataset": name,
                "label": spec["label"],
                "model": model_type,
                "users": len(splits["validation"]),
                "items_in_histories": items,
            }
            for order, dataset in orders.items():
                row[f"{order}_seconds"] = round(min(seconds[order]), 2)
                row[f"{order}_positions"] = positions_run(dataset, max_length, args.eval_batch_size)
                row[f"{order}_ndcg@10"] = ndcg[order]
            row["speedup"] = round(row["file_seconds"] / row["sorted_seconds"], 2)
            results.append(row)
            print(json.dumps(row), flush=True)

    out = {
        "args": vars(args),
        "machine": machine_info(torch.get_num_threads()),
        "command": command_line("eval_order.py"),
        "results": results,
    }
    with open(f"{args.out}.json", "w") as f:
        json.dump(out, f, indent=2)
    with open(f"{args.out}.md", "w") as f:
        f.write("\n".join(report(out)) + "\n")
    print("\n".join(report(out)))


def description(result: dict) -> str:
    threads = result["machine"].get("threads", "?")
    return (
        f"One validation pass through the Trainer that `hyenarec train` builds: bf16 autocast, batches of "
        f"{result['args']['eval_batch_size']} users, {threads} CPU thread(s) ({result['machine'].get('cpu', '?')}), "
        f"untrained weights; fastest of {result['args']['rounds']} interleaved rounds. *Padding*: positions the model "
        "runs per item of the users' histories (each batch is padded to its longest history; 1.00 = none). "
        f"Reproduce: `{result['command']}`."
    )


def table(result: dict) -> list[str]:
    lines = [
        "| dataset | model | users | file order (s) | longest first (s) | speed-up | padding, file order | "
        "padding, longest first | NDCG@10 file / sorted |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["results"]:
        same = "same" if math.isclose(r["file_ndcg@10"], r["sorted_ndcg@10"], abs_tol=1e-4) else "**differs**"
        lines.append(
            f"| {r['label']} | {LABELS[r['model']]} | {r['users']:,} | {r['file_seconds']:.1f} | "
            f"{r['sorted_seconds']:.1f} | **{r['speedup']:.2f}x** | {r['file_positions'] / r['items_in_histories']:.2f} | "
            f"{r['sorted_positions'] / r['items_in_histories']:.2f} | {r['file_ndcg@10']:.4f} / "
            f"{r['sorted_ndcg@10']:.4f} ({same}) |"
        )
    return lines


def report(result: dict) -> list[str]:
    return [
        "# Evaluation rows in the file's order against longest history first",
        "",
        description(result) + " Raw numbers: `eval_order.json`.",
        "",
        *table(result),
    ]


if __name__ == "__main__":
    main()
