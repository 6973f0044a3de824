"""AdaMAE's sampler update: REINFORCE with the per-token reconstruction error as reward.

AdaMAE (Bandara et al., CVPR 2023, Eq. 4-5; its code's sampling loss) weights the
single-draw log-probability of every MASKED token by that token's own reconstruction
error, detached:

    L_S = -1/(B (N - K)) sum_b sum_{i in I_m(b)} log p_i(X_b) * e_{b,i}            (token)

p = softmax(z / tau) over the N tokens and e_{b,i} the token's MSE from the environment
(``info.token_error``). Minimising it raises p of masked tokens in proportion to how badly
they were reconstructed, so hard tokens become likelier to be visible (the same direction
as the ``paper`` objective). The actor is AdaMAE's one MHA block by default.

``estimator="clip"`` is the textbook clip-level REINFORCE with a baseline instead:

    L_S = -1/B sum_b (R_b - b) * log pi(a_b | X_b)                                   (clip)

with the objective's log-prob and return (:mod:`agents.algorithms.objectives`) and the
baseline b the mean return of the buffer (``"batch"``), an exponential moving average of
past buffers' means (``"ema"``), or 0 (``"none"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tianshou.algorithm import Reinforce
from tianshou.data import Batch, ReplayBuffer
from torch import nn

from agents.algorithms.base import TokenSamplerAlgorithm
from agents.algorithms.common import EnvSpec, SamplerConfig, _choice, optimizer_factory
from agents.algorithms.objectives import OBJECTIVES
from agents.algorithms.policy import TokenSamplerPolicy, token_sampler_policy

ESTIMATORS = ("token", "clip")
BASELINES = ("batch", "ema", "none")


@dataclass
class ReinforceConfig(SamplerConfig):
    """AdaMAE's REINFORCE sampler."""

    name: str = "reinforce"
    """Agent name in the registry."""
    actor: str = "mha"
    """Actor network (AdaMAE: one MHA block)."""
    estimator: str = "token"
    """token (AdaMAE: masked tokens' log p_i weighted by their error) | clip (R * log pi(a) with a baseline)."""
    objective: str = "paper"
    """estimator=clip: which log-prob and return (paper | cooperative | adversarial)."""
    baseline: str = "batch"
    """estimator=clip: batch (mean return of the buffer) | ema (moving average over updates) | none."""
    baseline_decay: float = 0.9
    """baseline=ema: b <- decay * b + (1 - decay) * mean return, after each update."""
    entropy_coef: float = 0.0
    """Weight of an entropy bonus H (AdaMAE: none)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("estimator", self.estimator, ESTIMATORS)
        _choice("objective", self.objective, tuple(OBJECTIVES))
        _choice("baseline", self.baseline, BASELINES)
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")


class AdaMAEReinforce(TokenSamplerAlgorithm, Reinforce):
    """Tianshou's REINFORCE with AdaMAE's token-level weighting (or a clip-level baseline)."""

    def __init__(
        self,
        *,
        policy: TokenSamplerPolicy,
        optim: Any,
        estimator: str = "token",
        objective: str = "paper",
        baseline: str = "batch",
        baseline_decay: float = 0.9,
        entropy_coef: float = 0.0,
        max_grad_norm: float | None = None,
    ) -> None:
        """
        :param policy: the collecting policy; its actor is trained.
        :param optim: optimizer factory for the policy's actor.
        :param estimator: ``"token"`` (AdaMAE) or ``"clip"`` (see the module docstring).
        :param objective: log-prob and return of the clip estimator.
        :param baseline: ``"batch"``, ``"ema"`` or ``"none"`` (clip estimator).
        :param baseline_decay: EMA decay of the ``"ema"`` baseline.
        :param entropy_coef: weight of the entropy bonus.
        :param max_grad_norm: clip the actor's gradient norm; None = off.
        """
        super().__init__(objective=objective, policy=policy, optim=optim, gamma=1.0)
        _choice("estimator", estimator, ESTIMATORS)
        _choice("baseline", baseline, BASELINES)
        # Reinforce's constructor takes no max_grad_norm; its optimizer wrapper reads this
        # attribute in step().
        self.optim._max_grad_norm = max_grad_norm
        self.estimator, self.baseline, self.baseline_decay = estimator, baseline, baseline_decay
        self.entropy_coef = entropy_coef
        # EMA baseline and whether it has been set: buffers, so checkpoints carry them
        self.register_buffer("baseline_ema", torch.zeros(()))
        self.register_buffer("baseline_ema_set", torch.zeros((), dtype=torch.bool))

    def prepare(self, batch: Batch) -> Batch:
        """Add a long ``act`` and ``returns``; token: ``token_error``; clip: ``adv`` = R - b."""
        batch = self.prepare_actions_and_returns(batch)
        if self.estimator == "token":
            if "token_error" not in batch.get("info", Batch()).get_keys():
                raise ValueError("the token estimator needs info.token_error (the env's per-token error)")
            batch.token_error = torch.as_tensor(batch.info.token_error, device=self.device).float()
            return batch
        mean = batch.returns.mean()
        if self.baseline == "batch":
            base = mean
        elif self.baseline == "ema":
            base = self.baseline_ema if bool(self.baseline_ema_set) else mean
        else:
            base = torch.zeros((), device=self.device)
        batch.baseline = base.detach().clone().expand_as(batch.returns)
        batch.adv = batch.returns - base
        return batch

    def _postprocess_batch(self, batch: Batch, buffer: ReplayBuffer, indices: np.ndarray) -> None:
        super()._postprocess_batch(batch, buffer, indices)  # writes back the clip estimator's advantages
        if self.estimator == "clip" and self.baseline == "ema":
            mean = batch.returns.mean().to(self.baseline_ema)
            decay = self.baseline_decay if bool(self.baseline_ema_set) else 0.0
            self.baseline_ema.copy_(decay * self.baseline_ema + (1.0 - decay) * mean)
            self.baseline_ema_set.fill_(True)

    def compute_loss(self, minibatch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """REINFORCE loss on a prepared minibatch, and its parts (detached) for logging."""
        dist = self.policy.distribution(minibatch)
        stats: dict[str, torch.Tensor] = {}
        if self.estimator == "token":
            masked = ~dist.visible_mask(minibatch.act)
            num_masked = masked.sum(-1).clamp_min(1)
            # dist.logits are the normalised log p_i (temperature applied)
            weighted = torch.where(masked, dist.logits * minibatch.token_error, 0.0).sum(-1)
            pg_loss = -(weighted / num_masked).mean()
            stats["masked_error_mean"] = (torch.where(masked, minibatch.token_error, 0.0).sum(-1) / num_masked).mean()
        else:
            pg_loss = -(minibatch.adv * self.objective.log_prob(dist, minibatch.act)).mean()
        entropy = dist.entropy().mean()
        loss = pg_loss - self.entropy_coef * entropy
        stats.update(loss=loss, pg_loss=pg_loss, entropy=entropy)
        return loss, {key: value.detach() for key, value in stats.items()}

    def batch_stats(self, batch: Batch) -> dict[str, float]:
        stats = super().batch_stats(batch)
        if self.estimator == "clip":
            stats["baseline"] = float(batch.baseline[0])
        return stats


def build_reinforce(spec: EnvSpec, config: ReinforceConfig, device: torch.device, *,
                    actor: nn.Module | None = None, critic: nn.Module | None = None) -> AdaMAEReinforce:
    """AdaMAE's sampler (MHA actor by default) trained with :class:`AdaMAEReinforce`."""
    policy = token_sampler_policy(spec, config, device, actor=actor)
    return AdaMAEReinforce(
        policy=policy, optim=optimizer_factory(config), estimator=config.estimator,
        objective=config.objective, baseline=config.baseline, baseline_decay=config.baseline_decay,
        entropy_coef=config.entropy_coef, max_grad_norm=config.max_grad_norm)
