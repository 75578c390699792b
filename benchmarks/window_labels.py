"""How many next-item labels one training epoch holds, with and without `--train-stride` windows.

Without windows a training history is cut to its most recent `max_length + 1` items (the collator's cut), so a user
gives `min(n, max_length + 1) - 1` labels. With windows (`hyenarec_hf.data.window_sequences`) every window of `w`
items gives `w - 1`; consecutive windows share one item, so the oldest window can repeat a few labels. Counted with
the project's own split and windowing code on the datasets of `../shared/data`:

    python benchmarks/window_labels.py                  # ML-1M at L = 200, stride 200

Writes `benchmarks/window_labels.json` and `benchmarks/window_labels.md`.
"""

from __future__ import annotations

import argparse
import json

from accuracy import DATASETS, HERE

from hyenarec_hf.data import build_splits, load_interactions, window_sequences


def count_labels(train, max_length: int, stride: int) -> dict:
    """Labels per epoch of the `train` split: cut to the most recent items, windowed, and all distinct labels."""
    lengths = [len(ids) for ids in train["input_ids"]]
    windows = window_sequences(train, max_length, stride=stride)
    return {
        "users": len(lengths),
        "training_items": sum(lengths),
        "labels_most_recent": sum(min(n, max_length + 1) - 1 for n in lengths),
        "windows": len(windows),
        "labels_windowed": sum(len(ids) - 1 for ids in windows["input_ids"]),
        "labels_distinct": sum(n - 1 for n in lengths),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m", choices=list(DATASETS))
    parser.add_argument("--stride", type=int, default=None, help="window stride (default: the dataset's max length)")
    args = parser.parse_args()
    spec = DATASETS[args.dataset]
    max_length = spec["max_length"]
    stride = args.stride or max_length
    splits, _ = build_splits(load_interactions(spec["file"]))
    counts = {"dataset": args.dataset, "max_length": max_length, "stride": stride}
    counts.update(count_labels(splits["train"], max_length, stride))
    ratio = counts["labels_windowed"] / counts["labels_most_recent"]
    counts["ratio_windowed_to_most_recent"] = round(ratio, 3)
    (HERE / "window_labels.json").write_text(json.dumps(counts, indent=2) + "\n")
    text = "\n".join(
        [
            "# Labels per training epoch, with and without windows",
            "",
            f"Produced by `python benchmarks/window_labels.py --dataset {args.dataset} --stride {stride}`.",
            "",
            f"{spec['label']}: {counts['users']:,} training histories, {counts['training_items']:,} training items.",
            "",
            "| training rows | rows | labels per epoch |",
            "|---|---:|---:|",
            f"| most recent {max_length + 1} items per history (default) | {counts['users']:,} | "
            f"{counts['labels_most_recent']:,} |",
            f"| windows, stride {stride} (`--train-stride {stride}`) | {counts['windows']:,} | "
            f"{counts['labels_windowed']:,} |",
            f"| every item but each history's first (distinct labels) | – | {counts['labels_distinct']:,} |",
            "",
            f"Windows give {ratio:.2f} times the labels; the default leaves out "
            f"{1 - counts['labels_most_recent'] / counts['labels_distinct']:.0%} of the distinct labels.",
        ]
    )
    (HERE / "window_labels.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
