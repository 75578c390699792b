"""Serving latency per user at history length 200 on this CPU: `model.recommend` end to end, the model's forward pass
alone, and the `torch.export`ed scorer, for batches of 1, 64 and 256 users.

A HyenaRec of the ML-1M size (3,416 items, hidden 64, 2 layers, l_max 200, default `conv_impl="auto"`, which is the
Toeplitz GEMM at length 200) with random weights: latency does not depend on what the weights learned. Every history
holds 200 raw item ids. Every path and batch size runs once per round, in a shuffled order, so a noisy neighbour slows all of them
alike; compare ratios within one run, not against numbers measured elsewhere. `--threads 1` gives steadier numbers on
a machine shared with other jobs.

    python benchmarks/recommend_latency.py                # writes benchmarks/recommend_latency.{json,md,png}
    python benchmarks/recommend_latency.py --rounds 5     # quicker

- `recommend`: raw ids in, top-10 raw ids out (vocabulary lookup, left padding, forward, seen-item exclusion,
  top-k, decoding).
- `forward`: `model.score_histories(input_ids)` on a ready `(batch, 200)` tensor (eval mode: cached kernels).
- `exported-toeplitz` / `exported-fft`: the `.pt2` programs from `hyenarec_hf.export.export_scorer` on the same
  tensor, exported with `conv_impl="toeplitz"` (what `"auto"` picks at 200) and `"fft"`; the exported graph
  recomputes the kernels (and the Toeplitz matrix) from the weights on every call.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from bench_common import command_line, cpu_name  # sibling module
from tqdm import tqdm

import hyenarec_hf  # noqa: F401  (registers the Auto classes)
from hyenarec_hf import HyenaRecConfig, HyenaRecForNextItemPrediction
from hyenarec_hf.export import export_scorer, load_scorer

HERE = Path(__file__).resolve().parent
NUM_ITEMS, HIDDEN, LAYERS, LENGTH, K = 3416, 64, 2, 200, 10
BATCHES = (1, 64, 256)
PATHS = ("recommend", "forward", "exported-toeplitz", "exported-fft")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed calls per path and batch size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    parser.add_argument("--markdown-only", action="store_true", help="rewrite the .md and .png from the saved .json")
    args = parser.parse_args()
    if args.markdown_only:
        result = json.loads((args.out_dir / "recommend_latency.json").read_text())
        write_reports(result, args.out_dir)
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    item_ids = [str(i) for i in range(1, NUM_ITEMS + 1)]
    config = HyenaRecConfig(
        num_items=NUM_ITEMS, hidden_size=HIDDEN, num_hidden_layers=LAYERS, max_position_embeddings=LENGTH
    )
    config.item_ids = item_ids
    model = HyenaRecForNextItemPrediction(config).eval()
    scorers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for impl in ("toeplitz", "fft"):
            model.config.conv_impl = impl
            export_scorer(model, LENGTH, Path(tmp) / f"{impl}.pt2")
            scorers[f"exported-{impl}"], _ = load_scorer(Path(tmp) / f"{impl}.pt2")
    model.config.conv_impl = "auto"
    model.clear_kernel_cache()

    generator = torch.Generator().manual_seed(1)
    indices = torch.randint(1, NUM_ITEMS + 1, (max(BATCHES), LENGTH), generator=generator)
    histories = [[item_ids[i - 1] for i in row] for row in indices.tolist()]
    masks = indices.ne(0)

    def call(path: str, batch: int):
        if path == "recommend":
            return model.recommend(histories[:batch] if batch > 1 else histories[0], k=K)
        with torch.no_grad():
            if path == "forward":
                return model.score_histories(indices[:batch], masks[:batch])
            return scorers[path](indices[:batch], masks[:batch])

    # Same answers from the three paths before timing them.
    with torch.no_grad():
        eager = model.score_histories(indices[:4], masks[:4])
        for scorer in scorers.values():
            torch.testing.assert_close(scorer(indices[:4], masks[:4]), eager, rtol=1e-4, atol=1e-4)

    for path in PATHS:  # warm-up: allocator, kernel cache, oneDNN primitives
        for batch in BATCHES:
            call(path, batch)
            call(path, batch)
    load_before = os.getloadavg()[0]
    times: dict[tuple[str, int], list[float]] = {(p, b): [] for p in PATHS for b in BATCHES}
    order = random.Random(0)
    for _ in tqdm(range(args.rounds), desc="rounds"):
        cases = list(times)
        order.shuffle(cases)  # no path always runs right after another one's big allocations
        for path, batch in cases:
            gc.collect()  # as timeit does: no garbage collection inside a timed call
            gc.disable()
            start = time.perf_counter()
            call(path, batch)
            times[(path, batch)].append(time.perf_counter() - start)
            gc.enable()

    rows = []
    for (path, batch), values in times.items():
        values = sorted(values)
        median = statistics.median(values)
        rows.append(
            {
                "path": path,
                "batch": batch,
                "median_ms_per_call": round(1e3 * median, 3),
                "min_ms_per_call": round(1e3 * values[0], 3),
                "p10_ms_per_call": round(1e3 * values[len(values) // 10], 3),
                "p90_ms_per_call": round(1e3 * values[min(len(values) - 1, (9 * len(values)) // 10)], 3),
                "ms_per_user": round(1e3 * median / batch, 4),
                "users_per_second": round(batch / median, 1),
            }
        )
    result = {
        "benchmark": "recommend_latency",
        "command": command_line("recommend_latency.py"),
        "model": {
            "type": "hyenarec",
            "num_items": NUM_ITEMS,
            "hidden_size": HIDDEN,
            "num_hidden_layers": LAYERS,
            "intermediate_size": config.intermediate_size,
            "max_position_embeddings": LENGTH,
            "conv_impl": config.conv_impl,
            "weights": "random (latency does not depend on them)",
        },
        "history_length": LENGTH,
        "k": K,
        "rounds": args.rounds,
        "environment": {
            "cpu": cpu_name(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "note": "CPU shared with other jobs; compare ratios within this run",
        },
        "results": rows,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "recommend_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    write_reports(result, args.out_dir)


def write_reports(result: dict, out_dir: Path) -> None:
    table = markdown_table(result["results"])
    (out_dir / "recommend_latency.md").write_text(markdown(result, table))
    plot(result["results"], out_dir / "recommend_latency.png")
    print(table)


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| path | batch | median ms / call | p10-p90 ms / call | min ms / call | ms / user (median) | users / s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(rows, key=lambda r: (PATHS.index(r["path"]), r["batch"])):
        lines.append(
            f"| {row['path']} | {row['batch']} | {row['median_ms_per_call']:.2f} | {row['p10_ms_per_call']:.2f}-"
            f"{row['p90_ms_per_call']:.2f} | {row['min_ms_per_call']:.2f} | {row['ms_per_user']:.3f} | "
            f"{row['users_per_second']:,.0f} |"
        )
    return "\n".join(lines)


def markdown(result: dict, table: str) -> str:
    env, model = result["environment"], result["model"]
    load = env["load_average_1min_before_after"]
    return f"""# Recommendation latency per user (history length {result["history_length"]}, CPU)

Command: `{result["command"]}`: {result["rounds"]} rounds, each running every row once in a shuffled
order; median, p10-p90 and min over rounds (the min is the closest to an unloaded machine).

- Model: HyenaRec of the ML-1M size: {model["num_items"]:,} items, hidden {model["hidden_size"]}, \
{model["num_hidden_layers"]} layers, l_max {model["max_position_embeddings"]}, `conv_impl="{model["conv_impl"]}"`, \
random weights.
- Requests: {result["history_length"]} raw item ids per user; `recommend` returns the top {result["k"]} unseen items in \
raw ids.
- Machine: {env["cpu"]}, {env["cpu_count"]} cores, torch threads: {env["threads"]}, torch {env["torch"]}. The cores \
are shared with other jobs (1-minute load average {load[0]} before the timed rounds, {load[1]} after): read the \
ratios between rows of this run, not the absolute numbers against other machines.

{table}

{summary(result["results"])}

- `recommend`: raw ids in, raw ids out (vocabulary lookup, left padding, forward, seen-item exclusion, top-k,
  decoding), the whole serving path of `model.recommend`.
- `forward`: `model.score_histories` on a ready `(batch, {result["history_length"]})` index tensor.
- `exported-toeplitz` / `exported-fft`: the `torch.export` programs saved as `.pt2`
  (`hyenarec_hf.export.export_scorer`) with `conv_impl="toeplitz"` / `"fft"`, same tensor; unlike the eager model,
  they recompute the convolution kernels from the weights on every call.

Data: `recommend_latency.json`; plot: `recommend_latency.png`.
"""


def summary(rows: list[dict]) -> str:
    """Ratios read off this run: the cost of the raw-id serving path over the bare forward, and the best batch."""
    median = {(r["path"], r["batch"]): r["median_ms_per_call"] for r in rows}
    overhead = ", ".join(f"{median[('recommend', b)] / median[('forward', b)]:.2f}x at batch {b}" for b in BATCHES)
    per_user = {b: median[("recommend", b)] / b for b in BATCHES}
    best = min(per_user, key=per_user.get)
    return (
        f"`recommend` / `forward` (median): {overhead}. Cheapest per user: batches of {best} "
        f"({per_user[best]:.2f} ms per user with `recommend`)."
    )


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name in PATHS:
        points = sorted((r["batch"], r["ms_per_user"]) for r in rows if r["path"] == name)
        ax.plot(*zip(*points), marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(BATCHES, [str(b) for b in BATCHES])
    ax.set_xlabel("users per batch")
    ax.set_ylabel(f"ms per user (history length {LENGTH})")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
