"""Training and evaluation with the stock `transformers.Trainer` (accelerate underneath).

What the Trainer lacks and is added here, nothing more: a collator for item histories, a loss hook that also accepts
the packed evaluation labels, labels for the models that compute a sampled-softmax loss themselves
([`NextItemTrainer`]), memory-bounded full-ranking metrics (`batch_eval_metrics`), and writing a Hub-ready folder
(weights, code, vocabulary, results, curve, card) at the end.
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
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_pt_utils import BatchRebalanceSampler

from .collator import prepare_eval_dataset
from .data import ItemVocab, window_sequences
from .masking import collator_for
from .metrics import next_item_loss, trainer_metric_fns
from .modeling import (
    BERT4RecConfig,
    BERT4RecForNextItemPrediction,
    GRU4RecConfig,
    GRU4RecForNextItemPrediction,
    HyenaRecConfig,
    HyenaRecForNextItemPrediction,
    SASRecConfig,
    SASRecForNextItemPrediction,
)

logger = logging.getLogger(__name__)

HEADLINE_METRIC = "ndcg@10_full"

# name -> (config class, model class); the baselines register themselves here too.
MODEL_REGISTRY: dict[str, tuple[type, type]] = {
    "hyenarec": (HyenaRecConfig, HyenaRecForNextItemPrediction),
    "sasrec": (SASRecConfig, SASRecForNextItemPrediction),
    "bert4rec": (BERT4RecConfig, BERT4RecForNextItemPrediction),
    "gru4rec": (GRU4RecConfig, GRU4RecForNextItemPrediction),
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


# How training batches can be drawn (`TrainSettings.batching`), each the stock Trainer sampler it maps to
SAMPLING_STRATEGIES = {"balanced": "batch_rebalance", "random": "random", "length_grouped": "group_by_length"}
BATCHINGS = tuple(SAMPLING_STRATEGIES)


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
    # How training batches are drawn (one of BATCHINGS; `_training_arguments` maps each to the stock Trainer's samplers):
    # "balanced": every optimizer step takes `batch_size` histories at random and splits them into `micro_batches`
    #   micro-batches of similar length, accumulated into one step (the stock `batch_rebalance` sampler). The step and
    #   its loss (the mean over all its labelled positions) are those of "random", with much less padding.
    # "random": every batch is `batch_size` histories at random, padded to its longest.
    # "length_grouped": the stock `group_by_length` sampler: batches of similar length, taken long-to-short through
    #   each shuffled quarter of the data, each batch's loss the mean over its own positions. Cheapest on CPU but a
    #   worse optimiser (`benchmarks/accuracy_batching.md`); every run made before "balanced" existed used it.
    batching: str = "balanced"
    micro_batches: int = 4  # for "balanced": micro-batches per optimizer step; must divide batch_size
    train_stride: int | None = None  # window long train histories (see data.window_sequences); None = no windows
    num_sampled: int = 100  # also report the sampled-100 protocol (for comparison with papers that use it)
    max_train_minutes: float | None = None  # wall-clock budget: stop after the epoch that crosses it
    logging_steps: int = 25
    eval_on_start: bool = False
    dataloader_num_workers: int = 0
    # None: evaluate and checkpoint once per epoch; N: every N optimizer steps (so an interrupted run loses at most
    # N steps). Early stopping's `patience` then counts these evaluations.
    save_steps: int | None = None
    extra_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"TrainSettings.{name}={value!r} is not allowed: {name} must be {allowed}.")

        def is_int(value: Any, minimum: int) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

        def is_number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        for name in ("max_length", "batch_size", "eval_batch_size", "patience", "logging_steps", "micro_batches"):
            need(is_int(getattr(self, name), 1), name, "an int >= 1")
        need(self.batching in BATCHINGS, "batching", f"one of {BATCHINGS}")
        if self.batching == "balanced":
            need(
                self.batch_size % self.micro_batches == 0,
                "micro_batches",
                f"a divisor of batch_size ({self.batch_size}), so that every optimizer step takes batch_size histories",
            )
            need(
                "gradient_accumulation_steps" not in self.extra_args,
                "extra_args",
                "free of gradient_accumulation_steps with batching='balanced' (set micro_batches instead)",
            )
        need(is_int(self.seed, 0), "seed", "an int >= 0")
        need(is_number(self.epochs) and self.epochs > 0, "epochs", "a number > 0")
        need(is_number(self.learning_rate) and self.learning_rate > 0, "learning_rate", "a finite number > 0")
        need(is_number(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a finite number >= 0")
        need(is_number(self.warmup_steps) and self.warmup_steps >= 0, "warmup_steps", "an int >= 0 or a ratio < 1")
        need(is_int(self.num_sampled, 0), "num_sampled", "an int >= 0 (0 = no sampled metrics)")
        need(self.save_steps is None or is_int(self.save_steps, 1), "save_steps", "None (per epoch) or an int >= 1")
        need(
            self.train_stride is None or (is_int(self.train_stride, 1) and self.train_stride <= self.max_length),
            "train_stride",
            f"None or an int between 1 and max_length ({self.max_length})",
        )
        need(
            self.max_train_minutes is None or (is_number(self.max_train_minutes) and self.max_train_minutes > 0),
            "max_train_minutes",
            "None or a number > 0",
        )


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss, or weights that are no longer finite."""


class NonFiniteLossGuard(TrainerCallback):
    """Stops training at the first NaN or infinite training loss and never lets a checkpoint hold non-finite weights.

    The Trainer alone would carry on: its `logging_nan_inf_filter` hides non-finite losses from the logs and the next
    optimizer step spreads them to the weights. The guard wraps the loss (`compute_loss_func=guard.compute_loss`)
    and raises [`NonFiniteLossError`] before that step; as a callback it also checks the weights just before each
    save. Checkpoints written earlier stay as they were, so the last one on disk is good.
    """

    def __init__(self, loss_fn: Callable[..., torch.Tensor]):
        self.loss_fn = loss_fn
        self.args: TrainingArguments | None = None
        self.state = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.args, self.state = args, state

    def compute_loss(self, outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        return self.check(self.loss_fn(outputs, labels, num_items_in_batch=num_items_in_batch))

    def check(self, loss: torch.Tensor) -> torch.Tensor:
        """`loss` itself, or [`NonFiniteLossError`] when it is a non-finite training loss."""
        # Evaluation runs without grad: a non-finite eval loss is left to the metrics.
        if torch.is_grad_enabled() and not bool(torch.isfinite(loss.detach()).all()):
            step = self.state.global_step + 1 if self.state is not None else "?"
            raise NonFiniteLossError(
                self._message(f"the training loss is {loss.detach().float().item()} at step {step}")
            )
        return loss

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_save:
            self._check_weights(model, state)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if control.should_save:
            self._check_weights(model, state)

    def _check_weights(self, model: torch.nn.Module | None, state) -> None:
        if model is None:
            return
        bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
        if bad:
            raise NonFiniteLossError(
                self._message(
                    f"{len(bad)} weight tensor(s) are no longer finite after step {state.global_step} (first: {bad[0]}); "
                    "this step was not checkpointed"
                )
            )

    def _message(self, what: str) -> str:
        from .checkpoint import last_complete_checkpoint

        args = self.args
        epoch = f" (epoch {self.state.epoch:.2f})" if self.state is not None and self.state.epoch is not None else ""
        fix = (
            f"lower the learning rate (now {args.learning_rate:g}) or add warmup" if args else "lower the learning rate"
        )
        if args is not None and args.bf16:
            fix += ", or train without bf16 (it can overflow)"
        last = last_complete_checkpoint(args.output_dir) if args is not None else None
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint had been saved yet"
        return f"{what}{epoch}: training stopped. The run diverged: {fix}, and train again; {kept}."


# loss types the model computes from its hidden states and the labels (no full logits in training)
MODEL_COMPUTED_LOSSES = ("sampled_ce", "chunked_ce")


class NextItemTrainer(Trainer):
    """The stock `Trainer` plus two things it lacks: a loss path for models that compute their loss from the hidden
    states (`loss_type="sampled_ce"` or `"chunked_ce"`), and the run's seed for the `batch_rebalance` sampler (which
    the stock Trainer builds with a fixed seed, so every run would draw the same batches).

    `compute_loss_func` (needed to score the packed evaluation labels) makes `Trainer.compute_loss` take `labels` out
    of the batch before the forward, so the model could never compute a loss that needs the targets inside it. A
    sampled softmax does (it scores each target and the shared negatives), and so does the chunked full softmax (it
    scores the labelled positions a chunk at a time): neither builds the `(tokens, num_items + 1)` logits, which is
    their point on large catalogues and long histories. So in training, and only for such a model, the labels go to
    the model and its own loss is used (checked by the non-finite guard and scaled across processes as the stock
    method scales a `num_items_in_batch`-normalised loss). Everything else, evaluation included, is the stock
    `compute_loss`.
    """

    def __init__(self, *args, loss_guard: NonFiniteLossGuard | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_guard = loss_guard

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, BatchRebalanceSampler):
            # The stock Trainer builds it with its own fixed seed (42): every run would draw the same batches
            sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return sampler

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        config = self.accelerator.unwrap_model(model).config
        own_loss = getattr(config, "loss_type", "ce") in MODEL_COMPUTED_LOSSES
        if not (model.training and own_loss and "labels" in inputs):
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        outputs = model(**inputs, num_items_in_batch=num_items_in_batch)
        loss = outputs.loss if self.loss_guard is None else self.loss_guard.check(outputs.loss)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            # num_items_in_batch counts every process's labels; DDP averages the gradients over the processes. As in
            # the stock method, tensor-parallel ranks share one batch, so they count once (get_tp_size: newer 5.x).
            scale = self.accelerator.num_processes // getattr(self, "get_tp_size", lambda: 1)()
            loss = loss * (scale if self.args.n_gpu <= 1 else self.args.n_gpu)
        return (loss, outputs) if return_outputs else loss


class TrainClock(TrainerCallback):
    """Counts training wall time across resumes, and stops training after the epoch (evaluation included) in which
    the budget of `minutes` (None: no budget) runs out.

    Each checkpoint gets a `train_clock.json` with the seconds trained up to it; a run resumed from that checkpoint
    starts its clock there, so `--max-train-minutes` and `train_seconds` cover the whole run, not the last part."""

    FILE = "train_clock.json"

    def __init__(self, minutes: float | None = None):
        self.budget_s = None if minutes is None else minutes * 60.0
        self.start = time.monotonic()
        self.before = 0.0  # seconds trained before this process (a resumed run)
        self.resumed: str | None = None  # how the run was resumed, for results.json

    def seconds(self) -> float:
        return self.before + time.monotonic() - self.start

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()
        if state.global_step > 0:  # resumed: the Trainer has loaded the checkpoint's state
            name = f"checkpoint-{state.global_step}"
            saved = Path(args.output_dir) / name / self.FILE
            if saved.exists():
                self.before = float(json.loads(saved.read_text())["train_seconds"])
                self.resumed = f"resumed from {name}; train_seconds adds the {self.before:.1f} s trained before it"
            else:  # a checkpoint written before the clock existed: its earlier time is unknown
                self.resumed = (
                    f"resumed from {name}, which has no {self.FILE}: train_seconds counts only the resumed part"
                )
                logger.warning("%s has no %s: the time budget and train_seconds count from the resume", name, self.FILE)

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir() and state.is_world_process_zero:
            (folder / self.FILE).write_text(json.dumps({"train_seconds": round(self.seconds(), 1)}) + "\n")

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.budget_s is not None and self.seconds() > self.budget_s:
            logger.info("time budget of %.1f min reached: stopping after this epoch", self.budget_s / 60)
            control.should_training_stop = True
        return control


def prepare_splits(splits: DatasetDict, settings: TrainSettings) -> DatasetDict:
    """Windows the train split (when asked); numbers the eval rows (the index the metrics need) and orders them
    longest history first (less padding per evaluation batch)."""
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
            out[name] = prepare_eval_dataset(splits[name])
    return DatasetDict(out)


def build_trainer(
    model: PreTrainedModel,
    splits: DatasetDict,
    output_dir: str | os.PathLike,
    settings: TrainSettings,
    callbacks: list | None = None,
) -> Trainer:
    """A `Trainer` (the stock one, plus [`NextItemTrainer`]'s sampled-softmax hook) that trains on `splits["train"]`,
    evaluates full-ranking metrics on `splits["validation"]` every epoch, stops early on validation NDCG@10 and
    restores the best weights at the end."""
    prepared = prepare_splits(splits, settings)
    preprocess, compute_metrics = trainer_metric_fns(num_sampled=settings.num_sampled, seed=settings.seed)
    _warn_if_bf16_is_emulated(settings)
    args = _training_arguments(output_dir, settings)
    guard = NonFiniteLossGuard(next_item_loss)
    all_callbacks = [EarlyStoppingCallback(early_stopping_patience=settings.patience), guard]
    all_callbacks.append(TrainClock(settings.max_train_minutes))
    all_callbacks.extend(callbacks or [])
    return NextItemTrainer(
        model=model,
        args=args,
        train_dataset=prepared["train"],
        eval_dataset=prepared.get("validation"),
        # one collator for train and eval rows: next-item batches, or masked-item batches for BERT4Rec
        data_collator=collator_for(model.config, settings.max_length),
        compute_loss_func=guard.compute_loss,
        preprocess_logits_for_metrics=preprocess,
        compute_metrics=compute_metrics,
        callbacks=all_callbacks,
        loss_guard=guard,
    )


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool | None:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 or AMX-BF16) by its `cpuinfo` flags; None where the file
    cannot be read (not Linux)."""
    try:
        flags = set(cpuinfo.read_text().split())
    except OSError:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's model name (`cpuinfo`'s first `model name` line, e.g. "AMD EPYC"); None where the file cannot be read
    or names none (not Linux, some ARM kernels). Runs record it beside their times: CPUs differ several-fold."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name" and value.strip():
            return value.strip()
    return None


def bf16_emulation_warning(bf16: bool) -> str | None:
    """What to tell someone who asks for bf16 on a machine with neither a GPU nor bf16 arithmetic in its CPU, where
    autocast runs bf16 emulated, slower than float32; None where bf16 is off, a GPU is there, or the CPU has it (or
    cannot be read)."""
    if bf16 and not torch.cuda.is_available() and cpu_has_native_bf16() is False:
        return (
            "bf16=True on a CPU without AVX512-BF16 or AMX: bf16 autocast is emulated there and trains slower than "
            "float32 (and gives slightly different numbers). Drop --bf16 (bf16=False) on this machine."
        )
    return None


def _warn_if_bf16_is_emulated(settings: TrainSettings) -> None:
    message = bf16_emulation_warning(settings.bf16)
    if message:
        logger.warning(message)


def _training_arguments(output_dir: str | os.PathLike, settings: TrainSettings) -> TrainingArguments:
    # load_best_model_at_end needs evaluations and saves on one schedule: every epoch, or every `save_steps` steps.
    if settings.save_steps:
        schedule: dict[str, Any] = dict(
            eval_strategy="steps", eval_steps=settings.save_steps, save_strategy="steps", save_steps=settings.save_steps
        )
    else:
        schedule = dict(eval_strategy="epoch", save_strategy="epoch")
    # "balanced": the stock sampler takes per_device_train_batch_size * gradient_accumulation_steps histories a step
    accumulation = settings.micro_batches if settings.batching == "balanced" else 1
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size // accumulation,
        gradient_accumulation_steps=accumulation,
        per_device_eval_batch_size=settings.eval_batch_size,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_steps,
        lr_scheduler_type=settings.lr_scheduler_type,
        **schedule,
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
        train_sampling_strategy=SAMPLING_STRATEGIES[settings.batching],
        length_column_name="length",
        **settings.extra_args,
    )


# Recorded in every results.json: runs made before item scores were computed in float32 under bf16 autocast lack it
# (their bf16 scores tied often, and ties count against the target; `benchmarks/score_precision.md`).
SCORE_PRECISION = "float32 (also under bf16 autocast)"


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
    clock = next(c for c in trainer.callback_handler.callbacks if isinstance(c, TrainClock))
    train_output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    train_seconds = clock.seconds()
    best_validation = _best_validation(trainer)
    test_metrics = strip_prefix(
        trainer.evaluate(prepare_eval_dataset(splits["test"]), metric_key_prefix="test"), "test"
    )
    results = {
        "model_type": model.config.model_type,
        "protocol": {
            "split": "leave-one-out by time (last item = test target, second-to-last = validation target)",
            "ranking": "full ranking over all items; *_full: the user's already-seen items excluded (headline); "
            "*_full_incl_seen: no exclusion; *_sampled100: target + 100 seeded uniformly sampled unseen items",
            "ties": "pessimistic (an item scoring equal to the target ranks above it)",
            "scores": SCORE_PRECISION,
            "max_length": settings.max_length,
        },
        "test": test_metrics,
        "validation_best": best_validation,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "epochs_run": trainer.state.epoch,
        "global_steps": trainer.state.global_step,
        "train_seconds": round(train_seconds, 1),
        "train_loss": train_output.training_loss,
        **({"resumed": clock.resumed} if clock.resumed else {}),
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
            # CPU times depend on these: bf16 autocast is emulated (slower than float32) without bf16 arithmetic
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_bf16": cpu_has_native_bf16(),
            "cpu_model": cpu_model_name(),
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        },
        "log_history": trainer.state.log_history,
    }
    # One writer: with several processes (accelerate launch) the others wait until the folder is complete.
    if trainer.is_world_process_zero():
        save_final_folder(trainer.model, results, output_dir)
        if on_results is not None:
            on_results(results)
    trainer.accelerator.wait_for_everyone()
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
    # config.json last: it is what marks a folder as a loadable model. A config.json from an earlier save goes first,
    # so that a crash while moving never pairs it with the new weights.
    (output_dir / "config.json").unlink(missing_ok=True)
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
