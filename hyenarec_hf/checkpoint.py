"""Loading model folders and Trainer checkpoints safely.

`AutoModel.from_pretrained` alone lets several broken folders through or fails with a message that names neither the
file nor the fix: a tensor missing from `model.safetensors` is re-initialised at random with a warning, NaN weights
load silently, a truncated file fails with "incomplete metadata, file not fully covered", an embedding table of the
wrong size with "look at the above report". [`load_model`] checks the folder first (`config.json`, the safetensors
header against the file size) and after loading (no missing or resized tensor, every weight finite), and raises
[`CheckpointError`] naming the file and what to do.

[`last_complete_checkpoint`] finds the newest Trainer checkpoint that was completely written, for resuming after a
process was killed, possibly in the middle of a save.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TRAINER_STATE_NAME = "trainer_state.json"  # the Trainer writes it last in every checkpoint
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
_MAX_HEADER_BYTES = 100 * 2**20  # the safetensors library's own limit


class CheckpointError(ValueError):
    """A model folder or checkpoint that cannot be loaded; the message names the file and the fix."""


def check_safetensors(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Check that a `.safetensors` file is complete and well formed, without reading the tensors.

    A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON (name -> dtype, shape,
    data_offsets), then the tensor bytes. The file must hold exactly `8 + n + end of the last tensor` bytes and every
    tensor's byte range must match its dtype and shape.

    Returns: the header's tensor entries (`name -> {"dtype", "shape", "data_offsets"}`).

    Raises:
        CheckpointError: naming the file, when it is missing, truncated or corrupted.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the folder holds no weights. {_REDO}")
    size = path.stat().st_size
    if size < 8:
        raise CheckpointError(f"{path} is truncated: {size} bytes, not even the 8-byte header length. {_REDO}")
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > min(size - 8, _MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{path} is truncated or corrupted: its first 8 bytes announce a {header_len:,}-byte header but the "
                f"file holds {size:,} bytes. {_REDO}"
            )
        raw = f.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is corrupted: its header is not valid JSON ({err}). {_REDO}") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is corrupted: its header is not a JSON object. {_REDO}")
    tensors = {name: info for name, info in header.items() if name != "__metadata__"}
    end = 0
    for name, info in tensors.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        shape = info.get("shape") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
            or not isinstance(shape, list)
            or not all(isinstance(d, int) and d >= 0 for d in shape)
            or not isinstance(info.get("dtype"), str)
        ):
            raise CheckpointError(f"{path} is corrupted: the header entry of tensor {name!r} is malformed. {_REDO}")
        width = _DTYPE_BYTES.get(info.get("dtype"))
        if width is not None and offsets[1] - offsets[0] != width * math.prod(shape):
            raise CheckpointError(
                f"{path} is corrupted: tensor {name!r} ({info['dtype']} {shape}) is given {offsets[1] - offsets[0]:,} "
                f"bytes instead of {width * math.prod(shape):,}. {_REDO}"
            )
        end = max(end, offsets[1])
    expected = 8 + header_len + end
    if size < expected:
        raise CheckpointError(
            f"{path} is truncated: its header describes {expected:,} bytes but the file holds {size:,} (an interrupted "
            f"save or copy). {_REDO}"
        )
    if size > expected:
        raise CheckpointError(
            f"{path} is corrupted: {size - expected:,} bytes follow the last tensor its header describes. {_REDO}"
        )
    return tensors


_REDO = (
    "Copy the file again from where it came from, load an earlier checkpoint (OUTPUT_DIR/checkpoints/checkpoint-N), "
    "or retrain."
)


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder: `model.safetensors`, or the shards of a sharded save."""
    single = folder / WEIGHTS_NAME
    if single.is_file():
        return [single]
    index = folder / WEIGHTS_INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"{index} is corrupted ({err!r}); it must map tensor names to shards. {_REDO}"
            ) from err
        return [folder / name for name in sorted(set(weight_map.values()))]
    others = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt"))
    hint = f" (it holds {others}: pickled weights are not loaded by this package)" if others else ""
    raise CheckpointError(f"{folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}{hint}: the weights are missing. {_REDO}")


def check_model_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """Check a saved model folder before loading it: `config.json` present and valid JSON, weights present, complete
    and well formed. Returns the parsed `config.json`. Raises [`CheckpointError`] naming the faulty file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder} does not exist or is not a folder; pass the folder written by `hyenarec train`."
        )
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder} has no {CONFIG_NAME}, so it is not a complete model folder: {CONFIG_NAME} is written last, so "
            "a save that was interrupted (or a copy still in progress) leaves a folder without it. Train again, "
            "resume with `hyenarec train --resume`, or load a checkpoint from OUTPUT_DIR/checkpoints/."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{config_path} is not valid JSON ({err}): the file is truncated or corrupted. {_REDO}"
        ) from err
    if not isinstance(config, dict) or "model_type" not in config:
        raise CheckpointError(f"{config_path} has no `model_type`; it is not a model configuration. {_REDO}")
    for path in _weight_files(folder):
        check_safetensors(path)
    return config


def load_model(folder: str | os.PathLike, **kwargs: Any):
    """Load a model folder (or a Trainer checkpoint) with `AutoModel.from_pretrained`, in eval mode, after checking it.

    Checked before loading: see [`check_model_folder`]. Checked after: every tensor the model needs was in the file
    at the expected shape (transformers would otherwise re-initialise it at random), and every weight is finite.
    A vocabulary that does not match the weights (`config.num_items` / `item_ids` against the item embedding table)
    is reported as such.

    Args:
        folder: a local folder holding `config.json` and `model.safetensors`.
        kwargs: passed on to `AutoModel.from_pretrained` (e.g. `dtype`).

    Raises:
        CheckpointError: naming the faulty file and the fix.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    import hyenarec_hf  # noqa: F401  (registers the Auto classes)

    folder = Path(folder)
    check_model_folder(folder)
    config_path = folder / CONFIG_NAME
    try:
        config = AutoConfig.from_pretrained(folder)
    except (ValueError, KeyError) as err:  # the config classes check their fields; KeyError: unknown model_type
        raise CheckpointError(f"{config_path}: {err}") from err
    try:
        model, info = AutoModel.from_pretrained(
            folder, config=config, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
        )
    except Exception as err:  # safetensors / OSError / RuntimeError from the loader
        raise CheckpointError(f"cannot load {folder} ({type(err).__name__}: {err}). {_REDO}") from err

    weights = folder / WEIGHTS_NAME
    mismatched = sorted(info.get("mismatched_keys") or [])
    if mismatched:
        name, stored, expected = mismatched[0]
        if "item_embeddings" in name:
            raise CheckpointError(
                f"the vocabulary of {config_path} does not match {weights}: the config declares num_items="
                f"{config.num_items}"
                + (f" ({len(config.item_ids)} item_ids)" if config.item_ids else "")
                + f" (an item table of {tuple(expected)}), the weights hold an item table of {tuple(stored)}. The "
                "config and the weights come from different runs: copy both from the same folder."
            )
        shown = ", ".join(f"{n} {tuple(s)} (model: {tuple(e)})" for n, s, e in mismatched[:5])
        raise CheckpointError(
            f"{weights} holds tensors whose shapes do not match {config_path}: {shown}. The config and the weights come "
            "from different runs: copy both from the same folder."
        )
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(
            f"{weights} lacks {len(missing)} tensor(s) the model needs ({', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}); transformers would fill them with random values. The file comes "
            f"from another model or version, or was edited. {_REDO}"
        )
    unexpected = sorted(info.get("unexpected_keys") or [])
    if unexpected:
        logger.warning(
            "%s holds %d tensor(s) the model does not use (ignored): %s", weights, len(unexpected), unexpected[:5]
        )
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(
                f"{weights} holds NaN or infinite values in {name}: the run diverged before this save. Load an "
                "earlier checkpoint, or retrain with a lower learning rate."
            )
    return model.eval()


def _checkpoint_step(path: Path) -> int | None:
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why a Trainer checkpoint folder cannot be resumed from (None when it is complete): the Trainer writes
    `trainer_state.json` last, so its absence marks a save that was cut off; the weights must pass
    [`check_safetensors`]."""
    folder = Path(folder)
    if not (folder / TRAINER_STATE_NAME).is_file():
        return f"no {TRAINER_STATE_NAME} (the save was interrupted)"
    try:
        check_model_folder(folder)
    except CheckpointError as err:
        return str(err)
    return None


def last_complete_checkpoint(checkpoints_dir: str | os.PathLike, set_aside_incomplete: bool = False) -> Path | None:
    """The newest `checkpoint-N` folder under `checkpoints_dir` that was completely written, or None.

    Newer folders that are incomplete (a process killed while saving) are skipped with a warning; with
    `set_aside_incomplete=True` they are renamed `checkpoint-N.incomplete`, so that the Trainer, which picks and
    rotates checkpoints by their number, neither resumes from them nor keeps them in place of good ones.
    """
    checkpoints_dir = Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return None
    found = sorted(
        ((step, p) for p in checkpoints_dir.iterdir() if (step := _checkpoint_step(p)) is not None), reverse=True
    )
    for _, path in found:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if set_aside_incomplete:
            target = path.with_name(path.name + ".incomplete")
            suffix = 1
            while target.exists():
                target = path.with_name(f"{path.name}.incomplete{suffix}")
                suffix += 1
            try:
                path.rename(target)
            except FileNotFoundError:  # another process of the same launch set it aside first
                continue
            logger.warning("checkpoint %s is incomplete (%s): moved to %s and skipped", path, problem, target.name)
        else:
            logger.warning("checkpoint %s is incomplete (%s): skipped", path, problem)
    return None
