"""The acting side of the learned samplers: a Tianshou policy over K-of-N token draws.

:class:`TokenSamplerPolicy` is Tianshou's :class:`ProbabilisticActorPolicy` with the
:class:`~agents.distributions.PlackettLuce` distribution, plus what the paper's episode
holds (Algorithm 1 line 12: ``{X, pi_old(I_m | X), L_R.detach(), V_old(X_mu)}``). Its
``forward`` returns, under ``policy``, per clip:

- ``log_prob`` ``(B,)``: exact Plackett-Luce log-prob of the drawn action (behaviour policy);
- ``masked_log_prob`` ``(B,)``: the paper's log pi_old(I_m | X) (mean/sum over masked tokens);
- ``entropy`` ``(B,)``: entropy of the single-draw categorical (the paper's H);
- ``value`` ``(B,)``: V_old(X_mu), when the policy holds a critic (PPO);
- ``probs`` ``(B, N)``: the single-draw probabilities p (optional, for inspection);
- ``adv`` ``(B,)``: NaN; the algorithm writes the advantage it used here at update time.

Tianshou's Collector writes the ``policy`` entry into the buffer (other extras would be
dropped), so after collection the buffer is the paper's memory M_b and can be dumped and
inspected. Learning never calls ``forward``: algorithms call :meth:`distribution`, which
runs only the actor.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
from tianshou.data import Batch
from tianshou.data.types import DistBatchProtocol, ObsBatchProtocol
from torch import nn

from agents.algorithms.config import SamplerConfig, build_actor_network
from agents.algorithms.spec import EnvSpec
from agents.distributions import PlackettLuce


class TemperedPlackettLuce:
    """The policy's ``dist_fn``: logits -> :class:`PlackettLuce` at the current ``temperature``.

    One object for the collecting and the learning side: a temperature schedule sets it between
    updates (:meth:`agents.algorithms.agent.Agent.set_step`), never inside one, so the stored
    log pi_old and the update's log pi_theta are taken at the same temperature.
    """

    def __init__(self, *, k: int, temperature: float, masked_logprob: str, normalize_entropy: bool) -> None:
        self.k, self.temperature = k, float(temperature)
        self.masked_logprob, self.normalize_entropy = masked_logprob, normalize_entropy

    def __call__(self, logits: torch.Tensor, counts: torch.Tensor | None = None) -> PlackettLuce:
        return PlackettLuce(logits, k=self.k, temperature=self.temperature, masked_logprob=self.masked_logprob,
                            normalize_entropy=self.normalize_entropy, counts=counts)


def visible_counts(batch: Any) -> torch.Tensor | None:
    """Each clip's K, ``info.num_visible`` ``(B,)``, as the environment announces it with the observation
    and the Collector stores it with the transition; None where the info has none (every clip then keeps
    the action's K). With a budget drawn per batch the action holds K_max draws and clip b keeps the first
    ``num_visible[b]``."""
    info = batch.get("info", None) if hasattr(batch, "get") else None
    if info is None or not hasattr(info, "get"):
        return None
    counts = info.get("num_visible", None)
    return None if counts is None else torch.as_tensor(np.asarray(counts, dtype=np.int64)).reshape(-1)


class TokenSamplerPolicy(ProbabilisticActorPolicy):
    """Samples K visible tokens per clip from pi_theta(X) and records the episode's extras.

    Shapes:
        obs ``(B, N, D)`` -> act ``(B, K)`` int64 in draw order, logits ``(B, N)``;
        ``policy`` entries as listed in the module docstring.
    """

    def __init__(
        self,
        *,
        actor: nn.Module,
        num_visible: int,
        action_space: gym.Space,
        min_visible: int | None = None,
        temperature: float = 1.0,
        masked_logprob: str = "mean",
        normalize_entropy: bool = False,
        critic: nn.Module | None = None,
        store_probs: bool = True,
        deterministic_eval: bool = False,
    ) -> None:
        """
        :param actor: ``actor(obs, state=None, info=None) -> (logits (B, N), state)``.
        :param num_visible: K, tokens drawn per clip.
        :param min_visible: the fewest a clip keeps when the environment draws a budget per batch (each
            clip's K is then read from ``info.num_visible``); None = every clip keeps all K, and the
            info's K is not read (no per-row work on the collection and update paths).
        :param action_space: the env's single action space, ``MultiDiscrete([N] * K)``.
        :param temperature: softmax temperature tau of pi = softmax(z / tau) (paper: 1); the
            same for the behaviour policy and every update.
        :param masked_logprob: ``"mean"`` (AdaMAE, paper) or ``"sum"`` over the masked tokens
            in :meth:`PlackettLuce.masked_log_prob`.
        :param normalize_entropy: entropy divided by log N (in [0, 1]).
        :param critic: value network ``critic(obs) -> (B, 1)`` whose estimate is stored with
            each episode (PPO); None for critic-free algorithms.
        :param store_probs: also store the ``(B, N)`` single-draw probabilities (for
            :mod:`agents.inspect`: concentration and heatmaps of the policy itself).
        :param deterministic_eval: outside a training step, act with the K most probable
            tokens instead of sampling.
        """
        super().__init__(
            actor=actor,
            dist_fn=TemperedPlackettLuce(k=num_visible, temperature=temperature, masked_logprob=masked_logprob,
                                         normalize_entropy=normalize_entropy),
            deterministic_eval=deterministic_eval,
            action_space=action_space,
            action_scaling=False,  # indices, not a continuous action: never rescale or clip
            action_bound_method=None,
        )
        self.critic = critic
        self.num_visible = num_visible
        self.reads_counts = min_visible is not None and min_visible != num_visible
        self.store_probs = store_probs

    @property
    def temperature(self) -> float:
        """The softmax temperature every distribution of this policy is built with (collection and update)."""
        return self.dist_fn.temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"temperature must be > 0, got {value}")
        self.dist_fn.temperature = float(value)

    def counts(self, batch: Any) -> torch.Tensor | None:
        """Each clip's K for a batch (:func:`visible_counts`) under a budget drawn per batch; None otherwise."""
        return visible_counts(batch) if self.reads_counts else None

    def distribution(self, batch: Any) -> PlackettLuce:
        """pi_theta(X) for a batch with ``obs`` (and ``info``): the actor only, with gradients; each clip's K
        as :meth:`counts` reads it."""
        logits_BN, _ = self.actor(batch.obs, state=None, info=batch.get("info", None))
        return self.dist_fn(logits_BN, self.counts(batch))

    def forward(self, batch: ObsBatchProtocol, state: Any = None) -> DistBatchProtocol:
        # Tianshou's ProbabilisticActorPolicy.forward, with each clip's K handed to the distribution
        logits_BN, hidden = self.actor(batch.obs, state=state, info=batch.info)
        dist = self.dist_fn(logits_BN, self.counts(batch))
        act_BK = dist.mode if self.deterministic_eval and not self.is_within_training_step else dist.sample()
        result = Batch(logits=logits_BN, act=act_BK, state=hidden, dist=dist)
        with torch.no_grad():
            extras = Batch(
                log_prob=dist.log_prob(act_BK),
                masked_log_prob=dist.masked_log_prob(act_BK),
                entropy=dist.entropy(),
                adv=torch.full((act_BK.shape[0],), float("nan"), device=act_BK.device),
            )
            if self.critic is not None:
                extras.value = self.critic(batch.obs).float().flatten()
            if self.store_probs:
                extras.probs = dist.probs
        result.policy = extras
        return cast(DistBatchProtocol, result)


def token_sampler_policy(spec: Any, config: Any = None, device: torch.device | str = "cpu", *,
                         actor: nn.Module | None = None, critic: nn.Module | None = None) -> TokenSamplerPolicy:
    """The token sampler's policy as the options ``config`` describe it, on ``device``.

    :param spec: the environment's :class:`~agents.algorithms.spec.EnvSpec` (N, K, D, grid, action space).
    :param config: a :class:`~agents.algorithms.config.SamplerConfig` (or a subclass); None = its defaults.
        Read: ``actor`` and its network options, ``softmax_temp``, ``masked_logprob``,
        ``normalize_entropy``, ``store_probs``, ``deterministic_eval``.
    :param device: where actor and critic live.
    :param actor: use this actor instead of building ``config.actor``.
    :param critic: a value network whose estimate is stored with each episode (PPO); None = none.
    """
    config = config if config is not None else SamplerConfig()
    actor = (actor if actor is not None else build_actor_network(spec, config)).to(device)
    return TokenSamplerPolicy(
        actor=actor, critic=critic.to(device) if critic is not None else None, num_visible=spec.num_visible,
        min_visible=getattr(spec, "min_visible", None), action_space=spec.action_space,
        temperature=config.softmax_temp, masked_logprob=config.masked_logprob,
        normalize_entropy=config.normalize_entropy, store_probs=config.store_probs,
        deterministic_eval=config.deterministic_eval)
