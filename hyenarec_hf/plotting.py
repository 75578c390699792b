"""Training-curve plot from the Trainer's `log_history`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_training_curve(log_history: list[dict[str, Any]], path: str | Path, metric: str = "ndcg@10_full") -> Path:
    """Two panels: training loss by step, validation `metric` (and eval loss) by epoch. Written as PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["epoch"], h[f"eval_{metric}"]) for h in log_history if f"eval_{metric}" in h]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    if train:
        left.plot(*zip(*train), color="tab:blue")
    left.set_xlabel("step")
    left.set_ylabel("training loss (cross-entropy)")
    left.grid(alpha=0.3)
    if evals:
        right.plot(*zip(*evals), marker="o", color="tab:orange")
        best = max(evals, key=lambda e: e[1])
        right.axvline(best[0], color="gray", ls="--", lw=1)
        right.set_title(f"best {best[1]:.4f} at epoch {best[0]:.0f}", fontsize=9)
    right.set_xlabel("epoch")
    right.set_ylabel(f"validation {metric}")
    right.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
