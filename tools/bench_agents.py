"""Benchmark the agents in Algorithm 1: time per MAE step and peak memory, against random masking.

Rows (one MAE, batch and mask ratio for all):

| row | agent | actor |
| --- | --- | --- |
| random, tube | the fixed maskers | - |
| AdaMAE | ``reinforce`` (token estimator, AdaMAE's recipe: trained in the MAE's step) | ``mha`` |
| TATS | ``ppo`` | ``trajectory`` (exact Eq. 1-2) |
| TATS Orthoformer | ``ppo`` | ``orthoformer`` |
| TATS narrow | ``ppo`` | ``trajectory`` at ``sampler_dim`` (``--sampler-dim``; default D/4: 192 at base, 48 at tiny) |
| TATS checkpointed | ``ppo`` | ``trajectory`` with ``checkpoint_blocks`` (activations recomputed in the backward) |
| GRPO | ``grpo`` | ``trajectory``, group size G (``--group-size``) |

Time: one cycle of ``train_joint.py``'s loop at ``train.update_steps_mae = 1`` (k = 1, the
paper's): the Collector takes one environment step under ``no_grad`` (the sampler acts, the
MAE takes one optimisation step inside ``env.step``, the next clips are tokenised), then
``agent.update`` on the buffer, then the buffer is cleared - the time per MAE step with the
policy update amortised. The fixed maskers go through the same Collector, buffer and (empty)
update, as in training. All rows are built in one process around one shared MAE and its
optimiser and stepped in turn (one cycle of each per round), so load from other processes hits
every row alike; the table gives medians of ``--repeats`` rounds after ``--warmup`` rounds (the
collect and update parts each its own median, so they need not add up), and "x random" is the
median over rounds of the row's time over random masking's in the same round. On a CPU shared
with other jobs, ``--threads 1`` avoids the stalls of an oversubscribed OpenMP pool (several-fold
outliers with 2 threads on 2 busy cores).

GRPO: the environment's group mode presents each clip G times. Its row runs at the same number
of clip-copies per MAE step as the others (B / G distinct clips, each G times), so the MAE's work
per step is the same; per distinct clip it costs G times as much.

Peak memory: each row alone, in a fresh process (spawn), over two cycles (the second holds the
AdamW states and a step's activations together), from just before the MAE is built: on CUDA
``torch.cuda.max_memory_allocated`` minus what was allocated before; on CPU the growth of the
peak resident set size (``getrusage``), as ``tools.bench_samplers`` measures it. Both count the
whole training footprint: MAE, sampler and critic weights, gradients and optimiser states,
activations, the rollout buffer. Two precautions make the CPU figure follow the live tensors
(repeatable to a few MiB; without them it moved by +-30 MiB between runs and was dominated by
one-off allocations at tiny size): before the baseline, every row of the table runs two cycles
on a miniature MAE, so lazy imports, kernel caches and thread pools are already there and every
row starts from the same state; and glibc is told to map blocks of 128 KiB and more with mmap
(``MALLOC_MMAP_THRESHOLD_``), so freed tensors leave the resident set instead of staying in
the heap.

Data: a pool of 2 B clips of the built-in synthetic data (``data.SyntheticMotionVideos``),
rendered once before anything is measured and held in memory, served by ``envs.ClipSource``
with no worker processes, so a cycle's data cost is the collation of one batch (a memory copy,
the same in every row); decoding is measured on its own (``--videos``).

Framing overhead (``--parts framing``): the TATS cycle through the environment, the Tianshou
Collector, the buffer and ``agent.update`` against the same computation written as a plain
torch loop (:class:`PlainLoop`): tokenise and target, actor forward, Plackett-Luce sample and
the episode's records (both log-probs, entropy, value, probabilities), MAE forward, backward
and step (the same :class:`envs.MAEOptimizer`), then the PPO loss on the same batch (a second
actor and critic forward, with gradients) and one AdamW step. Same forward passes, same
networks and optimiser settings; what only the framework does is bookkeeping (action checks,
``Batch``/buffer copies, numpy round trips of rewards, per-env info dicts, the Collector's
statistics, writing advantages back). The two are stepped alternately (each goes first every
other round); the ratio is the median over rounds of framework / plain.

Data throughput (``--videos PATH ...``): clips per second of one DataLoader worker (one
process, one thread, decord with one thread): each file alone through ``data.read_clip`` and
``data.TrainClipTransform`` (decode and augmentation timed apart), then all of them through
``data.VideoListDataset`` (what a worker runs; an unreadable file is skipped with a warning
and replaced by the next readable one).

Targets (the project issue, at the paper's ViT-B shapes, N = 1568, D = 768, mask ratio 0.95):
TATS step time <= 1.25 x random masking, TATS peak memory <= 1.10 x (the paper reports
1.21 x), framing overhead <= 1.05 x; each printed PASS or MISS with the measured ratio.

Usage::

    python -m tools.bench_agents --threads 1                             # tiny, batch 8, CPU
    python -m tools.bench_agents --model base --batch 1 --repeats 5 --threads 1   # ViT-B, mask 0.95
    python -m tools.bench_agents --parts data --videos /work/shared/videos/*
    python -m tools.bench_agents --device cuda --model base --batch 16 --repeats 20
"""

from __future__ import annotations

import argparse
import gc
import inspect
import multiprocessing
import os
import queue as queue_module
import resource
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step
from timm.optim import create_optimizer_v2
from torch.utils.data import Dataset

import mae
from agents.distributions import PlackettLuce
from agents.registry import build_agent, make_config
from data import (SyntheticMotionVideos, TrainClipTransform, UnreadableVideoWarning, VideoListDataset, VideoReadError,
                  read_clip)
from envs import ClipSource, MAEOptimizer, MAEVectorEnv, TianshouVectorEnv

PARTS = ("agents", "framing", "data")
TARGETS = {"time": 1.25, "memory": 1.10, "framing": 1.05}
TARGET_MODEL, TARGET_MASK_RATIO = "base", 0.95
# glibc: blocks of 128 KiB and more are mmapped and unmapped when freed, so the peak RSS follows
# the peak of live tensors (as CUDA's max allocated does) instead of what the heap kept.
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


# ---- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One agent to measure: registry name, options, and copies of each clip per step."""

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


# ---- the pieces every measurement builds ---------------------------------------------------


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


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"num_frames": args.num_frames}


def model_shape(args: argparse.Namespace) -> dict[str, Any]:
    """The MAE's constructor arguments (img_size, embed_dim, ...), read without building it: a
    model built and dropped before the memory baseline would still raise the peak RSS."""
    defaults = {name: p.default for name, p in inspect.signature(mae.PretrainVideoMAE).parameters.items()}
    return {**defaults, **mae.SIZES[args.model], **model_overrides(args)}


def make_pool(args: argparse.Namespace) -> ClipPool:
    shape = model_shape(args)
    return ClipPool(max(2 * args.batch, 2), num_frames=args.num_frames, input_size=shape["img_size"],
                    patch_size=shape["patch_size"], tubelet_size=shape["tubelet_size"])


def build_mae(args: argparse.Namespace, device: torch.device) -> tuple[Any, Any]:
    """The MAE and its optimisation step (AdamW as ``train_joint.py``: timm, no decay on norms/biases)."""
    torch.manual_seed(0)
    model = mae.create_model(args.model, **model_overrides(args)).to(device)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1.5e-4 * args.batch / 256, weight_decay=0.05,
                                    betas=(0.9, 0.95))
    return model, MAEOptimizer(optimizer)


class Cycle:
    """One agent in the loop of ``train_joint.py`` (k = 1): collect one env step, update, clear.

    :param row: the agent to build.
    :param model: the MAE; :param mae_optimizer: its optimisation step (both may be shared).
    :param pool: the clips.
    """

    def __init__(self, row: Row, model: Any, mae_optimizer: Any, pool: Dataset, args: argparse.Namespace,
                 device: torch.device):
        self.device = device
        clips = ClipSource(pool, args.batch // row.group_size, seed=0, device=device)
        self.env = MAEVectorEnv(model, clips, mask_ratio=args.mask_ratio, optimizer=mae_optimizer,
                                group_size=row.group_size, amp=args.amp)
        torch.manual_seed(0)
        self.agent = build_agent(row.agent, env=self.env, config=dict(row.options), device=device)
        if self.agent.trains_with_mae:  # AdaMAE's recipe, wired as train_joint.py does: its cost is in the MAE's step
            mae_optimizer.add_param_groups(self.agent.algorithm.mae_param_groups(weight_decay=0.05))
            self.env.sampler_loss = self.agent.algorithm.mae_step_loss
        self.buffer = VectorReplayBuffer(self.env.num_envs, self.env.num_envs, ignore_obs_next=True)
        self.collector = Collector(self.agent.policy, TianshouVectorEnv(self.env), self.buffer)
        self.env.reset()
        self.collector.reset(reset_buffer=True)

    @property
    def num_params(self) -> int:
        """Trainable parameters of the sampler (actor and critic); 0 for a fixed masker."""
        if self.agent.algorithm is None:
            return 0
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


# ---- part 1: time and memory per agent -----------------------------------------------------


def agent_times(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    """Per row: collect, update and cycle seconds of every timed round; sampler params."""
    device = torch.device(args.device)
    pool = make_pool(args)
    model, mae_optimizer = build_mae(args, device)
    cycles = {row.label: Cycle(row, model, mae_optimizer, pool, args, device) for row in rows}
    times: dict[str, list[tuple[float, float]]] = {row.label: [] for row in rows}
    for round_index in range(args.warmup + args.repeats):
        for label, cycle in cycles.items():
            parts = cycle()
            if round_index >= args.warmup:
                times[label].append(parts)
    return {"times": times, "params": {label: cycle.num_params for label, cycle in cycles.items()},
            "grid": tuple(model.grid), "num_tokens": model.num_tokens, "embed_dim": model.embed_dim,
            "num_visible": next(iter(cycles.values())).env.num_visible}


def memory_now(device: torch.device) -> int:
    """Bytes: allocated on CUDA (after resetting the peak), else the peak RSS so far."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def memory_peak(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def row_peak_memory(row: Row, args: argparse.Namespace, all_rows: list[Row]) -> float:
    """Peak memory (MiB) of building one row and running two cycles, from before the MAE exists.

    Every row of the table first runs two cycles on a miniature MAE (tiny, 4 frames), so that
    what a first run allocates once per process - lazy imports (Tianshou pulls in numba and
    scipy when an agent is built), JIT-compiled kernels, thread pools, oneDNN/cuBLAS workspaces -
    is in the baseline, and every row's process starts measuring from the same state.
    """
    device = torch.device(args.device)
    for warm_row in all_rows:
        miniature = argparse.Namespace(**{**vars(args), "model": "tiny", "num_frames": 4,
                                          "batch": warm_row.group_size})
        warm = Cycle(warm_row, *build_mae(miniature, device), make_pool(miniature), miniature, device)
        warm()
        warm()
        del warm
    gc.collect()
    pool = make_pool(args)
    baseline = memory_now(device)
    model, mae_optimizer = build_mae(args, device)
    cycle = Cycle(row, model, mae_optimizer, pool, args, device)
    cycle()
    cycle()
    return (memory_peak(device) - baseline) / 2**20


# ---- part 2: the framing overhead ----------------------------------------------------------


class PlainLoop:
    """The TATS cycle (ppo, trajectory actor, default options) written as a plain torch loop.

    Same maths as the framework's cycle, pass for pass: see the module docstring. The actor and
    critic are built by the same registry call (so same architecture and initialisation) and
    trained by a plain ``torch.optim.AdamW`` with the agent's settings.
    """

    def __init__(self, model: Any, mae_optimizer: Any, pool: Dataset, args: argparse.Namespace,
                 device: torch.device, env: Any):
        config = make_config("ppo", {"actor": "trajectory"})
        plain = dict(objective="paper", ratio_on="stored", advantage_normalization=False, batch_size=None,
                     update_steps_policy=1, max_grad_norm=None)
        differs = {key: getattr(config, key) for key, value in plain.items() if getattr(config, key) != value}
        if differs:
            raise RuntimeError(f"the plain loop writes out the PPO defaults {plain}; the defaults now differ: {differs}")
        self.config, self.device, self.mae, self.mae_optimizer = config, device, model, mae_optimizer
        self.clips = ClipSource(pool, args.batch, seed=0, device=device)
        self.num_tokens, self.num_visible, self.amp = env.num_tokens, env.num_visible, env.amp
        torch.manual_seed(0)
        agent = build_agent("ppo", env=env, config={"actor": "trajectory"}, device=device)
        self.actor, self.critic = agent.policy.actor, agent.algorithm.critic
        self.optimizer = torch.optim.AdamW([*self.actor.parameters(), *self.critic.parameters()], lr=config.lr,
                                           betas=tuple(config.opt_betas), weight_decay=config.weight_decay)

    def distribution(self, tokens: torch.Tensor) -> Any:
        return PlackettLuce(self.actor(tokens)[0], self.num_visible, self.config.softmax_temp,
                            masked_logprob=self.config.masked_logprob,
                            normalize_entropy=self.config.normalize_entropy)

    def __call__(self) -> tuple[float, float]:
        c = self.config
        start = time.perf_counter()
        # Algorithm 1 lines 9-13: observe X, draw the visible set from the frozen sampler, one MAE step
        batch = self.clips.next_batch()
        video = batch["video"]
        with torch.no_grad():
            target = self.mae.target(video)
            tokens = self.mae.tokenize(video).float()
            dist = self.distribution(tokens)
            act = dist.sample()
            # the episode's records, as the collecting policy stores them
            logp_old = dist.masked_log_prob(act)
            self.records = [dist.log_prob(act), dist.entropy(), dist.probs, dist.stddev]
            value_old = self.critic(tokens).float().flatten()
        visible = mae.indices_to_mask(act, self.num_tokens)
        self.mae.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            pred = self.mae(video, visible)
        out = self.mae.reconstruction_loss(pred.float(), target, visible)
        self.mae_optimizer.backward_and_step(out.per_clip.mean(), self.mae.parameters())
        reward = out.per_clip.detach().float()
        synchronize(self.device)
        collected = time.perf_counter()
        # lines 14-20: one PPO step on the episodes (Eq. 7-8), A = R - V_old
        adv = reward - value_old
        dist = self.distribution(tokens)
        log_ratio = dist.masked_log_prob(act) - logp_old
        ratio = log_ratio.exp()
        clipped = ratio.clamp(1.0 - c.eps_clip, 1.0 + c.eps_clip)
        clip_objective = torch.min(ratio * adv, clipped * adv).mean()
        value = self.critic(tokens).float().flatten()
        value_loss = (value - reward).pow(2).mean()
        entropy = dist.entropy().mean()
        loss = -(c.policy_coef * clip_objective - c.value_coef * value_loss + c.entropy_coef * entropy)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # as Agent.update: no gradients kept between updates
        with torch.no_grad():  # the statistics the algorithm reports, one host sync each, as there
            stats = [loss, clip_objective, value_loss, entropy, value.mean(), ratio.mean(),
                     ((ratio - 1.0).abs() > c.eps_clip).float().mean(), ((ratio - 1.0) - log_ratio).mean(),
                     adv.mean(), adv.std() if len(adv) > 1 else adv.sum() * 0, reward.mean()]
            self.stats = [float(value) for value in stats]
        synchronize(self.device)
        return collected - start, time.perf_counter() - collected


def framing_times(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    """Collect and update seconds of the framework's and the plain TATS cycle, stepped alternately."""
    device = torch.device(args.device)
    pool = make_pool(args)
    model, mae_optimizer = build_mae(args, device)
    framework = Cycle(Row("TATS", "ppo", {"actor": "trajectory"}), model, mae_optimizer, pool, args, device)
    plain = PlainLoop(model, mae_optimizer, pool, args, device, framework.env)
    runs = {"framework": framework, "plain": plain}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for round_index in range(args.warmup + args.repeats):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))  # neither always goes first
        for name in order:
            parts = runs[name]()
            if round_index >= args.warmup:
                times[name].append(parts)
    return times


# ---- part 3: data throughput ---------------------------------------------------------------


def video_throughput(paths: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Per file: decode and augment seconds (or why it was skipped); then the dataset's clips/s."""
    transform = TrainClipTransform(args.input_size)
    generator = torch.Generator().manual_seed(0)
    files = []
    for path in paths:
        try:
            frames, _ = read_clip(path, args.num_frames, args.sampling_rate, train=True, generator=generator)
        except VideoReadError as error:
            files.append({"path": path, "skipped": error.reason})
            continue
        decode, augment = [], []
        for _ in range(args.data_repeats):
            start = time.perf_counter()
            frames, _ = read_clip(path, args.num_frames, args.sampling_rate, train=True, generator=generator)
            decoded = time.perf_counter()
            transform(frames, generator)
            decode.append(decoded - start)
            augment.append(time.perf_counter() - decoded)
        files.append({"path": path, "size": f"{frames.shape[2]}x{frames.shape[1]}",
                      "decode": statistics.median(decode), "augment": statistics.median(augment),
                      "total": statistics.median([d + a for d, a in zip(decode, augment)])})
    dataset_result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreadableVideoWarning)
        list_file = os.path.join(tmp, "videos.txt")
        with open(list_file, "w", encoding="utf-8") as out:
            out.writelines(f"{os.path.abspath(path)}\t0\n" for path in paths)
        dataset = VideoListDataset(list_file, num_frames=args.num_frames, sampling_rate=args.sampling_rate,
                                   input_size=args.input_size, train=True, seed=0)
        count, skipped = 0, 0
        try:
            start = time.perf_counter()
            for _ in range(args.data_repeats):
                for index in range(len(dataset)):
                    item = dataset[index]
                    count, skipped = count + 1, skipped + item["skipped"]
            dataset_result = {"clips": count, "seconds": time.perf_counter() - start, "skipped": skipped}
        except RuntimeError as error:  # every file unreadable
            dataset_result = {"error": str(error)}
        dataset_result["warnings"] = [str(w.message) for w in caught if issubclass(w.category, UnreadableVideoWarning)]
    return {"files": files, "dataset": dataset_result}


# ---- processes and formatting -----------------------------------------------------------------


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


def ms(seconds: float) -> str:
    value = 1e3 * seconds
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def median_parts(samples: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Medians of the collect part, the update part and the whole cycle."""
    return (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples),
            statistics.median(s[0] + s[1] for s in samples))


def paired_ratio(samples: list[tuple[float, float]], reference: list[tuple[float, float]]) -> float:
    """Median over rounds of a cycle's time over the reference's in the same round (load drifts cancel)."""
    return statistics.median(sum(a) / sum(b) for a, b in zip(samples, reference))


def verdict(name: str, ratio: float | None, at_target_shapes: bool) -> str:
    limit = TARGETS[name]
    if ratio is None:
        return "not measured"
    result = "PASS" if ratio <= limit else "MISS"
    return result if at_target_shapes else f"{result} (indicative: not the target shapes)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", choices=("tiny", "small", "base", "large"),
                        help="MAE size (default tiny; base = the paper's ViT-B, N = 1568, D = 768)")
    parser.add_argument("--batch", type=int, default=None,
                        help="clip-copies per MAE step (default: 8 for tiny, 1 for larger models)")
    parser.add_argument("--mask-ratio", type=float, default=TARGET_MASK_RATIO, help="masked fraction (default 0.95)")
    parser.add_argument("--num-frames", type=int, default=16, help="frames per clip (default 16)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="no bf16 autocast of the MAE on CUDA (train.amp=false); CPU never uses it")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 10 tiny, 3 larger)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default: 2 tiny, 1 larger)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    parser.add_argument("--sampler-dim", type=int, default=None,
                        help="width of the narrow TATS row (default D/4 as a multiple of 12, at least 48)")
    parser.add_argument("--group-size", type=int, default=4, help="GRPO's G (default 4; at most the batch)")
    parser.add_argument("--rows", nargs="+", default=None,
                        help="measure only rows whose label contains one of these words (random is always kept)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=None,
                        help="what to run (default: agents framing, plus data when --videos is given)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory processes")
    parser.add_argument("--videos", nargs="+", default=[], metavar="PATH", help="video files for the data part")
    parser.add_argument("--input-size", type=int, default=224, help="crop side of the data part (default 224)")
    parser.add_argument("--sampling-rate", type=int, default=2, help="frame stride of the data part (default 2)")
    parser.add_argument("--data-repeats", type=int, default=5, help="clips read per file in the data part (5)")
    args = parser.parse_args(argv)
    large = args.model != "tiny"
    args.batch = args.batch or (1 if large else 8)
    args.repeats = args.repeats or (3 if large else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if large else 2)
    if args.rows:
        args.rows = ["random", *args.rows]
    parts = args.parts or ["agents", "framing", *(["data"] if args.videos else [])]
    if "data" in parts and not args.videos:
        parser.error("--parts data needs --videos PATH [PATH ...]")
    if not 0 < args.mask_ratio < 1:
        parser.error(f"--mask-ratio must be in (0, 1), got {args.mask_ratio}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU, {args.threads or torch.get_num_threads()} threads")
    at_target = args.model == TARGET_MODEL and abs(args.mask_ratio - TARGET_MASK_RATIO) < 1e-9
    print(f"# tools.bench_agents: {device_name}, torch {torch.__version__}", flush=True)
    if "agents" in parts or "framing" in parts:
        print(f"\n## agents in Algorithm 1 (k = 1): model {args.model}, batch {args.batch}, mask ratio "
              f"{args.mask_ratio}, {args.num_frames} frames, bf16 MAE {'on' if args.amp and device.type == 'cuda' else 'off'}; "
              f"median of {args.repeats} rounds after {args.warmup} warm-up; x random: median of per-round ratios",
              flush=True)
    ratios: dict[str, float | None] = {"time": None, "memory": None, "framing": None}

    if "agents" in parts:
        rows, notes = make_rows(args, model_shape(args)["embed_dim"])
        measured = in_fresh_process(agent_times, args.threads, rows, args)
        print(f"\nN = {measured['num_tokens']} tokens (grid {measured['grid']}), D = {measured['embed_dim']}, "
              f"K = {measured['num_visible']} visible; synthetic clips held in memory")
        memory = {row.label: in_fresh_process(row_peak_memory, args.threads, row, args, rows, env=MEMORY_ENV)
                  if args.memory else None for row in rows}
        reference = measured["times"]["random"]
        base_memory = memory["random"]
        mem_kind = "CUDA max allocated" if device.type == "cuda" else "peak RSS growth"
        print(f"\n| agent | sampler params | collect ms | update ms | ms / MAE step | x random | "
              f"peak MiB ({mem_kind}) | x random |")
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            collect, update, total = median_parts(measured["times"][row.label])
            mib = memory[row.label]
            mem_cells = (f"{mib:.0f} | {mib / base_memory:.2f}" if mib is not None and base_memory
                         else "- | -")
            params = measured["params"][row.label]
            print(f"| {row.label} | {params / 1e6:.2f}M | {ms(collect)} | {ms(update)} | {ms(total)} | "
                  f"{paired_ratio(measured['times'][row.label], reference):.2f} | {mem_cells} |", flush=True)
        for note in notes:
            print(f"\n{note}")
        tats = "TATS (ppo, TA full)"
        if tats in measured["times"]:
            ratios["time"] = paired_ratio(measured["times"][tats], reference)
            if memory[tats] is not None and base_memory:
                ratios["memory"] = memory[tats] / base_memory

    if "framing" in parts:
        times = in_fresh_process(framing_times, args.threads, args)
        framework, plain = median_parts(times["framework"]), median_parts(times["plain"])
        ratios["framing"] = paired_ratio(times["framework"], times["plain"])
        print("\n## framing overhead: the TATS cycle through env + Collector + buffer + agent.update, "
              "against the same computation in a plain torch loop (stepped alternately)")
        print("| path | collect ms | update ms | cycle ms | x plain |")
        print("|---|---|---|---|---|")
        for name, key, parts_ in (("env + Collector + buffer + agent.update", "framework", framework),
                                  ("plain torch loop", "plain", plain)):
            print(f"| {name} | {ms(parts_[0])} | {ms(parts_[1])} | {ms(parts_[2])} | "
                  f"{paired_ratio(times[key], times['plain']):.3f} |")

    if "agents" in parts or "framing" in parts:
        where = "the target shapes" if at_target else (
            f"not the target shapes (model {args.model}, mask {args.mask_ratio}; targets are for "
            f"{TARGET_MODEL} at {TARGET_MASK_RATIO})")
        print(f"\n## targets ({where}; {device_name})")
        print("| target | measured | limit | result |")
        print("|---|---|---|---|")
        names = {"time": "TATS time per MAE step / random", "memory": "TATS peak memory / random",
                 "framing": "framing overhead (framework / plain loop)"}
        for key, name in names.items():
            ratio = ratios[key]
            measured_text = f"{ratio:.3f}x" if ratio is not None else "-"
            print(f"| {name} | {measured_text} | <= {TARGETS[key]:.2f}x | {verdict(key, ratio, at_target)} |")

    if "data" in parts:
        result = in_fresh_process(video_throughput, 1, args.videos, args)
        print(f"\n## data throughput: one worker (1 thread, decord 1 thread), {args.num_frames} frames at stride "
              f"{args.sampling_rate}, multi-scale crop + flip to {args.input_size} px, median of {args.data_repeats}")
        print("| video | frame size | decode ms | augment ms | clips / s |")
        print("|---|---|---|---|---|")
        for entry in result["files"]:
            name = os.path.basename(entry["path"])
            if "skipped" in entry:
                print(f"| {name} | skipped: {entry['skipped'].split(' (')[0]} | - | - | - |")
            else:
                print(f"| {name} | {entry['size']} | {ms(entry['decode'])} | {ms(entry['augment'])} | "
                      f"{1 / entry['total']:.1f} |")
        dataset = result["dataset"]
        if "error" in dataset:
            print(f"\nVideoListDataset: {dataset['error']}")
        else:
            print(f"\nVideoListDataset over the {len(args.videos)} files, {args.data_repeats} passes: "
                  f"{dataset['clips'] / dataset['seconds']:.1f} clips/s per worker "
                  f"({dataset['clips']} clips in {dataset['seconds']:.1f} s; {dataset['skipped']} unreadable "
                  f"entries replaced by the next readable video)")
        for message in dataset.get("warnings", []):
            print(f"- warning: {message}")


if __name__ == "__main__":
    from runtime.errors import run_tool

    run_tool(main)
