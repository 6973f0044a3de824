"""Device choice, seeding and the run directory."""

from __future__ import annotations

import random
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
    backends = (getattr(torch.backends, device.type, None), getattr(torch, device.type, None))  # mps; xpu, ...
    available = any(callable(getattr(b, "is_available", None)) and b.is_available() for b in backends)
    if device.type not in ("cpu", "cuda") and not available:
        raise ValueError(f"device={name}: this machine has no {device.type} device (use device=cpu or auto)")
    return device


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def save_resolved_config(cfg: DictConfig, output_dir: str | Path) -> Path:
    """Write ``output_dir/config.yaml`` (the first file a run writes).

    Raises:
        runtime.errors.UserError: ``output_dir`` cannot be written.
    """
    from runtime.errors import UserError, not_writable

    path = Path(output_dir) / "config.yaml"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    except OSError as error:
        if not not_writable(error):
            raise
        raise UserError(f"output_dir {path.parent} is not writable ({error.strerror or error}: {error.filename}); "
                        "choose another output_dir") from error
    return path


class RunDir(NamedTuple):
    """What a training entry point starts from: where it writes, and what it resumes."""

    path: Path
    resume_from: Path | None
    """The latest checkpoint when resuming, else None."""
    writer: object | None
    """TensorBoard SummaryWriter on the main process, None elsewhere."""
    lock: Any
    """The folder's :class:`runtime.run_lock.RunLock` (held by the main process); release it at the end."""


def open_run_dir(cfg: DictConfig, *, is_main: bool, required_keys: tuple[str, ...] = ("step", "config"),
                 world_size: int = 1, what: str = "a run") -> RunDir:
    """Hold the run folder, check it, then save the resolved config and open TensorBoard.

    The main process first takes the folder's lock (:mod:`runtime.run_lock`): a second run on it
    is one error. Nothing else is written before the checks pass
    (:func:`runtime.resume.prepare_run_dir`): a run in ``output_dir`` without ``resume``, a damaged
    checkpoint without a fallback, a resume with another number of processes, or a resume whose
    config changes a key that may not change is one error, and config.yaml and the checkpoints
    stay as they were. Every rank raises the same errors.

    :param required_keys: what a checkpoint of this entry point holds (a file without them is
        named as foreign).
    Raises:
        runtime.errors.UserError: see above.
    """
    from torch.utils.tensorboard import SummaryWriter

    from runtime.distributed import any_rank
    from runtime.errors import UserError
    from runtime.resume import commit_run_dir, prepare_run_dir
    from runtime.run_lock import RunLock

    output_dir = Path(cfg.output_dir)
    lock, refused = RunLock(output_dir), None
    if is_main:
        try:
            lock.acquire()
        except (UserError, OSError) as error:  # in use; or a folder that cannot be made (the checks name it)
            refused = error if isinstance(error, UserError) else None
    if any_rank(refused is not None):
        raise refused or UserError(f"output_dir={output_dir} is in use by another run (rank 0 names it)")
    try:
        plan, _ = prepare_run_dir(OmegaConf.to_container(cfg, resolve=True), resume=bool(cfg.resume),
                                  required_keys=required_keys, world_size=world_size)
        if is_main:
            commit_run_dir(plan)
            save_resolved_config(cfg, output_dir)
            lock.announce(what)
        return RunDir(output_dir, plan.resume_from, SummaryWriter(str(output_dir / "tb")) if is_main else None, lock)
    except BaseException:
        lock.release()
        raise


def log_scalars(writer: Any, scalars: dict[str, float], step: int) -> None:
    """Write ``scalars`` to TensorBoard at ``step``; nothing when ``writer`` is None (ranks other than 0)."""
    if writer is not None:
        for key, value in scalars.items():
            writer.add_scalar(key, value, step)


def run_cli(function: Callable[[DictConfig], Any], cfg: DictConfig) -> None:
    """Run an entry point; a user error (bad config, path or checkpoint) is ``error: ...``, exit 2."""
    from runtime.errors import run_cli as run_reporting_errors

    run_reporting_errors(function, cfg)
