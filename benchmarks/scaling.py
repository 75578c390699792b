"""How HyenaRec and SASRec scale with history length: training throughput, peak training memory, serving latency.

Both models are the ML-1M size (3,416 items, width 64, 2 blocks, FFN 256, dropout 0.2), built with
`max_position_embeddings = L`; HyenaRec uses `conv_impl="auto"`, SASRec its SDPA attention with 2 heads. Every
length gets the same number of tokens per batch (`--tokens`, default 16,384: batch = max(1, tokens // L)).

- Training throughput: one real training step (forward, full-softmax cross-entropy over all items at every position,
  backward, AdamW step) on random histories, HyenaRec and SASRec interleaved in one process (the order alternates
  every round), after a warm-up; min and median over the rounds. A third row times the shared next-item head alone
  (item scores + cross-entropy + backward + AdamW on the item table, the same for both models), to show how much of a
  step no token mixer can save.
- Peak memory of a training step: each (model, L) runs in a fresh subprocess (`--memory-probe MODEL L`) that builds the
  model and the batch, runs a warm-up step on one short history, records its resident set size, runs two training
  steps and reports the growth of the peak RSS (`VmHWM`, reset after the warm-up) over that baseline. On CUDA: `torch.cuda.max_memory_allocated` over the baseline. A model whose
  probe dies (out of memory) or whose step takes longer than `--max-step-s` is skipped at that length and beyond.
- Serving latency: top-10 for one user (batch 1, eval mode) at `--latency-lengths` through `model.recommend` (raw ids
  in and out: `config.item_ids` is set) and the bare `model.score_histories` on a ready index tensor.

The machine may be shared: compare the HyenaRec / SASRec ratios within one run, never milliseconds across runs.
Nothing is asserted; the targets below are reported as met or missed, and where one is missed HyenaRec (and SASRec,
for contrast) is profiled at that length (torch.profiler, self time by op) and the markdown says what dominates.

    python benchmarks/scaling.py                      # ~10 min on 2 cores; writes benchmarks/scaling_cpu.{json,md,png}
    python benchmarks/scaling.py --quick              # L = 50, 200, 1000, one timed round: a smoke test
    python benchmarks/scaling.py --lengths 200 4000   # some lengths only
    python benchmarks/scaling.py --device cuda        # writes benchmarks/scaling_cuda.{json,md,png}
    python benchmarks/scaling.py --loss-type chunked_ce  # both models on the chunked loss: scaling_cpu_chunked_ce.*
    python benchmarks/scaling.py --report-only        # redraw the .md and .png from the saved .json
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from bench_common import IdleGate, machine_info  # sibling module: machine record, idle gate
from torch import nn
from tqdm import tqdm

from hyenarec_hf import HyenaRecConfig, HyenaRecForNextItemPrediction, SASRecConfig, SASRecForNextItemPrediction
from hyenarec_hf.modeling.next_item import chunked_cross_entropy, mask_padding_item, next_item_cross_entropy

HERE = Path(__file__).resolve().parent
LENGTHS = (50, 100, 200, 500, 1000, 2000, 4000, 8000)
QUICK_LENGTHS = (50, 200, 1000)
LATENCY_LENGTHS = (200, 2000)
MODELS = ("hyenarec", "sasrec")
LABELS = {"hyenarec": "HyenaRec", "sasrec": "SASRec", "head": "shared head only"}
NUM_ITEMS, HIDDEN, LAYERS, FFN, HEADS = 3416, 64, 2, 256, 2
STATE = {True: "met", False: "**missed**", None: "not measured"}
# `--loss-type`: what each model's training step computes after its blocks (the same for both models)
LOSS_DESCRIPTIONS = {
    "ce": 'full-softmax cross-entropy over all items at every position (`loss_type="ce"`: the `(tokens, items)` '
    "logits are built, as by default)",
    "chunked_ce": "the same full-softmax cross-entropy computed a chunk of positions at a time "
    '(`loss_type="chunked_ce"`: the `(tokens, items)` logits are never built)',
}
NOTES = ("<!-- scaling:notes:start -->", "<!-- scaling:notes:end -->")  # hand-written, kept across runs
# Reported against, never asserted.
TARGETS = {"throughput_ratio_at_200": 1.0, "throughput_ratio_from_4000": 6.0, "memory_ratio_at_4000": 0.25}
CATEGORIES = (
    ("GEMM (projections, FFN, item scores, attention)", r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear)$"),
    ("softmax cross-entropy over items", r"^aten::(_log_softmax|_log_softmax_backward_data|nll_loss.*)$"),
    ("attention softmax", r"^aten::(_softmax|_softmax_backward_data|_safe_softmax)$"),
    ("FFT", r"^aten::_fft_"),
    ("dropout (bernoulli, masks)", r"^aten::(bernoulli_|div_|_masked_scale|native_dropout.*)$"),
    (
        "elementwise mul / add / addcmul / where",
        r"^aten::(mul|mul_|add|add_|addcmul_|addcmul|sub|neg|where|masked_fill_?)$",
    ),
    ("copies, cat, fill, pad, index", r"^aten::(copy_|cat|fill_|zero_|clone|constant_pad_nd|flip|index|index_fill_?)$"),
    ("AdamW (foreach ops)", r"^aten::_foreach_|^aten::(lerp_|addcdiv_|sqrt)$|^Optimizer\."),
    ("reductions", r"^aten::(sum|mean)$"),
    ("layer norm", r"layer_norm"),
    ("activations (gelu, sigmoid, exp)", r"^aten::(gelu|gelu_backward|sigmoid|sigmoid_backward|exp|softplus.*)$"),
)


# ----------------------------------------------------------------------------------------------------------------------
# Models, batches, one training step
# ----------------------------------------------------------------------------------------------------------------------


def build_model(name: str, length: int, item_ids: list[str] | None = None, loss_type: str = "ce") -> nn.Module:
    """The ML-1M-sized model `name` ("hyenarec" or "sasrec") reading histories of up to `length` items."""
    common = {
        "loss_type": loss_type,
        "num_items": NUM_ITEMS,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "intermediate_size": FFN,
        "max_position_embeddings": length,
        "item_ids": item_ids,
    }
    torch.manual_seed(0)
    with warnings.catch_warnings():  # legendre_order=16 > 2 sqrt(50) warns at L=50; irrelevant for speed
        warnings.simplefilter("ignore")
        if name == "hyenarec":
            return HyenaRecForNextItemPrediction(HyenaRecConfig(conv_impl="auto", **common))
        if name == "sasrec":
            return SASRecForNextItemPrediction(SASRecConfig(num_attention_heads=HEADS, **common))
    raise ValueError(f"unknown model {name!r}; use one of {MODELS}.")


def make_batch(length: int, tokens: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random full-length histories: `input_ids`, `attention_mask` `(batch, L)` and next-item `labels` `(batch, L)`."""
    batch = max(1, tokens // length)
    generator = torch.Generator().manual_seed(length)
    items = torch.randint(1, NUM_ITEMS + 1, (batch, length + 1), generator=generator)
    input_ids = items[:, :-1].contiguous().to(device)
    return {"input_ids": input_ids, "attention_mask": input_ids.ne(0), "labels": items[:, 1:].contiguous().to(device)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrainStep:
    """One training step of `model` on a fixed batch, as the Trainer runs it: loss, backward, AdamW, zero grads."""

    def __init__(self, model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device):
        self.model = model.to(device).train()
        self.batch = batch
        self.device = device
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.01)

    def __call__(self, batch: dict[str, torch.Tensor] | None = None) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        self.model(**(batch or self.batch)).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        synchronize(self.device)
        return time.perf_counter() - start


class HeadStep(TrainStep):
    """The next-item head alone: `(batch, L, hidden)` states -> scores over all items -> cross-entropy -> backward ->
    AdamW on the item table. Both models run exactly this after their blocks (`NextItemMixin.score`)."""

    def __init__(self, batch: dict[str, torch.Tensor], device: torch.device, loss_type: str = "ce"):
        torch.manual_seed(0)
        self.loss_type = loss_type
        table = nn.Embedding(NUM_ITEMS + 1, HIDDEN, padding_idx=0)
        super().__init__(table, batch, device)
        shape = (*batch["labels"].shape, HIDDEN)
        self.hidden = torch.randn(shape, device=device, requires_grad=True)

    def __call__(self, batch: dict[str, torch.Tensor] | None = None) -> float:
        if batch is not None:
            raise ValueError("HeadStep runs on the batch it was built with.")
        synchronize(self.device)
        start = time.perf_counter()
        if self.loss_type == "chunked_ce":
            chunked_cross_entropy(self.hidden, self.batch["labels"], self.model.weight).backward()
        else:
            logits = mask_padding_item(self.hidden @ self.model.weight.transpose(0, 1))
            next_item_cross_entropy(logits, self.batch["labels"]).backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.hidden.grad = None
        synchronize(self.device)
        return time.perf_counter() - start


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------------------------------------------


def trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc `malloc_trim`), so the RSS baseline holds no dead pages."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_bytes() -> int:
    """Current resident set size of this process."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Set this process's resident-set high-water mark (`VmHWM`) to its current RSS (Linux >= 4.0); False if the
    kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    """This process's peak resident set size, `VmHWM` of `/proc/self/status`.

    Not `getrusage(RUSAGE_SELF).ru_maxrss`: Linux carries that one over from the parent across fork and exec, so a
    probe started by a parent that once held 3 GB reports at least 3 GB whatever it does itself. `VmHWM` belongs to
    this process image's own memory map."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError("/proc/self/status has no VmHWM line: peak RSS cannot be read on this system.")


# ----------------------------------------------------------------------------------------------------------------------
# Peak memory: one fresh subprocess per (model, L)
# ----------------------------------------------------------------------------------------------------------------------


def memory_probe(name: str, length: int, args) -> None:
    """Body of `--memory-probe MODEL L`: print one JSON line with the peak memory growth of two training steps."""
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    model = build_model(name, length, loss_type=args.loss_type)
    step = TrainStep(model, make_batch(length, args.tokens, device), device)
    # One step on a single short history first: it pages in the code of every op the real step runs (tens of MB of
    # RSS that are not memory the step needs) and creates the AdamW state. Up to 128 items, so HyenaRec's "auto" picks
    # the same convolution as at L.
    short = min(length, 128)
    step(make_batch(short, short, device))
    release(device)
    trim_heap()
    result = {"model": name, "length": length, "batch": step.batch["input_ids"].shape[0]}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = rss_bytes()
        # Without the reset the high-water mark still holds the imports' and the warm-up's peak (reported as such).
        result["peak_reset"] = reset_peak_rss()
        result["peak_before_steps_mb"] = round(peak_rss_bytes() / 2**20, 1)
        result["inherited_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    times = []
    try:
        for _ in range(2):
            times.append(step())
            if times[-1] > 10.0:  # a slow step: its peak is the step's peak, a second one would only cost time
                break
    except RuntimeError as error:
        if not is_out_of_memory(error):
            raise
        print(json.dumps({**result, "status": "out of memory"}), flush=True)
        return
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        result["method"] = "torch.cuda.max_memory_allocated - allocated after model and batch construction"
    else:
        peak = peak_rss_bytes()
        result["method"] = (
            "VmHWM (reset to the current RSS after the warm-up) - RSS after imports, model, optimizer, batch and a "
            "one-history warm-up step"
        )
    result.update(
        status="ok",
        baseline_mb=round(baseline / 2**20, 1),
        peak_growth_mb=round((peak - baseline) / 2**20, 1),
        step_s=[round(t, 3) for t in times],
    )
    print(json.dumps(result), flush=True)


def run_memory_probe(name: str, length: int, args, gate: IdleGate) -> dict:
    """Run `--memory-probe` in a fresh interpreter; a probe that dies or runs too long comes back as a status."""
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", name, str(length)]
    command += ["--tokens", str(args.tokens), "--threads", str(args.threads), "--device", args.device]
    command += ["--max-step-s", str(args.max_step_s), "--loss-type", args.loss_type]
    timeout = 2 * args.max_step_s + 60  # imports, construction and at most two steps
    gate.wait()
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"model": name, "length": length, "status": f"timeout: no result within {timeout:.0f} s"}
    wall = round(time.perf_counter() - start, 1)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        return {**json.loads(lines[-1]), "probe_wall_s": wall}
    if proc.returncode in (-9, 137):
        status = "killed by SIGKILL (the kernel's out-of-memory killer, most likely)"
    else:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        status = f"failed (exit {proc.returncode}): {tail[:200]}"
    return {"model": name, "length": length, "status": status, "probe_wall_s": wall}


# ----------------------------------------------------------------------------------------------------------------------
# Training throughput: HyenaRec and SASRec interleaved
# ----------------------------------------------------------------------------------------------------------------------


def measure_training(length: int, args, skipped: dict[str, str], gate: IdleGate) -> dict:
    """Time `args.warmup` + up to `args.repeats` interleaved training steps of each model not in `skipped`."""
    device = torch.device(args.device)
    batch = make_batch(length, args.tokens, device)
    size = batch["input_ids"].shape[0]
    steps: dict[str, TrainStep] = {}
    for name in MODELS:
        if name not in skipped:
            steps[name] = TrainStep(build_model(name, length, loss_type=args.loss_type), batch, device)
    if not args.no_head:
        steps["head"] = HeadStep(batch, device, args.loss_type)
    last: dict[str, float] = {}
    for name in list(steps):
        gate.wait()
        try:
            for _ in range(args.warmup):
                last[name] = steps[name]()
                if last[name] > args.max_step_s:
                    break
        except RuntimeError as error:
            if not is_out_of_memory(error):
                raise
            skipped[name] = f"out of memory at L={length}"
            del steps[name]
            release(device)
            continue
        if last[name] > args.max_step_s:
            skipped[name] = f"one step took {last[name]:.3g} s (> {args.max_step_s:g} s) at L={length}"
            del steps[name]
            release(device)
    names = list(steps)
    round_s = sum(last[name] for name in names)
    repeats = max(1, min(args.repeats, max(args.min_repeats, int(args.length_budget_s / max(round_s, 1e-9)))))
    samples: dict[str, list[float]] = {name: [] for name in names}
    elapsed = cpu = 0.0
    for r in range(repeats):
        gate.wait()  # between rounds, never inside one: the models of a round see the same conditions
        wall, cpu0 = time.perf_counter(), time.process_time()
        for name in names if r % 2 == 0 else names[::-1]:
            samples[name].append(steps[name]())
        elapsed += time.perf_counter() - wall
        cpu += time.process_time() - cpu0
    # CPU time our threads got per wall second and thread: ~1 on an idle machine, well below when other jobs compete.
    cpu_share = cpu / max(elapsed, 1e-9) / torch.get_num_threads()
    row = {
        "length": length,
        "batch": size,
        "tokens": size * length,
        "repeats": repeats,
        "cpu_share": round(cpu_share, 2) if device.type == "cpu" else None,
        "min_s": {name: round(min(t), 5) for name, t in samples.items()},
        "median_s": {name: round(statistics.median(t), 5) for name, t in samples.items()},
        "all_s": {name: [round(x, 5) for x in t] for name, t in samples.items()},
        "skipped": {name: reason for name, reason in skipped.items() if name in MODELS},
    }
    if "hyenarec" in steps:
        row["hyenarec_conv_impl"] = steps["hyenarec"].model.model.layers[0].mixer.conv_impl(length, device)
    for stat in ("min", "median"):
        times = row[f"{stat}_s"]
        row[f"{stat}_items_per_s"] = {name: round(size * length / t, 1) for name, t in times.items()}
        row[f"{stat}_sequences_per_s"] = {name: round(size / t, 3) for name, t in times.items()}
        if "hyenarec" in times and "sasrec" in times:
            row[f"throughput_ratio_{stat}"] = round(times["sasrec"] / times["hyenarec"], 3)
    if "hyenarec" in row["min_s"] and "sasrec" in skipped and "step took" in skipped["sasrec"]:
        # SASRec needs more than max_step_s per step: HyenaRec is at least this much faster.
        row["throughput_ratio_lower_bound"] = round(args.max_step_s / row["min_s"]["hyenarec"], 1)
    del steps
    release(device)
    return row


# ----------------------------------------------------------------------------------------------------------------------
# Serving latency: one user, top 10
# ----------------------------------------------------------------------------------------------------------------------


def measure_latency(length: int, args, gate: IdleGate) -> dict:
    device = torch.device(args.device)
    item_ids = [str(1000 + i) for i in range(1, NUM_ITEMS + 1)]  # raw ids that are not the indices
    generator = torch.Generator().manual_seed(length)
    indices = torch.randint(1, NUM_ITEMS + 1, (length,), generator=generator)
    history = [item_ids[i - 1] for i in indices.tolist()]
    input_ids = indices[None].to(device)
    attention_mask = input_ids.ne(0)
    calls = {}
    for name in MODELS:
        model = build_model(name, length, item_ids=item_ids).to(device).eval()

        def recommend(model=model) -> list:
            return model.recommend(history, k=10)  # returns Python lists: synchronises by itself

        def score(model=model) -> torch.Tensor:
            scores = model.score_histories(input_ids, attention_mask)
            synchronize(device)
            return scores

        calls[f"{name}/recommend"] = recommend
        calls[f"{name}/score_histories"] = score
    top = {name: calls[f"{name}/recommend"]() for name in MODELS}
    assert all(len(items) == 10 and set(items) <= set(item_ids) for items in top.values())
    for call in calls.values():
        for _ in range(args.latency_warmup):
            call()
    samples = defaultdict(list)
    names = list(calls)
    gate.wait()
    for r in range(args.latency_rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - start)
    row = {"length": length, "rounds": args.latency_rounds, "min_ms": {}, "median_ms": {}, "p90_ms": {}}
    for name, times in samples.items():
        times = sorted(times)
        row["min_ms"][name] = round(1e3 * times[0], 3)
        row["median_ms"][name] = round(1e3 * statistics.median(times), 3)
        row["p90_ms"][name] = round(1e3 * times[min(len(times) - 1, int(0.9 * len(times)))], 3)
    for call in ("recommend", "score_histories"):
        row[f"{call}_latency_ratio_median"] = round(
            row["median_ms"][f"sasrec/{call}"] / row["median_ms"][f"hyenarec/{call}"], 3
        )
    release(device)
    return row


# ----------------------------------------------------------------------------------------------------------------------
# Profile where a target is missed
# ----------------------------------------------------------------------------------------------------------------------


def profile_step(name: str, length: int, args, gate: IdleGate) -> dict:
    """torch.profiler over `args.profile_steps` training steps: self time and allocated memory by op."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(args.device)
    model = build_model(name, length, loss_type=args.loss_type)
    step = TrainStep(model, make_batch(length, args.tokens, device), device)
    step()
    gate.wait()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, profile_memory=True) as prof:
        for _ in range(args.profile_steps):
            step()
    time_key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    memory_key = "self_device_memory_usage" if device.type == "cuda" else "self_cpu_memory_usage"
    # On CUDA the averages hold each op (device time of the kernels it launched) and each kernel again on its own, plus
    # GPU-side copies of record_function ranges: keep the ops (CPU-side events, all of them on CPU) only, so no time or
    # allocation is counted twice.
    ops = [e for e in prof.key_averages() if e.device_type == DeviceType.CPU]
    events = [e for e in ops if getattr(e, time_key) > 0]
    total = sum(getattr(e, time_key) for e in events)
    categories = defaultdict(float)
    for e in events:
        label = next((c for c, pattern in CATEGORIES if re.search(pattern, e.key)), "other")
        categories[label] += getattr(e, time_key)
    n = args.profile_steps
    by_time = sorted(events, key=lambda e: -getattr(e, time_key))[: args.profile_top]
    allocating = [e for e in ops if getattr(e, memory_key) > 0]
    by_memory = sorted(allocating, key=lambda e: -getattr(e, memory_key))[: args.profile_top]
    result = {
        "model": name,
        "length": length,
        "batch": step.batch["input_ids"].shape[0],
        "steps": n,
        "self_ms_per_step": round(total / n / 1e3, 2),
        "top_ops": [
            {
                "op": e.key,
                "self_ms_per_step": round(getattr(e, time_key) / n / 1e3, 2),
                "share": round(getattr(e, time_key) / total, 4),
                "calls_per_step": e.count // n,
            }
            for e in by_time
        ],
        "top_allocating_ops": [
            {"op": e.key, "allocated_mb_per_step": round(getattr(e, memory_key) / n / 2**20, 1)} for e in by_memory
        ],
        "categories": {k: round(v / total, 4) for k, v in sorted(categories.items(), key=lambda kv: -kv[1])},
    }
    del step, prof
    release(device)
    return result


def profile_missed(result: dict, args, gate: IdleGate) -> list[dict]:
    """Profiles at `--profile-lengths` (default: every length where a target is missed), skipping a model that was
    skipped at that length or whose step is slower than `--profile-max-step-s`."""
    if args.profile_lengths is None:
        lengths = sorted({t["length"] for t in result["targets"] if t["met"] is False})
    else:
        lengths = args.profile_lengths
    profiles = []
    for length in tqdm(lengths, desc="profiles"):
        row = next((r for r in result["training"] if r["length"] == length), None)
        for name in args.profile_models:
            step_s = row["min_s"].get(name) if row else None
            if row is not None and (step_s is None or step_s > args.profile_max_step_s):
                continue  # skipped at this length, or too slow to profile within the run's budget
            profiles.append(profile_step(name, length, args, gate))
    return profiles


def missed_targets(result: dict) -> list[dict]:
    """Every target with its measured value; `met` is None where it could not be measured."""
    rows = {row["length"]: row for row in result["training"]}
    memory = {row["length"]: row for row in result["memory"]}
    targets = []

    def ratio(length: int) -> float | None:
        row = rows.get(length)
        if row is None:
            return None
        return row.get("throughput_ratio_min", row.get("throughput_ratio_lower_bound"))

    value = ratio(200)
    goal = TARGETS["throughput_ratio_at_200"]
    targets.append(
        {
            "target": f"throughput ratio >= {goal:g} at L=200",
            "length": 200,
            "value": value,
            "met": None if value is None else value >= goal,
        }
    )
    goal = TARGETS["throughput_ratio_from_4000"]
    for length in sorted(L for L in rows if L >= 4000):
        value = ratio(length)
        targets.append(
            {
                "target": f"throughput ratio >= {goal:g} at L={length}",
                "length": length,
                "value": value,
                "met": None if value is None else value >= goal,
            }
        )
    goal = TARGETS["memory_ratio_at_4000"]
    value = memory.get(4000, {}).get("memory_ratio")
    targets.append(
        {
            "target": f"peak memory HyenaRec / SASRec <= {goal:g} at L=4000",
            "length": 4000,
            "value": value,
            "met": None if value is None else value <= goal,
        }
    )
    return targets


# ----------------------------------------------------------------------------------------------------------------------
# Reports: table, JSON, markdown, plot
# ----------------------------------------------------------------------------------------------------------------------


def fmt(value, spec: str = ".2f", missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def ratio_cell(row: dict) -> str:
    if "throughput_ratio_min" in row:
        return f"**{row['throughput_ratio_min']:.2f}**"
    if "throughput_ratio_lower_bound" in row:
        return f"**> {row['throughput_ratio_lower_bound']:.1f}** (SASRec skipped)"
    return "–"


def memory_cell(row: dict, name: str) -> str:
    probe = row.get(name) or {}
    if probe.get("status") == "ok":
        return f"{probe['peak_growth_mb']:,.0f}"
    return probe.get("status", "–")


def print_table(result: dict) -> None:
    memory = {row["length"]: row for row in result["memory"]}
    print(
        f"\n{'L':>5} {'batch':>5} {'Hyena items/s':>14} {'SASRec items/s':>15} {'ratio':>7} "
        f"{'Hyena MB':>9} {'SASRec MB':>10} {'mem ratio':>9}  notes"
    )
    for row in result["training"]:
        items = row["min_items_per_s"]
        mem = memory.get(row["length"], {})
        ratio = row.get("throughput_ratio_min", row.get("throughput_ratio_lower_bound"))
        bound = ">" if "throughput_ratio_lower_bound" in row else " "
        notes = "; ".join(f"{LABELS[k]}: {v}" for k, v in row["skipped"].items())
        print(
            f"{row['length']:5d} {row['batch']:5d} {fmt(items.get('hyenarec'), '14,.0f'):>14} "
            f"{fmt(items.get('sasrec'), '15,.0f'):>15} {bound}{fmt(ratio, '6.2f'):>6} "
            f"{memory_cell(mem, 'hyenarec'):>9} {memory_cell(mem, 'sasrec'):>10} "
            f"{fmt(mem.get('memory_ratio'), '9.3f'):>9}  {notes}"
        )
    for row in result["latency"]:
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in row["median_ms"].items())
        print(f"latency L={row['length']} (median ms): {parts}")
    for target in result["targets"]:
        print(f"target: {target['target']}: {fmt(target['value'], '.3f')} -> {STATE[target['met']].strip('*')}")


def training_markdown(result: dict) -> list[str]:
    memory = {row["length"]: row for row in result["memory"]}
    lines = [
        "| L | batch | HyenaRec seq/s | HyenaRec items/s | SASRec seq/s | SASRec items/s | **throughput ratio** "
        "(min) | ratio (median) | head share of HyenaRec step | HyenaRec conv | rounds | CPU share | notes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for row in result["training"]:
        seq, items = row["min_sequences_per_s"], row["min_items_per_s"]
        times = row["min_s"]
        head = times["head"] / times["hyenarec"] if "head" in times and "hyenarec" in times else None
        notes = "; ".join(f"{LABELS[k]} skipped: {v}" for k, v in row["skipped"].items())
        if row["length"] in memory and memory[row["length"]].get("notes"):
            notes = "; ".join(filter(None, [notes, memory[row["length"]]["notes"]]))
        lines.append(
            f"| {row['length']} | {row['batch']} | {fmt(seq.get('hyenarec'), ',.2f')} | "
            f"{fmt(items.get('hyenarec'), ',.0f')} | {fmt(seq.get('sasrec'), ',.2f')} | "
            f"{fmt(items.get('sasrec'), ',.0f')} | {ratio_cell(row)} | {fmt(row.get('throughput_ratio_median'))} | "
            f"{fmt(head, '.0%')} | {row.get('hyenarec_conv_impl', '–')} | {row['repeats']} | "
            f"{fmt(row['cpu_share'])} | {notes} |"
        )
    return lines


def memory_markdown(result: dict) -> list[str]:
    lines = [
        "| L | batch | HyenaRec peak (MB) | SASRec peak (MB) | **memory ratio** HyenaRec / SASRec | "
        "HyenaRec step in probe (s) | SASRec step in probe (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["memory"]:
        step = {name: (row.get(name) or {}).get("step_s") for name in MODELS}
        lines.append(
            f"| {row['length']} | {row['batch']} | {memory_cell(row, 'hyenarec')} | {memory_cell(row, 'sasrec')} | "
            f"**{fmt(row.get('memory_ratio'), '.3f')}** | {fmt(step['hyenarec'] and min(step['hyenarec']))} | "
            f"{fmt(step['sasrec'] and min(step['sasrec']))} |"
        )
    return lines


def latency_markdown(result: dict) -> list[str]:
    lines = [
        "| L | call | HyenaRec median (ms) | HyenaRec min (ms) | SASRec median (ms) | SASRec min (ms) | "
        "SASRec / HyenaRec (median) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["latency"]:
        for call in ("recommend", "score_histories"):
            med, low = row["median_ms"], row["min_ms"]
            lines.append(
                f"| {row['length']} | `{call}` | {med[f'hyenarec/{call}']:.2f} | {low[f'hyenarec/{call}']:.2f} | "
                f"{med[f'sasrec/{call}']:.2f} | {low[f'sasrec/{call}']:.2f} | "
                f"**{row[f'{call}_latency_ratio_median']:.2f}** |"
            )
    return lines


def profile_markdown(profiles: list[dict], unit: str) -> list[str]:
    lines = []
    for p in profiles:
        lines += [
            "",
            f"**{LABELS[p['model']]}, L = {p['length']}** (batch {p['batch']}): {p['self_ms_per_step']:,.0f} ms of "
            f"self {unit} time per training step (profiler on, {p['steps']} steps).",
            "",
            "| by category (op name patterns) | share |",
            "|---|---:|",
            *(f"| {name} | {share:.0%} |" for name, share in p["categories"].items() if share >= 0.005),
            "",
            f"| top ops (self {unit} time) | ms / step | share | calls / step |",
            "|---|---:|---:|---:|",
            *(
                f"| `{op['op']}` | {op['self_ms_per_step']:,.1f} | {op['share']:.0%} | {op['calls_per_step']} |"
                for op in p["top_ops"]
            ),
            "",
            "| top allocating ops (self, net of frees) | MB / step |",
            "|---|---:|",
            *(f"| `{op['op']}` | {op['allocated_mb_per_step']:,.0f} |" for op in p["top_allocating_ops"][:6]),
        ]
    return lines


def analysis_markdown(result: dict) -> list[str]:
    """What dominates at each missed target, from the head-only timing, the memory probes and the profiles."""
    rows = {row["length"]: row for row in result["training"]}
    memory = {row["length"]: row for row in result["memory"]}
    profiles = {(p["model"], p["length"]): p for p in result["profiles"]}
    tokens = result["settings"]["tokens"]
    logits_mb = tokens * (NUM_ITEMS + 1) * 4 / 2**20
    lines = []
    for target in result["targets"]:
        if target["met"] is not False:
            continue
        length = target["length"]
        lines.append(f"- **{target['target']}**: measured {target['value']:.3f}.")
        if target["target"].startswith("throughput"):
            row = rows[length]
            times = row["min_s"]
            lines.append(
                f"  - Step times (min): HyenaRec {1e3 * times['hyenarec']:,.0f} ms, SASRec "
                f"{1e3 * times['sasrec']:,.0f} ms."
            )
            if "head" in times:
                head = times["head"]
                lines.append(
                    f"  - The shared next-item head alone (scores over {NUM_ITEMS:,} items at {row['tokens']:,} "
                    f"positions, cross-entropy, backward, AdamW) takes {1e3 * head:,.0f} ms = "
                    f"{head / times['hyenarec']:.0%} of HyenaRec's step and {head / times['sasrec']:.0%} of SASRec's. "
                    f"Even a token mixer that cost nothing would reach a ratio of only "
                    f"{times['sasrec'] / head:.2f} here; HyenaRec's two blocks cost "
                    f"{1e3 * max(times['hyenarec'] - head, 0):,.0f} ms, SASRec's {1e3 * max(times['sasrec'] - head, 0):,.0f} ms "
                    f"(ratio of the non-head parts {max(times['sasrec'] - head, 0) / max(times['hyenarec'] - head, 1e-9):.2f})."
                )
        else:
            row = memory[length]
            floor = (
                f"One `(tokens, {NUM_ITEMS + 1:,})` float32 logits tensor is {logits_mb:,.0f} MB at {tokens:,} tokens per "
                "batch, and the full-softmax loss holds several of them at its peak in both models (two since commit "
                "db08dff: the softmax it saves for the backward and the logits' gradient; three before it, with "
                "`F.cross_entropy`; the commit measured is on the Machine line): a floor that does not depend on "
                "the token mixer (`--loss-type chunked_ce` removes it)."
                if result["settings"].get("loss_type", "ce") == "ce"
                else "The loss scores one chunk of positions at a time in both models, so no logits floor is left."
            )
            lines.append(
                f"  - Peak growth: HyenaRec {row['hyenarec']['peak_growth_mb']:,.0f} MB, SASRec "
                f"{row['sasrec']['peak_growth_mb']:,.0f} MB. {floor}"
            )
        for name in MODELS:
            p = profiles.get((name, length))
            if p is None:
                continue
            cats = ", ".join(f"{c} {share:.0%}" for c, share in list(p["categories"].items())[:4])
            ops = ", ".join(f"`{op['op']}` {op['share']:.0%}" for op in p["top_ops"][:4])
            allocs = ", ".join(
                f"`{op['op']}` {op['allocated_mb_per_step']:,.0f} MB" for op in p["top_allocating_ops"][:3]
            )
            lines.append(
                f"  - {LABELS[name]} profile at L = {length}: {cats}. Top ops: {ops}. Largest allocations per step: "
                f"{allocs}."
            )
    return lines


def write_markdown(result: dict, path: Path) -> None:
    m, s = result["machine"], result["settings"]
    device = m["device"]
    hardware = (
        f"{m.get('gpu')} (CUDA {m.get('cuda')}), host CPU {m['cpu']}"
        if device.startswith("cuda")
        else f"{m['cpu']} ({m['logical_cpus']} logical CPUs, {m['memory_gib']} GiB RAM)"
    )
    unit = "GPU" if device.startswith("cuda") else "CPU"
    method = (
        "`torch.cuda.max_memory_allocated` during two training steps minus the memory allocated after building the "
        "model, the optimizer and the batch, in a fresh process per (model, L)"
        if device.startswith("cuda")
        else "in a fresh Python process per (model, L) (`python benchmarks/scaling.py --memory-probe MODEL L`), the "
        "process builds the model, the AdamW optimizer and the batch, runs one training step on a single history of "
        "min(L, 128) items (so the code of every op is already paged in and the AdamW state exists), hands freed heap "
        "back to the OS (`malloc_trim`) and reads its resident set size: the baseline. It then runs two full training "
        "steps (one where a step takes over 10 s); the number reported is the peak RSS (`VmHWM` of `/proc/self/status`, "
        "reset to the current RSS through `/proc/self/clear_refs` just before the steps) minus that "
        "baseline. It counts everything the steps made resident (activations saved for backward, gradients, "
        "temporaries, allocator slack), not only live tensors; some 20-40 MB of it is allocator slack that shows up "
        "even with a 256-token batch, in both models. (Results committed before 2026-11-24 read "
        "`getrusage(RUSAGE_SELF).ru_maxrss` instead, which Linux carries over from the parent across fork and exec: "
        "from L = 100 on, the smaller model's number there was the parent's peak, not its own.)"
    )
    lines = [
        f"# Scaling with history length: HyenaRec vs SASRec ({unit})",
        "",
        f"Command: `{result['command']}` (written by `benchmarks/scaling.py`; raw numbers in "
        f"`{path.with_suffix('.json').name}`, plot `{path.with_suffix('.png').name}`).",
        "",
        f"- Models: ML-1M size, {NUM_ITEMS:,} items, width {HIDDEN}, {LAYERS} blocks, FFN {FFN}, dropout 0.2, "
        f'`max_position_embeddings = L`, random weights. HyenaRec `conv_impl="auto"` (Toeplitz GEMM up to '
        f"L = {s['conv_auto_threshold']}, FFT above); SASRec {HEADS} heads, `F.scaled_dot_product_attention` with a "
        "boolean causal mask and attention dropout 0.2 (as in training).",
        f"- Batches: {s['tokens']:,} tokens per batch (batch = max(1, {s['tokens']:,} // L)), random full-length "
        "histories, a label at every position.",
        f"- Training step: forward, {LOSS_DESCRIPTIONS[s.get('loss_type', 'ce')]}, backward, AdamW "
        "(lr 1e-3), zero grads: what `transformers.Trainer` runs per batch. HyenaRec and SASRec (and the shared "
        "head alone) alternate every round in one process, after "
        f"{s['warmup']} warm-up step(s) each; min and median over the rounds.",
        f"- Machine: {hardware}, torch {m['torch']} ({m['cpu_capability']}), {m['threads']} threads, float32"
        + (f", commit {m['git']['commit']}" if m.get("git", {}).get("commit") else "")
        + ". Load "
        f"average {m['load_average_at_start'][0]:.1f} at start, {m['load_average_at_end'][0]:.1f} at end: the cores "
        "may be shared with other jobs, so read the ratios (both models see the same conditions), not the absolute "
        f"numbers. {IdleGate.sentence(m.get('idle_gate'))}",
        f"- Skips: a model is dropped at a length (and all longer ones) where one step takes over {s['max_step_s']:.0f} s "
        "or runs out of memory; the table says so.",
        "",
        "## Training throughput",
        "",
        "Items/s = batch × L / step time: every position of every history is one training item (one next-item "
        "prediction scored against the whole catalogue); sequences/s = batch / step time.",
        "",
        "Throughput ratio = HyenaRec items/s / SASRec items/s (= SASRec step time / HyenaRec step time, from the "
        "minimum over rounds): **> 1 means HyenaRec trains faster**. *Head share*: time of the shared next-item head "
        f"alone (scores for all {NUM_ITEMS:,} items at {s['tokens']:,} positions, cross-entropy, its backward and "
        "AdamW on the item table) over HyenaRec's whole step; no token mixer can make that part faster.",
        "",
        *training_markdown(result),
        "",
        "CPU share: CPU time the benchmark's threads got per wall-clock second and thread while that row was timed "
        "(about 1 on an idle machine; lower means other jobs took the cores).",
        "",
        "## Peak memory of a training step",
        "",
        f"Method: {method}. Memory ratio = HyenaRec / SASRec (**< 1 means HyenaRec needs less**).",
        "",
        *memory_markdown(result),
        "",
        "## Serving latency: top 10 for one user (batch 1)",
        "",
        f"Eval mode, {result['settings']['latency_rounds']} interleaved rounds after "
        f"{result['settings']['latency_warmup']} warm-up calls. `recommend`: raw item ids in (`config.item_ids` "
        "set), vocabulary lookup, forward, seen-item exclusion, top-k, raw ids out. `score_histories`: the bare "
        "forward on a ready `(1, L)` index tensor, scores for every item. HyenaRec caches its eval-mode kernels "
        "across calls (as a server would).",
        "",
        *latency_markdown(result),
        "",
        "## Targets (reported, not asserted)",
        "",
        "| target | measured | |",
        "|---|---:|---|",
        *(f"| {t['target']} | {fmt(t['value'], '.3f')} | {STATE[t['met']]} |" for t in result["targets"]),
    ]
    analysis = analysis_markdown(result)
    if analysis:
        lines += ["", "## What dominates where a target is missed", "", *analysis]
    # Hand-written notes between the markers survive a re-run.
    notes = f"{NOTES[0]}\n{NOTES[1]}"
    if path.exists():
        text = path.read_text()
        start, end = text.find(NOTES[0]), text.find(NOTES[1])
        if 0 <= start < end:
            notes = text[start : end + len(NOTES[1])]
    lines += ["", "## Reading", "", notes]
    if result["profiles"]:
        rerun = result.get("profiles_command")
        again = ["", f"Profiled again after the run with `{rerun}`."] if rerun else []
        lines += ["", "## Profiles", *again, *profile_markdown(result["profiles"], unit)]
    path.write_text("\n".join(lines) + "\n")


def draw_plot(result: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"hyenarec": ("tab:blue", "o"), "sasrec": ("tab:orange", "s"), "head": ("tab:gray", ":")}
    for name in (*MODELS, "head"):
        points = [(r["length"], r["min_items_per_s"][name]) for r in result["training"] if name in r["min_s"]]
        if not points:
            continue
        color, marker = styles[name]
        if name == "head":
            left.plot(*zip(*points), linestyle=":", color=color, label="shared head alone (upper bound)")
        else:
            left.plot(*zip(*points), marker=marker, color=color, label=LABELS[name])
        skipped = [r["length"] for r in result["training"] if name in r["skipped"]]
        for length in skipped:
            left.axvline(length, color=color, alpha=0.25, linestyle="--")
    left.set(xscale="log", yscale="log", xlabel="history length L", ylabel="training items / s")
    left.set_title(f"Training throughput ({result['settings']['tokens']:,} tokens / batch)", fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    for name in MODELS:
        points = [
            (r["length"], r[name]["peak_growth_mb"])
            for r in result["memory"]
            if (r.get(name) or {}).get("status") == "ok"
        ]
        if points:
            color, marker = styles[name]
            right.plot(*zip(*points), marker=marker, color=color, label=LABELS[name])
    right.set(xscale="log", yscale="log", xlabel="history length L", ylabel="peak memory of a step (MB)")
    right.set_title("Peak memory of a training step", fontsize=10)
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    lengths = [r["length"] for r in result["training"]]
    for axis in (left, right):  # label the measured lengths, not powers of ten
        axis.set_xticks(lengths, [str(length) for length in lengths])
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:,.0f}")
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(plain)
    m = result["machine"]
    fig.suptitle(f"HyenaRec vs SASRec, {m.get('gpu') or m['cpu']}, {m['threads']} threads", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, out.with_suffix(".md"))
    draw_plot(result, out.with_suffix(".png"))


# ----------------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=None, help=f"default {list(LENGTHS)}")
    parser.add_argument(
        "--loss-type",
        default="ce",
        choices=list(LOSS_DESCRIPTIONS),
        help="both models' training loss: ce (full logits, the default) or chunked_ce (same loss, no full logits); "
        "chunked_ce writes scaling_<device>_chunked_ce.*",
    )
    parser.add_argument("--tokens", type=int, default=16384, help="tokens per batch (batch = max(1, tokens // L))")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (writes scaling_cuda.*)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per model and length")
    parser.add_argument("--repeats", type=int, default=5, help="most timed rounds per length")
    parser.add_argument("--min-repeats", type=int, default=2, help="fewest timed rounds, whatever the budget")
    parser.add_argument("--length-budget-s", type=float, default=40.0, help="timing seconds per length, roughly")
    parser.add_argument("--max-step-s", type=float, default=60.0, help="skip a model where one step takes longer")
    parser.add_argument("--latency-lengths", type=int, nargs="*", default=list(LATENCY_LENGTHS))
    parser.add_argument("--latency-rounds", type=int, default=20)
    parser.add_argument("--latency-warmup", type=int, default=3)
    parser.add_argument("--profile-lengths", type=int, nargs="*", default=None, help="default: where targets miss")
    parser.add_argument("--profile-models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--profile-steps", type=int, default=2)
    parser.add_argument("--profile-max-step-s", type=float, default=10.0, help="profile no model slower than this")
    parser.add_argument("--profile-top", type=int, default=10)
    parser.add_argument("--no-wait-idle", action="store_true", help="time rounds without waiting for idle CPUs")
    parser.add_argument("--max-wait", type=float, default=1800.0, help="most seconds to wait for idle CPUs in all")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes (and their OOM guard)")
    parser.add_argument("--no-head", action="store_true", help="do not time the shared head alone")
    parser.add_argument("--quick", action="store_true", help="L = 50, 200, 1000, one timed round: a smoke test")
    parser.add_argument("--out", type=Path, default=None, help="output prefix (default benchmarks/scaling_<device>)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md and .png from the saved .json")
    parser.add_argument("--profiles-only", action="store_true", help="profile again and rewrite the saved run's report")
    parser.add_argument("--memory-probe", nargs=2, metavar=("MODEL", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths = args.lengths or list(QUICK_LENGTHS)
        args.repeats = args.min_repeats = args.warmup = 1
        args.latency_rounds, args.latency_warmup, args.profile_steps = 3, 1, 1
    args.lengths = args.lengths or list(LENGTHS)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available() and not args.report_only:  # a report needs no GPU
        parser.error(
            "--device cuda needs a CUDA build of torch and a visible GPU (torch.cuda.is_available() is False)."
        )
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda, got {args.device!r}.")
    suffix = "" if args.loss_type == "ce" else f"_{args.loss_type}"
    args.out = args.out or HERE / f"scaling_{device.type}{suffix}"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_probe:
        memory_probe(args.memory_probe[0], int(args.memory_probe[1]), args)
        return
    if args.report_only:
        result = json.loads(args.out.with_suffix(".json").read_text())
        write_reports(result, args.out)
        print_table(result)
        return
    torch.set_num_threads(args.threads)
    command = "python benchmarks/scaling.py " + " ".join(sys.argv[1:]) if argv is None else "main(...)"
    if args.profiles_only:  # same machine kind as the saved run: the profiles replace its profiles
        result = json.loads(args.out.with_suffix(".json").read_text())
        result["profiles"] = profile_missed(result, args, IdleGate(enabled=not args.no_wait_idle))
        result["profiles_command"] = command
        write_reports(result, args.out)
        return
    device = torch.device(args.device)
    machine = machine_info(args.threads, device)
    gate = IdleGate(enabled=not args.no_wait_idle, max_wait_s=args.max_wait)
    skipped: dict[str, str] = {}  # model -> why; once skipped, longer lengths are skipped too
    training, memory = [], []
    bar = tqdm(sorted(args.lengths), desc="lengths")
    for length in bar:
        bar.set_postfix(L=length)
        if not args.no_memory:
            row = {"length": length, "batch": max(1, args.tokens // length)}
            for name in MODELS:
                if name in skipped:
                    row[name] = {"status": f"skipped ({skipped[name]})"}
                    continue
                row[name] = run_memory_probe(name, length, args, gate)
                status = row[name]["status"]
                if status != "ok":
                    skipped[name] = f"memory probe at L={length}: {status}"
                elif max(row[name]["step_s"]) > args.max_step_s:
                    took = max(row[name]["step_s"])
                    skipped[name] = f"one step took {took:.3g} s (> {args.max_step_s:g} s) at L={length}"
            if all((row.get(n) or {}).get("status") == "ok" for n in MODELS):
                row["memory_ratio"] = round(row["hyenarec"]["peak_growth_mb"] / row["sasrec"]["peak_growth_mb"], 4)
            memory.append(row)
        training.append(measure_training(length, args, skipped, gate))
        t = training[-1]
        tqdm.write(
            f"L={length}: items/s "
            + ", ".join(f"{LABELS[k]} {v:,.0f}" for k, v in t["min_items_per_s"].items())
            + f"; ratio {fmt(t.get('throughput_ratio_min', t.get('throughput_ratio_lower_bound')))}"
            + (f"; memory ratio {memory[-1].get('memory_ratio')}" if memory else "")
            + (f"; skipped {t['skipped']}" if t["skipped"] else "")
        )
    latency = []
    for length in tqdm(args.latency_lengths, desc="latency"):
        latency.append(measure_latency(length, args, gate))
    result = {
        "command": command,
        "machine": machine,
        "settings": {
            "tokens": args.tokens,
            "num_items": NUM_ITEMS,
            "hidden": HIDDEN,
            "layers": LAYERS,
            "ffn": FFN,
            "attention_heads": HEADS,
            "dtype": "float32",
            "loss_type": args.loss_type,
            "conv_auto_threshold": HyenaRecConfig().conv_auto_threshold,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "min_repeats": args.min_repeats,
            "length_budget_s": args.length_budget_s,
            "max_step_s": args.max_step_s,
            "latency_rounds": args.latency_rounds,
            "latency_warmup": args.latency_warmup,
            "quick": args.quick,
            "targets": TARGETS,
        },
        "training": training,
        "memory": memory,
        "latency": latency,
        "profiles": [],
    }
    result["targets"] = missed_targets(result)
    result["profiles"] = profile_missed(result, args, gate)
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["idle_gate"] = gate.summary()
    write_reports(result, args.out)
    print_table(result)
    print(f"wrote {args.out.with_suffix('.json')}, {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
