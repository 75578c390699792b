"""What every benchmark script here records about the machine, and how it waits for a quiet CPU.

Imported by the sibling scripts (`python benchmarks/<script>.py` puts this folder on `sys.path`).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def command_line(script: str) -> str:
    """How this benchmark was started: `python benchmarks/<script>` with its arguments, led by `OMP_NUM_THREADS=N`
    when that was set (the thread count is part of what the timings mean)."""
    threads = os.environ.get("OMP_NUM_THREADS")
    prefix = [f"OMP_NUM_THREADS={threads}"] if threads else []
    return shlex.join([*prefix, "python", f"benchmarks/{script}", *sys.argv[1:]])


def warn_if_bf16_is_emulated(bf16: bool) -> None:
    """Say once, before the first run, that `--bf16` is emulated on this CPU (several times slower than float32).
    The sweeps capture each `hyenarec train`'s output, so the warning it logs itself would not be seen."""
    from hyenarec_hf.training import bf16_emulation_warning

    message = bf16_emulation_warning(bf16)
    if message:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def git_state() -> dict:
    """The commit measured and any uncommitted changes to the model code (the benchmark runs the working tree)."""

    def git(*command: str) -> str:
        try:
            return subprocess.run(["git", *command], cwd=HERE, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "modified_model_files": [line[3:] for line in git("status", "--porcelain", "../modeling").splitlines()],
    }


def machine_info(threads: int, device: torch.device | str = "cpu") -> dict:
    device = torch.device(device)
    info = {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": memory_total_gib(),
        "torch": torch.__version__,
        "threads": threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
        "device": str(device),
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "LD_PRELOAD", "THP_"))},
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    info["git"] = git_state()
    return info


def cpu_busy_fraction(interval: float) -> float | None:
    """Fraction of all CPUs busy over `interval` seconds, from /proc/stat (None where it is unavailable)."""

    def snapshot() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle0, total0 = snapshot()
        time.sleep(interval)
        idle1, total1 = snapshot()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


class IdleGate:
    """On a shared machine, hold each timing round until the other jobs leave the CPUs idle (checked while this
    process is idle between rounds), for at most `max_wait_s` in total; then time regardless, and say so."""

    def __init__(self, enabled: bool, busy_threshold: float = 0.15, max_wait_s: float = 1800.0):
        self.enabled = enabled
        self.busy_threshold = busy_threshold
        self.max_wait_s = max_wait_s
        self.waited_s = 0.0
        self.waits = 0

    def wait(self) -> None:
        if not self.enabled or self.waited_s >= self.max_wait_s:
            return
        busy = cpu_busy_fraction(0.1)
        if busy is None or busy <= self.busy_threshold:
            return
        self.waits += 1
        start = time.perf_counter()
        while busy is not None and busy > self.busy_threshold and self.waited_s < self.max_wait_s:
            busy = cpu_busy_fraction(1.0)
            self.waited_s += time.perf_counter() - start
            start = time.perf_counter()

    def summary(self) -> dict:
        return {
            "enabled": self.enabled,
            "busy_threshold": self.busy_threshold,
            "times_held": self.waits,
            "seconds_waited": round(self.waited_s, 1),
            "gave_up": self.enabled and self.waited_s >= self.max_wait_s,
        }

    @staticmethod
    def sentence(gate: dict | None) -> str:
        """One markdown sentence on how the timed rounds met other jobs."""
        if not gate or not gate["enabled"]:
            return "Rounds were timed as they came (`--no-wait-idle`), whatever else ran on the machine."
        held = (
            f"{gate['times_held']} time(s) it had to wait, {gate['seconds_waited']:.0f} s in all"
            if gate["times_held"]
            else "it never had to wait"
        )
        gave_up = (
            " It gave up waiting at `--max-wait`: later rounds ran alongside other jobs." if gate["gave_up"] else ""
        )
        return (
            f"Before each round the script waited until other jobs left the CPUs idle "
            f"(< {gate['busy_threshold']:.0%} busy): {held}.{gave_up}"
        )
