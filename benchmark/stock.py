"""A stock Tianshou algorithm on the benchmark, through ``agent=custom``:

    python train_joint.py train.mae=frozen model.init_checkpoint=PATH train.reward=negative_loss \
        agent=custom agent._target_=benchmark.stock.build_ppo +agent.options.lr=1e-3

Tianshou's own ``PPO``, unchanged (its losses, clipping, advantage normalisation and value loss),
on the project's token policy (trajectory attention, K of N Plackett-Luce) and TATS critic.
``train.reward=negative_loss`` gives it R = -L_R (higher is better, AutoGaze's reward), which
it maximises as any stock algorithm does. Options (``+agent.options.<key>=<value>``):
``lr`` (1e-3), ``actor`` (trajectory), ``num_heads`` (3), ``critic_hidden`` ([256, 128]),
``eps_clip`` (0.2), ``vf_coef`` (0.5), ``ent_coef`` (0.0).
"""

from __future__ import annotations

from typing import Any

import torch
from tianshou.algorithm import PPO
from tianshou.algorithm.optim import AdamOptimizerFactory

from agents.algorithms import SamplerConfig, build_critic_network, guarded, token_sampler_policy


def build_ppo(spec: Any, config: Any, device: torch.device, *, actor: torch.nn.Module | None = None,
              critic: torch.nn.Module | None = None) -> PPO:
    """The ``agent=custom`` builder: stock PPO on the TATS actor and critic (run it with train.reward=negative_loss)."""
    options = dict(config.options)
    if critic is None:
        critic = build_critic_network(spec, list(options.get("critic_hidden", [256, 128])))
    sampler = SamplerConfig(actor=options.get("actor", "trajectory"), num_heads=int(options.get("num_heads", 3)))
    policy = token_sampler_policy(spec, sampler, device, actor=actor, critic=critic)
    return PPO(policy=policy, critic=critic, optim=guarded(AdamOptimizerFactory(lr=float(options.get("lr", 1e-3)))),
               gamma=1.0, gae_lambda=1.0,  # one-step episodes: A = R - V(X)
               eps_clip=float(options.get("eps_clip", 0.2)), vf_coef=float(options.get("vf_coef", 0.5)),
               ent_coef=float(options.get("ent_coef", 0.0)))
