"""How training batches are drawn, and what it does to accuracy: one table from the accuracy runs that differ in it.

Reads the accuracy tables named in `SOURCES` (each made by `benchmarks/accuracy.py` with one `--batching`; float32
item scores in all of them) and puts, per dataset and model, each batching's test NDCG@10 side by side, seed by seed,
with its time per epoch. Nothing is trained here.

    python benchmarks/batching_table.py

Writes `benchmarks/accuracy_batching.json` and `benchmarks/accuracy_batching.md`.
"""

from __future__ import annotations

import json

from accuracy import DATASETS, HERE, LABELS, bf16_scored, budget_text, recipe

# (batching, the accuracy table its runs are in)
SOURCES = (
    ("length_grouped", "accuracy_fp32_scores"),
    ("random", "accuracy_ml-1m_random"),
    ("balanced", "accuracy_balanced"),
)


def batching_of(run: dict) -> str:
    budget = run.get("budget") or {}
    return dict((option.name, value) for option, value in recipe(budget)).get("batching", "balanced")


def collect() -> list[dict]:
    """Every trained, float32-scored run of the source tables, with its batching (checked against the source)."""
    rows = []
    for batching, stem in SOURCES:
        path = HERE / f"{stem}.json"
        if not path.exists():
            continue
        for run in json.loads(path.read_text())["runs"]:
            if run["model"] == "mostpop" or "failed" in run or not run.get("selected", True) or bf16_scored(run):
                continue
            if batching_of(run) != batching:
                raise SystemExit(f"{stem}.json holds a run with {batching_of(run)} batches, not {batching}: {run}")
            rows.append(
                {
                    "dataset": run["dataset"],
                    "model": run["model"],
                    "seed": run["seed"],
                    "batching": batching,
                    "source": f"benchmarks/{stem}.md",
                    "ndcg@10": run["test"]["ndcg@10_full"],
                    "hr@10": run["test"]["hr@10_full"],
                    "val_ndcg@10": run["validation_best"]["ndcg@10_full"],
                    "seconds_per_epoch": run.get("seconds_per_epoch"),
                    "epochs_run": run.get("epochs_run"),
                    "device": run.get("device", "cpu"),
                    "budget": budget_text(run.get("budget")),
                }
            )
    return rows


def main() -> None:
    rows = collect()
    (HERE / "accuracy_batching.json").write_text(json.dumps({"sources": SOURCES, "runs": rows}, indent=2) + "\n")
    lines = [
        "# Training batches drawn three ways: accuracy",
        "",
        "Produced by `python benchmarks/batching_table.py` from the accuracy tables in its `SOURCES` (each row's "
        "command is in its source). Test metrics at the best validation NDCG@10 epoch; full ranking, seen items "
        "excluded, float32 item scores. `balanced` and `random` take the same optimizer steps (128 random histories, "
        "the loss a mean over all their labelled positions); `length_grouped` batches histories of similar length, "
        "long-to-short, each batch's loss a mean over its own positions. `s / epoch` is that run's, on its hardware "
        "and thread count (`device`); compare times with `benchmarks/batching_speed_ml-1m.md`, which times the three "
        "side by side.",
        "",
        "| dataset | model | seed | batching | test NDCG@10 | test HR@10 | val NDCG@10 | s / epoch | epochs | device "
        "| budget |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    order = {b: i for i, (b, _) in enumerate(SOURCES)}
    for r in sorted(
        rows, key=lambda r: (list(DATASETS).index(r["dataset"]), r["model"], r["seed"], order[r["batching"]])
    ):
        spe = f"{r['seconds_per_epoch']:.0f}" if r["seconds_per_epoch"] else "–"
        epochs = f"{r['epochs_run']:.0f}" if r["epochs_run"] else "–"
        lines.append(
            f"| {DATASETS[r['dataset']]['label']} | {LABELS[r['model']]} | {r['seed']} | {r['batching']} | "
            f"{r['ndcg@10']:.4f} | {r['hr@10']:.4f} | {r['val_ndcg@10']:.4f} | {spe} | {epochs} | {r['device']} | "
            f"{r['budget']} |"
        )
    (HERE / "accuracy_batching.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
