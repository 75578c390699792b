"""HyenaRec against SASRec, BERT4Rec, GRU4Rec and most-popular, in one harness, on the datasets of `../shared/data`.

Protocol (the same for every model): leave-one-out by time, full ranking over all items, seen items excluded,
ties broken against the target; HR/NDCG/MRR@10 on the test split, with the best epoch chosen on validation NDCG@10.

Tuning budget (the same for every model): for each (dataset, model) the learning rate is picked from `--lrs` on
validation NDCG@10 with the first seed (with `--dropouts`, jointly with the dropout; with `--arch-grid`, jointly with
the architecture: the model's default or one of its listed alternatives, as many for every model); the other seeds
run at that choice; the table shows the test mean and spread (sample std) over the seeds. Every run trains for
`--epochs` epochs (cosine schedule, 2% warm-up, AdamW, batch 128, the model's default architecture unless the grid
picked another) or until `--minutes` of wall time, whichever comes first, and keeps the best validation epoch. Each
run is one `hyenarec train` process; its folder under `--runs-dir` holds its `results.json`, and a run whose folder
already holds results for the same command is not run again (so a long sweep can be stopped and resumed).

    python benchmarks/accuracy.py --datasets beauty                    # every model, 3 seeds, default grid
    python benchmarks/accuracy.py --datasets ml-1m --models hyenarec sasrec --seeds 42 --epochs 40 --minutes 28
    python benchmarks/accuracy.py --report-only                        # rewrite the report from the saved runs
    python benchmarks/accuracy.py --datasets ml-1m --models sasrec --seeds 43 44 --add-seeds \
        --epochs 40 --minutes 90 --bf16 --out benchmarks/accuracy_balanced   # more seeds at the recorded choice
    python benchmarks/accuracy.py --datasets beauty --models hyenarec sasrec \
        --arch-grid hyenarec:legendre_order=8 sasrec:num_attention_heads=1   # default or one alternative, each model

Writes `benchmarks/accuracy.json` (every run, merged with the runs already recorded there: a (dataset, model) swept
again replaces its rows, `--add-seeds` keeps them and adds its seeds) and `benchmarks/accuracy.md`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT.parent / "shared" / "data"

DATASETS = {
    "ml-1m": {"file": DATA / "ml-1m" / "ml-1m.txt.gz", "max_length": 200, "label": "ML-1M (L = 200)"},
    "beauty": {"file": DATA / "amazon-beauty" / "Beauty.txt", "max_length": 50, "label": "Amazon Beauty (L = 50)"},
    "video": {
        "file": DATA / "amazon-video-games" / "Video.txt",
        "max_length": 50,
        "label": "Amazon Video Games (L = 50)",
    },
    # Long real histories: ML-1M users have up to 2,277 events; the model reads the most recent 1,000 or 2,000.
    "ml-1m-1000": {
        "file": DATA / "ml-1m" / "ml-1m.txt.gz",
        "max_length": 1000,
        "label": "ML-1M, long histories (L = 1000)",
    },
    "ml-1m-2000": {
        "file": DATA / "ml-1m" / "ml-1m.txt.gz",
        "max_length": 2000,
        "label": "ML-1M, long histories (L = 2000)",
    },
}
RUNS_DIR = ROOT / "runs" / "accuracy"  # default --runs-dir
MODELS = ("hyenarec", "sasrec", "bert4rec", "gru4rec")
LABELS = {
    "hyenarec": "HyenaRec",
    "sasrec": "SASRec",
    "bert4rec": "BERT4Rec",
    "gru4rec": "GRU4Rec",
    "mostpop": "MostPop",
}

# Published full-ranking, leave-one-out, seen-excluded numbers (`../shared/DESIGN.md` section 4 and
# `../shared/research/accuracy_anchors.md`): (model, HR@10, NDCG@10, source).
ANCHORS = {
    "ml-1m": [
        ("SASRec (CE)", 0.3181, 0.1902, "LRURec Tab. 3"),
        ("BERT4Rec", 0.3089, 0.1638, "LRURec Tab. 3"),
        ("GRU4Rec", 0.2962, 0.1693, "LRURec Tab. 3"),
        ("LRURec", 0.3264, 0.1930, "LRURec Tab. 3"),
    ],
    "beauty": [
        ("SASRec + sampled softmax", 0.0921, 0.0531, "eSASRec README"),
        ("BSARec", 0.1008, 0.0611, "BSARec repo log"),
    ],
    "video": [
        ("SASRec (CE)", 0.1091, 0.0583, "LRURec Tab. 3 (Video-LRU)"),
        ("GRU4Rec", 0.0951, 0.0508, "LRURec Tab. 3"),
        ("LRURec", 0.1134, 0.0620, "LRURec Tab. 3"),
    ],
}
TARGETS = {"ml-1m": 0.193, "beauty": 0.055}  # issue targets for HyenaRec's test NDCG@10
METRICS = ("ndcg@10_full", "hr@10_full", "mrr@10_full")


@dataclass(frozen=True)
class RecipeOption:
    """A training-recipe change that applies to every run of a sweep (unlike the tuned lr and dropout), spelled out
    once: its `accuracy.py` flag, what it adds to the `hyenarec train` command (flags or a model config override), the
    tag of its run folders (so runs with and without it never share a cache) and its words in the budget column. An
    option at its default adds nothing anywhere, so the folders, commands and budgets of default runs never change."""

    name: str  # the argparse dest (`--batch-size` for batch_size) and the budget key
    default: Any
    cli: dict  # the rest of `add_argument`'s keywords
    text: Callable[[Any], str]  # words in the budget column
    flags: Callable[[Any], list[str]] | None = None  # `hyenarec train` flags
    override: Callable[[Any], str] | None = None  # or a model config field (`--set`)
    tag: Callable[[Any], str] | None = None  # run-folder tag; None: the option keeps the folder (pick --runs-dir)
    unrecorded: Any = None  # what a budget recorded before the option existed trained with (None: the default)
    # a model config field every model of the sweep must have, and what the option does to say why (None: any model)
    needs_field: tuple[str, str] | None = None


RECIPE_OPTIONS = (
    RecipeOption(
        "batch_size",
        128,
        dict(type=int, help="training batch size (histories per step)"),
        text=lambda v: f"batch {v}",
        flags=lambda v: ["--batch-size", str(v), "--eval-batch-size", str(v)],
    ),
    RecipeOption(
        "loss_type",
        "ce",
        dict(
            choices=["ce", "chunked_ce"],
            help="chunked_ce: the same full-softmax loss without the (tokens, items) logits (faster on CPU)",
        ),
        text=lambda v: f"`loss_type={v}`",
        override=lambda v: f"loss_type={v}",
        tag=lambda v: f"-{v}",
    ),
    RecipeOption(
        "train_stride",
        0,
        dict(
            type=int,
            help="cut training histories longer than the max length into windows this far apart (0 = keep the most "
            "recent max-length items only)",
        ),
        text=lambda v: f"windows (stride {v})",
        flags=lambda v: ["--train-stride", str(v)],
        tag=lambda v: f"-stride{v}",
    ),
    RecipeOption(
        "batching",
        "balanced",
        dict(
            choices=["balanced", "random", "length_grouped"],
            help="how training batches are drawn (`hyenarec train --batching`; runs recorded before the option "
            "trained on length_grouped batches)",
        ),
        text=lambda v: f"{v.replace('_', '-')} batches",
        flags=lambda v: ["--random-batches"] if v == "random" else ["--batching", v],
        tag=lambda v: f"-{v.replace('_', '-')}",
        unrecorded="length_grouped",
    ),
    RecipeOption(
        "hidden_size",
        64,
        dict(
            type=int,
            help="model width for every model of the sweep (`hidden_size`, with `intermediate_size` 4 times it; "
            "the HyenaRec, SASRec and BERT4Rec default is 64; GRU4Rec has no FFN and is refused)",
        ),
        text=lambda v: f"width {v} (FFN {4 * v})",
        flags=lambda v: ["--set", f"hidden_size={v}", "--set", f"intermediate_size={4 * v}"],
        tag=lambda v: f"-d{v}",
        needs_field=("intermediate_size", "sets hidden_size and intermediate_size"),
    ),
    RecipeOption(
        "weight_decay",
        0.0,
        dict(type=float, help="AdamW weight decay (the Trainer leaves biases and norm weights out)"),
        text=lambda v: f"weight decay {v:g}",
        flags=lambda v: ["--weight-decay", f"{v:g}"],
        tag=lambda v: f"-wd{v:g}",
    ),
    RecipeOption(
        "mixer_dropout_prob",
        0.0,
        dict(
            type=float,
            help="HyenaRec's dropout inside its mixer (`mixer_dropout_prob`) for every run of the sweep, where "
            "`--arch-grid hyenarec:mixer_dropout_prob=P` tunes it; the other models have no such field and are refused",
        ),
        text=lambda v: f"mixer dropout {v:g}",
        override=lambda v: f"mixer_dropout_prob={v:g}",
        tag=lambda v: f"-mixdo{v:g}",
        needs_field=("mixer_dropout_prob", "sets mixer_dropout_prob"),
    ),
)


def recipe(settings: argparse.Namespace | dict) -> list[tuple[RecipeOption, Any]]:
    """The recipe options that `settings` (parsed arguments or a recorded budget) sets away from their defaults, in
    table order. An option the arguments lack is at its default (a script without the flag); one a recorded budget
    lacks is what runs trained with before the option existed (`unrecorded`)."""
    recorded = isinstance(settings, dict)
    values = settings if recorded else vars(settings)

    def missing(option: RecipeOption) -> Any:
        return option.unrecorded if recorded and option.unrecorded is not None else option.default

    pairs = [(option, values.get(option.name, missing(option))) for option in RECIPE_OPTIONS]
    return [(option, value) for option, value in pairs if value != option.default]


def recorded_options(args: argparse.Namespace) -> dict[str, Any]:
    """What a budget records of the recipe: every option away from its default, and always the options whose
    absence means something else in budgets recorded before them (`unrecorded`)."""
    out = {option.name: value for option, value in recipe(args)}
    for option in RECIPE_OPTIONS:
        if option.unrecorded is not None:
            out[option.name] = getattr(args, option.name, option.default)
    return out


def run_command(
    dataset: str, model: str, lr: float, seed: int, args: argparse.Namespace, out: Path, overrides: tuple[str, ...] = ()
) -> list[str]:
    spec = DATASETS[dataset]
    command = ["hyenarec", "train", "--data-file", str(spec["file"]), "--output-dir", str(out), "--model", model]
    command += ["--max-length", str(spec["max_length"]), "--lr", str(lr), "--lr-scheduler", "cosine"]
    command += ["--warmup", "0.02", "--epochs", str(args.epochs), "--patience", str(args.epochs), "--seed", str(seed)]
    command += ["--num-sampled", "0"]
    for option, value in recipe(args):
        command += option.flags(value) if option.flags else []
    if args.minutes:
        command += ["--max-train-minutes", str(args.minutes)]
    if args.bf16:
        command += ["--bf16"]
    for override in overrides:  # model config fields, e.g. "use_short_branch=false"
        command += ["--set", override]
    return command


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def default_dropout(model: str) -> float:
    from hyenarec_hf.training import MODEL_REGISTRY

    return MODEL_REGISTRY[model][0]().hidden_dropout_prob


def arch_grid(args: argparse.Namespace) -> dict[str, list[str]]:
    """`--arch-grid` as {model: [alternative, ...]}, each alternative the `--set` fields of one config
    ("legendre_order=8" or "a=1,b=2"). Refuses entries that would train a model that does not exist, set a field its
    config lacks, or give the models of the sweep unequal architecture budgets."""
    from hyenarec_hf.training import MODEL_REGISTRY

    entries = getattr(args, "arch_grid", None) or []
    grid: dict[str, list[str]] = {}
    for entry in entries:
        model, sep, fields = entry.partition(":")
        if not sep or model not in MODELS or not fields:
            raise SystemExit(
                f"--arch-grid {entry!r}: write MODEL:FIELD=VALUE[,FIELD=VALUE] with MODEL one of {list(MODELS)}"
            )
        config = MODEL_REGISTRY[model][0]()
        for pair in fields.split(","):
            name, eq, _ = pair.partition("=")
            if not eq or not hasattr(config, name):
                raise SystemExit(
                    f"--arch-grid {entry!r}: {pair!r} is not FIELD=VALUE for a field of {type(config).__name__}"
                )
        grid.setdefault(model, []).append(fields)
    if grid:
        sizes = {m: len(grid.get(m, [])) for m in {*grid, *getattr(args, "models", [])}}
        if len(set(sizes.values())) > 1:
            raise SystemExit(
                f"--arch-grid gives the models unequal tuning budgets ({sizes} alternatives): list as many "
                "alternatives for every model of --models (and for every model it names)"
            )
    return grid


def train_once(
    dataset: str,
    model: str,
    lr: float,
    seed: int,
    args: argparse.Namespace,
    overrides: tuple[str, ...] = (),
    variant: str | None = None,
    dropout: float | None = None,
    also_in: Path | None = None,
    arch: str | None = None,
) -> dict:
    """One `hyenarec train` run (or its cached results). `dropout` sets `hidden_dropout_prob` (None: the default);
    `arch` is one alternative of `--arch-grid` ("field=value[,field=value]"; None: the default architecture).

    `also_in`: another runs folder that may hold this very run under the model's name, made by another script (the
    ablations' `full` variant is accuracy.py's default HyenaRec). Its results are used, instead of training again,
    only if its recorded command equals this run's command with the output folder swapped."""
    if dropout is not None and dropout == default_dropout(model):
        dropout = None  # the default configuration: same run, same folder, same cache as without the grid
    tag = "" if dropout is None else f"-do{dropout:g}"
    if dropout is not None:
        overrides = (*overrides, f"hidden_dropout_prob={dropout}")
    if arch is not None:  # an alternative architecture from `--arch-grid`: its own folders, its fields in the command
        tag += "-" + arch.replace("=", "").replace(",", "-")
        overrides = (*overrides, *arch.split(","))
    for option, value in recipe(args):  # each recipe change gets its own folders: runs with and without it coexist
        tag += option.tag(value) if option.tag else ""
        overrides = (*overrides, option.override(value)) if option.override else overrides
    folder = f"lr{lr:g}{tag}-seed{seed}"
    batching = recorded_options(args)["batching"]
    out = args.runs_dir / dataset / (variant or model) / folder
    command = run_command(dataset, model, lr, seed, args, out, overrides)
    shown = shlex.join(["hyenarec", *command[1:]]).replace(str(DATA), "../shared/data").replace(str(ROOT) + "/", "")
    for cached in [out] + ([also_in / dataset / model / folder] if also_in is not None else []):
        expected = shown.replace(relative(out), relative(cached))
        if (cached / "results.json").exists():
            saved = json.loads((cached / "results.json").read_text())
            # the same command trained otherwise before `batching` existed: such a run is not this one
            if saved.get("accuracy_command") == expected and trained_batching(saved) == batching:
                print(f"[cached] {expected}", flush=True)
                return record(dataset, model, lr, seed, saved, expected, cached)
    print(f"[run] {shown}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        # One failed run must not take a long sweep down: say so loudly, record it, go on with the rest.
        print(f"[failed] rc={proc.returncode}: {shown}\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
        return {
            "dataset": dataset,
            "model": model,
            "lr": lr,
            "seed": seed,
            "failed": proc.stderr[-3000:],
            "command": shown,
            "folder": relative(out),
        }
    results_file = out / "results.json"
    saved = json.loads(results_file.read_text())
    saved["accuracy_command"] = shown
    saved["wall_seconds"] = round(time.perf_counter() - start, 1)
    results_file.write_text(json.dumps(saved, indent=2) + "\n")
    return record(dataset, model, lr, seed, saved, shown, out)


def record(dataset: str, model: str, lr: float, seed: int, saved: dict, command: str, out: Path) -> dict:
    epochs = float(saved["epochs_run"])
    row = {
        "dataset": dataset,
        "model": model,
        "lr": lr,
        "seed": seed,
        "test": {m: saved["test"][m] for m in METRICS},
        "validation_best": {m: saved["validation_best"][m] for m in METRICS},
        "epochs_run": epochs,
        "best_epoch": saved["validation_best"].get("epoch"),
        "train_seconds": saved["train_seconds"],
        "seconds_per_epoch": round(saved["train_seconds"] / max(epochs, 1e-9), 1),
        "num_parameters": saved["num_parameters"],
        # where it trained: s / epoch is that hardware's (runs recorded before this field trained on the 2-core CPU)
        "device": device_label(saved.get("environment") or {}),
        # the learning curve, so that the report can say whether a run had converged
        "val_ndcg_by_epoch": [
            round(e["eval_ndcg@10_full"], 4) for e in saved.get("log_history", []) if "eval_ndcg@10_full" in e
        ],
        "train_loss_by_log": [round(e["loss"], 3) for e in saved.get("log_history", []) if "loss" in e],
        "command": command,
        "folder": relative(out),
    }
    if saved.get("resumed"):  # a run stopped and resumed from its checkpoint: how, and how its time was counted
        row["resumed"] = saved["resumed"]
    if (saved.get("protocol") or {}).get("scores"):  # runs made before item scores were float32 lack it
        row["scores"] = saved["protocol"]["scores"]
    return row


def bf16_scored(run: dict) -> bool:
    """Whether a run's metrics came from bf16 item scores: a `--bf16` run recorded before scores were float32 (its
    results name no score precision). Such scores tie often and ties count against the target, so its metrics are
    biased low (`benchmarks/score_precision.md`)."""
    return bool((run.get("budget") or {}).get("bf16")) and not run.get("scores")


def most_popular(dataset: str) -> dict:
    from hyenarec_hf.data import build_splits, load_interactions
    from hyenarec_hf.popularity import MostPopular

    splits, vocab = build_splits(load_interactions(DATASETS[dataset]["file"]))
    test = MostPopular(num_items=len(vocab)).fit(splits["train"]).evaluate(splits["test"])
    validation = MostPopular(num_items=len(vocab)).fit(splits["train"]).evaluate(splits["validation"])
    return {
        "dataset": dataset,
        "model": "mostpop",
        "lr": None,
        "seed": None,
        "test": {m: test[m] for m in METRICS},
        "validation_best": {m: validation[m] for m in METRICS},
        "command": "MostPopular(num_items=len(vocab)).fit(train).evaluate(test)",
    }


def sweep(args: argparse.Namespace) -> list[dict]:
    runs: list[dict] = []
    alternatives = arch_grid(args)  # parsed (and refused if malformed or unequal) once, before any training
    for dataset in args.datasets:
        if not DATASETS[dataset]["file"].exists():
            raise SystemExit(f"{DATASETS[dataset]['file']} is missing: put ../shared/data beside the project.")
        runs.append(most_popular(dataset))
        for model in args.models:
            first, rest = args.seeds[0], args.seeds[1:]
            dropouts = getattr(args, "dropouts", None) or [None]
            archs = [None, *alternatives.get(model, [])]
            grid = [
                dict(train_once(dataset, model, lr, first, args, dropout=d, arch=a), dropout=d, arch=a)
                for lr in args.lrs
                for d in dropouts
                for a in archs
            ]
            failed = [r for r in grid if "failed" in r]
            grid = [r for r in grid if "failed" not in r]
            runs += failed
            if not grid:
                continue
            best = max(grid, key=lambda r: r["validation_best"]["ndcg@10_full"])
            for r in grid:
                r["grid"] = True
                r["selected"] = r is best
            runs += grid
            runs += [
                dict(
                    train_once(dataset, model, best["lr"], seed, args, dropout=best["dropout"], arch=best["arch"]),
                    selected=True,
                    dropout=best["dropout"],
                    arch=best["arch"],
                )
                for seed in rest
            ]
    budget = sweep_budget(args, alternatives)
    for r in runs:
        if r["model"] != "mostpop":
            r["budget"] = budget
    for dataset, model, path in args.import_run or []:
        runs.append(imported(dataset, model, Path(path)))
    return runs


def sweep_budget(args: argparse.Namespace, alternatives: dict[str, list[str]]) -> dict:
    """The budget column of a sweep's runs: its grid, epochs, wall-clock cap, precision and recipe."""
    budget = {"lrs": args.lrs, "epochs": args.epochs, "minutes": args.minutes, "bf16": args.bf16}
    if getattr(args, "dropouts", None):
        budget["dropouts"] = args.dropouts
    if alternatives:
        budget["arch_grid"] = alternatives
    budget.update(recorded_options(args))
    return budget


def trained_with(budget: dict | argparse.Namespace) -> dict:
    """What a budget (recorded, or the arguments') trains each run with, its tuning grid left out: epochs, wall-clock
    cap, precision and every recipe option away from its default."""
    values = budget if isinstance(budget, dict) else vars(budget)
    out = {key: values.get(key) for key in ("epochs", "minutes", "bf16")}
    out["bf16"] = bool(out["bf16"])
    out["minutes"] = float(out["minutes"]) if out["minutes"] else None
    return out | {option.name: value for option, value in recipe(budget)}


def add_seeds(args: argparse.Namespace, recorded: list[dict], source: Path) -> list[dict]:
    """`--add-seeds`: for each (dataset, model), train `--seeds` at the setting (lr, dropout, architecture) that the
    runs recorded in `source` picked, with their budget, and return the new runs (the recorded ones stay as they
    are). Refuses a (dataset, model) with no recorded runs, arguments that would train otherwise than those runs did
    (epochs, cap, precision, recipe), and seeds it already has, all before the first run trains."""
    picks = []
    for dataset in args.datasets:
        for model in args.models:
            chosen = [
                r for r in ok(recorded) if (r["dataset"], r["model"]) == (dataset, model) and r.get("selected", True)
            ]
            if not chosen:
                raise SystemExit(
                    f"--add-seeds: {source} holds no {dataset} {model} runs to add seeds to; run the sweep for them "
                    "first (without --add-seeds)"
                )
            pick = next((r for r in chosen if r.get("grid")), chosen[0])  # the grid's choice (or the imported run)
            budget = own_budget(pick.get("budget"))
            if trained_with(args) != trained_with(budget):
                raise SystemExit(
                    f"--add-seeds: {dataset} {model}'s runs in {source} trained with {budget_text(budget)}, these "
                    f"arguments would train with {trained_with(args)}: pass the same --epochs, --minutes, --bf16 "
                    "and recipe options (--batch-size, --batching, ...) so that the new seeds share their budget"
                )
            taken = sorted({r["seed"] for r in chosen} & set(args.seeds))
            if taken:
                raise SystemExit(
                    f"--add-seeds: {dataset} {model} in {source} already has seed(s) {taken}; list new seeds only"
                )
            picks.append((dataset, model, pick, budget))
    new = []
    for dataset, model, pick, budget in picks:
        dropout, arch = pick.get("dropout"), pick.get("arch")
        for seed in args.seeds:
            run = train_once(dataset, model, pick["lr"], seed, args, dropout=dropout, arch=arch)
            new.append(dict(run, selected=True, dropout=dropout, arch=arch, budget=budget))
    return new


def imported(dataset: str, model: str, results_file: Path) -> dict:
    """A run made outside this script (e.g. the main job), read from its `results.json`."""
    saved = json.loads(results_file.read_text())
    s = saved["settings"]
    row = record(dataset, model, s["learning_rate"], s["seed"], saved, saved.get("command", "?"), results_file.parent)
    row["budget"] = {
        "lrs": [s["learning_rate"]],
        "epochs": s["epochs"],
        "minutes": s.get("max_train_minutes"),
        "bf16": s.get("bf16", False),
        "batching": trained_batching(saved),
        "imported": relative(results_file),
    }
    return row


def trained_batching(saved: dict) -> str:
    """How a run's training batches were drawn, from its results.json (runs before `batching` record
    `group_by_length`)."""
    settings = saved.get("settings") or {}
    return settings.get("batching") or ("length_grouped" if settings.get("group_by_length", True) else "random")


def ok(runs: list[dict]) -> list[dict]:
    return [r for r in runs if "failed" not in r]


def summarise(runs: list[dict]) -> list[dict]:
    runs = ok(runs)
    rows = []
    keys = sorted({(r["dataset"], r["model"]) for r in runs}, key=lambda k: (list(DATASETS).index(k[0]), k[1]))
    for dataset, model in keys:
        chosen = [r for r in runs if r["dataset"] == dataset and r["model"] == model and r.get("selected", True)]
        row = {"dataset": dataset, "model": model, "seeds": len(chosen), "lr": chosen[0]["lr"]}
        row["budget"] = merged_budget(chosen)
        if row["budget"] and any(bf16_scored(r) for r in chosen):
            row["budget"] = {**row["budget"], "bf16_scores": True}
        for metric in METRICS:
            values = [r["test"][metric] for r in chosen]
            row[metric] = statistics.fmean(values)
            row[metric + "_std"] = statistics.stdev(values) if len(values) > 1 else None
        row["seconds_per_epoch"] = (
            statistics.fmean([r["seconds_per_epoch"] for r in chosen if "seconds_per_epoch" in r] or [0]) or None
        )
        row["epochs_run"] = [r.get("epochs_run") for r in chosen]
        row["dropout"] = chosen[0].get("dropout")
        row["arch"] = chosen[0].get("arch")
        row["grid"] = {
            setting_label(r, dropout_word="do"): round(r["validation_best"]["ndcg@10_full"], 4)
            for r in runs
            if r["dataset"] == dataset and r["model"] == model and r.get("grid")
        }
        rows.append(row)
    return rows


def setting_label(row: dict, dropout_word: str = "dropout") -> str:
    """A run's or summary row's tuned setting: "lr[, dropout D][, arch]" (the grid column abbreviates "do")."""
    label = f"{row['lr']:g}"
    label += f", {dropout_word} {row['dropout']:g}" if row.get("dropout") is not None else ""
    return label + (f", {row['arch']}" if row.get("arch") else "")


def merged_budget(chosen: list[dict]) -> dict | None:
    """The budget of a row's runs. Seeds run here and seeds imported with `--import-run` share a row; the row keeps the
    budget of the runs made here and names each imported seed, with its own budget where that differs."""
    budgets = [r.get("budget") for r in chosen]
    own = [b for b in budgets if b and not b.get("imported")]
    if not own:
        return budgets[0]
    merged = dict(own[0])
    imports = {}
    for r in chosen:
        b = r.get("budget") or {}
        if b.get("imported"):
            theirs = own_budget(b)
            imports[str(r["seed"])] = {
                "file": b["imported"],
                "budget": None if theirs == own[0] else budget_text(theirs),
            }
    if imports:
        merged["imported_seeds"] = imports
    return merged


def cell(row: dict, metric: str) -> str:
    std = row.get(metric + "_std")
    return f"{row[metric]:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Accuracy: HyenaRec and the baselines in one harness",
        "",
        "Produced by `python benchmarks/accuracy.py` (see its docstring); regenerate the text with `--report-only`.",
        "",
        "Protocol: leave-one-out by time, full ranking over all items, seen items excluded, ties against the target; "
        "test metrics at the best validation NDCG@10 epoch. Mean ± sample std over the seeds (`seeds`).",
        "",
        "Tuning: for each (dataset, model) the learning rate is picked from the grid in the `budget` column on "
        "validation NDCG@10 with the first seed; every run uses a cosine schedule over its epochs with 2% warm-up, "
        "AdamW, batch 128 (unless `budget` says otherwise) and the model's default architecture "
        "(`hyenarec_hf.<Model>Config()`) unless `budget` names an architecture grid and the lr column the "
        "alternative it picked. `budget` gives the "
        "grid, the epochs, the wall-clock cap and the precision of that row's runs; rows of one table compare fairly "
        "only where their budgets agree, and the text under each table says where they do not. Training batches are "
        "`balanced` (random histories each step, in length-balanced micro-batches) unless `budget` names another "
        "way: `length-grouped batches` (what every run before `balanced` used) train worse "
        "(`benchmarks/accuracy_batching.md`).",
        "",
    ]
    if any(bf16_scored(r) for r in ok(result["runs"])):
        lines += [
            "Rows marked `bf16 item scores: biased low` were evaluated before item scores were computed in float32 "
            "under bf16 autocast: their bf16 scores tie often, ties count against the target, and so their metrics "
            "sit below what the same weights score in float32 (`benchmarks/score_precision.md` measures the gap on a "
            "trained model). Compare them only with rows marked the same way.",
            "",
        ]
    hardware = hardware_line(ok(result["runs"]))
    if hardware:
        lines += [hardware, ""]
    for dataset in DATASETS:
        rows = [r for r in result["summary"] if r["dataset"] == dataset]
        if not rows:
            continue
        lines += [
            f"## {DATASETS[dataset]['label']}",
            "",
            "| model | seeds | lr (grid: val NDCG@10) | NDCG@10 | HR@10 | MRR@10 | s / epoch | epochs run | budget |",
            "|---|---:|---|---:|---:|---:|---:|---|---|",
        ]
        for r in rows:
            grid = ", ".join(f"{k}: {v:.4f}" for k, v in r["grid"].items()) or "–"
            lr = "–"
            if r["lr"] is not None:
                lr = f"{setting_label(r)} ({grid})"
            spe = f"{r['seconds_per_epoch']:.0f}" if r["seconds_per_epoch"] else "–"
            epochs = ", ".join(f"{e:.0f}" for e in r["epochs_run"] if e is not None) or "–"
            lines.append(
                f"| {LABELS[r['model']]} | {r['seeds']} | {lr} | {cell(r, 'ndcg@10_full')} | "
                f"{cell(r, 'hr@10_full')} | {cell(r, 'mrr@10_full')} | {spe} | {epochs} | {budget_text(r.get('budget'))} |"
            )
        if dataset in ANCHORS:
            lines += [
                "",
                "Published (same protocol, other pipelines; see `../shared/research/accuracy_anchors.md`):",
                "",
            ]
            lines += ["| model | HR@10 | NDCG@10 | source |", "|---|---:|---:|---|"]
            lines += [f"| {m} | {hr:.4f} | {nd:.4f} | {src} |" for m, hr, nd, src in ANCHORS[dataset]]
        lines += ["", verdict(dataset, rows), ""]
        note = budget_differences(rows)
        if note:
            lines += [note, ""]
    lines += ["## Every run", "", "| dataset | model | lr | seed | val NDCG@10 | test NDCG@10 | command |"]
    lines += ["|---|---|---:|---:|---:|---:|---|"]
    for r in ok(result["runs"]):
        if r["model"] == "mostpop":
            continue
        lines.append(
            f"| {r['dataset']} | {LABELS[r['model']]} | {r['lr']:g} | {r['seed']} | "
            f"{r['validation_best']['ndcg@10_full']:.4f} | {r['test']['ndcg@10_full']:.4f} | `{r['command']}` |"
        )
    resumed = [r for r in ok(result["runs"]) if r.get("resumed")]
    if resumed:
        lines += ["", "Resumed runs (stopped, then continued from a checkpoint with `--resume`):", ""]
        lines += [f"- `{r['folder']}`: {r['resumed']}." for r in resumed]
    failed = [r for r in result["runs"] if "failed" in r]
    if failed:
        lines += ["", "Failed runs (not in the tables; the error is in `accuracy.json`):", ""]
        lines += [f"- `{r['command']}`" for r in failed]
    path.write_text("\n".join(lines) + "\n")


CPU_THREADS = 2  # the benchmark machine's cores: a CPU run with this many torch threads is labelled plain "cpu"


def cpu_kind(environment: dict) -> str:
    """The CPU a run trained on, as far as its results record it: model name, torch's vector ISA and whether it has
    bf16 arithmetic ("AMD EPYC, AVX512, native bf16"): s / epoch differs several-fold between CPUs, and bf16 autocast
    is emulated (slower than float32) without bf16 arithmetic. '' for runs recorded before results named their CPU."""
    bf16 = {True: "native bf16", False: "no bf16 arithmetic"}.get(environment.get("cpu_bf16"))
    return ", ".join(p for p in (environment.get("cpu_model"), environment.get("cpu_capability"), bf16) if p)


def device_label(environment: dict) -> str:
    """Where a run trained: its GPU's name, or "cpu" with, in brackets, its torch thread count where that was not all
    of the benchmark CPU's threads and the CPU's kind where recorded: "cpu", "cpu (1 thread)",
    "cpu (1 thread; AMD EPYC, AVX512, native bf16)"."""
    if environment.get("gpu"):
        return environment["gpu"]
    threads = environment.get("threads")
    details = [] if threads in (None, CPU_THREADS) else [f"{threads} thread{'s' * (threads != 1)}"]
    kind = cpu_kind(environment)
    details += [kind] if kind else []
    return f"cpu ({'; '.join(details)})" if details else "cpu"


def hardware_line(runs: list[dict]) -> str:
    """Names the GPUs, the CPUs (where recorded) and the reduced CPU thread counts the runs trained on (s / epoch is
    theirs); empty when every run had the whole benchmark CPU and none named its kind."""
    devices = Counter(r.get("device", "cpu") for r in runs if r["model"] != "mostpop")
    if set(devices) <= {"cpu"}:
        return ""

    def name(device: str) -> str:
        if device == "cpu":
            return f"the CPU ({CPU_THREADS} threads)"
        if device.startswith("cpu (") and "thread" not in device:  # all the CPU's threads, its kind named
            return f"the CPU ({CPU_THREADS} threads; {device[5:]}"
        return "the CPU" + device[3:] if device.startswith("cpu (") else device

    def unnamed_cpu(device: str) -> bool:  # a CPU run recorded before results named their CPU
        return device == "cpu" or (device.startswith("cpu (") and device.endswith(("thread)", "threads)")))

    parts = [f"{name(d)}: {n} run{'s' * (n != 1)}" for d, n in sorted(devices.items())]
    line = f"Hardware (`s / epoch` is that hardware's): {', '.join(parts)}."
    if any(map(unnamed_cpu, devices)) and any(d.startswith("cpu (") and not unnamed_cpu(d) for d in devices):
        line += (
            " A CPU named only by its threads went unrecorded (runs made before results named their CPU): those "
            "runs' s / epoch may come from other CPUs than the named ones."
        )
    return line


def budget_text(budget: dict | None) -> str:
    if not budget:
        return "–"
    text = f"lr {'/'.join(f'{lr:g}' for lr in budget['lrs'])}, ≤ {budget['epochs']} epochs"
    text += f", ≤ {budget['minutes']:g} min" if budget.get("minutes") else ""
    text += f", dropout {'/'.join(f'{d:g}' for d in budget['dropouts'])}" if budget.get("dropouts") else ""
    if budget.get("arch_grid"):
        listed = "; ".join(f"{LABELS[m]}: {' or '.join(alts)}" for m, alts in budget["arch_grid"].items())
        text += f", default architecture or ({listed})"
    text += "".join(f", {option.text(value)}" for option, value in recipe(budget))
    text += ", bf16" if budget.get("bf16") else ", fp32"
    text += " (bf16 item scores: biased low)" if budget.get("bf16_scores") else ""
    text += f" (imported: `{budget['imported']}`)" if budget.get("imported") else ""
    for seed, source in budget.get("imported_seeds", {}).items():
        text += f"; seed {seed} imported from `{source['file']}`"
        text += f" with another budget ({source['budget']})" if source["budget"] else ""
    return text


def own_budget(budget: dict | None) -> dict:
    """A budget without its import bookkeeping (`imported`, `imported_seeds`): what the runs were trained with."""
    return {k: v for k, v in (budget or {}).items() if k not in ("imported", "imported_seeds")}


def budget_differences(rows: list[dict]) -> str:
    """A sentence naming every trained row whose budget is not HyenaRec's (imported seeds aside), or ''."""
    budgets = {r["model"]: own_budget(r.get("budget")) for r in rows if r["model"] != "mostpop"}
    reference = budgets.pop("hyenarec", None)
    if reference is None:
        return ""
    listed = "; ".join(f"{LABELS[m]}: {budget_text(b)}" for m, b in budgets.items() if b != reference)
    return f"Budgets that differ from HyenaRec's ({budget_text(reference)}): {listed}." if listed else ""


def verdict(dataset: str, rows: list[dict]) -> str:
    by_model = {r["model"]: r for r in rows}
    hyena = by_model.get("hyenarec")
    if hyena is None:
        return "HyenaRec was not run on this dataset."
    parts = []
    if "sasrec" in by_model:
        diff = hyena["ndcg@10_full"] - by_model["sasrec"]["ndcg@10_full"]
        parts.append(
            f"HyenaRec {'matches or beats' if diff >= 0 else 'trails'} SASRec of this harness by {diff:+.4f} NDCG@10."
        )
    if dataset in TARGETS:
        met = hyena["ndcg@10_full"] >= TARGETS[dataset]
        parts.append(f"Target NDCG@10 >= {TARGETS[dataset]}: **{'met' if met else 'missed'}**.")
    return " ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3], help="learning-rate grid")
    parser.add_argument("--epochs", type=int, default=50, help="epochs per run (cosine schedule over them)")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock cap per run (after the epoch)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CPUs with AVX512-BF16, GPUs)")
    parser.add_argument(
        "--dropouts", type=float, nargs="+", default=None, help="also tune hidden_dropout_prob over these values"
    )
    parser.add_argument(
        "--arch-grid",
        nargs="+",
        default=None,
        metavar="MODEL:FIELD=VALUE[,FIELD=VALUE]",
        help="also tune the architecture: each entry is one alternative to MODEL's default config (e.g. "
        "hyenarec:legendre_order=8); every model gets as many alternatives (the same budget)",
    )
    for option in RECIPE_OPTIONS:
        parser.add_argument("--" + option.name.replace("_", "-"), default=option.default, **option.cli)
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--out", type=Path, default=HERE / "accuracy")
    parser.add_argument(
        "--import-run",
        nargs=3,
        action="append",
        metavar=("DATASET", "MODEL", "RESULTS_JSON"),
        help="add a run made elsewhere (e.g. the main job's results.json) to the table",
    )
    parser.add_argument(
        "--add-seeds",
        action="store_true",
        help="train only --seeds, for each (dataset, model) of --datasets and --models, at the setting the runs "
        "in --out already picked (their lr, dropout, architecture), and add them to --out's table; --epochs, "
        "--minutes, --bf16 and the recipe options must be those of the recorded runs",
    )
    parser.add_argument("--report-only", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    json_path = args.out.with_suffix(".json")
    if args.report_only:  # the summary is derived from the runs again, so a change to the report reaches both files
        result = json.loads(json_path.read_text())
        result["summary"] = summarise(result["runs"])
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        write_markdown(result, args.out.with_suffix(".md"))
        return
    from bench_common import warn_if_bf16_is_emulated  # here, not at the top: a report alone does not load torch

    warn_if_bf16_is_emulated(args.bf16)
    for option, value in recipe(args):
        if option.needs_field is None:
            continue
        from hyenarec_hf.training import MODEL_REGISTRY

        # e.g. the width option sets intermediate_size too: a model whose config has none (GRU4Rec) cannot take it
        field, does = option.needs_field
        lacking = [m for m in args.models if not hasattr(MODEL_REGISTRY[m][0](), field)]
        if lacking:
            raise SystemExit(
                f"--{option.name.replace('_', '-')} {value:g} {does}, and "
                f"{', '.join(LABELS[m] for m in lacking)} has no {field}: leave {' '.join(lacking)} out of --models"
            )
    if args.add_seeds:  # more seeds for a table already tuned: its runs stay, the new ones join their rows
        if args.import_run or not json_path.exists():
            raise SystemExit(
                f"--add-seeds adds seeds to the runs recorded in {json_path}"
                + (" (it exists only after a sweep)" if not json_path.exists() else "; use --import-run without it")
            )
        recorded = json.loads(json_path.read_text())["runs"]
        runs = recorded + add_seeds(args, recorded, json_path)
    else:
        runs = sweep(args)
        # Merge with runs recorded before (other datasets or models); a (dataset, model) swept now replaces its rows.
        done = {(r["dataset"], r["model"]) for r in runs}
        if json_path.exists():
            old = json.loads(json_path.read_text())["runs"]
            runs = [r for r in old if (r["dataset"], r["model"]) not in done] + runs
    result = {"runs": runs, "summary": summarise(runs), "python": sys.version.split()[0]}
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
