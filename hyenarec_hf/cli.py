"""`hyenarec` command line: train, evaluate, recommend (and push, see `hyenarec push --help`)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger("hyenarec")

TABLE_METRICS = ["hr@5", "ndcg@5", "hr@10", "ndcg@10", "mrr@10", "hr@20", "ndcg@20"]


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _key_values(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"--set expects key=value (e.g. --set hidden_size=128), got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value)
    return out


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (one of --data-file / --dataset)")
    g.add_argument("--data-file", help="interaction file: pair, seq, ratings.dat/.csv, RecBole .inter, CSV, Parquet")
    g.add_argument("--dataset", choices=["ml-1m", "ml-100k", "ml-20m"], help="download a GroupLens dataset (online)")
    g.add_argument("--format", default="auto", help="file format (default: detected from the file)")
    g.add_argument("--user-col", default="user_id", help="user column of CSV/Parquet files")
    g.add_argument("--item-col", default="item_id", help="item column of CSV/Parquet files")
    g.add_argument("--time-col", default=None, help="timestamp column of CSV/Parquet files (optional)")
    g.add_argument("--rating-threshold", type=float, default=None, help="keep interactions rated >= this")
    g.add_argument("--min-user-interactions", type=int, default=0, help="k-core: drop users with fewer events")
    g.add_argument("--min-item-interactions", type=int, default=0, help="k-core: drop items with fewer events")
    g.add_argument("--skip-malformed", action="store_true", help="skip malformed lines (counted) instead of failing")


def _load_interactions(args: argparse.Namespace):
    from .data import download_dataset, load_interactions

    if bool(args.data_file) == bool(args.dataset):
        raise SystemExit("give exactly one of --data-file PATH or --dataset NAME")
    path = args.data_file or download_dataset(args.dataset)
    options: dict[str, Any] = dict(
        skip_malformed=args.skip_malformed,
        rating_threshold=args.rating_threshold,
        min_user_interactions=args.min_user_interactions,
        min_item_interactions=args.min_item_interactions,
    )
    fmt = args.format
    if fmt in ("csv", "parquet") or str(path).endswith((".csv", ".parquet")) and fmt == "auto":
        options.update(user_col=args.user_col, item_col=args.item_col, time_col=args.time_col)
    return load_interactions(path, format=fmt, **options), str(path)


def print_table(rows: dict[str, dict[str, float]], title: str) -> None:
    """Print a results table: one row per split or model, one column per metric (full ranking, seen excluded)."""
    print(f"\n{title}")
    header = "| " + " | ".join(["", *TABLE_METRICS]) + " |"
    print(header)
    print("|" + "---|" * (len(TABLE_METRICS) + 1))
    for name, metrics in rows.items():
        cells = [f"{metrics.get(m + '_full', float('nan')):.4f}" for m in TABLE_METRICS]
        print("| " + " | ".join([name, *cells]) + " |")
    print("(full ranking over all items, the user's seen items excluded, ties counted against the target)\n")


# ---------------------------------------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from datasets import DatasetDict

    from .data import build_splits
    from .training import MODEL_REGISTRY, TrainSettings, dataset_summary, train_and_evaluate

    if args.model not in MODEL_REGISTRY:
        raise SystemExit(f"--model must be one of {sorted(MODEL_REGISTRY)}")
    resume = _resume_arg(args)  # before reading the data: a wrong output folder fails at once
    interactions, source = _load_interactions(args)
    splits, vocab = build_splits(interactions)
    if args.max_users:
        splits = DatasetDict({k: v.select(range(min(args.max_users, len(v)))) for k, v in splits.items()})
    settings = TrainSettings(
        max_length=args.max_length,
        epochs=args.epochs,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        patience=args.patience,
        lr_scheduler_type=args.lr_scheduler,
        warmup_steps=int(args.warmup) if args.warmup >= 1 else args.warmup,
        seed=args.seed,
        bf16=args.bf16,
        train_stride=args.train_stride or None,
        batching=_batching(args),
        micro_batches=args.micro_batches,
        num_sampled=args.num_sampled,
        max_train_minutes=args.max_train_minutes,
        save_steps=args.save_steps,
    )
    results = train_and_evaluate(
        splits,
        vocab,
        args.output_dir,
        settings,
        model_type=args.model,
        model_kwargs=_key_values(args.set),
        data_info=dataset_summary(splits, vocab, source),
        resume_from_checkpoint=resume,
    )
    if not _is_main_process():  # under `accelerate launch` every process gets the results; one prints them
        return 0
    print_table(
        {"validation (best epoch)": results["validation_best"], "test": results["test"]},
        f"{args.model} on {source}: {results['epochs_run']:.0f} epochs, {results['train_seconds'] / 60:.1f} min",
    )
    print(f"Hub-ready folder: {args.output_dir} (results.json, training_curve.png, README.md model card)")
    return 0


def _batching(args: argparse.Namespace) -> str:
    if args.random_batches and args.batching not in (None, "random"):
        raise SystemExit(f"--random-batches means --batching random; it cannot go with --batching {args.batching}")
    return "random" if args.random_batches else args.batching or "balanced"


def _resume_arg(args: argparse.Namespace) -> str | None:
    from .checkpoint import last_complete_checkpoint

    checkpoints = Path(args.output_dir) / "checkpoints"
    if not args.resume:
        # The Trainer picks and rotates checkpoints by step number: an earlier run's would mix with this run's.
        if checkpoints.is_dir() and any(p.name.startswith("checkpoint-") for p in checkpoints.iterdir()):
            raise SystemExit(
                f"{checkpoints} holds checkpoints of an earlier run: pass --resume to continue it, or use another "
                "--output-dir (or delete that folder) to start over"
            )
        return None
    # A process killed while saving leaves a partial checkpoint-N: it is set aside and the previous one used.
    last = last_complete_checkpoint(checkpoints, set_aside_incomplete=True)
    if last is None:
        raise SystemExit(f"--resume: no complete checkpoint under {checkpoints}; start without --resume")
    logger.warning("resuming from %s", last)
    return str(last)


# ------------------------------------------------------------------------------------------------------- evaluate
def _load_model(model_dir: str):
    from .checkpoint import load_model

    # checks config.json, the safetensors file and the loaded weights; errors name the file and the fix
    return load_model(model_dir)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import ItemVocab, build_splits
    from .metrics import evaluate_ranking

    model = _load_model(args.model_dir)
    if model.config.item_ids is None:
        raise SystemExit("this model has no saved vocabulary (config.item_ids); it cannot map a data file's ids")
    interactions, source = _load_interactions(args)
    splits, _ = build_splits(interactions, vocab=ItemVocab(model.config.item_ids), on_unknown=args.on_unknown)
    rows = {}
    for split in args.split:
        rows[split] = evaluate_ranking(
            model,
            splits[split],
            max_length=model.config.max_position_embeddings,
            batch_size=args.batch_size,
            num_sampled=args.num_sampled,
            seed=args.seed,
        )
    print_table(rows, f"{args.model_dir} on {source}")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))
        print(f"metrics written to {args.output}")
    return 0


# ------------------------------------------------------------------------------------------------------ recommend
def cmd_recommend(args: argparse.Namespace) -> int:
    model = _load_model(args.model_dir)
    histories = [h.split() for h in args.history]
    if args.histories_file:
        with open(args.histories_file) as f:
            histories += [line.split() for line in f if line.strip()]
    if not histories:
        raise SystemExit("give --history 'id1 id2 ...' (repeatable) or --histories-file FILE (one history per line)")
    results = model.recommend(
        histories,
        k=args.k,
        exclude_seen=not args.include_seen,
        return_scores=True,
        on_unknown="skip" if args.skip_unknown else "error",
    )
    for history, recs in zip(histories, results):
        shown = " ".join(history[-5:])
        print(f"history (last 5 of {len(history)}): {shown}")
        for rank, (item, score) in enumerate(recs, 1):
            print(f"  {rank:2d}. {item}  (score {score:.3f})")
    return 0


# ------------------------------------------------------------------------------------------------------- finetune
def cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import finetune
    from .training import TrainSettings

    model = _load_model(args.model_dir)
    interactions, source = _load_interactions(args)
    settings = TrainSettings(
        max_length=args.max_length or model.config.max_position_embeddings,
        epochs=args.epochs,
        batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size,
        learning_rate=args.lr,
        patience=args.patience,
        seed=args.seed,
        num_sampled=args.num_sampled,
        max_train_minutes=args.max_train_minutes,
    )
    results = finetune(
        model,
        interactions,
        args.output_dir,
        settings,
        add_new_items=not args.no_new_items,
        max_users=args.max_users or None,
    )
    if not _is_main_process():
        return 0
    print_table(
        {"validation (best epoch)": results["validation_best"], "test": results["test"]},
        f"{args.model_dir} fine-tuned on {source}: {results['data']['new_items']} new items, "
        f"{results['epochs_run']:.0f} epochs, {results['train_seconds'] / 60:.1f} min",
    )
    print(f"Hub-ready folder: {args.output_dir} ({model.config.num_items:,} items)")
    return 0


# ----------------------------------------------------------------------------------------------------------- push
def cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_folder

    url = push_folder(args.model_dir, args.repo_id, private=args.private, token=args.token, dry_run=args.dry_run)
    print(url)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyenarec",
        description="HyenaRec sequential recommenders with Hugging Face: train on interaction logs, evaluate with "
        "full ranking, recommend top-k items, push to the Hub.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "train",
        help="train a model and write a Hub-ready folder",
        description="Train on leave-one-out splits (last item = test, second-to-last = validation), evaluate on "
        "validation every epoch, stop early on validation NDCG@10, restore the best weights, evaluate on test, and "
        "write OUTPUT_DIR with model.safetensors, config.json, the model code, results.json, training_curve.png and "
        "README.md. Example: hyenarec train --data-file ../shared/data/ml-1m/ml-1m.txt.gz --output-dir runs/ml1m",
    )
    _add_data_args(p)
    p.add_argument("--output-dir", required=True, help="folder for the trained model and its results")
    p.add_argument("--model", default="hyenarec", help="hyenarec (default), sasrec, bert4rec or gru4rec")
    p.add_argument("--max-length", type=int, default=200, help="longest history the model reads (default 200)")
    p.add_argument("--epochs", type=int, default=200, help="maximum epochs (early stopping usually ends sooner)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--patience", type=int, default=10, help="epochs without validation NDCG@10 gain before stopping")
    p.add_argument(
        "--lr-scheduler",
        default="constant",
        help="transformers scheduler name: constant (default), cosine, linear, ... (decays over --epochs)",
    )
    p.add_argument("--warmup", type=float, default=0, help="warmup steps (int) or ratio of all steps (< 1)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CPU with AVX512-BF16 or a GPU)")
    p.add_argument("--train-stride", type=int, default=0, help="cut long train histories into windows (0 = off)")
    p.add_argument(
        "--batching",
        default=None,
        help="balanced (default): every optimizer step takes --batch-size random histories, split into "
        "--micro-batches micro-batches of similar length; random: random batches padded to their longest (the same "
        "steps, more padding); length_grouped: batches of similar length in long-to-short runs (what runs before "
        "'balanced' used: cheapest, but it trains worse)",
    )
    p.add_argument("--micro-batches", type=int, default=4, help="micro-batches per step with --batching balanced")
    p.add_argument("--random-batches", action="store_true", help="the same as --batching random")
    p.add_argument("--num-sampled", type=int, default=100, help="also report sampled-N metrics (0 = off)")
    p.add_argument(
        "--max-train-minutes",
        type=float,
        default=None,
        help="stop after the epoch that crosses this (time before a --resume counts)",
    )
    p.add_argument(
        "--save-steps",
        type=int,
        default=None,
        help="evaluate and checkpoint every N steps instead of every epoch (an interrupted run loses at most N "
        "steps; --patience then counts these evaluations)",
    )
    p.add_argument("--max-users", type=int, default=0, help="use only the first N users (quick demos)")
    p.add_argument("--resume", action="store_true", help="resume from the last checkpoint in OUTPUT_DIR/checkpoints")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config field, repeatable")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="evaluate a saved model on a data file",
        description="Full-ranking HR/NDCG/MRR@{5,10,20} of MODEL_DIR on the leave-one-out split of a data file.",
    )
    p.add_argument("model_dir")
    _add_data_args(p)
    p.add_argument("--split", nargs="+", default=["test"], choices=["validation", "test"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-sampled", type=int, default=0, help="also report sampled-N metrics")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled protocol")
    p.add_argument("--on-unknown", choices=["error", "skip"], default="error", help="items the model does not know")
    p.add_argument("--output", help="write the metrics as JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "recommend",
        help="top-k items for histories of raw item ids",
        description="Example: hyenarec recommend runs/ml1m --history '1 2 3 4' --k 10",
    )
    p.add_argument("model_dir")
    p.add_argument("--history", action="append", default=[], help="space-separated raw item ids, oldest first")
    p.add_argument("--histories-file", help="a file with one history per line")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--include-seen", action="store_true", help="allow items already in the history")
    p.add_argument("--skip-unknown", action="store_true", help="ignore item ids the model does not know")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser(
        "finetune",
        help="continue training a saved model on new interactions (new items included)",
        description="Load MODEL_DIR, add the data's new items to its vocabulary (learned item embeddings are kept), "
        "continue training on the leave-one-out split of the data with early stopping, and write a Hub-ready "
        "OUTPUT_DIR. Example: hyenarec finetune runs/ml1m --data-file new_events.txt --output-dir runs/ml1m-ft",
    )
    p.add_argument("model_dir")
    _add_data_args(p)
    p.add_argument("--output-dir", required=True, help="folder for the fine-tuned model and its results")
    p.add_argument("--max-length", type=int, default=0, help="longest history read (default: the model's)")
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs (early stopping usually ends sooner)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--eval-batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-4, help="learning rate (AdamW); lower than for training")
    p.add_argument("--patience", type=int, default=3, help="epochs without validation NDCG@10 gain before stopping")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--num-sampled", type=int, default=100, help="also report sampled-N metrics (0 = off)")
    p.add_argument("--max-train-minutes", type=float, default=None, help="stop after the epoch that crosses this")
    p.add_argument("--max-users", type=int, default=0, help="use only the first N users (quick runs)")
    p.add_argument(
        "--no-new-items", action="store_true", help="drop interactions with unknown items instead of adding them"
    )
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser(
        "push",
        help="upload a trained folder to the Hugging Face Hub",
        description="Upload MODEL_DIR (weights, config with auto_map, code, results, plot, model card) to REPO_ID.",
    )
    p.add_argument("model_dir")
    p.add_argument("repo_id", help="e.g. your-org/hyenarec-ml1m")
    p.add_argument("--private", action="store_true")
    p.add_argument("--token", default=None, help="Hub token (default: the logged-in one)")
    p.add_argument("--dry-run", action="store_true", help="check and list what would be uploaded, upload nothing")
    p.set_defaults(func=cmd_push)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, OSError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        close_process_group()


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def close_process_group() -> None:
    """Under `accelerate launch`, leave the process group before exiting: a gloo group torn down at interpreter exit
    can abort a process ("terminate called without an active exception") after all the work is done."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
