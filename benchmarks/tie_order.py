"""How much the order of same-second ratings moves next-item metrics: ML-100k with timestamp ties broken by item id
against ties in the file's order, the same models and recipe on both.

Why: MovieLens users rate in bursts, so many consecutive ratings share a timestamp, and each pipeline breaks those
ties its own way. LRURec (whose ML-1M numbers are this project's 0.193 target and 0.1902 SASRec anchor) sorts each
user's ratings by `(timestamp, item id)` (`datasets/base.py`: `d.sort_values(by=['timestamp', 'sid'])`), so inside a
burst the items come in id order: a regularity a sequence model can learn, and one that decides the test target
whenever the last two ratings share a second. Our ML-1M file keeps no timestamps (`../shared/data/README.md`: ties in
"an arbitrary but fixed order"), so the two orders cannot be compared on ML-1M itself; ML-100k is the set here with
timestamps. This script writes ML-100k twice as pair files (under `runs/`, never committed: the data's licence forbids
redistribution), once per tie order, trains each model on each with `hyenarec train` and reports the test metrics
side by side.

    OMP_NUM_THREADS=1 python benchmarks/tie_order.py --seeds 42 43

Writes `benchmarks/tie_order.json` and `.md`. A run whose folder already holds results for the same command is not
run again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from accuracy import LABELS, device_label
from bench_common import command_line, warn_if_bf16_is_emulated

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SOURCE = ROOT.parent / "shared" / "data" / "ml-100k" / "ml-100k.inter"
ORDERS = {
    "file": "ties in the file's order (a stable sort by timestamp: what `hyenarec train` does with the `.inter` file)",
    "item_id": "ties by item id (a sort by timestamp, then item id: LRURec's preprocessing)",
}
METRICS = ("ndcg@10_full", "hr@10_full")


def read_events(path: Path) -> dict[str, list[tuple[float, int, str]]]:
    """`user -> [(timestamp, line number, item), ...]` from a RecBole `.inter` file (user, item, rating, timestamp)."""
    events: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    with path.open() as f:
        header = f.readline().rstrip("\n").split("\t")
        names = [field.split(":")[0] for field in header]
        user_col, item_col, time_col = names.index("user_id"), names.index("item_id"), names.index("timestamp")
        for lineno, line in enumerate(f, 2):
            fields = line.rstrip("\n").split("\t")
            events[fields[user_col]].append((float(fields[time_col]), lineno, fields[item_col]))
    return events


def ordered(events: list[tuple[float, int, str]], order: str) -> list[str]:
    key = (lambda e: (e[0], e[1])) if order == "file" else (lambda e: (e[0], int(e[2])))
    return [item for _, _, item in sorted(events, key=key)]


def order_stats(events: dict[str, list[tuple[float, int, str]]], order: str) -> dict[str, float]:
    """Share of consecutive ratings that tie in time, share whose item id goes up, and share of users whose test
    target (last rating) ties in time with the last input item."""
    pairs = tied = rising = target_tied = 0
    for user_events in events.values():
        times = sorted(t for t, _, _ in user_events)
        items = [int(i) for i in ordered(user_events, order)]
        pairs += len(items) - 1
        tied += sum(a == b for a, b in zip(times, times[1:]))
        rising += sum(b > a for a, b in zip(items, items[1:]))
        target_tied += times[-1] == times[-2]
    return {
        "consecutive_pairs_tied": round(tied / pairs, 4),
        "consecutive_item_ids_rising": round(rising / pairs, 4),
        "test_target_tied_with_last_input": round(target_tied / len(events), 4),
    }


def write_pairs(events: dict[str, list[tuple[float, int, str]]], order: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for user, user_events in events.items():
            f.writelines(f"{user} {item}\n" for item in ordered(user_events, order))


def train(command: list[str], out: Path) -> dict:
    shown = shlex.join(command).replace(str(ROOT) + "/", "")
    results_file = out / "results.json"
    if results_file.exists():
        saved = json.loads(results_file.read_text())
        if saved.get("tie_order_command") == shown:
            print(f"[cached] {shown}", flush=True)
            return saved
    print(f"[run] {shown}", flush=True)
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"[failed] rc={proc.returncode}: {shown}\n{proc.stderr[-3000:]}")
    saved = json.loads(results_file.read_text())
    saved["tie_order_command"] = shown
    results_file.write_text(json.dumps(saved, indent=2) + "\n")
    return saved


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def report(result: dict) -> list[str]:
    a = result["args"]
    lines = [
        "# Ties in time: ML-100k with same-second ratings in the file's order against by item id",
        "",
        f"Command: `{result['command']}` (raw numbers in `tie_order.json`). Each run: `hyenarec train` on ML-100k as a "
        f"pair file, L = {a['max_length']}, lr {a['lr']:g} (cosine, 2% warm-up), batch {a['batch_size']}, "
        f"{a['epochs']} epochs, {'bf16, ' if a['bf16'] else ''}the model's default architecture; full ranking, "
        "leave-one-out, seen items excluded, test metrics at the best validation epoch. The two files hold the same "
        "ratings of the same users; only the order inside same-second groups differs.",
        "",
        "| tie order | consecutive ratings tied | consecutive item ids rising | test target tied with last input |",
        "|---|---:|---:|---:|",
    ]
    for order, text in ORDERS.items():
        s = result["stats"][order]
        lines.append(
            f"| {text} | {s['consecutive_pairs_tied']:.1%} | {s['consecutive_item_ids_rising']:.1%} | "
            f"{s['test_target_tied_with_last_input']:.1%} |"
        )
    lines += [
        "",
        "| model | seeds | NDCG@10, ties in file order | NDCG@10, ties by item id | difference | "
        "HR@10, file order | HR@10, by item id |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for model in a["models"]:
        runs = {o: [r for r in result["runs"] if r["model"] == model and r["order"] == o] for o in ORDERS}
        by_seed = {o: {r["seed"]: r for r in rs} for o, rs in runs.items()}
        seeds = sorted(set(by_seed["file"]) & set(by_seed["item_id"]))
        if not seeds:
            continue

        def values(order: str, metric: str, seeds: list[int] = seeds, by_seed: dict = by_seed) -> list[float]:
            return [by_seed[order][s]["test"][metric] for s in seeds]

        diffs = [b - a for a, b in zip(values("file", "ndcg@10_full"), values("item_id", "ndcg@10_full"))]
        lines.append(
            f"| {LABELS[model]} | {len(seeds)} | {mean_std(values('file', 'ndcg@10_full'))} | "
            f"{mean_std(values('item_id', 'ndcg@10_full'))} | {statistics.mean(diffs):+.4f} "
            f"({', '.join(f'{d:+.4f}' for d in diffs)}) | {mean_std(values('file', 'hr@10_full'))} | "
            f"{mean_std(values('item_id', 'hr@10_full'))} |"
        )
    devices = sorted({r["device"] for r in result["runs"]})
    lines += ["", f"Hardware: {', '.join(devices)}.", "", "Commands:", ""]
    lines += [f"- `{r['command']}`" for r in result["runs"]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["hyenarec", "sasrec"], choices=list(LABELS)[:4])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--max-length", type=int, default=200)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "tie_order")
    parser.add_argument("--out", type=Path, default=HERE / "tie_order")
    args = parser.parse_args()

    if not SOURCE.exists():
        sys.exit(f"{SOURCE} is missing: this benchmark needs ML-100k with timestamps from ../shared/data.")
    warn_if_bf16_is_emulated(args.bf16)
    events = read_events(SOURCE)
    stats = {order: order_stats(events, order) for order in ORDERS}
    runs = []
    for order in ORDERS:
        data_file = args.runs_dir / "data" / f"ml-100k_ties_by_{order}.txt"
        write_pairs(events, order, data_file)
        for model in args.models:
            for seed in args.seeds:
                out = args.runs_dir / order / model / f"seed{seed}"
                command = ["hyenarec", "train", "--data-file", str(data_file), "--format", "pair"]
                command += ["--output-dir", str(out), "--model", model, "--max-length", str(args.max_length)]
                command += ["--lr", str(args.lr), "--lr-scheduler", "cosine", "--warmup", "0.02"]
                command += ["--epochs", str(args.epochs), "--patience", str(args.epochs), "--seed", str(seed)]
                command += ["--batch-size", str(args.batch_size), "--num-sampled", "0"]
                command += ["--bf16"] if args.bf16 else []
                saved = train(command, out)
                runs.append(
                    {
                        "order": order,
                        "model": model,
                        "seed": seed,
                        "test": {m: saved["test"][m] for m in METRICS},
                        "validation_best": {m: saved["validation_best"][m] for m in METRICS},
                        "best_epoch": saved["validation_best"].get("epoch"),
                        "seconds_per_epoch": round(saved["train_seconds"] / max(float(saved["epochs_run"]), 1e-9), 1),
                        "device": device_label(saved.get("environment") or {}),
                        "command": saved["tie_order_command"],
                    }
                )
    shown_args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {
        "command": command_line("tie_order.py"),
        "args": shown_args,
        "stats": stats,
        "runs": runs,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(report(result)) + "\n")
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
