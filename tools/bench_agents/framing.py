"""Part 2: the framing overhead, the TATS cycle through env + Collector + buffer + ``agent.update``
against :class:`PlainLoop`, the same pieces called directly (:mod:`tools.bench_agents`)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from tianshou.data import Batch
from torch.utils.data import Dataset

import mae
import train_joint
from tools.bench_agents.build import TATS, Cycle, build_mae, clip_source, make_pool, run_config, synchronize


class PlainLoop:
    """The reference of the framing overhead: the TATS cycle (ppo, trajectory actor, the paper's
    options) with the framework's bookkeeping taken out, every line of maths shared with it.

    The agent is built by ``train_joint.build_sampler`` (same actor, critic, initialisation and
    guarded AdamW as the framework's cycle); the rollout uses the policy's own distribution and
    records, the MAE step is :class:`envs.MAEVectorEnv`'s (forward, reconstruction loss,
    :class:`envs.MAEOptimizer` step), the update is the algorithm's own ``prepare``,
    ``compute_loss`` and optimiser step.
    """

    def __init__(self, model: Any, mae_optimizer: Any, pool: Dataset, args: argparse.Namespace,
                 device: torch.device, env: Any):
        cfg = run_config(args, TATS)
        torch.manual_seed(0)
        self.agent = train_joint.build_sampler(cfg, env, world_size=1, device=device, is_main=False)
        config = self.agent.config
        if config.batch_size is not None or config.update_steps_policy != 1:  # what __call__ writes out
            raise RuntimeError(f"the plain loop takes one gradient step on the whole batch; the PPO defaults are now "
                               f"batch_size={config.batch_size}, update_steps_policy={config.update_steps_policy}")
        self.device, self.mae, self.mae_optimizer = device, model, mae_optimizer
        self.clips = clip_source(pool, cfg, device)
        self.num_tokens, self.amp = env.num_tokens, env.amp

    def __call__(self) -> tuple[float, float]:
        policy, algorithm = self.agent.policy, self.agent.algorithm
        start = time.perf_counter()
        # Algorithm 1 lines 9-13: observe X, draw the visible set from the frozen sampler, one MAE step
        video = self.clips.next_batch()["video"]
        with torch.no_grad():
            target = self.mae.target(video)
            tokens = self.mae.tokenize(video).float()
            dist = policy.distribution(Batch(obs=tokens))
            act = dist.sample()
            # the episode's records, as TokenSamplerPolicy.forward stores them
            records = Batch(log_prob=dist.log_prob(act), masked_log_prob=dist.masked_log_prob(act),
                            entropy=dist.entropy(), value=policy.critic(tokens).float().flatten(), probs=dist.probs)
        visible = mae.indices_to_mask(act, self.num_tokens)
        self.mae.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            pred = self.mae(video, visible)
        out = self.mae.reconstruction_loss(pred.float(), target, visible)
        self.mae_optimizer.backward_and_step(out.per_clip.mean(), self.mae_optimizer.parameters())
        reward = out.per_clip.detach().float()
        synchronize(self.device)
        collected = time.perf_counter()
        # lines 14-20: one step of the algorithm's own loss on the episodes (Eq. 7-8)
        batch = algorithm.prepare(Batch(obs=tokens, act=act, rew=reward, policy=records))
        loss, stats = algorithm.compute_loss(batch)
        algorithm.optim.step(loss)
        algorithm.zero_grad(set_to_none=True)  # as Agent.update: no gradients kept between updates
        self.stats = {**{key: float(value) for key, value in stats.items()}, **algorithm.batch_stats(batch)}
        synchronize(self.device)
        return collected - start, time.perf_counter() - collected


def framing_times(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    """Collect and update seconds of the framework's and the plain TATS cycle, stepped alternately."""
    device = torch.device(args.device)
    pool = make_pool(args)
    model, mae_optimizer = build_mae(args, pool, device)
    framework = Cycle(TATS, model, mae_optimizer, pool, args, device)
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
