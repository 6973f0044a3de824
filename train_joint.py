"""Joint training of VideoMAE and its token sampler: the TATS paper's Algorithm 1.

    python train_joint.py                                    # TATS (PPO + trajectory attention), tiny, built-in data
    python train_joint.py agent=grpo mask_ratio=0.95
    python train_joint.py agent=random model=base data=list data.train_list=train.csv
    torchrun --nproc_per_node=8 train_joint.py model=base ...

Reads top to bottom: config, processes, logging, seeding, data, MAE and its optimiser, the
environment, the agent, then the loop. The loop is Algorithm 1: for the first
``train.mae_only_epochs`` epochs the MAE trains with random space-time masking (lines 5-7);
afterwards, cycles of ``train.update_steps_mae`` environment steps (MAE updates, sampler
frozen, episodes recorded: lines 9-13), then the agent's update on them (MAE untouched:
lines 14-20), then the buffer is cleared (line 22).

AdaMAE's recipe (``agent=reinforce``, ``agent.recipe=adamae``, the default of that agent) trains
the sampler inside the MAE's step instead: its parameters join the MAE's optimiser (same
schedule, same weight-decay rules), its loss is added to the reconstruction loss in the
environment's step, and it starts at the first step (no random-masking epochs). The cycle
still collects episodes and calls the agent's update, which then only logs.
"""

from __future__ import annotations

import resource
import sys
import time

import hydra
import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step
from timm.optim import create_optimizer_v2
from tqdm import tqdm

import mae
from agents.buffers import dump_hdf5
from agents.registry import build_agent
from configs import CONFIG_DIR, ConfigError, register_configs, validate
from data import build_dataset
from envs import ClipSource, MAEOptimizer, MAEVectorEnv, TianshouVectorEnv
from envs.heldout import heldout_batch
from mae.baselines import heldout_losses
from mae.registry import create_model_from_config
from runtime import checkpoint, rng
from runtime.control import RunControl, exit_status_after_stop
from runtime.distributed import close_processes, init_processes
from runtime.errors import run_main
from runtime.lr_schedule import PAPER_TOTAL_BATCH, build_schedule, learning_rates
from runtime.setup import log_scalars, open_run_dir, run_cli, seed_everything

register_configs()


def build_model(cfg: DictConfig) -> mae.PretrainVideoMAE:
    return create_model_from_config(cfg.model, num_frames=cfg.data.num_frames)


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
    return mae.mask_to_indices(visible)


def own_mask_baselines(env: MAEVectorEnv) -> dict[str, float]:
    """The copy and clip-mean predictors on the last step's clips and masks, the same as ``mae/loss``'s."""
    trivial = env.trivial_losses()
    return {"mae/copy_loss": trivial["copy"], "mae/mean_visible_loss": trivial["mean_visible"]}


def train(cfg: DictConfig) -> dict[str, float]:
    validate(cfg)
    rank, world_size, device = init_processes(cfg.device)
    is_main = rank == 0
    output_dir, resume_from, writer = open_run_dir(cfg, is_main=is_main, required_keys=("mae", "agent", "step"))
    mask_generator = seed_everything(cfg.seed + rank)

    # ---- MAE, its optimiser (lr scaled by total batch / 256) and schedule (warm-up, cosine)
    model = build_model(cfg)
    if cfg.model.init_checkpoint is not None and resume_from is None:
        mae.load_mae_weights(model, cfg.model.init_checkpoint)
    model.to(device)
    dataset = build_dataset(
        cfg.data.name, train_list=cfg.data.train_list, root=cfg.data.root, num_frames=cfg.data.num_frames,
        sampling_rate=cfg.data.sampling_rate, input_size=model.img_size, patch_size=model.patch_size,
        tubelet_size=model.tubelet_size, train=True, seed=cfg.seed, reader=cfg.data.reader,
        **{key: value for key, value in cfg.data.items() if key.startswith("synthetic_")})  # the built-in clips
    agent_group_size = int(cfg.agent.get("group_size", 1))
    if cfg.train.batch_size % agent_group_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} must be a multiple of "
                          f"agent.group_size={agent_group_size}")
    clips = ClipSource(dataset, cfg.train.batch_size // agent_group_size, seed=cfg.seed,
                       num_workers=cfg.data.num_workers, rank=rank, world_size=world_size, device=device)
    total_batch = cfg.train.batch_size * world_size * cfg.train.accum_steps
    optimizer = create_optimizer_v2(model, opt=cfg.train.opt, lr=learning_rates(cfg.train, total_batch).peak,
                                    weight_decay=cfg.train.weight_decay, betas=tuple(cfg.train.opt_betas))
    steps_per_epoch = clips.steps_per_epoch
    schedule_steps = steps_per_epoch * cfg.train.epochs  # the schedule ignores max_steps: stopping early is not a shorter run
    scheduler = build_schedule(  # VideoMAE's, per optimiser step (runtime/lr_schedule.py)
        optimizer, cfg.train, total_batch=total_batch, total_steps=max(schedule_steps // cfg.train.accum_steps, 1),
        steps_per_epoch=steps_per_epoch / cfg.train.accum_steps)
    if is_main:
        print(scheduler.describe("MAE lr", paper_total_batch=PAPER_TOTAL_BATCH))
    forward_module = model
    if world_size > 1:
        forward_module = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    # ---- the environment (Algorithm 1: the MAE and its data) and the agent (the sampler)
    env = MAEVectorEnv(model, clips, mask_ratio=cfg.mask_ratio, forward_module=forward_module,
                       optimizer=MAEOptimizer(optimizer, scheduler, clip_grad=cfg.train.clip_grad,
                                              accum_steps=cfg.train.accum_steps),
                       group_size=agent_group_size, group_update=cfg.train.group_update, amp=cfg.train.amp)
    agent = build_agent(cfg.agent.name, env=env, config=OmegaConf.to_container(cfg.agent, resolve=True),
                        device=device)
    if agent.trains_with_mae:  # AdaMAE's recipe: the sampler is trained by the MAE's optimiser, in its step
        env.optimizer.add_param_groups(agent.algorithm.mae_param_groups(cfg.train.weight_decay))
        env.sampler_loss = agent.algorithm.mae_step_loss
        if is_main and cfg.train.mae_only_epochs > 0:
            print(f"agent.recipe=adamae: the sampler masks and learns from the first step, as in AdaMAE; "
                  f"train.mae_only_epochs={cfg.train.mae_only_epochs} (random-masking epochs) does not apply")
    if world_size > 1:
        for tensor in [*agent.algorithm.parameters(), *agent.algorithm.buffers()]:
            dist.broadcast(tensor.data, src=0)  # every rank starts from rank 0's policy
        average_gradients_across_ranks(agent.algorithm, world_size)  # in its update, or in the MAE's step
    adapter = TianshouVectorEnv(env)
    steps_per_cycle = cfg.train.update_steps_mae
    buffer = VectorReplayBuffer(steps_per_cycle * env.num_envs, env.num_envs, ignore_obs_next=True)
    collector = Collector(agent.policy, adapter, buffer)

    # ---- resume
    generators = {"mask": mask_generator, **rng.find_generators(agent.policy, "agent")}  # each rank's own
    step, updates = 0, 0
    if resume_from is not None:
        state = checkpoint.load(resume_from, map_location=device)
        model.load_state_dict(state["mae"])
        env.optimizer.load_state_dict(state["mae_optimizer"])
        env.load_state_dict(state["env"])
        agent.load_state_dict(state["agent"])
        step, updates = state["step"], state["policy_updates"]
        rng.restore(state["rng"], rank, generators)  # this rank's own states (runtime/rng.py)

    def save() -> None:
        control.check_finite(step, model, agent.algorithm)  # never a checkpoint with NaN weights
        rng_states = rng.gather(rng.capture(generators, device), world_size)  # a collective: every rank
        if not is_main:
            return
        state = dict(mae=model.state_dict(), mae_optimizer=env.optimizer.state_dict(), env=env.state_dict(),
                     agent=agent.state_dict(), step=step, policy_updates=updates, rng=rng_states,
                     config=OmegaConf.to_container(cfg, resolve=True))
        checkpoint.save_atomic(state, output_dir / checkpoint.LATEST)

    def log(scalars: dict[str, float]) -> None:
        log_scalars(writer, scalars, step)

    # held-out score (built-in data): the MAE against the trivial predictors on fixed clips and masks
    heldout, heldout_scores = None, {}
    if is_main and cfg.data.name == "synthetic" and cfg.train.eval_every > 0:
        heldout = {k: v.to(device) for k, v in heldout_batch(model, cfg.data, cfg.mask_ratio).items()}

    # ---- Algorithm 1
    total_steps = schedule_steps if cfg.train.max_steps < 0 else min(schedule_steps, cfg.train.max_steps)
    progress = tqdm(total=total_steps, initial=step, desc="train", dynamic_ncols=True, disable=not is_main)
    last: dict[str, float] = {}
    control = RunControl(cfg.train, output_dir, world_size=world_size, is_main=is_main, device=device)
    env.reset()
    collector_stale = True  # the Collector must pick up clips the env loaded outside it
    while step < total_steps:
        epoch_before = env.epoch
        tic = time.perf_counter()
        if env.epoch < cfg.train.mae_only_epochs and agent.learns and not agent.trains_with_mae:
            # lines 5-7: random space-time masking, one MAE step, no episode kept (a fixed masker
            # has nothing to wait for: it masks from the first step)
            _, rewards, _, _, _ = env.step(random_actions(env, mask_generator))
            n_steps, collector_stale = 1, True
        else:
            # lines 9-13: sampler frozen (no_grad), k MAE steps, episodes into the buffer
            if collector_stale:
                collector.reset(reset_buffer=True)
                collector_stale = False
            # a training step: the policy samples (deterministic_eval only applies outside)
            with torch.no_grad(), policy_within_training_step(agent.policy):
                stats = collector.collect(n_step=steps_per_cycle * env.num_envs)
            n_steps, rewards = steps_per_cycle, stats.returns
            # lines 14-22: MAE untouched, the agent learns from the buffer, which is then cleared
            last.update(agent.update(buffer))
            updates += 1
            if is_main and cfg.train.dump_buffer_every > 0 and updates % cfg.train.dump_buffer_every == 0:
                dump_hdf5(buffer, output_dir / "buffers" / f"buffer-{updates:06d}.h5", metadata=agent.metadata())
            buffer.reset()
        step += n_steps
        elapsed = time.perf_counter() - tic
        last.update({
            "mae/loss": float(env.last_stats["loss"]),
            "mae/lr": optimizer.param_groups[0]["lr"],
            "mae/skipped_nonfinite": env.optimizer.skipped_nonfinite,
            "env/reward_mean": float(np.mean(rewards)), "env/reward_std": float(np.std(rewards)),
            "env/skipped_videos": env.skipped_videos, "env/epoch": env.epoch,
            "perf/step_time_s": elapsed / n_steps, "perf/clips_per_s": n_steps * env.num_envs * world_size / elapsed,
        })
        if "sampler_loss" in env.last_stats:  # AdaMAE's recipe: the weighted sampling loss in the MAE's loss
            last["mae/sampling_loss"] = env.last_stats["sampler_loss"]
        if "motion_enrichment" in env.last_stats:
            last["policy/motion_enrichment"] = env.last_stats["motion_enrichment"]
        if heldout is not None and (step % cfg.train.eval_every < n_steps or step >= total_steps):
            scores = heldout_losses(model, heldout["video"], heldout["visible"])
            heldout_scores = {"mae/heldout_loss": scores.pop("mae"),
                              **{f"mae/heldout_{k}": v for k, v in scores.items()}}
            log(heldout_scores)  # at the step it was measured, not repeated by the log_every logging
        if device.type == "cuda":
            last["perf/peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        else:  # peak resident set size of this process (Linux reports KiB)
            last["perf/peak_memory_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        if step % cfg.train.log_every < n_steps or step >= total_steps:
            last.update(own_mask_baselines(env))
            log(last)
        progress.update(n_steps)
        progress.set_postfix(loss=f"{last['mae/loss']:.4f}", reward=f"{last['env/reward_mean']:.4f}")
        control.after_step(step, env.optimizer, agent)  # stops a diverged run
        if control.stop_requested():  # SIGTERM / Ctrl-C: the save below, then stop
            break
        epoch_end = env.epoch != epoch_before and env.epoch % cfg.train.save_ckpt_freq == 0
        if epoch_end or control.save_due(step, n_steps):
            save()
    clips.close()  # the data-loading workers are done (a stop signal may have reached them too)
    save()  # with the signal handlers still in place: a repeated SIGTERM must not cut it (runtime/control.py)
    control.close()
    progress.close()
    if "mae/loss" in last:  # a stop between two logged steps: the baselines of the batch mae/loss is from
        last.update(own_mask_baselines(env))
    if heldout_scores:
        print(f"held-out MAE loss {heldout_scores['mae/heldout_loss']:.4f}; trivial predictors: copy "
              f"{heldout_scores['mae/heldout_copy']:.4f}, clip mean {heldout_scores['mae/heldout_mean_visible']:.4f}, "
              f"zeros {heldout_scores['mae/heldout_zeros']:.4f}; motion enrichment of the visible tokens "
              f"{last.get('policy/motion_enrichment', float('nan')):.2f} (1 = chance); on the last batch's own "
              f"masks: MAE {last['mae/loss']:.4f}, copy {last['mae/copy_loss']:.4f}, "
              f"clip mean {last['mae/mean_visible_loss']:.4f}")
    last.update(heldout_scores)
    control.summary(step=step, total_steps=total_steps, policy_updates=updates, last=last)
    if writer is not None:
        writer.close()
    close_processes(world_size)
    return last


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    run_cli(train, cfg)
    if exit_status_after_stop() is not None:  # stopped by SIGTERM / Ctrl-C, after saving
        sys.exit(exit_status_after_stop())


if __name__ == "__main__":
    run_main(main)
