"""Which parts of HyenaRec earn their place: ablations on ML-1M (max length 200; `--dataset` picks another dataset of
`accuracy.py`), one harness, one budget.

Every variant is the default HyenaRec with one config field changed (`hyenarec train --set FIELD=VALUE`), trained
with the same settings (`--lr`, `--epochs` with a cosine schedule, `--seeds`), evaluated with full ranking, seen items
excluded, at the best validation epoch. Runs go through `benchmarks/accuracy.py`'s runner (one `hyenarec train`
process per run, cached in `runs/ablations/`).

    python benchmarks/ablations.py                       # every variant, 1 seed, 10 epochs (~45 min on 2 cores)
    python benchmarks/ablations.py --variants full no_short --seeds 42 43
    python benchmarks/ablations.py --report-only
    python benchmarks/ablations.py --dataset beauty --lr 1e-3 --epochs 20 --bf16 --variants full positions order8

Writes `benchmarks/ablations.{json,md}` for ML-1M and `benchmarks/ablations_<dataset>.{json,md}` for another dataset.

A short budget ranks the variants by how fast they learn as much as by where they end; the markdown says which budget
it used.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from accuracy import (  # sibling script: the same runner, cache, cells and recipe options
    DATASETS,
    ROOT,
    RUNS_DIR,
    cell,
    recipe,
    recorded_options,
    train_once,
)

HERE = Path(__file__).resolve().parent
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "full": ("HyenaRec (Legendre order 16, long + short branch)", ()),
    "implicit": ("filter_type = implicit (Hyena MLP filter)", ("filter_type=implicit",)),
    "hybrid": ("filter_type = hybrid (Legendre + implicit)", ("filter_type=hybrid",)),
    "no_short": ("without the gated short branch", ("use_short_branch=false",)),
    "no_long": ("without the long convolution branch", ("use_long_branch=false",)),
    "order4": ("legendre_order = 4", ("legendre_order=4",)),
    "order8": ("legendre_order = 8", ("legendre_order=8",)),
    "order28": ("legendre_order = 28 (= 2 sqrt(200))", ("legendre_order=28",)),
    "positions": ("with learned position embeddings (as SASRec)", ("use_position_embeddings=true",)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m", choices=list(DATASETS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "ablations")
    parser.add_argument("--out", type=Path, default=None, help="default: ablations (ML-1M), ablations_<dataset>")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.out is None:
        args.out = HERE / ("ablations" if args.dataset == "ml-1m" else f"ablations_{args.dataset}")

    json_path = args.out.with_suffix(".json")
    if args.report_only:
        write_markdown(json.loads(json_path.read_text()), args.out.with_suffix(".md"))
        return
    from bench_common import warn_if_bf16_is_emulated  # here, not at the top: a report alone does not load torch

    warn_if_bf16_is_emulated(args.bf16)
    runs = []
    for name in args.variants:
        for seed in args.seeds:
            # the `full` variant is the default HyenaRec: the same run made by accuracy.py (same command) is reused
            run = train_once(
                args.dataset,
                "hyenarec",
                args.lr,
                seed,
                args,
                overrides=VARIANTS[name][1],
                variant=name,
                also_in=RUNS_DIR if name == "full" else None,
            )
            runs.append(dict(run, variant=name))
    old = json.loads(json_path.read_text()) if json_path.exists() else None
    result = merge_runs(old, {"settings": settings_of(args), "runs": runs})
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


def merge_runs(old: dict | None, new: dict) -> dict:
    """The new runs plus the earlier runs of the same settings that they do not replace: a (variant, seed) run again
    replaces its old record, every other old record is kept. Earlier runs of other settings are dropped."""
    if old is None or old["settings"] != new["settings"]:
        return new
    done = {(r["variant"], r["seed"]) for r in new["runs"]}
    kept = [r for r in old["runs"] if (r["variant"], r["seed"]) not in done]
    return {"settings": new["settings"], "runs": kept + new["runs"]}


def settings_of(args: argparse.Namespace) -> dict:
    settings = {"dataset": args.dataset, "lr": args.lr, "epochs": args.epochs, "minutes": args.minutes}
    return {**settings, "bf16": args.bf16, **recorded_options(args)}


def summarise(result: dict) -> list[dict]:
    """One row per variant, in `VARIANTS` order: mean (and sample std with several seeds) over its seeds."""
    by_variant: dict[str, list[dict]] = {}
    for r in result["runs"]:
        if "failed" not in r:  # a failed run is listed under the table (`write_markdown`), never averaged
            by_variant.setdefault(r["variant"], []).append(r)
    rows = []
    for name in VARIANTS:
        runs = by_variant.get(name)
        if not runs:
            continue
        test = [r["test"]["ndcg@10_full"] for r in runs]
        rows.append(
            {
                "variant": name,
                "label": VARIANTS[name][0],
                "seeds": len(runs),
                "val_ndcg": statistics.fmean(r["validation_best"]["ndcg@10_full"] for r in runs),
                "test_ndcg": statistics.fmean(test),
                "test_ndcg_std": statistics.stdev(test) if len(test) > 1 else None,
                "test_hr": statistics.fmean(r["test"]["hr@10_full"] for r in runs),
                "seconds_per_epoch": statistics.fmean(r["seconds_per_epoch"] for r in runs),
                "num_parameters": runs[0]["num_parameters"],
            }
        )
    full = next((r["test_ndcg"] for r in rows if r["variant"] == "full"), None)
    for row in rows:
        row["delta"] = row["test_ndcg"] - full if full is not None and row["variant"] != "full" else None
    return rows


def noise_note(rows: list[dict]) -> str:
    """How large a difference the seeds can explain: the mean sample std of test NDCG@10 over the variants run with
    several seeds. A variant whose delta is within twice that is not told apart from the full model."""
    stds = [r["test_ndcg_std"] for r in rows if r["test_ndcg_std"] is not None]
    if not stds:
        return "One seed per variant: the seed-to-seed spread is not measured, so small deltas may be noise."
    noise = statistics.fmean(stds)
    clear = [
        f"{r['label']} ({r['delta']:+.4f}{', one seed' if r['seeds'] == 1 else ''})"
        for r in rows
        if r["delta"] is not None and abs(r["delta"]) > 2 * noise
    ]
    return (
        f"Seed-to-seed spread (mean sample std of test NDCG@10 over the variants with several seeds): {noise:.4f}. "
        f"Deltas larger than twice that: {'; '.join(clear) if clear else 'none'}."
    )


def write_markdown(result: dict, path: Path) -> None:
    s = result["settings"]
    lines = [
        f"# Ablations: HyenaRec on {DATASETS[s['dataset']]['label']}",
        "",
        f"Produced by `python benchmarks/ablations.py` with lr {s['lr']:g}, {s['epochs']} epochs (cosine, 2% warm-up)"
        + (f", at most {s['minutes']} min" if s["minutes"] else "")
        + (", bf16 autocast" if s["bf16"] else ", fp32")
        + "".join(f", {option.text(value)}" for option, value in recipe(s))
        + ". Full ranking, seen items excluded, test metrics at the best validation epoch; mean ± sample std over "
        "seeds. The ranking says which variant does best in this budget, not where each would end with more "
        "training.",
        "",
        "| variant | seeds | val NDCG@10 | test NDCG@10 | test HR@10 | Δ test NDCG@10 vs full | s / epoch | params |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = summarise(result)
    for r in rows:
        delta = f"{r['delta']:+.4f}" if r["delta"] is not None else "–"
        lines.append(
            f"| {r['label']} | {r['seeds']} | {r['val_ndcg']:.4f} | {cell(r, 'test_ndcg')} | {r['test_hr']:.4f} | {delta} | "
            f"{r['seconds_per_epoch']:.0f} | {r['num_parameters']:,} |"
        )
    lines += ["", noise_note(rows), ""]
    trained = [r for r in result["runs"] if "failed" not in r]
    bf16_scored = [r for r in trained if s["bf16"] and not r.get("scores")]
    if bf16_scored:
        which = (
            "Every run here was"
            if len(bf16_scored) == len(trained)
            else ", ".join(f"{r['variant']} seed {r['seed']}" for r in bf16_scored)
            + (" was" if len(bf16_scored) == 1 else " were")
        )
        lines += [
            f"{which} evaluated with bf16 item scores (before they were computed in float32 under bf16 autocast): "
            "bf16 scores tie often and ties count against the target, so those values are biased low "
            "(`benchmarks/score_precision.md`). Compare runs only with runs scored the same way.",
            "",
        ]
    failed = [r for r in result["runs"] if "failed" in r]
    if failed:
        lines += ["Failed runs (not in the table; the error is in the JSON):", ""]
        lines += [f"- {r['variant']}, seed {r['seed']}: `{r['command']}`" for r in failed] + [""]
    ok = [r for r in result["runs"] if "failed" not in r]
    lines += ["Commands:", ""] + [f"- `{r['command']}`" for r in ok]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
