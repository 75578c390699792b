"""Training step time of ONE HyenaRec block against ONE causal-attention block of the same width, on this CPU.

Both blocks are pre-norm residual blocks with the same LayerNorms, the same position-wise FFN (`HyenaRecFeedForward`,
64 -> 256 -> 64, GELU) and the same dropout (0.2, train mode); only the token mixer differs:

- HyenaRec: `HyenaRecMixer` (in_proj 64 -> 320, causal depthwise conv, Legendre long convolution, gates, out_proj),
  with `conv_impl` in {auto, fft, toeplitz};
- attention: QKV projection 64 -> 192, `F.scaled_dot_product_attention(is_causal=True)` with 2 heads, out projection.

Every length gets the same number of tokens per batch (`--tokens`, default 16,384, so batch = tokens // L), the blocks
are timed forward + backward, interleaved in every round (the order alternates), after a warm-up, and each time is the
minimum over the rounds; the number of rounds adapts so that a full run spends about `--budget` seconds timing. The
machine is shared: by default each round first waits until the other jobs leave the CPUs idle (`--no-wait-idle` to
skip; at most `--max-wait` seconds in all), and the markdown reports how much CPU the timed rounds really got. Compare
the ratio `attention time / HyenaRec time` (> 1: HyenaRec is faster) within one run, never the milliseconds across
runs. Nothing is asserted about time.

    python benchmarks/block_speed.py                     # ~10 min; writes benchmarks/block_speed.{json,md}
    python benchmarks/block_speed.py --quick             # ~1 min, fewer rounds
    python benchmarks/block_speed.py --lengths 200 4096  # some lengths only

It also profiles the HyenaRec block (torch.profiler, self CPU time by op) at `--profile-lengths` and writes the top
ops into the markdown ("what dominates"). The markdown's hand-written sections are kept; only the blocks between the
`<!-- block-speed:... -->` markers are regenerated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_common import IdleGate, machine_info  # sibling module: machine record, idle gate
from torch import nn
from tqdm import tqdm

from hyenarec_hf.modeling.configuration_hyenarec import HyenaRecConfig
from hyenarec_hf.modeling.modeling_hyenarec import HyenaRecFeedForward, HyenaRecModel
from hyenarec_hf.modeling.next_item import Dropout

HERE = Path(__file__).resolve().parent
LENGTHS = (50, 200, 512, 1024, 2048, 4096)
IMPLS = ("auto", "fft", "toeplitz")
TOEPLITZ_MAX_LENGTH = 1024  # the (channels, L, L) Toeplitz matrix is 1 GiB at L = 2048 and the GEMMs grow as L^2
RESULTS = ("<!-- block-speed:results:start -->", "<!-- block-speed:results:end -->")
PROFILE = ("<!-- block-speed:profile:start -->", "<!-- block-speed:profile:end -->")


class CausalSelfAttention(nn.Module):
    """QKV projection, causal SDPA over `heads` heads, out projection: `(batch, L, hidden)` -> same."""

    def __init__(self, hidden: int, heads: int = 2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(y.transpose(1, 2).reshape(batch, length, hidden))


class CausalAttentionBlock(nn.Module):
    """`HyenaRecBlock` with the mixer swapped for causal self-attention (same norms, FFN and dropout)."""

    def __init__(self, config: HyenaRecConfig, heads: int = 2):
        super().__init__()
        self.mixer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mixer = CausalSelfAttention(config.hidden_size, heads)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = HyenaRecFeedForward(config)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = hidden_states + self.dropout(self.mixer(self.mixer_norm(hidden_states)))
        return hidden_states + self.dropout(self.ffn(self.ffn_norm(hidden_states)))


def make_config(length: int, impl: str, hidden: int) -> HyenaRecConfig:
    with warnings.catch_warnings():  # legendre_order=16 > 2 sqrt(50) warns at L=50; irrelevant for speed
        warnings.simplefilter("ignore")
        return HyenaRecConfig(
            num_items=10, hidden_size=hidden, max_position_embeddings=length, legendre_order=16, conv_impl=impl
        )


def hyena_block(length: int, impl: str, hidden: int) -> nn.Module:
    """One initialised `HyenaRecBlock` (taken from a one-layer backbone, so `_init_weights` ran on it)."""
    config = make_config(length, impl, hidden)
    config.num_hidden_layers = 1
    torch.manual_seed(0)
    return HyenaRecModel(config).layers[0].train()


def training_step(block: nn.Module, x: torch.Tensor, mask: torch.Tensor, grad: torch.Tensor) -> float:
    x.grad = None
    for p in block.parameters():
        p.grad = None
    start = time.perf_counter()
    block(x, mask).backward(grad)
    return time.perf_counter() - start


class MixerOnly(nn.Module):
    """A block's token mixer alone (no norms, FFN, dropout or residual): separates what the mixer costs from the
    parts both blocks share."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.mixer = block.mixer

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if isinstance(self.mixer, CausalSelfAttention):
            return self.mixer(hidden_states)
        return self.mixer(hidden_states, mask)


def candidates(length: int, hidden: int) -> dict[str, nn.Module]:
    blocks = {"attention": CausalAttentionBlock(make_config(length, "fft", hidden)).train()}
    for impl in IMPLS:
        if impl == "toeplitz" and length > TOEPLITZ_MAX_LENGTH:
            continue
        blocks[f"hyena_{impl}"] = hyena_block(length, impl, hidden)
    blocks["mixer_attention"] = MixerOnly(blocks["attention"])
    blocks["mixer_hyena_auto"] = MixerOnly(blocks["hyena_auto"])
    return blocks


def measure_length(length: int, args, budget_s: float, gate: IdleGate) -> dict:
    batch = max(1, args.tokens // length)
    torch.manual_seed(length)
    x = torch.randn(batch, length, args.hidden, requires_grad=True)
    mask = torch.ones(batch, 1, length)
    grad = torch.randn(batch, length, args.hidden)
    blocks = candidates(length, args.hidden)
    for block in blocks.values():  # warm-up
        for _ in range(2):
            training_step(block, x, mask, grad)
    gate.wait()
    samples = {name: [training_step(block, x, mask, grad)] for name, block in blocks.items()}
    round_time = sum(times[0] for times in samples.values())
    rounds = int(min(args.max_rounds, max(args.min_rounds, budget_s / round_time)))
    names = list(blocks)
    wall = cpu = 0.0
    for r in range(rounds - 1):
        gate.wait()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for name in names if r % 2 else names[::-1]:
            samples[name].append(training_step(blocks[name], x, mask, grad))
        wall, cpu = wall + time.perf_counter() - wall0, cpu + time.process_time() - cpu0
    # CPU time our threads got per wall second and thread: ~1 on an idle machine, well below when other jobs compete.
    cpu_share = cpu / max(wall, 1e-9) / torch.get_num_threads()
    best = {name: 1e3 * min(times) for name, times in samples.items()}
    auto = blocks["hyena_auto"].mixer.conv_impl(length, x.device)
    return {
        "length": length,
        "batch": batch,
        "tokens": batch * length,
        "rounds": rounds,
        "cpu_share": round(cpu_share, 2),
        "auto_impl": auto,
        "min_ms": {name: round(ms, 2) for name, ms in best.items()},
        "median_ms": {name: round(1e3 * sorted(t)[len(t) // 2], 2) for name, t in samples.items()},
        "attention_over_hyena": {
            name.removeprefix("hyena_"): round(best["attention"] / ms, 3)
            for name, ms in best.items()
            if name.startswith("hyena_")
        },
        "mixer_attention_over_hyena": round(best["mixer_attention"] / best["mixer_hyena_auto"], 3),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Profile: what dominates the HyenaRec block
# ----------------------------------------------------------------------------------------------------------------------

CATEGORIES = (
    ("GEMM (projections, FFN, Toeplitz)", r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear)$"),
    ("FFT", r"^aten::_fft_"),
    ("dropout (mask draw + compare)", r"^aten::(bernoulli_|uniform_|ge|div_)$"),
    ("elementwise mul / add / addcmul", r"^aten::(mul|mul_|add|add_|addcmul_|addcmul|sub|neg)$"),
    ("copies, cat, fill, pad", r"^aten::(copy_|cat|fill_|zero_|clone|constant_pad_nd|flip)$"),
    ("reductions", r"^aten::(sum|mean)$"),
    ("layer norm", r"layer_norm"),
    ("activations (gelu, sigmoid, exp)", r"^aten::(gelu|gelu_backward|sigmoid|sigmoid_backward|exp|softplus.*)$"),
)


def profile_block(length: int, args, steps: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    batch = max(1, args.tokens // length)
    torch.manual_seed(length)
    x = torch.randn(batch, length, args.hidden, requires_grad=True)
    mask = torch.ones(batch, 1, length)
    grad = torch.randn(batch, length, args.hidden)
    block = hyena_block(length, "auto", args.hidden)
    for _ in range(3):
        training_step(block, x, mask, grad)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            training_step(block, x, mask, grad)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.profile_top]
    categories = defaultdict(float)
    for e in events:
        label = next((name for name, pattern in CATEGORIES if re.search(pattern, e.key)), "other")
        categories[label] += e.self_cpu_time_total
    return {
        "length": length,
        "batch": batch,
        "impl": block.mixer.conv_impl(length, x.device),
        "steps": steps,
        "self_cpu_ms_per_step": round(total / steps / 1e3, 2),
        "top_ops": [
            {
                "op": e.key,
                "self_cpu_ms_per_step": round(e.self_cpu_time_total / steps / 1e3, 2),
                "share": round(e.self_cpu_time_total / total, 4),
                "calls_per_step": e.count // steps,
            }
            for e in top
        ],
        "categories": {k: round(v / total, 4) for k, v in sorted(categories.items(), key=lambda kv: -kv[1])},
    }


# ----------------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------------


def results_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        RESULTS[0],
        f"Measured on {m['cpu']} ({m['logical_cpus']} logical CPUs, shared with other jobs; load average "
        f"{m['load_average_at_start'][0]:.1f} at start, {m['load_average_at_end'][0]:.1f} at end), torch {m['torch']} "
        f"({m['cpu_capability']}), {m['threads']} threads, float32, {result['settings']['tokens']:,} tokens per batch, "
        f"hidden {result['settings']['hidden']}. Forward + backward of one block, min over interleaved rounds "
        "(`rounds`). Ratio = attention time / HyenaRec time: **> 1 means HyenaRec is faster**.",
        "",
        IdleGate.sentence(m["idle_gate"]),
        "",
        "| L | batch | attention (ms) | HyenaRec auto (ms) | fft (ms) | toeplitz (ms) | ratio auto | ratio fft | "
        "ratio toeplitz | auto uses | mixer only: attention / HyenaRec (ms) | mixer ratio | rounds | CPU share |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in result["results"]:
        t, r = row["min_ms"], row["attention_over_hyena"]
        toeplitz_ms = f"{t['hyena_toeplitz']:.1f}" if "hyena_toeplitz" in t else "skipped"
        toeplitz_ratio = f"{r['toeplitz']:.2f}" if "toeplitz" in r else "–"
        lines.append(
            f"| {row['length']} | {row['batch']} | {t['attention']:.1f} | {t['hyena_auto']:.1f} | "
            f"{t['hyena_fft']:.1f} | {toeplitz_ms} | **{r['auto']:.2f}** | {r['fft']:.2f} | {toeplitz_ratio} | "
            f"{row['auto_impl']} | {t['mixer_attention']:.1f} / {t['mixer_hyena_auto']:.1f} | "
            f"{row['mixer_attention_over_hyena']:.2f} | {row['rounds']} | {row['cpu_share']:.2f} |"
        )
    lines += [
        "",
        "Mixer only: the token mixer alone (QKV + SDPA + out projection against HyenaRec's in_proj, convolutions, "
        "gates and out_proj), same input, forward + backward; the rest of a block (2 LayerNorms, the FFN, 2 dropouts, "
        "residuals) is the same in both and sets a floor under the block ratio.",
        "",
        "CPU share: CPU time the benchmark's threads got per wall-clock second and thread while that row was timed "
        "(about 1 on an idle machine; lower means other jobs took the cores, and that row's times are less reliable).",
        "",
        f"Toeplitz is skipped above L = {TOEPLITZ_MAX_LENGTH}: its `(64, L, L)` matrix alone is 1 GiB at L = 2048 "
        "and its GEMMs grow as L^2 (it already loses to the FFT far below that; see "
        "`conv_impl_threshold.md`). `auto` is the configuration default (`conv_auto_threshold = "
        f"{result['settings']['conv_auto_threshold']}`).",
        RESULTS[1],
    ]
    return "\n".join(lines)


def profile_markdown(profiles: list[dict]) -> str:
    lines = [PROFILE[0]]
    for p in profiles:
        lines += [
            "",
            f"**L = {p['length']}** (batch {p['batch']}, `auto` = {p['impl']}): {p['self_cpu_ms_per_step']:.1f} ms "
            f"of self CPU time per step (profiler on, {p['steps']} steps).",
            "",
            "| by category | share |",
            "|---|---:|",
            *(f"| {name} | {share:.0%} |" for name, share in p["categories"].items()),
            "",
            "| top ops (self CPU) | ms / step | share | calls / step |",
            "|---|---:|---:|---:|",
            *(
                f"| `{op['op']}` | {op['self_cpu_ms_per_step']:.2f} | {op['share']:.0%} | {op['calls_per_step']} |"
                for op in p["top_ops"]
            ),
        ]
    lines.append(PROFILE[1])
    return "\n".join(lines)


SKELETON = f"""# One HyenaRec block vs one causal-attention block (training step, CPU)

Produced by `python benchmarks/block_speed.py`; the blocks between markers are regenerated on every run.

{RESULTS[0]}
{RESULTS[1]}

## What dominates

{PROFILE[0]}
{PROFILE[1]}
"""


def replace_block(text: str, markers: tuple[str, str], block: str) -> str:
    start, end = text.find(markers[0]), text.find(markers[1])
    if start < 0 or end < 0:
        return text.rstrip("\n") + "\n\n" + block + "\n"
    return text[:start] + block + text[end + len(markers[1]) :]


def write_markdown(result: dict, path: Path) -> None:
    text = path.read_text() if path.exists() else SKELETON
    text = replace_block(text, RESULTS, results_markdown(result))
    if result["profiles"]:
        text = replace_block(text, PROFILE, profile_markdown(result["profiles"]))
    path.write_text(text)


def print_table(rows: list[dict]) -> None:
    print(
        f"\n{'L':>5} {'batch':>5} {'attention':>10} {'auto':>9} {'fft':>9} {'toeplitz':>9}   ratio auto/fft/toeplitz"
        "   mixer ratio"
    )
    for row in rows:
        t, r = row["min_ms"], row["attention_over_hyena"]
        print(
            f"{row['length']:5d} {row['batch']:5d} {t['attention']:10.1f} {t['hyena_auto']:9.1f} {t['hyena_fft']:9.1f} "
            f"{t.get('hyena_toeplitz', float('nan')):9.1f}   {r['auto']:.2f} / {r['fft']:.2f} / "
            f"{r.get('toeplitz', float('nan')):.2f}   {row['mixer_attention_over_hyena']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(LENGTHS))
    parser.add_argument("--tokens", type=int, default=16384, help="tokens per batch (batch = tokens // L)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=540.0, help="seconds of timing for all lengths (~10 min run)")
    parser.add_argument("--quick", action="store_true", help="~1 minute: a 45 s budget and 3-5 rounds")
    parser.add_argument("--profile-lengths", type=int, nargs="*", default=[200, 4096])
    parser.add_argument("--profile-top", type=int, default=12)
    parser.add_argument(
        "--no-wait-idle",
        action="store_true",
        help="time every round at once (default: hold each round until other jobs leave the CPUs idle)",
    )
    parser.add_argument("--max-wait", type=float, default=3600.0, help="most seconds to wait for idle CPUs in total")
    parser.add_argument("--out", type=Path, default=HERE / "block_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.budget, args.min_rounds, args.max_rounds = 45.0, 3, 5
    else:
        args.min_rounds, args.max_rounds = 5, 60

    machine = machine_info(args.threads)
    gate = IdleGate(enabled=not args.no_wait_idle, max_wait_s=args.max_wait)
    rows = []
    for length in tqdm(args.lengths, desc="lengths"):
        rows.append(measure_length(length, args, args.budget / len(args.lengths), gate))
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in rows[-1]["attention_over_hyena"].items())
        tqdm.write(f"L={length}: attention / HyenaRec {ratios} (cpu share {rows[-1]['cpu_share']:.2f})")
    profiles = []
    for length in args.profile_lengths:
        gate.wait()
        profiles.append(profile_block(length, args, steps=3 if args.quick else 5))
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["idle_gate"] = gate.summary()
    result = {
        "machine": machine,
        "settings": {
            "tokens": args.tokens,
            "hidden": args.hidden,
            "dtype": "float32",
            "dropout": make_config(200, "auto", args.hidden).hidden_dropout_prob,
            "attention_heads": 2,
            "conv_auto_threshold": make_config(200, "auto", args.hidden).conv_auto_threshold,
            "quick": args.quick,
            "budget_s": args.budget,
        },
        "results": rows,
        "profiles": profiles,
    }
    print_table(rows)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, args.out.with_suffix(".md"))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
