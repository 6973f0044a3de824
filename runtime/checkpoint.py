"""Atomic checkpoints: a crash while writing leaves the previous file intact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

LATEST = "checkpoint-latest.pt"


def save_atomic(state: dict[str, Any], path: str | Path) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=False)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    path = Path(output_dir) / LATEST
    return path if path.is_file() else None
