"""Where two models differ: NDCG@10 and HR@10 by the length of the user's history, with a paired per-user gap.

A table of test NDCG@10 says which model ranks better on average; it does not say for whom. This script ranks every
evaluated user with each trained model folder (full ranking, seen items excluded, ties against the target: the
harness protocol), buckets the users by the length of the history the model saw before the target, and reports per
bucket the mean NDCG@10 and HR@10 of each model. A model given as several folders (one per seed) is scored per user
as the mean over its seeds. For the first two models it adds the paired gap A - B: the mean over the bucket's users of
the per-user difference, with its standard error (users, not seeds, as the unit: how sure the gap is for these
trained models on these users, not across retraining).

Each folder is ranked under bf16 autocast when its `results.json` says it trained with `--bf16` (so the numbers are
the ones the run reported; item scores are float32 either way), and the overall NDCG@10 is checked against that
`results.json`.

    python benchmarks/by_history_length.py --data-file ../shared/data/amazon-beauty/Beauty.txt \\
        --model HyenaRec runs/balanced/beauty/hyenarec/lr0.001-seed42 \\
        --model SASRec runs/balanced/beauty/sasrec/lr0.001-seed42 --out benchmarks/by_history_length_beauty

Writes `OUT.json` and `OUT.md`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
from pathlib import Path

import torch

from hyenarec_hf.collator import NextItemCollator, add_eval_index
from hyenarec_hf.metrics import target_ranks

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def buckets_of(lengths: list[int], edges: list[int]) -> list[str]:
    """The bucket label of each history length: `edges` [5, 10] gives "<= 5", "6-10", "> 10"."""
    labels = []
    for n in lengths:
        low = 0
        for edge in edges:
            if n <= edge:
                labels.append(f"<= {edge}" if low == 0 else f"{low + 1}-{edge}")
                break
            low = edge
        else:
            labels.append(f"> {edges[-1]}")
    return labels


def bucket_order(edges: list[int]) -> list[str]:
    return buckets_of([*edges, edges[-1] + 1], edges)


@torch.no_grad()
def user_ranks(model, dataset, max_length: int, bf16: bool, batch_size: int = 256) -> list[int]:
    """The 1-based rank (full ranking, seen excluded, ties against the target) of each user's target, in order."""
    loader = torch.utils.data.DataLoader(
        add_eval_index(dataset),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=NextItemCollator(max_length=max_length, mode="eval"),
    )
    device_type = next(model.parameters()).device.type
    model.eval()
    ranks: list[int] = []
    for batch in loader:
        autocast = torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=1)
        ranks += target_ranks(out.logits, batch["labels"])[:, 0].long().tolist()
    return ranks


def ndcg_hr(rank: int, k: int = 10) -> tuple[float, float]:
    return (1.0 / math.log2(rank + 1), 1.0) if rank <= k else (0.0, 0.0)


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return mean, se


def analyse(models: dict[str, list[Path]], data_file: Path, splits: list[str], edges: list[int]) -> dict:
    from hyenarec_hf.checkpoint import load_model
    from hyenarec_hf.data import ItemVocab, build_splits, load_interactions

    interactions = load_interactions(data_file)
    per_user: dict[str, dict[str, list[list[tuple[float, float]]]]] = {name: {s: [] for s in splits} for name in models}
    lengths: dict[str, list[int]] = {}
    checks = []
    splits_by_vocab: dict[tuple | None, object] = {}  # the folders of one dataset share a vocabulary: split it once
    for name, folders in models.items():
        for folder in folders:
            saved = json.loads((folder / "results.json").read_text())
            bf16 = bool(saved["settings"].get("bf16"))
            model = load_model(folder)
            ids = model.config.item_ids
            vocab = tuple(ids) if ids is not None else None
            if vocab not in splits_by_vocab:
                splits_by_vocab[vocab] = build_splits(interactions, vocab=ItemVocab(ids))[0]
            data = splits_by_vocab[vocab]
            for split in splits:
                ranks = user_ranks(model, data[split], model.config.max_position_embeddings, bf16)
                if split not in lengths:  # the same users in the same order for every folder (checked below)
                    lengths[split] = [len(x) for x in data[split]["input_ids"]]
                if len(ranks) != len(lengths[split]):
                    raise SystemExit(
                        f"{folder}: {len(ranks)} {split} users, the other folders have {len(lengths[split])}"
                    )
                per_user[name][split].append([ndcg_hr(r) for r in ranks])
                ours = statistics.fmean(n for n, _ in per_user[name][split][-1])
                reported = saved["test" if split == "test" else "validation_best"]["ndcg@10_full"]
                checks.append(
                    {"model": name, "folder": str(folder), "split": split, "ndcg@10": ours, "results.json": reported}
                )
    result = {
        "data_file": str(data_file),
        "edges": edges,
        "models": {k: [str(f) for f in v] for k, v in models.items()},
        "checks": checks,
        "splits": {},
    }
    names = list(models)
    for split in splits:
        labels = buckets_of(lengths[split], edges)
        # per model, per user: the mean over its seeds
        mean_user = {
            name: [tuple(statistics.fmean(col) for col in zip(*seeds)) for seeds in zip(*per_user[name][split])]
            for name in names
        }
        rows = []
        for bucket in [*bucket_order(edges), "all"]:
            users = [i for i, b in enumerate(labels) if bucket in (b, "all")]
            if not users:
                continue
            row = {"bucket": bucket, "users": len(users)}
            row["mean_length"] = statistics.fmean(lengths[split][i] for i in users)
            for name in names:
                row[name] = {
                    "ndcg@10": statistics.fmean(mean_user[name][i][0] for i in users),
                    "hr@10": statistics.fmean(mean_user[name][i][1] for i in users),
                }
            if len(names) >= 2:
                a, b = names[:2]
                gap, se = mean_se([mean_user[a][i][0] - mean_user[b][i][0] for i in users])
                row["gap"] = {"ndcg@10": gap, "se": se}
            rows.append(row)
        result["splits"][split] = rows
    return result


def write_markdown(result: dict, path: Path, command: str) -> None:
    names = list(result["models"])
    seeds = {name: len(folders) for name, folders in result["models"].items()}
    lines = [
        "# NDCG@10 by history length",
        "",
        f"Produced by `{command}` (see `benchmarks/by_history_length.py`). Full ranking, seen items excluded, ties "
        "against the target; users bucketed by the number of items before their target. A model of several seeds "
        "is scored per user as the mean over its seeds ("
        + ", ".join(f"{n}: {s} seed{'s' * (s != 1)}" for n, s in seeds.items())
        + ")."
        + (
            f" `{names[0]} - {names[1]}`: the paired per-user gap in NDCG@10 ± 2 standard errors over the bucket's "
            "users (it measures the users' noise for these trained models, not the seed-to-seed spread)."
            if len(names) >= 2
            else ""
        ),
        "",
        "Models:",
        "",
    ]
    lines += [f"- {name}: " + ", ".join(f"`{f}`" for f in folders) for name, folders in result["models"].items()]
    lines += ["", "Check against each run's `results.json` (overall NDCG@10, recomputed here / reported):", ""]
    lines += [
        f"- {c['model']} `{c['folder']}` {c['split']}: {c['ndcg@10']:.4f} / {c['results.json']:.4f}"
        for c in result["checks"]
    ]
    for split, rows in result["splits"].items():
        header = "| history length | users | mean length | " + " | ".join(f"{n} NDCG@10 | {n} HR@10" for n in names)
        header += f" | {names[0]} - {names[1]} (NDCG@10) |" if len(names) >= 2 else " |"
        lines += [
            "",
            f"## {split}",
            "",
            header,
            "|---|---:|---:|" + "---:|---:|" * len(names) + ("---:|" if len(names) >= 2 else ""),
        ]
        for r in rows:
            cells = [r["bucket"], f"{r['users']:,}", f"{r['mean_length']:.1f}"]
            cells += [f"{r[n]['ndcg@10']:.4f} | {r[n]['hr@10']:.4f}" for n in names]
            if "gap" in r:
                cells.append(f"{r['gap']['ndcg@10']:+.4f} ± {2 * r['gap']['se']:.4f}")
            lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "FOLDER"),
        help="a model's name and its trained folders (one per seed); give --model once per model",
    )
    parser.add_argument("--data-file", type=Path, required=True, help="the data the folders were trained on")
    parser.add_argument("--splits", nargs="+", default=["validation", "test"], choices=["validation", "test"])
    parser.add_argument("--edges", type=int, nargs="+", default=[5, 10, 20, 49], help="upper bounds of the buckets")
    parser.add_argument("--out", type=Path, default=HERE / "by_history_length")
    args = parser.parse_args()
    models: dict[str, list[Path]] = {}
    for entry in args.model:
        if len(entry) < 2:
            parser.error(f"--model {' '.join(entry)}: give a name and at least one trained folder")
        name, folders = entry[0], [Path(f) for f in entry[1:]]
        missing = [str(f) for f in folders if not (f / "results.json").exists()]
        if missing:
            parser.error(f"--model {name}: no results.json in {missing}; give folders written by `hyenarec train`")
        models[name] = folders
    if sorted(args.edges) != args.edges or len(set(args.edges)) != len(args.edges):
        parser.error(f"--edges {args.edges}: give increasing bucket bounds")
    result = analyse(models, args.data_file, args.splits, args.edges)
    argv = ["python benchmarks/by_history_length.py", "--data-file", str(args.data_file)]
    for name, folders in models.items():
        argv += ["--model", name, *map(str, folders)]
    argv += ["--edges", *map(str, args.edges), "--out", str(args.out)]
    command = " ".join(argv).replace(str(ROOT) + "/", "")
    result["command"] = command
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out.with_suffix(".md"), command)
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
