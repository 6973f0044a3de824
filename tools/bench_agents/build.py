"""The pieces every measurement builds: the rows, the clips, and one agent's cycle of Algorithm 1,
built by ``train_joint.py``'s own build functions (run from the repository root, as train_joint.py)."""

from __future__ import annotations

import argparse
import inspect
import multiprocessing
import os
import queue as queue_module
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tianshou.utils.torch_utils import policy_within_training_step
from torch.utils.data import Dataset

import mae
import train_joint
from configs import CONFIG_DIR, validate
from data import SyntheticMotionVideos
from envs import ClipSource, MAEOptimizer


@dataclass(frozen=True)
class Row:
    """One agent to measure: registry name, its ``agent.*`` options, and copies of each clip per step."""

    label: str
    agent: str
    options: dict[str, Any] = field(default_factory=dict)
    group_size: int = 1


def make_rows(args: argparse.Namespace, embed_dim: int) -> tuple[list[Row], list[str]]:
    """The rows of the table, and notes on rows left out."""
    sampler_dim = args.sampler_dim or max(48, embed_dim // 4 // 12 * 12)  # a multiple of TA's 12 heads
    rows = [
        Row("random", "random"),
        Row("tube", "tube"),
        Row("AdaMAE (reinforce, MHA)", "reinforce", {"actor": "mha"}),
        Row("TATS (ppo, TA full)", "ppo", {"actor": "trajectory"}),
        Row("TATS Orthoformer (ppo)", "ppo", {"actor": "orthoformer"}),
        Row(f"TATS narrow (ppo, TA full, W={sampler_dim})", "ppo", {"actor": "trajectory", "sampler_dim": sampler_dim}),
        Row("TATS checkpointed (ppo, TA full, recomputed in backward)", "ppo",
            {"actor": "trajectory", "checkpoint_blocks": True}),
    ]
    notes = []
    group = min(args.group_size, args.batch)
    if group >= 2 and args.batch % group == 0:
        rows.append(Row(f"GRPO (TA full, G={group}, {args.batch // group} clips x {group})", "grpo",
                        {"actor": "trajectory", "group_size": group}, group_size=group))
    else:
        notes.append(f"GRPO left out: its groups need a batch of G >= 2 copies of a clip "
                     f"(batch {args.batch}, --group-size {args.group_size})")
    if args.rows:
        keep = [row for row in rows if any(key.lower() in row.label.lower() for key in args.rows)]
        notes += [f"{row.label} left out (--rows)" for row in rows if row not in keep]
        rows = keep
    return rows, notes


TATS = Row("TATS", "ppo", {"actor": "trajectory"})  # the framing part's row


def run_config(args: argparse.Namespace, row: Row = Row("random", "random")) -> DictConfig:
    """The config of ``python train_joint.py preset=none agent=<row> ...`` at the benchmark's shapes."""
    options = [f"agent.{key}={str(value).lower() if isinstance(value, bool) else value}"
               for key, value in row.options.items()]
    overrides = ["preset=none", f"model={args.model}", f"agent={row.agent}", *options,
                 f"train.batch_size={args.batch}", f"mask_ratio={args.mask_ratio}",
                 f"data.num_frames={args.num_frames}", f"train.amp={str(args.amp).lower()}", "seed=0"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    validate(cfg)
    return cfg


class ClipPool(Dataset):
    """``size`` built-in synthetic clips, rendered once and held in memory (no decoding in the loop)."""

    def __init__(self, size: int, *, num_frames: int, input_size: int, patch_size: int, tubelet_size: int):
        source = SyntheticMotionVideos(size, num_frames=num_frames, input_size=input_size,
                                       patch_size=patch_size, tubelet_size=tubelet_size, seed=0)
        self.items = [{key: source[i][key] for key in ("video", "label", "index", "skipped")} for i in range(size)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def model_shape(args: argparse.Namespace) -> dict[str, Any]:
    """The MAE's constructor arguments (img_size, embed_dim, ...), read without building it: a
    model built and dropped before the memory baseline would still raise the peak RSS."""
    defaults = {name: p.default for name, p in inspect.signature(mae.PretrainVideoMAE).parameters.items()}
    return {**defaults, **mae.SIZES[args.model], "num_frames": args.num_frames}


def make_pool(args: argparse.Namespace) -> ClipPool:
    shape = model_shape(args)
    return ClipPool(max(2 * args.batch, 2), num_frames=args.num_frames, input_size=shape["img_size"],
                    patch_size=shape["patch_size"], tubelet_size=shape["tubelet_size"])


def clip_source(pool: Dataset, cfg: DictConfig, device: torch.device) -> ClipSource:
    """The pool's clips in batches of distinct clips, as ``train_joint.build_clips`` batches a dataset."""
    return ClipSource(pool, cfg.train.batch_size // int(cfg.agent.get("group_size", 1)), seed=cfg.seed,
                      device=device)


def build_mae(args: argparse.Namespace, pool: Dataset, device: torch.device) -> tuple[mae.PretrainVideoMAE,
                                                                                     MAEOptimizer]:
    """The MAE and its optimisation step (AdamW and schedule), as ``train_joint.py`` builds them."""
    cfg = run_config(args)
    torch.manual_seed(0)
    model = train_joint.build_model(cfg).to(device)
    return model, train_joint.build_mae_optimizer(cfg, model, clip_source(pool, cfg, device), world_size=1,
                                                  is_main=False)


class Cycle:
    """One agent in the loop of ``train_joint.py`` (k = 1): collect one env step, update, clear.

    :param row: the agent to build.
    :param model: the MAE; :param mae_optimizer: its optimisation step (both may be shared between rows).
    :param pool: the clips.
    """

    def __init__(self, row: Row, model: Any, mae_optimizer: MAEOptimizer, pool: Dataset, args: argparse.Namespace,
                 device: torch.device):
        self.device = device
        cfg = run_config(args, row)
        self.env = train_joint.build_env(cfg, model, clip_source(pool, cfg, device), world_size=1, device=device,
                                         is_main=False, optimizer=mae_optimizer)
        torch.manual_seed(0)
        self.agent = train_joint.build_sampler(cfg, self.env, world_size=1, device=device, is_main=False)
        self.buffer, self.collector = train_joint.build_collector(cfg, self.env, self.agent)
        self.env.reset()
        self.collector.reset(reset_buffer=True)

    @property
    def num_params(self) -> int:
        """Trainable parameters of the sampler (actor and critic); 0 for a fixed masker."""
        return sum(p.numel() for p in self.agent.algorithm.parameters() if p.requires_grad)

    def __call__(self) -> tuple[float, float]:
        """Run one cycle; return the seconds of its collect and update parts."""
        start = time.perf_counter()
        with torch.no_grad(), policy_within_training_step(self.agent.policy):
            self.collector.collect(n_step=self.env.num_envs)
        synchronize(self.device)
        collected = time.perf_counter()
        self.agent.update(self.buffer)
        self.buffer.reset()
        synchronize(self.device)
        return collected - start, time.perf_counter() - collected


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _child(function: Callable, threads: int, queue: multiprocessing.Queue, *args: object) -> None:
    if threads:
        torch.set_num_threads(threads)
    queue.put(function(*args))


def in_fresh_process(function: Callable, threads: int, *args: object, env: dict[str, str] | None = None) -> Any:
    """Run ``function(*args)`` in a new interpreter (spawn), with ``env`` added to its environment."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(function, threads, queue, *args))
    saved = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    try:
        process.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    while True:  # get before join (a large result would block the child's exit); stop if it died
        try:
            result = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not process.is_alive():
                raise RuntimeError(f"{function.__name__} died in its process (exit code {process.exitcode})") from None
    process.join()
    return result
