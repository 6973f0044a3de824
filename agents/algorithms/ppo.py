"""TATS: the token sampler trained with PPO (paper Eq. 7-8, Algorithm 1 lines 9-22).

    J_PPO = E[ c1 * J_CLIP - c2 * (psi(X_mu) - R)^2 + c3 * H(X, pi_theta) ]          (Eq. 7)
    J_CLIP = E[ min(r A, clip(r, 1 - eps, 1 + eps) A) ],  A = R - psi_old(X_mu)       (Eq. 8)
    L_S = -J_PPO

Each clip is a one-step episode, so the return is the (objective's) reward itself and the
advantage is R - V_old: no GAE, no discount, no bootstrap from a next state.
``r = pi_theta(.) / pi_old(.)`` uses the objective's log-probability
(:mod:`agents.algorithms.objectives`; ``paper`` by default), fp32, same temperature for
old and new policy. pi_old and V_old are the ones stored with each episode by the
collecting policy (Algorithm 1 line 12); they are recomputed only if the buffer lacks them.

``ratio_on="resampled"`` reproduces Algorithm 1 line 18 literally: a new mask I_m' is drawn
from pi_theta during the update and r = pi_theta(I_m') / pi_old(I_m). It is not the default
because it is not an importance ratio: numerator and denominator are probabilities of two
different actions, so r is not 1 at theta = theta_old, the clip does not bound the policy
change, and the gradient raises the probability of the fresh sample by the advantage of
the stored one, which carries no information about it. ``"stored"`` (both probabilities of
the stored I_m) is PPO as published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from tianshou.data import Batch
from tianshou.utils.net.common import ActorCritic
from torch import nn

from agents.algorithms.base import TokenSamplerAlgorithm
from agents.algorithms.config import SamplerConfig, _choice, build_actor_network, build_critic_network
from agents.algorithms.optim import optimizer_factory
from agents.algorithms.spec import EnvSpec
from agents.algorithms.objectives import OBJECTIVES
from agents.algorithms.policy import TokenSamplerPolicy, token_sampler_policy

RATIO_ON = ("stored", "resampled")


@dataclass
class PPOConfig(SamplerConfig):
    """TATS (paper Section 3.3, Table 4 defaults)."""

    name: str = "ppo"
    """Agent name in the registry."""
    objective: str = "paper"
    """paper (masked-token log-prob, R = +L_R) | cooperative (exact, R = -L_R) | adversarial (exact, R = +L_R)."""
    eps_clip: float = 0.2
    """Clip range eps of Eq. 8."""
    dual_clip: Optional[float] = None
    """Dual clip c > 1 (Ye et al. 2020): for A < 0 the objective is at least c * A; None = off (the paper)."""
    value_clip: bool = False
    """Clip V to V_old +- eps_clip and take the larger squared error (OpenAI baselines); off in the paper."""
    policy_coef: float = 1e-4
    """c1, weight of J_CLIP (paper: 1e-4)."""
    value_coef: float = 1e-4
    """c2, weight of the value loss (paper: 1e-4)."""
    entropy_coef: float = 1e-4
    """c3, weight of the entropy bonus (paper: 1e-4)."""
    ratio_on: str = "stored"
    """stored (PPO: new/old log-prob of the stored mask) | resampled (Algorithm 1 line 18 literally)."""
    advantage_normalization: bool = False
    """Standardise A per minibatch (the paper uses A = R - V_old as is)."""
    critic_hidden: list[int] = field(default_factory=lambda: [1568, 784])
    """Hidden widths of the critic MLP on the mean token (paper: 1568, 784); critic_input=mean_token only."""
    critic_input: str = "mean_token"
    """X_mu of the critic: mean_token (the mean over tokens, a D-vector, into D -> 1568 -> 784 -> 1 with
    ReLUs) | token_means (the paper's literal reading: each token's channel mean, an N-vector, into
    N -> N/2 -> ReLU -> 1, i.e. Linear(1568) -> ReLU(Linear(784)) -> 1 at ViT-B's N = 1568)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("objective", self.objective, tuple(OBJECTIVES))
        _choice("ratio_on", self.ratio_on, RATIO_ON)
        _choice("critic_input", self.critic_input, ("mean_token", "token_means"))
        if not 0 < self.eps_clip < 1:
            raise ValueError(f"eps_clip must be in (0, 1), got {self.eps_clip}")
        if self.dual_clip is not None and not self.dual_clip > 1:
            raise ValueError(f"dual_clip must be > 1 or null, got {self.dual_clip}")


class TATSPPO(TokenSamplerAlgorithm):
    """PPO with the TATS objective: coefficient c1, one-step advantages, the objective's log-prob,
    and optional re-sampled ratios. Its own loss and update (:class:`TokenSamplerAlgorithm`), so it
    takes from Tianshou only what runs: the on-policy algorithm base and one optimiser over actor and
    critic, built as Tianshou's ``A2C``/``PPO`` build theirs."""

    def __init__(
        self,
        *,
        policy: TokenSamplerPolicy,
        critic: nn.Module,
        optim: Any,
        objective: str = "paper",
        eps_clip: float = 0.2,
        dual_clip: float | None = None,
        value_clip: bool = False,
        policy_coef: float = 1e-4,
        value_coef: float = 1e-4,
        entropy_coef: float = 1e-4,
        advantage_normalization: bool = False,
        ratio_on: str = "stored",
        max_grad_norm: float | None = None,
    ) -> None:
        """
        :param policy: the collecting policy; its actor is trained.
        :param critic: value network psi: ``critic(obs) -> (B, 1)``; trained with the actor.
        :param optim: optimizer factory for actor and critic together.
        :param objective: ``"paper"``, ``"cooperative"`` or ``"adversarial"``.
        :param eps_clip: clip range eps of Eq. 8 (0.2).
        :param dual_clip: c > 1 bounds the objective of negative-advantage samples below by c * A; None = off.
        :param value_clip: clip V to V_old +- eps_clip in the value loss.
        :param policy_coef: c1 of Eq. 7 (paper 1e-4).
        :param value_coef: c2 of Eq. 7 (paper 1e-4).
        :param entropy_coef: c3 of Eq. 7 (paper 1e-4).
        :param advantage_normalization: standardise A per minibatch.
        :param ratio_on: ``"stored"`` or ``"resampled"`` (see the module docstring).
        :param max_grad_norm: clip the gradient norm of actor and critic; None = off.
        """
        if dual_clip is not None and not dual_clip > 1.0:
            raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
        _choice("ratio_on", ratio_on, RATIO_ON)
        super().__init__(objective=objective, policy=policy)
        self.critic = critic
        self.optim = self._create_optimizer(ActorCritic(policy.actor, critic), optim, max_grad_norm=max_grad_norm)
        self.eps_clip, self.dual_clip, self.value_clip = eps_clip, dual_clip, value_clip
        self.advantage_normalization, self._eps = advantage_normalization, 1e-8
        self.vf_coef, self.ent_coef, self.max_grad_norm = value_coef, entropy_coef, max_grad_norm
        self.policy_coef = policy_coef
        self.ratio_on = ratio_on

    # ---- advantages: A = R - V_old, one-step episodes (Eq. 8)
    def prepare(self, batch: Batch) -> Batch:
        """Add ``returns`` (R), ``v_s`` (V_old), ``adv`` (R - V_old), ``logp_old`` and a long ``act``."""
        batch = self.prepare_actions_and_returns(batch)
        batch.v_s = self.stored_or_computed(batch, "value", lambda mb: self.critic(mb.obs).float().flatten())
        batch.logp_old = self.old_log_prob(batch)
        batch.adv = batch.returns - batch.v_s
        return batch

    # ---- loss: L_S = -J_PPO (Eq. 7)
    def compute_loss(self, minibatch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_S on a prepared minibatch, and its parts (detached) for logging."""
        dist = self.policy.distribution(minibatch)
        adv = minibatch.adv
        if self.advantage_normalization and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + self._eps)
        act = dist.sample() if self.ratio_on == "resampled" else minibatch.act
        log_ratio = self.objective.log_prob(dist, act) - minibatch.logp_old
        ratio = log_ratio.exp()
        clipped = ratio.clamp(1.0 - self.eps_clip, 1.0 + self.eps_clip)
        surrogate = torch.min(ratio * adv, clipped * adv)  # J_CLIP, Eq. 8, per sample
        if self.dual_clip is not None:
            surrogate = torch.where(adv < 0, torch.max(surrogate, self.dual_clip * adv), surrogate)
        clip_objective = surrogate.mean()
        value = self.critic(minibatch.obs).float().flatten()
        value_error = (value - minibatch.returns).pow(2)  # (psi(X_mu) - R)^2
        if self.value_clip:
            value_clipped = minibatch.v_s + (value - minibatch.v_s).clamp(-self.eps_clip, self.eps_clip)
            value_error = torch.max(value_error, (value_clipped - minibatch.returns).pow(2))
        value_loss = value_error.mean()
        entropy = dist.entropy().mean()  # H(X, pi_theta)
        loss = -(self.policy_coef * clip_objective - self.vf_coef * value_loss + self.ent_coef * entropy)
        with torch.no_grad():
            stats = {
                "loss": loss, "clip_objective": clip_objective, "value_loss": value_loss,
                "entropy": entropy, "value_mean": value.mean(), "ratio_mean": ratio.mean(),
                "clip_fraction": ((ratio - 1.0).abs() > self.eps_clip).float().mean(),
                # k3 estimator of KL(pi_old || pi_theta): (r - 1) - log r >= 0
                "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
            }
        return loss, {key: value.detach() for key, value in stats.items()}


def build_ppo(spec: EnvSpec, config: PPOConfig, device: torch.device, *,
              actor: nn.Module | None = None, critic: nn.Module | None = None) -> TATSPPO:
    """TATS: actor (``config.actor``), critic on the mean token, :class:`TATSPPO`."""
    actor = actor if actor is not None else build_actor_network(spec, config)  # first: the seeded init order
    critic = critic if critic is not None else build_critic_network(spec, config.critic_hidden, config.critic_input)
    policy = token_sampler_policy(spec, config, device, actor=actor, critic=critic)
    return TATSPPO(
        policy=policy, critic=policy.critic, optim=optimizer_factory(config), objective=config.objective,
        eps_clip=config.eps_clip, dual_clip=config.dual_clip, value_clip=config.value_clip,
        policy_coef=config.policy_coef, value_coef=config.value_coef,
        entropy_coef=config.entropy_coef, advantage_normalization=config.advantage_normalization,
        ratio_on=config.ratio_on, max_grad_norm=config.max_grad_norm)
