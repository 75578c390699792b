"""Where the FFT long convolution overtakes the Toeplitz GEMM on this CPU: the measurement behind
`HyenaRecConfig.conv_auto_threshold` (`conv_impl="auto"` picks the Toeplitz GEMM up to it, the FFT above it).

Times `causal_conv` alone, forward + backward (gradients for the input and the kernel, as in training), for
`impl="fft"` and `impl="toeplitz"` at batch 128 and 64 channels, over a grid of lengths. The input is laid out the way
`HyenaRecMixer` passes it (a `(batch, channels, L)` view of channel-major storage). The two implementations alternate
within every round and each time is the minimum over the rounds, so a noisy neighbour slows both alike; compare the
ratio, not the milliseconds, with other machines.

    python benchmarks/conv_impl_threshold.py            # writes benchmarks/conv_impl_threshold.{json,md}
    python benchmarks/conv_impl_threshold.py --quick    # fewer rounds, a few lengths

The threshold is the longest grid length up to which the Toeplitz GEMM wins at every grid length; `"auto"` then uses
it for `L <= threshold`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from bench_common import IdleGate, machine_info  # sibling module: same machine record, same idle gate
from tqdm import tqdm

from hyenarec_hf.modeling.modeling_hyenarec import causal_conv

HERE = Path(__file__).resolve().parent
LENGTHS = (32, 50, 100, 150, 200, 256, 300, 400, 512, 800)
IMPLS = ("fft", "toeplitz")


CLOCK = time.perf_counter  # `--cpu-time` (one thread only) switches to the thread's CPU time


def time_one(impl: str, u: torch.Tensor, kernel: torch.Tensor, grad: torch.Tensor) -> float:
    u.grad = kernel.grad = None
    start = CLOCK()
    causal_conv(u.transpose(0, 1), kernel, impl).backward(grad)
    return CLOCK() - start


def measure(
    length: int, batch: int, channels: int, budget_s: float, min_rounds: int, max_rounds: int, gate: IdleGate
) -> dict:
    torch.manual_seed(length)
    u = torch.randn(channels, batch, length, requires_grad=True)  # channel-major, as the mixer stores it
    decay = torch.exp(-torch.linspace(0, 5, length))
    kernel = (torch.randn(channels, length) * decay).requires_grad_()
    grad = torch.randn(channels, batch, length).transpose(0, 1)
    for impl in IMPLS:  # warm-up (FFT plans, allocator)
        time_one(impl, u, kernel, grad)
    gate.wait()
    first = {impl: time_one(impl, u, kernel, grad) for impl in IMPLS}
    rounds = int(min(max_rounds, max(min_rounds, budget_s / sum(first.values()))))
    samples = {impl: [first[impl]] for impl in IMPLS}
    wall = cpu = 0.0
    for r in range(rounds - 1):
        if r % 10 == 0:  # rounds are short here: check for other jobs every tenth round
            gate.wait()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for impl in IMPLS if r % 2 else IMPLS[::-1]:
            samples[impl].append(time_one(impl, u, kernel, grad))
        wall, cpu = wall + time.perf_counter() - wall0, cpu + time.process_time() - cpu0
    # CPU time our threads got per wall second and thread: ~1 on an idle machine, well below when other jobs compete.
    cpu_share = cpu / max(wall, 1e-9) / torch.get_num_threads()
    best = {impl: 1e3 * min(times) for impl, times in samples.items()}
    return {
        "length": length,
        "fft_ms": round(best["fft"], 3),
        "toeplitz_ms": round(best["toeplitz"], 3),
        "fft_over_toeplitz": round(best["fft"] / best["toeplitz"], 3),
        "rounds": rounds,
        "cpu_share": round(cpu_share, 2),
        "median_ms": {impl: round(1e3 * sorted(t)[len(t) // 2], 3) for impl, t in samples.items()},
    }


def crossover(rows: list[dict]) -> int:
    """Longest grid length up to which the Toeplitz GEMM is faster at every grid length (0: it never is)."""
    threshold = 0
    for row in sorted(rows, key=lambda r: r["length"]):
        if row["toeplitz_ms"] >= row["fft_ms"]:
            break
        threshold = row["length"]
    return threshold


def write_markdown(result: dict, path: Path) -> None:
    m = result["machine"]
    s = result["settings"]
    lines = [
        "# FFT vs Toeplitz long convolution: the `conv_auto_threshold` crossover",
        "",
        f"`causal_conv` alone, forward + backward (input and kernel gradients), batch {s['batch']}, {s['channels']} "
        f"channels, float32, {m['threads']} thread(s), {s['clock']} clock, min over interleaved rounds. {m['cpu']} "
        f"({m['logical_cpus']} logical CPUs, shared), torch {m['torch']}. Produced by "
        "`python benchmarks/conv_impl_threshold.py`.",
        "",
        "| L | FFT (ms) | Toeplitz (ms) | FFT / Toeplitz | faster | rounds | CPU share |",
        "|---:|---:|---:|---:|---|---:|---:|",
    ]
    for row in result["results"]:
        faster = "toeplitz" if row["toeplitz_ms"] < row["fft_ms"] else "fft"
        lines.append(
            f"| {row['length']} | {row['fft_ms']:.2f} | {row['toeplitz_ms']:.2f} | {row['fft_over_toeplitz']:.2f} | "
            f"{faster} | {row['rounds']} | {row['cpu_share']:.2f} |"
        )
    lines += [
        "",
        "CPU share: CPU time the benchmark's threads got per wall-clock second and thread (about 1 on an idle machine; "
        "lower means other jobs took the cores during that row, and its times are less reliable).",
        "",
        f"**Threshold: {result['threshold']}** (the longest grid length up to which the Toeplitz GEMM wins at every "
        'grid length). `HyenaRecConfig.conv_auto_threshold` defaults to this value, so `conv_impl="auto"` uses the '
        'Toeplitz GEMM for `L <= threshold` and the FFT above it, on CPU; on GPUs `"auto"` always uses the FFT.',
        "",
        "Why the FFT wins so early: the Toeplitz path does `3 * 2 * B * C * L^2` flops per forward + backward (three "
        "batched GEMMs, half of them on structural zeros) and moves a `(C, L, L)` matrix, while the FFT path does four "
        "real FFTs of size `n = 2L` (5-smooth) per row with a hand-written backward. Both implementations are exact "
        "to float64 round-off (`tests/test_modeling.py`).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of timing per length (default 20)")
    parser.add_argument("--quick", action="store_true", help="3 s per length, lengths 50, 200, 800")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the thread's CPU clock instead of the wall clock (needs --threads 1): robust to other jobs "
        "taking the cores, not to them sharing the caches",
    )
    parser.add_argument("--no-wait-idle", action="store_true", help="do not wait for other jobs to leave the CPUs")
    parser.add_argument("--max-wait", type=float, default=1800.0, help="most seconds to wait for idle CPUs in total")
    parser.add_argument("--out", type=Path, default=HERE / "conv_impl_threshold")
    args = parser.parse_args()
    if args.cpu_time:
        if args.threads != 1:
            parser.error("--cpu-time measures one thread's CPU time: use it with --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    torch.set_num_threads(args.threads)
    lengths = [50, 200, 800] if args.quick and args.lengths == list(LENGTHS) else args.lengths
    budget, min_rounds = (3.0, 3) if args.quick else (args.budget, 7)

    gate = IdleGate(enabled=not args.no_wait_idle, max_wait_s=args.max_wait)
    rows = []
    for length in tqdm(lengths, desc="lengths"):
        rows.append(measure(length, args.batch, args.channels, budget, min_rounds, max_rounds=200, gate=gate))
        row = rows[-1]
        tqdm.write(
            f"L={length:5d}  fft {row['fft_ms']:8.2f} ms  toeplitz {row['toeplitz_ms']:8.2f} ms  "
            f"fft/toeplitz {row['fft_over_toeplitz']:.2f}  cpu share {row['cpu_share']:.2f}"
        )
    result = {
        "machine": machine_info(args.threads),
        "settings": {
            "batch": args.batch,
            "channels": args.channels,
            "dtype": "float32",
            "clock": "thread CPU time" if args.cpu_time else "wall",
            "budget_s_per_length": budget,
            "quick": args.quick,
        },
        "results": rows,
        "threshold": crossover(rows),
    }
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["machine"]["idle_gate"] = gate.summary()
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out.with_suffix(".md"))
    print(f"threshold = {result['threshold']}  (wrote {args.out.with_suffix('.json')} and .md)")


if __name__ == "__main__":
    main()
