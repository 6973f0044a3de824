"""Device choice, seeding and the run directory."""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} asked for CUDA but none is available (use device=cpu or auto)")
    return device


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def save_resolved_config(cfg: DictConfig, output_dir: str | Path) -> Path:
    path = Path(output_dir) / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return path


class RunDir(NamedTuple):
    """What a training entry point starts from: where it writes, and what it resumes."""

    path: Path
    resume_from: Path | None
    """The latest checkpoint when resuming, else None."""
    writer: object | None
    """TensorBoard SummaryWriter on the main process, None elsewhere."""


def open_run_dir(cfg: DictConfig, *, is_main: bool) -> RunDir:
    """Refuse to overwrite a run unless ``cfg.resume``; save the resolved config; open TensorBoard.

    Raises:
        configs.ConfigError: ``cfg.output_dir`` already holds a checkpoint and ``resume`` is false.
    """
    from torch.utils.tensorboard import SummaryWriter

    from configs import ConfigError
    from runtime.checkpoint import latest_checkpoint

    output_dir = Path(cfg.output_dir)
    resume_from = latest_checkpoint(output_dir)
    if resume_from is not None and not cfg.resume:
        raise ConfigError(f"output_dir={output_dir} already holds a run ({resume_from.name}); pass resume=true "
                          "to continue it, or choose another output_dir")
    if is_main:
        save_resolved_config(cfg, output_dir)
    return RunDir(output_dir, resume_from, SummaryWriter(str(output_dir / "tb")) if is_main else None)


def log_scalars(writer: Any, scalars: dict[str, float], step: int) -> None:
    """Write ``scalars`` to TensorBoard at ``step``; nothing when ``writer`` is None (ranks other than 0)."""
    if writer is not None:
        for key, value in scalars.items():
            writer.add_scalar(key, value, step)


def run_cli(function: Callable[[DictConfig], Any], cfg: DictConfig) -> None:
    """Run an entry point; a bad config, path or checkpoint exits with code 2 and ``error: ...``."""
    from configs import ConfigError
    from mae.classifier import CheckpointMismatchError

    try:
        function(cfg)
    except (ConfigError, FileNotFoundError, CheckpointMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
