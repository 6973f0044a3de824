"""Joint training of VideoMAE and its token sampler: the TATS paper's Algorithm 1.

    python train_joint.py                                    # TATS (PPO, cooperative), micro, built-in data
    python train_joint.py agent=grpo mask_ratio=0.95
    python train_joint.py agent=random model=base data=list data.train_list=train.csv
    python train_joint.py train.mae=frozen model.init_checkpoint=mae.pt   # RL against a fixed MAE (the benchmark)
    torchrun --nproc_per_node=8 train_joint.py model=base ...

Build functions make the run (:func:`build_run`: processes, run folder, seeds, MAE, clips, the
environment with the MAE's optimiser (these four from :mod:`envs.build`, shared with the registered
Gymnasium environment), the agent, the collector, a resumed state); the loop
(:func:`train_loop`) is Algorithm 1: for the first ``train.mae_only_epochs`` epochs the MAE
trains with random space-time masking (lines 5-7); afterwards, cycles of
``train.update_steps_mae`` environment steps (MAE updates, sampler frozen, episodes recorded:
lines 9-13), then the agent's update on them (MAE untouched: lines 14-20), then the buffer is
cleared (line 22). :func:`train` closes every resource on any exit.

``train.mae=frozen`` keeps the MAE of ``model.init_checkpoint`` fixed (eval mode, no optimiser,
schedule or DDP wrapper): every step is a rollout and the cycles are the same; the held-out
score is the benchmark's (:mod:`benchmark.evaluate`, docs/benchmark.md).

AdaMAE's recipe (``agent=reinforce``, ``agent.recipe=adamae``, the default of that agent) trains
the sampler inside the MAE's step instead: its parameters join the MAE's optimiser (same
schedule, same weight-decay rules), its loss is added to the reconstruction loss in the
environment's step, and it starts at the first step (no random-masking epochs). The cycle
still collects episodes and calls the agent's update, which then only logs.
"""

from __future__ import annotations

import runtime.fast_start  # noqa: F401, I001 - first: before Tianshou compiles its numba kernels

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step
from tqdm import tqdm

import mae
from agents.algorithms.agent import Agent
from agents.buffers import dump_hdf5
from agents.registry import build_agent
from configs import CONFIG_DIR, ConfigError, register_configs, validate
from envs import ClipSource, MAEVectorEnv, TianshouVectorEnv
from envs.build import build_clips, build_env, build_mae_optimizer, build_model  # noqa: F401 - train_joint.build_*
from envs.heldout import heldout_batch
from mae.baselines import heldout_losses
from runtime import checkpoint, rng
from runtime.control import RunControl, exit_status_after_stop
from runtime.distributed import close_processes, init_processes
from runtime.errors import DiskFullError, run_main, warn
from runtime.setup import RunDir, log_scalars, open_run_dir, run_cli, seed_everything

register_configs()
FIGURE_CLIPS, HISTOGRAM_CLIPS = 2, 8  # held-out clips drawn in TensorBoard's figures, and in the histogram of p


def average_gradients_across_ranks(module: torch.nn.Module, world_size: int) -> None:
    """Each backward all-reduces the policy's gradients (Tianshou has no DDP of its own)."""
    for param in module.parameters():
        if param.requires_grad:
            param.register_hook(lambda grad: _all_reduce_mean(grad, world_size))


def _all_reduce_mean(grad: torch.Tensor, world_size: int) -> torch.Tensor:
    grad = grad.clone()
    dist.all_reduce(grad)
    return grad / world_size


def random_actions(env: MAEVectorEnv, generator: torch.Generator) -> torch.Tensor:
    """Random space-time masking as actions (Algorithm 1 line 6)."""
    visible = mae.random_mask(env.num_envs, env.num_tokens, env.mask_ratio, generator=generator)
    index = mae.mask_to_indices(visible)  # in token order
    if env.draws_budget:  # the env keeps each action's first K indices: a random order makes them random masking
        index = index.gather(1, torch.rand(index.shape, generator=generator).argsort(dim=1))
    return index


def own_mask_baselines(env: MAEVectorEnv) -> dict[str, float]:
    """The copy and clip-mean predictors on the last step's clips and masks, the same as ``mae/loss``'s."""
    trivial = env.trivial_losses()
    return {"mae/copy_loss": trivial["copy"], "mae/mean_visible_loss": trivial["mean_visible"]}


@dataclass
class Run:
    """Everything the loop of Algorithm 1 works on, built by :func:`build_run`."""

    cfg: DictConfig
    rank: int
    world_size: int
    device: torch.device
    output_dir: Path
    writer: Any  # TensorBoard's SummaryWriter on rank 0, None elsewhere
    lock: Any  # the run folder's lock (runtime/run_lock.py), held by rank 0
    model: mae.PretrainVideoMAE
    clips: ClipSource
    env: MAEVectorEnv
    agent: Agent
    buffer: VectorReplayBuffer
    collector: Collector
    generators: dict[str, Any]
    mask_generator: torch.Generator
    total_steps: int
    evaluate: Callable[[], dict[str, float]] | None = None  # the held-out score, on rank 0
    pictures: Callable[[Any, int], float] | None = None  # TensorBoard's figures and histogram, on rank 0
    step: int = 0
    updates: int = 0
    resumed_at: int | None = None  # the step a resume started from; None for a new run

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def schedule_steps(self) -> int:
        """Steps of the run's schedules (the MAE's lr, the sampler's temperature): its epochs' steps.
        ``train.max_steps`` stops a run; it does not shorten its schedules."""
        return self.clips.steps_per_epoch * self.cfg.train.epochs

    @property
    def frozen(self) -> bool:
        return self.cfg.train.mae == "frozen"


def build_sampler(cfg: DictConfig, env: MAEVectorEnv, *, world_size: int, device: torch.device,
                  is_main: bool) -> Agent:
    """The agent (``agent=<name>``), wired into the MAE's step for AdaMAE's recipe, the same on every rank."""
    agent = build_agent(cfg.agent.name, env=env, config=OmegaConf.to_container(cfg.agent, resolve=True),
                        device=device)
    if agent.trains_with_mae:  # AdaMAE's recipe: the sampler is trained by the MAE's optimiser, in its step
        if env.mode == "frozen":
            raise ConfigError("train.mae=frozen has no MAE step for agent.recipe=adamae to train the sampler in: "
                              "use agent.recipe=separate agent.estimator=clip (or token)")
        env.optimizer.add_param_groups(agent.algorithm.mae_param_groups(cfg.train.weight_decay))
        env.sampler_loss = agent.algorithm.mae_step_loss
        if is_main and cfg.train.mae_only_epochs > 0:
            print(f"agent.recipe=adamae: the sampler masks and learns from the first step, as in AdaMAE; "
                  f"train.mae_only_epochs={cfg.train.mae_only_epochs} (random-masking epochs) does not apply")
    if world_size > 1:
        for tensor in [*agent.algorithm.parameters(), *agent.algorithm.buffers()]:
            dist.broadcast(tensor.data, src=0)  # every rank starts from rank 0's policy
        average_gradients_across_ranks(agent.algorithm, world_size)  # in its update, or in the MAE's step
    return agent


def build_collector(cfg: DictConfig, env: MAEVectorEnv, agent: Agent) -> tuple[VectorReplayBuffer, Collector]:
    """The buffer of one cycle's episodes (``train.update_steps_mae`` steps of every clip) and the Collector
    that fills it through Tianshou's view of the environment."""
    buffer = VectorReplayBuffer(cfg.train.update_steps_mae * env.num_envs, env.num_envs, ignore_obs_next=True)
    return buffer, Collector(agent.policy, TianshouVectorEnv(env), buffer)


def build_evaluator(cfg: DictConfig, model: mae.PretrainVideoMAE, agent: Agent,
                    device: torch.device) -> Callable[[], dict[str, float]] | None:
    """The held-out score every ``train.eval_every`` steps (rank 0): joint training scores the MAE against
    the trivial predictors (built-in data); frozen training scores the policy on the benchmark (any data)."""
    if cfg.train.eval_every <= 0:
        return None
    if cfg.train.mae == "frozen":
        if not hasattr(agent.policy, "actor"):  # a fixed masker: the benchmark's references score it
            print(f"agent={cfg.agent.name} has no policy network to score; its masks are the benchmark's "
                  f"'{cfg.agent.name}' reference (python -m benchmark references)")
            return None
        from benchmark.evaluate import PolicyEvaluator, heldout_clips, reference_cache

        evaluator = PolicyEvaluator(model, heldout_clips(model, cfg.data, num_clips=cfg.train.eval_clips),
                                    cfg.mask_ratio, cache_dir=reference_cache(Path(cfg.model.init_checkpoint)))
        return lambda: evaluator.scalars(agent.policy)
    if cfg.data.name != "synthetic":
        return None
    heldout = {k: v.to(device) for k, v in heldout_batch(model, cfg.data, cfg.mask_ratio).items()}

    def score_mae() -> dict[str, float]:
        scores = heldout_losses(model, heldout["video"], heldout["visible"])
        return {"mae/heldout_loss": scores.pop("mae"), **{f"mae/heldout_{k}": v for k, v in scores.items()}}

    return score_mae


def build_run(cfg: DictConfig) -> Run:
    """Processes, run folder, seeds, MAE, data, environment, agent, collector; the resumed state if any.
    On an error, what it opened (processes, the folder's lock, TensorBoard) is closed again."""
    validate(cfg)
    rank, world_size, device = init_processes(cfg.device)
    folder = None
    try:
        folder = open_run_dir(cfg, is_main=rank == 0, required_keys=("mae", "agent", "step"), world_size=world_size,
                              what="train_joint.py")
        return _build_run(cfg, rank, world_size, device, folder)
    except BaseException:
        if folder is not None:
            folder.lock.release()
            if folder.writer is not None:
                folder.writer.close()
        close_processes(world_size)
        raise


def _build_run(cfg: DictConfig, rank: int, world_size: int, device: torch.device, folder: RunDir) -> Run:
    is_main = rank == 0
    resume_from = folder.resume_from
    mask_generator = seed_everything(cfg.seed + rank)
    model = build_model(cfg)
    if cfg.model.init_checkpoint is not None and (resume_from is None or cfg.train.mae == "frozen"):
        mae.load_mae_weights(model, cfg.model.init_checkpoint)  # frozen: always the given weights, never a copy
    model.to(device)
    clips = build_clips(cfg, model, rank=rank, world_size=world_size, device=device)
    env = build_env(cfg, model, clips, world_size=world_size, device=device, is_main=is_main)
    agent = build_sampler(cfg, env, world_size=world_size, device=device, is_main=is_main)
    buffer, collector = build_collector(cfg, env, agent)
    schedule_steps = clips.steps_per_epoch * cfg.train.epochs  # stopping early is not a shorter run
    run = Run(cfg=cfg, rank=rank, world_size=world_size, device=device, output_dir=folder.path, writer=folder.writer,
              lock=folder.lock,
              model=model, clips=clips, env=env, agent=agent, buffer=buffer,
              collector=collector,
              generators={"mask": mask_generator, **rng.find_generators(agent.policy, "agent")},  # each rank's own
              mask_generator=mask_generator,
              total_steps=schedule_steps if cfg.train.max_steps < 0 else min(schedule_steps, cfg.train.max_steps))
    if resume_from is None and (cfg.train.init_actor or cfg.train.imitate):
        start_actor(cfg, model, agent, folder.path if is_main else None)
    if resume_from is not None:
        state = checkpoint.load(resume_from, map_location=device)
        if not run.frozen:
            model.load_state_dict(state["mae"])
            env.optimizer.load_state_dict(state["mae_optimizer"])
        env.load_state_dict(state["env"])
        agent.load_state_dict(state["agent"])
        run.step, run.updates = state["step"], state["policy_updates"]
        run.resumed_at = run.step
        rng.restore(state["rng"], rank, run.generators)  # this rank's own states (runtime/rng.py)
    if is_main:
        start_messages(run).show()
        run.evaluate = build_evaluator(cfg, model, agent, device)
        run.pictures = build_pictures(run)
    return run


def random_masking_epochs(run: Run) -> int:
    """Epochs of random masking before the sampler acts: none for a frozen MAE, AdaMAE's recipe or a fixed masker."""
    agent = run.agent
    return 0 if run.frozen or agent.trains_with_mae or not agent.learns else run.cfg.train.mae_only_epochs


def single_minibatch_clip(run: Run) -> bool:
    """A clipped-ratio agent (ppo, grpo) whose update is one gradient step on one minibatch: its ratio is 1."""
    config = run.agent.config
    if not run.agent.learns or run.agent.trains_with_mae or not hasattr(config, "eps_clip"):
        return False
    episodes = run.cfg.train.update_steps_mae * run.env.num_envs
    batch_size = getattr(config, "batch_size", None)
    minibatches = 1 if batch_size is None else max(1, episodes // batch_size)  # Tianshou merges a short last one
    return int(getattr(config, "update_steps_policy", 1)) * minibatches == 1


@dataclass
class StartMessages:
    """What rank 0 prints before the first step: ``lines`` (the run's phases), ``notes`` (settings that
    do less than they seem to, printed ``note: ...``) and ``warnings`` (a run that tests less than it
    seems to, ``warning: ...`` on stderr)."""

    lines: list[str]
    notes: list[str]
    warnings: list[str]

    def show(self) -> None:
        for note in self.notes:
            print(f"note: {note}")
        for line in self.lines:
            print(line)
        for message in self.warnings:
            warn(message)


def start_messages(run: Run) -> StartMessages:
    """The messages of a run about to start (:class:`StartMessages`)."""
    cfg, env, agent = run.cfg, run.env, run.agent
    notes = []
    exact = env.num_tokens * (1 - cfg.mask_ratio)
    if not env.draws_budget and env.num_visible != round(exact):
        notes.append(f"mask_ratio={cfg.mask_ratio} keeps K={env.num_visible} of N={env.num_tokens} tokens visible "
                     f"(N x (1 - mask_ratio) = {exact:.2f}; K is at least 1 and at most N - 1)")
    if run.device.type == "cpu" and cfg.model.name in ("small", "base", "large"):
        notes.append(f"model={cfg.model.name} on a CPU takes seconds per step (base: about 9 s with batch 4 on "
                     "2 cores); the CPU testbed's model is micro (preset=cpu)")
    scheduler = env.optimizer.scheduler if env.optimizer is not None else None
    warmup = getattr(scheduler, "warmup_steps", 0) * cfg.train.accum_steps
    schedule = run.schedule_steps
    if warmup and warmup >= schedule:
        notes.append(f"the learning-rate warm-up (train.warmup_epochs={cfg.train.warmup_epochs}) lasts the whole "
                     f"schedule (train.epochs={cfg.train.epochs}, {schedule} steps): the MAE never trains at its "
                     "peak lr")
    lines = []
    if run.frozen and cfg.train.mae_only_epochs > 0:
        lines.append(f"train.mae=frozen: the sampler acts from the first step; train.mae_only_epochs="
                     f"{cfg.train.mae_only_epochs} (random-masking epochs of joint training) does not apply")
    per_epoch, epochs = run.clips.steps_per_epoch, random_masking_epochs(run)
    phase_end = epochs * per_epoch
    if not agent.learns:
        phases = f"the {cfg.agent.name} masker masks every step"
    elif epochs == 0:
        phases = "the sampler acts from the first step"
    else:
        k = cfg.train.update_steps_mae
        phases = (f"random masking until step {phase_end} (train.mae_only_epochs={epochs}), then the sampler's "
                  f"cycles of {k} step{'s' if k != 1 else ''}")
    lines.append(f"{run.total_steps} MAE steps, {per_epoch} per epoch; {phases}")
    if env.draws_budget:
        low, high = env.mask_ratio_range
        lines.append(f"a budget drawn per batch: K from {env.min_visible} to {env.num_visible} of N={env.num_tokens} "
                     f"(mask_ratio_range=[{low:g}, {high:g}]), actions of {env.num_visible} indices; held-out scores "
                     f"at mask_ratio={cfg.mask_ratio:g}")
    warnings = []
    if agent.learns and run.total_steps <= phase_end:
        warnings.append(
            f"the run ends at step {run.total_steps}, before the sampler's first cycle: random masking lasts "
            f"{epochs} epoch(s) of {per_epoch} steps, to step {phase_end}, so the sampler never acts or learns. "
            f"Run more than {phase_end} steps (train.max_steps, train.epochs) or lower train.mae_only_epochs")
    if single_minibatch_clip(run):
        warnings.append(
            f"agent={cfg.agent.name} updates in one gradient step (agent.update_steps_policy=1, one minibatch): "
            f"the ratio is 1, so the clip never acts and policy/approx_kl and policy/clip_fraction stay 0, "
            f"policy/ratio_mean 1. For a clip that acts: agent.update_steps_policy=4 or agent.batch_size at most half "
            f"of the {cfg.train.update_steps_mae * run.env.num_envs} episodes of a cycle (docs/configuration.md)")
    return StartMessages(lines=lines, notes=notes, warnings=warnings)


def start_actor(cfg: DictConfig, model: mae.PretrainVideoMAE, agent: Agent, output_dir: Path | None) -> None:
    """The sampler's actor before its first RL step: loaded from ``train.init_actor``, then trained by
    imitation of ``train.imitate``'s teacher selections (agents/imitation.py); the result is written to
    ``output_dir/imitated-actor.pt`` with ``imitation.json`` (losses, wall seconds)."""
    actor = getattr(agent.policy, "actor", None)
    if actor is None or not agent.learns:
        raise ConfigError(f"train.init_actor / train.imitate: agent={cfg.agent.name} has no actor to start")
    if cfg.train.init_actor:
        actor.load_state_dict(actor_state(cfg.train.init_actor))
        print(f"the sampler's actor starts from {cfg.train.init_actor}")
    if cfg.train.imitate:
        imitate_actor(cfg, model, agent, actor, output_dir)
    reference = getattr(agent.algorithm, "reference", None)  # GRPO's KL reference: the actor RL starts from
    if isinstance(reference, torch.nn.Module):
        reference.load_state_dict(actor.state_dict())


def imitate_actor(cfg: DictConfig, model: mae.PretrainVideoMAE, agent: Agent, actor: torch.nn.Module,
                  output_dir: Path | None) -> None:
    """``train.imitate``: the actor trained on a teacher's selections; ``imitated-actor.pt`` and ``imitation.json``."""
    import json

    from agents.imitation import imitate
    from benchmark.teacher import load_selections

    selections = load_selections(cfg.train.imitate, agent.spec.num_visible)
    device = next(actor.parameters()).device
    with torch.no_grad():
        tokens = torch.cat([model.tokenize(chunk.to(device)).float() for chunk in selections["video"].split(64)])
    result = imitate(actor, tokens, selections["order"], steps=cfg.train.imitate_steps, lr=cfg.train.imitate_lr,
                     batch_size=cfg.train.imitate_batch_size, temperature=float(agent.policy.temperature),
                     generator=torch.Generator().manual_seed(cfg.seed), progress=output_dir is not None)
    if output_dir is not None:
        torch.save({"actor": actor.state_dict(), "teacher": selections["teacher"], "k": agent.spec.num_visible},
                   output_dir / "imitated-actor.pt")
        (output_dir / "imitation.json").write_text(json.dumps(
            {**result.as_dict(), "teacher": selections["teacher"], "selections": str(cfg.train.imitate),
             "teacher_wall_s": selections.get("wall_s")}, indent=1))
        print(f"imitation of the {selections['teacher']} teacher: {result.steps} steps on {result.clips} clips, "
              f"-log P(teacher order) {result.loss_first:.2f} -> {result.loss_last:.2f}, {result.wall_s:.1f} s")


def actor_state(path: str | Path) -> dict[str, torch.Tensor]:
    """An actor's weights from an ``imitated-actor.pt`` or from a train_joint.py checkpoint's agent."""
    state = checkpoint.load(path, map_location="cpu")
    if "actor" in state:
        return state["actor"]
    algorithm = state.get("agent", {}).get("algorithm", {})
    prefix = "policy.actor."
    weights = {key[len(prefix):]: value for key, value in algorithm.items() if key.startswith(prefix)}
    if not weights:
        raise ConfigError(f"train.init_actor={path}: neither an imitated-actor.pt nor a checkpoint with an actor")
    return weights


def save(run: Run, control: RunControl) -> None:
    """Write ``checkpoint-latest.pt`` (rank 0; every rank takes part in gathering the random states)."""
    control.check_finite(run.step, run.model, run.agent.algorithm)  # never a checkpoint with NaN weights
    rng_states = rng.gather(rng.capture(run.generators, run.device), run.world_size)  # a collective: every rank
    if not run.is_main:
        return
    env = run.env
    state = dict(mae=run.model.state_dict(), env=env.state_dict(), agent=run.agent.state_dict(), step=run.step,
                 policy_updates=run.updates, rng=rng_states, config=OmegaConf.to_container(run.cfg, resolve=True))
    if env.optimizer is not None:
        state["mae_optimizer"] = env.optimizer.state_dict()
    checkpoint.save_atomic(state, run.output_dir / checkpoint.LATEST)


def step_scalars(run: Run, rewards: np.ndarray, n_steps: int, elapsed: float) -> dict[str, float]:
    """What every logged step reports: the MAE's loss (and optimiser), the rewards, the data, the speed."""
    env = run.env
    scalars = {"mae/loss": float(env.last_stats["loss"])}
    if env.optimizer is not None:
        scalars["mae/lr"] = env.optimizer.optimizer.param_groups[0]["lr"]
        scalars["mae/skipped_nonfinite"] = env.optimizer.guard.total
    scalars.update({
        "env/reward_mean": float(np.mean(rewards)), "env/reward_std": float(np.std(rewards)),
        "env/skipped_videos": run.clips.unreadable_count(), "env/epoch": env.epoch,
        "perf/step_time_s": elapsed / n_steps, "perf/clips_per_s": n_steps * env.num_envs * run.world_size / elapsed,
    })
    if env.draws_budget:
        scalars["env/num_visible"] = env.last_stats["num_visible"]
    if "sampler_loss" in env.last_stats:  # AdaMAE's recipe: the weighted sampling loss in the MAE's loss
        scalars["mae/sampling_loss"] = env.last_stats["sampler_loss"]
    if "motion_enrichment" in env.last_stats:
        scalars["policy/motion_enrichment"] = env.last_stats["motion_enrichment"]
    if run.device.type == "cuda":
        scalars["perf/peak_memory_gb"] = torch.cuda.max_memory_allocated(run.device) / 2**30
    else:  # peak resident set size of this process (Linux reports KiB)
        scalars["perf/peak_memory_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return scalars


def train_loop(run: Run, control: RunControl) -> tuple[dict[str, float], dict[str, float]]:
    """Algorithm 1 from ``run.step`` to ``run.total_steps``; returns the last logged scalars and the
    last held-out scores."""
    cfg, env, agent, collector, buffer = run.cfg, run.env, run.agent, run.collector, run.buffer
    steps_per_cycle = cfg.train.update_steps_mae
    warmup_epochs = random_masking_epochs(run)
    progress = tqdm(total=run.total_steps, initial=run.step, desc="train", dynamic_ncols=True, disable=not run.is_main)
    last: dict[str, float] = {}
    scores: dict[str, float] = {}
    env.reset()
    collector_stale = True  # the Collector must pick up clips the env loaded outside it
    try:
        while run.step < run.total_steps:
            epoch_before, tic = env.epoch, time.perf_counter()
            if env.epoch < warmup_epochs:
                # lines 5-7: random space-time masking, one MAE step, no episode kept (a fixed masker
                # has nothing to wait for, and a frozen MAE nothing to warm up: both act from the first step)
                _, rewards, _, _, _ = env.step(random_actions(env, run.mask_generator))
                n_steps, collector_stale = 1, True
            else:
                # lines 9-13: sampler frozen (no_grad), k environment steps, episodes into the buffer
                if collector_stale:
                    collector.reset(reset_buffer=True)
                    collector_stale = False
                # a training step: the policy samples (deterministic_eval only applies outside)
                n_steps = min(steps_per_cycle, run.total_steps - run.step)  # the last cycle ends at the last step
                last.update(agent.set_step(run.step, run.schedule_steps))  # the temperature schedule's position
                with torch.no_grad(), policy_within_training_step(agent.policy):
                    stats = collector.collect(n_step=n_steps * env.num_envs)
                rewards = stats.returns
                # lines 14-22: MAE untouched, the agent learns from the buffer, which is then cleared
                last.update(agent.update(buffer))
                run.updates += 1
                if run.is_main and cfg.train.dump_buffer_every > 0 and run.updates % cfg.train.dump_buffer_every == 0:
                    try:
                        dump_hdf5(buffer, run.output_dir / "buffers" / f"buffer-{run.updates:06d}.h5",
                                  metadata={**agent.metadata(), "step": run.step + n_steps,
                                            "policy_update": run.updates})
                    except DiskFullError as error:
                        raise DiskFullError(f"{error}; {control.last_good()}") from error
                buffer.reset()
            run.step += n_steps
            last.update(step_scalars(run, rewards, n_steps, time.perf_counter() - tic))
            if cfg.train.eval_every > 0 and (run.step % cfg.train.eval_every < n_steps
                                             or run.step >= run.total_steps):
                final = run.step >= run.total_steps
                progress.set_description("final evaluation" if final else "evaluating")
                if run.evaluate is not None:
                    scores = run.evaluate()
                    log_scalars(run.writer, scores, run.step)  # at the step it was measured, not at log steps
                if run.pictures is not None:
                    log_scalars(run.writer, {"perf/figures_time_s": run.pictures(run.writer, run.step)}, run.step)
                progress.set_description("saving" if final else "train")
            if run.step % cfg.train.log_every < n_steps or run.step >= run.total_steps:
                last.update(own_mask_baselines(env))
                log_scalars(run.writer, last, run.step)
            progress.update(n_steps)
            progress.set_postfix(progress_fields({**last, **scores}), refresh=False)
            control.after_step(run.step, env.optimizer, agent)  # stops a diverged run
            if control.stop_requested():  # SIGTERM / Ctrl-C: the save below, then stop
                break
            epoch_end = env.epoch != epoch_before and env.epoch % cfg.train.save_ckpt_freq == 0
            if epoch_end or control.save_due(run.step, n_steps):
                save(run, control)
    finally:
        run.clips.close()  # the data-loading workers are done (a stop signal may have reached them too)
        progress.close()
    return last, scores


PROGRESS_FIELDS = (("mae/loss", "mae", ".4f"), ("policy/entropy", "H", ".3g"),
                   ("policy/motion_enrichment", "enrich", ".2f"), ("mae/heldout_loss", "heldout", ".4f"),
                   ("eval/score", "score", ".1f"))


def progress_fields(last: dict[str, float]) -> dict[str, str]:
    """The progress bar's numbers: the MAE's loss, and where known the policy's entropy, the motion
    enrichment of its masks, the held-out loss and the benchmark score."""
    return {name: format(last[key], spec) for key, name, spec in PROGRESS_FIELDS if key in last}


def build_pictures(run: Run) -> Callable[[Any, int], float] | None:
    """TensorBoard's pictures at every held-out score (``train.log_figures``): the visualiser's figure of
    ``FIGURE_CLIPS`` fixed held-out clips and a histogram of the policy's p on ``HISTOGRAM_CLIPS`` of them.
    Returns the function that logs them (and returns its seconds), or None where nothing applies."""
    cfg = run.cfg
    if not cfg.train.get("log_figures", True) or cfg.train.eval_every <= 0 or run.writer is None:
        return None
    from benchmark.evaluate import heldout_clips
    from downstream.visualise import Pretrained, clip_figure, single_draw_probs

    try:
        clips = heldout_clips(run.model, cfg.data, num_clips=HISTOGRAM_CLIPS)
    except ValueError as error:  # no readable held-out video
        warn(f"train.log_figures: no figures ({error})")
        return None
    video = clips["video"].to(run.device)
    motion = clips["motion"]
    agent, model = run.agent, run.model
    pretrained = Pretrained(model, agent, OmegaConf.to_container(cfg, resolve=True), run.env.num_visible)
    compare = None if cfg.agent.name == "random" else "random"  # the policy's masks against random masking

    def pictures(writer: Any, step: int) -> float:
        tic = time.perf_counter()
        saved = rng.capture(run.generators, run.device)  # drawing masks here leaves training's draws as they were
        modes = model.training, agent.algorithm.training
        model.eval()
        agent.algorithm.eval()
        try:
            for index in range(min(FIGURE_CLIPS, len(video))):
                figure = clip_figure(pretrained, video[index:index + 1], compare=compare, seed=index,
                                     motion=None if motion is None else motion[index],
                                     probabilities=agent.learns,
                                     title=f"held-out clip {index}, step {step}: {cfg.agent.name}, "
                                           f"mask ratio {cfg.mask_ratio}")
                writer.add_figure(f"figures/clip_{index}", figure, step)  # closes the figure
            if agent.learns:
                writer.add_histogram("policy/p", single_draw_probs(pretrained, video).flatten().cpu(), step)
        finally:
            rng.restore({"per_rank": [saved]}, 0, run.generators)
            model.train(modes[0])
            agent.algorithm.train(modes[1])
        return time.perf_counter() - tic

    return pictures


def end_line(last: dict[str, float]) -> str | None:
    """The line printed before the summary: the held-out score against its references."""
    if "eval/score" in last:
        return (f"benchmark score {last['eval/score']:.1f} (0 = random masking, 100 = the greedy oracle; top-K of p: "
                f"{last['eval/score_top_k']:.1f}); frozen-MAE loss on the held-out clips {last['eval/loss']:.4f} "
                f"under the policy's masks, {last['eval/loss_random']:.4f} random, "
                f"{last['eval/loss_oracle']:.4f} greedy oracle")
    if "mae/heldout_loss" in last:
        return (f"held-out MAE loss {last['mae/heldout_loss']:.4f}; trivial predictors: copy "
                f"{last['mae/heldout_copy']:.4f}, clip mean {last['mae/heldout_mean_visible']:.4f}, "
                f"zeros {last['mae/heldout_zeros']:.4f}; motion enrichment of the visible tokens "
                f"{last.get('policy/motion_enrichment', float('nan')):.2f} (1 = chance); on the last batch's own "
                f"masks: MAE {last['mae/loss']:.4f}, copy {last['mae/copy_loss']:.4f}, "
                f"clip mean {last['mae/mean_visible_loss']:.4f}")
    return None


def train(cfg: DictConfig) -> dict[str, float]:
    """Build the run, train it (Algorithm 1), save, summarise; every resource closed on any exit."""
    run = build_run(cfg)
    control = RunControl(cfg.train, run.output_dir, world_size=run.world_size, is_main=run.is_main,
                         device=run.device)
    try:
        last, scores = train_loop(run, control)
        if run.step != run.resumed_at:  # a resume that ran no step writes no checkpoint (previous stays)
            save(run, control)  # with the signal handlers still in place: a repeated SIGTERM must not cut it
        control.close()
        if "mae/loss" in last:  # a stop between two logged steps: the baselines of the batch mae/loss is from
            last.update(own_mask_baselines(run.env))
        last.update(scores)
        if run.is_main and (line := end_line(last)) is not None:
            print(line)
        control.summary(step=run.step, total_steps=run.total_steps, policy_updates=run.updates, last=last)
        return last
    finally:
        control.close()
        if run.writer is not None:
            run.writer.close()
        run.lock.release()
        close_processes(run.world_size)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run_cli(train, cfg)
    if exit_status_after_stop() is not None:  # stopped by SIGTERM / Ctrl-C, after saving
        sys.exit(exit_status_after_stop())


if __name__ == "__main__":
    run_main(main)
