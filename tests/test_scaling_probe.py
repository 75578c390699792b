"""`benchmarks/scaling.py --memory-probe`: the peak memory it reports is the probe's own, not its parent's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"


def probe(model: str, length: int, tokens: int, loss_type: str = "ce") -> dict:
    command = [sys.executable, str(SCRIPT), "--memory-probe", model, str(length), "--tokens", str(tokens)]
    command += ["--threads", "1", "--loss-type", loss_type]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_probe_reports_its_own_peak_not_the_parents():
    # This process touches 1.5 GB first: Linux's getrusage maxrss would hand that peak down to the probe.
    ballast = torch.ones(1536 * 2**20 // 4)
    result = probe("hyenarec", 50, tokens=256)
    del ballast
    assert result["status"] == "ok"
    assert result["inherited_maxrss_mb"] > 1500  # the trap is there...
    assert 0 < result["peak_growth_mb"] < 300  # ...and the probe does not fall in it (a 256-token step)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_memory_probe_sees_the_full_logits_of_the_default_loss_and_not_of_the_chunked_one():
    # 16,384 positions x 3,417 items: one float32 logits tensor is 214 MB, and the full softmax holds two at its peak
    # (`next_item_cross_entropy`); the chunked loss one 32 MB chunk. Both hold the model's activations besides.
    full = probe("hyenarec", 512, tokens=16384)
    chunked = probe("hyenarec", 512, tokens=16384, loss_type="chunked_ce")
    assert full["peak_growth_mb"] > 2 * 214
    assert chunked["peak_growth_mb"] < full["peak_growth_mb"] - 214  # at least one logits tensor less (~280 MB here)


def test_profiles_of_the_missed_targets_cover_both_models_and_add_up():
    """`profile_missed` (used by a full run and by `--profiles-only`) profiles each model where a target was missed,
    skips the model that was skipped there, and its categories account for the whole step."""
    sys.path.insert(0, str(SCRIPT.parent))
    import scaling  # benchmarks/scaling.py

    args = scaling.parse_args(["--tokens", "256", "--threads", "1", "--profile-steps", "1"])
    result = {
        "training": [
            {"length": 32, "min_s": {"hyenarec": 0.01, "sasrec": 0.01}},
            {"length": 64, "min_s": {"hyenarec": 0.01, "sasrec": None}},  # SASRec skipped at 64
        ],
        "targets": [{"length": 32, "met": False}, {"length": 64, "met": False}, {"length": 128, "met": True}],
    }
    profiles = scaling.profile_missed(result, args, scaling.IdleGate(enabled=False))
    assert [(p["model"], p["length"]) for p in profiles] == [("hyenarec", 32), ("sasrec", 32), ("hyenarec", 64)]
    for p in profiles:
        assert sum(p["categories"].values()) == pytest.approx(1.0, abs=1e-3)
        assert p["top_ops"] and p["top_allocating_ops"] and p["self_ms_per_step"] > 0
