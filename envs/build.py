"""The MAE, its clips, its optimiser step and the environment, each built from a run's config.

``train_joint.py`` (and the tools and benchmark on its builders) and the registered Gymnasium
environment (:mod:`envs.registration`) call the same functions. They read a DictConfig with the
schema's sections (``model``, ``data``, ``train``, ``mask_ratio``, ``seed``); a key the config
leaves out (the registered environment's testbed config sets fewer than the schema) takes the
default named here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from omegaconf import DictConfig, OmegaConf
from timm.optim import create_optimizer_v2

from data import build_dataset
from envs.clip_source import ClipSource
from envs.mae_env import MAEVectorEnv
from envs.mae_optimizer import MAEOptimizer
from mae import PretrainVideoMAE, load_mae_weights
from mae.registry import create_model_from_config
from runtime.errors import ConfigError
from runtime.lr_schedule import PAPER_TOTAL_BATCH, build_schedule, learning_rates


def build_model(cfg: DictConfig, *, seed: int | None = None,
                checkpoint: str | Path | None = None) -> PretrainVideoMAE:
    """The MAE of ``cfg.model`` for ``cfg.data.num_frames`` frames, on the CPU.

    :param seed: draw the initial weights from this seed and leave the global torch generator as it
        was (the registered environment: the caller's agent keeps its own draws); None = from the
        global generator.
    :param checkpoint: weights to load strictly after building, or None.
    """
    if seed is None:
        model = create_model_from_config(cfg.model, num_frames=cfg.data.num_frames)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = create_model_from_config(cfg.model, num_frames=cfg.data.num_frames)
    return model if checkpoint is None else load_mae_weights(model, checkpoint)


def group_size(cfg: DictConfig) -> int:
    """Copies of each clip per batch (GRPO's ``agent.group_size``; 1 without an agent section)."""
    return int(OmegaConf.select(cfg, "agent.group_size", default=1))


def build_clips(cfg: DictConfig, model: PretrainVideoMAE, *, rank: int = 0, world_size: int = 1,
                device: torch.device | str = "cpu") -> ClipSource:
    """The training clips of this rank (each rank its own shard), ``train.batch_size`` per step
    (distinct clips: ``train.batch_size / agent.group_size``)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    name, num_workers = data.pop("name"), data.pop("num_workers", 0)
    # every other data key goes to the dataset, which refuses one it does not know
    dataset = build_dataset(name, **{"sampling_rate": 1, **data}, input_size=model.img_size,
                            patch_size=model.patch_size, tubelet_size=model.tubelet_size, train=True, seed=cfg.seed)
    copies = group_size(cfg)
    if cfg.train.batch_size % copies:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} must be a multiple of "
                          f"agent.group_size={copies}")
    return ClipSource(dataset, cfg.train.batch_size // copies, seed=cfg.seed, num_workers=num_workers,
                      rank=rank, world_size=world_size, device=device)


def build_mae_optimizer(cfg: DictConfig, model: PretrainVideoMAE, clips: ClipSource, *, world_size: int = 1,
                        is_main: bool = False, constant_lr: bool = False) -> MAEOptimizer:
    """AdamW with lr scaled by total batch / 256 and VideoMAE's schedule (warm-up, cosine), per optimiser step.

    :param constant_lr: instead, torch's AdamW at ``train.lr`` with its own defaults, no schedule
        (the registered environment: a run's length is the caller's, unknown here).
    """
    if constant_lr:
        return MAEOptimizer(torch.optim.AdamW(model.parameters(), lr=cfg.train.lr))
    total_batch = cfg.train.batch_size * world_size * cfg.train.accum_steps
    optimizer = create_optimizer_v2(model, opt=cfg.train.opt, lr=learning_rates(cfg.train, total_batch).peak,
                                    weight_decay=cfg.train.weight_decay, betas=tuple(cfg.train.opt_betas))
    schedule_steps = clips.steps_per_epoch * cfg.train.epochs
    scheduler = build_schedule(  # runtime/lr_schedule.py
        optimizer, cfg.train, total_batch=total_batch, total_steps=max(schedule_steps // cfg.train.accum_steps, 1),
        steps_per_epoch=clips.steps_per_epoch / cfg.train.accum_steps)
    if is_main:
        print(scheduler.describe("The MAE's learning rate", paper_total_batch=PAPER_TOTAL_BATCH))
    return MAEOptimizer(optimizer, scheduler, clip_grad=cfg.train.clip_grad, accum_steps=cfg.train.accum_steps)


def build_env(cfg: DictConfig, model: PretrainVideoMAE, clips: ClipSource, *, world_size: int = 1,
              device: torch.device | str = "cpu", is_main: bool = False, optimizer: MAEOptimizer | None = None,
              constant_lr: bool = False, render_mode: str | None = None,
              autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP) -> MAEVectorEnv:
    """The MAE as an environment: a training step per ``step()`` (``train.mae=joint``), or a fixed
    scorer (``frozen``). ``mask_ratio_range``, when set, draws a budget per batch.

    :param optimizer: the MAE's optimisation step; None = :func:`build_mae_optimizer`'s (with
        ``constant_lr``). tools.bench_agents shares one between environments.
    """
    device = torch.device(device)
    mask_ratio = tuple(cfg.mask_ratio_range) if cfg.get("mask_ratio_range") is not None else cfg.mask_ratio
    options = dict(mask_ratio=mask_ratio, group_size=group_size(cfg), amp=cfg.train.get("amp", True),
                   reward=cfg.train.get("reward", "loss"), render_mode=render_mode, autoreset_mode=autoreset_mode)
    if cfg.train.get("mae", "joint") == "frozen":  # no optimiser, schedule or DDP wrapper: nothing of the MAE changes
        env = MAEVectorEnv(model, clips, mode="frozen", **options)
    else:
        forward_module = model
        if world_size > 1:
            forward_module = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        env = MAEVectorEnv(model, clips, forward_module=forward_module,
                           optimizer=optimizer or build_mae_optimizer(cfg, model, clips, world_size=world_size,
                                                                      is_main=is_main, constant_lr=constant_lr),
                           group_update=cfg.train.get("group_update", "all"), **options)
    if env.draws_budget:  # every rank draws the same K per step; the state is saved with the env's
        env.np_random = np.random.default_rng(cfg.seed)
    return env
