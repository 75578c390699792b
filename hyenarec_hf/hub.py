"""Sharing trained folders on the Hugging Face Hub through `huggingface_hub`'s own API."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# Trainer checkpoints and half-written files never leave the machine.
IGNORE_PATTERNS = ["checkpoints/*", ".staging/*", "*.tmp", "runs/*"]
REQUIRED_FILES = ["config.json", "model.safetensors"]


def check_folder(folder: str | Path) -> list[str]:
    """Check that `folder` is a complete, loadable model folder and return the files that would be uploaded.

    Raises `ValueError` naming what is missing (weights, config, the model code named in `auto_map`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; give the output folder of `hyenarec train`.")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} is missing {', '.join(missing)}: it is not a complete model folder.")
    config = json.loads((folder / "config.json").read_text())
    for ref in (config.get("auto_map") or {}).values():
        module = ref.split(".")[0] + ".py"
        if not (folder / module).is_file():
            raise ValueError(
                f"{folder} lacks {module}, the model code named in config.json's auto_map; save the model with "
                "`import hyenarec_hf` done first so the code is copied."
            )
    if any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pkl")):
        raise ValueError(f"{folder} holds pickle files (.bin/.pt/.pkl); only safetensors weights are shared.")
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and not any(
            Path(rel).match(p) or rel.startswith(p.split("/")[0] + "/") for p in IGNORE_PATTERNS
        ):
            files.append(rel)
    return files


def push_folder(
    folder: str | Path, repo_id: str, private: bool = False, token: str | None = None, dry_run: bool = False
) -> str:
    """Create `repo_id` (if needed) and upload the model folder: weights, config with `auto_map`, model code,
    results, plot and model card. With `dry_run`, only check and report the files. Returns the repo URL."""
    files = check_folder(folder)
    if dry_run:
        logger.warning("dry run: would upload %d files to %s: %s", len(files), repo_id, ", ".join(files))
        return f"dry run: {len(files)} files -> https://huggingface.co/{repo_id}: " + ", ".join(files)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        repo_type="model",
        ignore_patterns=IGNORE_PATTERNS,
        commit_message="Upload HyenaRec model (hyenarec-hf)",
    )
    return str(getattr(commit, "repo_url", f"https://huggingface.co/{repo_id}"))
