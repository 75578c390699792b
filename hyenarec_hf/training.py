"""Training and evaluation with the stock `transformers.Trainer` (accelerate underneath).

What the Trainer lacks and is added here, nothing more: a collator for item histories, a loss hook that also accepts
the packed evaluation labels, memory-bounded full-ranking metrics (`batch_eval_metrics`), and writing a Hub-ready
folder (weights, code, vocabulary, results, curve, card) at the end.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict
from transformers import EarlyStoppingCallback, PreTrainedModel, Trainer, TrainingArguments, set_seed

from .collator import NextItemCollator, add_eval_index
from .data import ItemVocab, window_sequences
from .metrics import next_item_loss, trainer_metric_fns
from .modeling import HyenaRecConfig, HyenaRecForNextItemPrediction

logger = logging.getLogger(__name__)

HEADLINE_METRIC = "ndcg@10_full"

# name -> (config class, model class); the baselines register themselves here too.
MODEL_REGISTRY: dict[str, tuple[type, type]] = {
    "hyenarec": (HyenaRecConfig, HyenaRecForNextItemPrediction),
}


def build_model(model_type: str, vocab: ItemVocab, max_length: int, **model_kwargs: Any) -> PreTrainedModel:
    """A freshly initialised model of `model_type` for `vocab`, reading histories of up to `max_length` items."""
    if model_type not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {model_type!r}; choose one of {sorted(MODEL_REGISTRY)}.")
    config_class, model_class = MODEL_REGISTRY[model_type]
    config = config_class(
        num_items=len(vocab), item_ids=vocab.to_list(), max_position_embeddings=max_length, **model_kwargs
    )
    return model_class(config)


@dataclass
class TrainSettings:
    """Optimisation and evaluation settings (the model's own settings live in its config)."""

    max_length: int = 200
    epochs: int = 200
    batch_size: int = 128
    eval_batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: float = 0  # int steps, or a float in [0, 1) as a ratio of all steps
    lr_scheduler_type: str = "constant"
    patience: int = 10
    seed: int = 42
    bf16: bool = False
    group_by_length: bool = True  # batches of similar history length: less padding, much faster on CPU
    train_stride: int | None = None  # window long train histories (see data.window_sequences); None = no windows
    num_sampled: int = 100  # also report the sampled-100 protocol (for comparison with papers that use it)
    max_train_minutes: float | None = None  # wall-clock budget: stop after the epoch that crosses it
    logging_steps: int = 25
    eval_on_start: bool = False
    dataloader_num_workers: int = 0
    extra_args: dict[str, Any] = field(default_factory=dict)


class TimeBudgetCallback:
    """Stops training after the epoch (evaluation included) in which the wall-clock budget runs out."""

    def __init__(self, minutes: float):
        from transformers import TrainerCallback

        self.budget_s = minutes * 60.0
        self.start = time.monotonic()
        parent = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                parent.start = time.monotonic()

            def on_epoch_end(self, args, state, control, **kwargs):
                if time.monotonic() - parent.start > parent.budget_s:
                    logger.info("time budget of %.1f min reached: stopping after this epoch", parent.budget_s / 60)
                    control.should_training_stop = True
                return control

        self.callback = _Callback()


def prepare_splits(splits: DatasetDict, settings: TrainSettings) -> DatasetDict:
    """Windows the train split (when asked) and adds the eval index the metrics need."""
    train = splits["train"]
    if settings.train_stride:
        train = window_sequences(train, settings.max_length, stride=settings.train_stride)
    # Sequence lengths as the model sees them, for length-grouped batches (less padding, same randomness budget).
    cap = settings.max_length + 1
    train = train.map(
        lambda batch: {"length": [min(len(x), cap) for x in batch["input_ids"]]}, batched=True, desc="Lengths"
    )
    out = {"train": train}
    for name in ("validation", "test"):
        if name in splits:
            out[name] = add_eval_index(splits[name])
    return DatasetDict(out)


def build_trainer(
    model: PreTrainedModel,
    splits: DatasetDict,
    output_dir: str | os.PathLike,
    settings: TrainSettings,
    callbacks: list | None = None,
) -> Trainer:
    """A stock `Trainer` that trains on `splits["train"]`, evaluates full-ranking metrics on `splits["validation"]`
    every epoch, stops early on validation NDCG@10 and restores the best weights at the end."""
    prepared = prepare_splits(splits, settings)
    preprocess, compute_metrics = trainer_metric_fns(num_sampled=settings.num_sampled, seed=settings.seed)
    args = _training_arguments(output_dir, settings)
    all_callbacks = [EarlyStoppingCallback(early_stopping_patience=settings.patience)]
    if settings.max_train_minutes:
        all_callbacks.append(TimeBudgetCallback(settings.max_train_minutes).callback)
    all_callbacks.extend(callbacks or [])
    return Trainer(
        model=model,
        args=args,
        train_dataset=prepared["train"],
        eval_dataset=prepared.get("validation"),
        data_collator=NextItemCollator(max_length=settings.max_length, mode="auto"),
        compute_loss_func=next_item_loss,
        preprocess_logits_for_metrics=preprocess,
        compute_metrics=compute_metrics,
        callbacks=all_callbacks,
    )


def _training_arguments(output_dir: str | os.PathLike, settings: TrainSettings) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_steps,
        lr_scheduler_type=settings.lr_scheduler_type,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="steps",
        logging_steps=settings.logging_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=HEADLINE_METRIC,
        greater_is_better=True,
        batch_eval_metrics=True,
        label_names=["labels"],
        remove_unused_columns=False,
        report_to="none",
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=settings.bf16,
        # bf16 on a machine without CUDA needs the explicit CPU flag (CPU autocast then runs matmuls in bf16).
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=settings.dataloader_num_workers,
        dataloader_pin_memory=torch.cuda.is_available(),
        eval_on_start=settings.eval_on_start,
        train_sampling_strategy="group_by_length" if settings.group_by_length else "random",
        length_column_name="length",
        **settings.extra_args,
    )


def strip_prefix(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {k[len(prefix) + 1 :] if k.startswith(prefix + "_") else k: v for k, v in metrics.items()}


def train_and_evaluate(
    splits: DatasetDict,
    vocab: ItemVocab,
    output_dir: str | os.PathLike,
    settings: TrainSettings,
    model_type: str = "hyenarec",
    model_kwargs: dict[str, Any] | None = None,
    model: PreTrainedModel | None = None,
    data_info: dict[str, Any] | None = None,
    resume_from_checkpoint: str | bool | None = None,
    on_results: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Train, restore the best validation weights, evaluate on test, and write a Hub-ready folder.

    `output_dir` receives `model.safetensors`, `config.json` (with `auto_map` and the item vocabulary), the model code,
    `results.json`, `training_curve.png` and `README.md` (the model card); Trainer checkpoints go to
    `output_dir/checkpoints/`. Returns the results dictionary.
    """
    set_seed(settings.seed)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = build_model(model_type, vocab, settings.max_length, **(model_kwargs or {}))
    trainer = build_trainer(model, splits, output_dir / "checkpoints", settings)
    start = time.monotonic()
    train_output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    train_seconds = time.monotonic() - start
    best_validation = _best_validation(trainer)
    test_metrics = strip_prefix(trainer.evaluate(add_eval_index(splits["test"]), metric_key_prefix="test"), "test")
    results = {
        "model_type": model.config.model_type,
        "protocol": {
            "split": "leave-one-out by time (last item = test target, second-to-last = validation target)",
            "ranking": "full ranking over all items; *_full: the user's already-seen items excluded (headline); "
            "*_full_incl_seen: no exclusion; *_sampled100: target + 100 seeded uniformly sampled unseen items",
            "ties": "pessimistic (an item scoring equal to the target ranks above it)",
            "max_length": settings.max_length,
        },
        "test": test_metrics,
        "validation_best": best_validation,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "epochs_run": trainer.state.epoch,
        "global_steps": trainer.state.global_step,
        "train_seconds": round(train_seconds, 1),
        "train_loss": train_output.training_loss,
        "settings": {k: v for k, v in asdict(settings).items() if k != "extra_args"},
        "model_config": {
            k: v for k, v in model.config.to_diff_dict().items() if k not in ("item_ids", "auto_map", "architectures")
        },
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "data": data_info or {},
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cuda": torch.cuda.is_available(),
        },
        "log_history": trainer.state.log_history,
    }
    save_final_folder(trainer.model, results, output_dir)
    if on_results is not None:
        on_results(results)
    return results


def _best_validation(trainer: Trainer) -> dict[str, float]:
    evals = [h for h in trainer.state.log_history if f"eval_{HEADLINE_METRIC}" in h]
    if not evals:
        return {}
    best = max(evals, key=lambda h: h[f"eval_{HEADLINE_METRIC}"])
    return strip_prefix(best, "eval")


def save_final_folder(model: PreTrainedModel, results: dict[str, Any], output_dir: Path) -> None:
    """Write the Hub-ready folder. Files are written to a temporary folder first and moved into place, so a crash
    mid-save never leaves a folder that looks complete."""
    from .model_card import render_model_card
    from .plotting import plot_training_curve

    staging = output_dir / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    (staging / "results.json").write_text(json.dumps(_jsonable(results), indent=2))
    plot_training_curve(results["log_history"], staging / "training_curve.png", HEADLINE_METRIC)
    render_model_card(results, model.config).save(staging / "README.md")
    # config.json last: it is what marks a folder as a loadable model.
    for name in sorted(os.listdir(staging), key=lambda n: n == "config.json"):
        os.replace(staging / name, output_dir / name)
    staging.rmdir()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    return str(value)


def dataset_summary(splits: DatasetDict, vocab: ItemVocab, source: str) -> dict[str, Any]:
    """Statistics of the data a model was trained on, for results.json and the model card."""
    train: Dataset = splits["train"]
    return {
        "source": source,
        "num_items": len(vocab),
        "num_train_users": len(train),
        "num_eval_users": len(splits["test"]),
        "num_train_interactions": int(sum(len(x) for x in train["input_ids"])),
    }
