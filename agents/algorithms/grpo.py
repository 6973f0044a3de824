"""GRPO for the token sampler: group-relative advantages, a clipped ratio, no critic.

The environment presents each clip G times per step (its group mode; ``info.group`` holds
the clip's group id), and the policy draws one mask per copy. With R the objective's
return (``cooperative`` by default: R = -L_R, AutoGaze's reconstruction reward):

    A_i = (R_i - mean_G R) / (std_G R + eps)      or, with normalize_std=False,
    A_i =  R_i - mean_G R                          (AutoGaze omits the division; Dr. GRPO too)
    L = -mean_i min(r_i A_i, clip(r_i, 1 - eps_clip, 1 + eps_clip) A_i)
        + kl_coef * KL(pi_theta || pi_ref) - entropy_coef * H

std_G is the sample standard deviation (n - 1, as TRL's GRPO); a group of one has A = 0.
The KL term (DeepSeekMath's GRPO) keeps the policy near a frozen copy of the initial actor:

- ``kl_estimator="k3"``: per episode, with x = log pi_ref(a) - log pi_theta(a) of the stored
  action under the objective's log-prob, k3 = e^x - x - 1 >= 0 (Schulman's estimator,
  unbiased for KL(pi_theta || pi_ref) when a ~ pi_theta). Only meaningful with an exact
  log-prob (``cooperative``, ``adversarial``): the paper's masked mean is not a log-prob
  of the action, so k3 of it is not a KL estimate, and this combination is refused;
- ``kl_estimator="categorical"``: the exact KL between the single-draw categoricals over
  the N tokens, sum_i p_i (log p_i - log p_ref,i). The single-draw p determines the whole
  Plackett-Luce distribution, so it is zero exactly when the two policies agree; it has
  no sampling noise and works with every objective.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tianshou.data import Batch
from torch import nn

from agents.algorithms.base import TokenSamplerAlgorithm
from agents.algorithms.config import SamplerConfig, _choice
from agents.algorithms.optim import optimizer_factory
from agents.algorithms.spec import EnvSpec
from agents.algorithms.objectives import OBJECTIVES
from agents.algorithms.policy import TokenSamplerPolicy, token_sampler_policy

KL_ESTIMATORS = ("k3", "categorical")
ADV_EPS = 1e-6


@dataclass
class GRPOConfig(SamplerConfig):
    """Group-relative policy optimisation (DeepSeekMath; AutoGaze's RL stage)."""

    name: str = "grpo"
    """Agent name in the registry."""
    objective: str = "cooperative"
    """cooperative (exact log-prob, R = -L_R; AutoGaze) | adversarial | paper."""
    group_size: int = 4
    """G, masks per clip (the env repeats each clip G times). AutoGaze uses 12; 4 keeps CPU runs cheap."""
    normalize_std: bool = False
    """Divide advantages by the group's std (DeepSeekMath); AutoGaze omits it."""
    eps_clip: float = 0.2
    """Clip range of the ratio."""
    kl_coef: float = 0.0
    """Weight of KL(pi_theta || pi_ref) to a frozen copy of the initial actor; 0 = no reference kept."""
    kl_estimator: str = "k3"
    """k3 (sampled, exact log-prob objectives) | categorical (exact KL of the single-draw p)."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus H."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("objective", self.objective, tuple(OBJECTIVES))
        _choice("kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 for group-relative advantages, got {self.group_size}")
        if not 0 < self.eps_clip < 1:
            raise ValueError(f"eps_clip must be in (0, 1), got {self.eps_clip}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")


def group_advantages(returns_B: torch.Tensor, group_B: torch.Tensor, *, normalize_std: bool,
                     eps: float = ADV_EPS) -> torch.Tensor:
    """A = R - mean_G R, divided by (std_G R + eps) if ``normalize_std``; groups by id.

    Shapes:
        returns ``(B,)`` float, group ``(B,)`` int (any order, any ids) -> ``(B,)``.
    """
    _, inverse = torch.unique(group_B, return_inverse=True)
    num_groups = int(inverse.max()) + 1
    count = torch.zeros(num_groups, device=returns_B.device).index_add_(0, inverse, torch.ones_like(returns_B))
    mean = torch.zeros(num_groups, device=returns_B.device).index_add_(0, inverse, returns_B) / count
    centred = returns_B - mean[inverse]
    if not normalize_std:
        return centred
    sq = torch.zeros(num_groups, device=returns_B.device).index_add_(0, inverse, centred.pow(2))
    std = (sq / (count - 1).clamp_min(1)).sqrt()  # sample std; a lone member has centred = 0
    return centred / (std[inverse] + eps)


class GRPO(TokenSamplerAlgorithm):
    """Group-relative advantages, clipped ratio, optional KL to a reference; no critic."""

    def __init__(
        self,
        *,
        policy: TokenSamplerPolicy,
        optim: Any,
        objective: str = "cooperative",
        normalize_std: bool = False,
        eps_clip: float = 0.2,
        kl_coef: float = 0.0,
        kl_estimator: str = "k3",
        entropy_coef: float = 0.0,
        max_grad_norm: float | None = None,
    ) -> None:
        """
        :param policy: the collecting policy; its actor is trained.
        :param optim: optimizer factory for the actor.
        :param objective: ``"cooperative"``, ``"adversarial"`` or ``"paper"``.
        :param normalize_std: divide advantages by the group std (+ eps).
        :param eps_clip: clip range of the ratio (0.2).
        :param kl_coef: weight of the KL to the frozen initial actor; 0 keeps no reference.
        :param kl_estimator: ``"k3"`` or ``"categorical"`` (see the module docstring).
        :param entropy_coef: weight of the entropy bonus.
        :param max_grad_norm: clip the actor's gradient norm; None = off.
        """
        super().__init__(objective=objective, policy=policy)
        _choice("kl_estimator", kl_estimator, KL_ESTIMATORS)
        if kl_coef > 0 and kl_estimator == "k3" and self.objective.masked:
            raise ValueError("kl_estimator='k3' needs an exact log-prob; with objective='paper' "
                             "use kl_estimator='categorical'")
        self.normalize_std, self.eps_clip = normalize_std, eps_clip
        self.kl_coef, self.kl_estimator, self.entropy_coef = kl_coef, kl_estimator, entropy_coef
        self.reference = None
        if kl_coef > 0:
            # a frozen copy of the initial actor (unwrapped from DistributedDataParallel)
            self.reference = copy.deepcopy(getattr(policy.actor, "module", policy.actor)).requires_grad_(False)
        self.optim = self._create_optimizer(policy.actor, optim, max_grad_norm=max_grad_norm)

    # ---- group-relative advantages
    def prepare(self, batch: Batch) -> Batch:
        """Add ``returns``, ``adv`` (group-relative), ``logp_old`` and a long ``act``."""
        if "group" not in batch.get("info", Batch()).get_keys():
            raise ValueError("GRPO needs info.group (the clip's group id): run the env in group mode")
        batch = self.prepare_actions_and_returns(batch)
        group = torch.as_tensor(np.asarray(batch.info.group), device=self.device).long()
        batch.adv = group_advantages(batch.returns, group, normalize_std=self.normalize_std)
        batch.logp_old = self.old_log_prob(batch)
        return batch

    # ---- loss
    def kl_to_reference(self, dist: Any, minibatch: Batch) -> torch.Tensor:
        """Per-episode KL(pi_theta || pi_ref) estimate ``(B,)``; zeros without a reference."""
        if self.reference is None:
            return torch.zeros(len(minibatch.act), device=minibatch.act.device)
        with torch.no_grad():
            ref_logits, _ = self.reference(minibatch.obs, state=None, info=minibatch.get("info", None))
            ref = self.policy.dist_fn(ref_logits, self.policy.counts(minibatch))
        if self.kl_estimator == "categorical":
            return (dist.probs * (dist.logits - ref.logits)).sum(-1)
        log_ratio = self.objective.log_prob(ref, minibatch.act) - self.objective.log_prob(dist, minibatch.act)
        return log_ratio.exp() - log_ratio - 1.0

    def compute_loss(self, minibatch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """GRPO loss on a prepared minibatch, and its parts (detached) for logging."""
        dist = self.policy.distribution(minibatch)
        log_ratio = self.objective.log_prob(dist, minibatch.act) - minibatch.logp_old
        ratio = log_ratio.exp()
        clipped = ratio.clamp(1.0 - self.eps_clip, 1.0 + self.eps_clip)
        clip_objective = torch.min(ratio * minibatch.adv, clipped * minibatch.adv).mean()
        kl = self.kl_to_reference(dist, minibatch).mean()
        entropy = dist.entropy().mean()
        loss = -clip_objective + self.kl_coef * kl - self.entropy_coef * entropy
        with torch.no_grad():
            stats = {"loss": loss, "clip_objective": clip_objective, "kl_ref": kl, "entropy": entropy,
                     "ratio_mean": ratio.mean(),
                     "clip_fraction": ((ratio - 1.0).abs() > self.eps_clip).float().mean(),
                     "approx_kl": ((ratio - 1.0) - log_ratio).mean()}
        return loss, {key: value.detach() for key, value in stats.items()}


def build_grpo(spec: EnvSpec, config: GRPOConfig, device: torch.device, *,
               actor: nn.Module | None = None, critic: nn.Module | None = None) -> GRPO:
    """GRPO with the configured actor; the env must repeat each clip ``group_size`` times."""
    if spec.group_size != config.group_size:
        raise ValueError(f"grpo with group_size={config.group_size} needs an environment in group mode "
                         f"with the same group_size; the env has group_size={spec.group_size}")
    policy = token_sampler_policy(spec, config, device, actor=actor)
    return GRPO(
        policy=policy, optim=optimizer_factory(config), objective=config.objective,
        normalize_std=config.normalize_std, eps_clip=config.eps_clip, kl_coef=config.kl_coef,
        kl_estimator=config.kl_estimator, entropy_coef=config.entropy_coef,
        max_grad_norm=config.max_grad_norm)
