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

Two recipes train the sampler (``recipe``):

- ``"adamae"`` (the default; AdaMAE's released code): the sampler is part of the MAE's
  optimisation step. Its parameters join the MAE's optimiser (:meth:`AdaMAEReinforce.mae_param_groups`:
  the MAE's learning-rate schedule and weight decay, under the MAE's no-decay rules), and the
  environment adds ``sampling_loss_weight * L_S`` to the reconstruction loss before the one
  backward (:meth:`AdaMAEReinforce.mae_step_loss`), with L_S computed from the actor applied to
  the MAE's token embeddings *with* gradient, so L_S's gradient also reaches the patch
  embedding. The policy drew the step's action with the same parameters from the same tokens
  (detached), so the log-probabilities are on-policy. Tianshou's update then moves nothing: it
  logs the means of the in-step losses since the last update (``gradient_steps`` = 0).
  AdaMAE: ``msc/engine_for_pretraining.py`` ``train_one_epoch`` (``loss = m_l_r + m_l_s`` with
  ``m_l_s = 1e-4 * mean(l_s)``, one ``loss_scaler`` call), ``pretrain_mae_vit.py`` ``main`` (one
  ``create_optimizer`` over the whole model, sampler included), ``models/pretrain/vit.py``
  ``PretrainVisionTransformerEncoder.forward_features`` (the sampler reads ``patch_embed(x)``,
  not detached).
- ``"separate"``: the sampler has its own AdamW (``lr``, ``weight_decay``, ``opt_betas``) and
  learns in Tianshou's update from the buffer, after the random-masking warm-up, on detached
  observations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from timm.optim import param_groups_weight_decay
from tianshou.data import Batch, ReplayBuffer
from torch import nn

from agents.algorithms.base import TokenSamplerAlgorithm
from agents.algorithms.config import SamplerConfig, _choice
from agents.algorithms.optim import optimizer_factory
from agents.algorithms.spec import EnvSpec
from agents.algorithms.update import ScalarTrainingStats, StatsAccumulator
from agents.algorithms.objectives import OBJECTIVES
from agents.algorithms.policy import TokenSamplerPolicy, token_sampler_policy

ESTIMATORS = ("token", "clip")
BASELINES = ("batch", "ema", "none")
RECIPES = ("adamae", "separate")
ADAMAE_SAMPLING_LOSS_WEIGHT = 1e-4
"""AdaMAE's weight of the sampling loss: ``engine_for_pretraining.train_one_epoch``, ``m_l_s = 1e-4*torch.mean(l_s)``."""


def token_estimator_loss(log_p: torch.Tensor, masked: torch.Tensor,
                         token_error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaMAE's token estimator: ``-mean_b [sum_{i masked} log p_i * e_i / |masked_b|]``.

    Shapes: ``log_p`` (B, N) normalised log-probabilities, ``masked`` (B, N) bool,
    ``token_error`` (B, N) detached per-token errors. Returns the loss and the mean masked
    error (for logging, detached).
    """
    num_masked = masked.sum(-1).clamp_min(1)
    weighted = torch.where(masked, log_p * token_error, 0.0).sum(-1)
    masked_error = (torch.where(masked, token_error, 0.0).sum(-1) / num_masked).mean()
    return -(weighted / num_masked).mean(), masked_error.detach()


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
    recipe: str = "adamae"
    """adamae (AdaMAE's code: the sampler in the MAE's optimiser and schedule, its loss added to the
    reconstruction loss in the MAE's step, from the first step) | separate (its own AdamW with lr,
    weight_decay and opt_betas, trained from the buffer after the random-masking warm-up)."""
    sampling_loss_weight: float = ADAMAE_SAMPLING_LOSS_WEIGHT
    """recipe=adamae: weight of the sampling loss in the MAE's loss (AdaMAE's code: 1e-4)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("recipe", self.recipe, RECIPES)
        if not self.sampling_loss_weight > 0:
            raise ValueError(f"sampling_loss_weight must be > 0, got {self.sampling_loss_weight}")
        if self.recipe == "adamae" and self.estimator != "token":
            raise ValueError(f"recipe=adamae trains with AdaMAE's token estimator inside the MAE's step; "
                             f"estimator={self.estimator!r} needs recipe=separate")
        _choice("estimator", self.estimator, ESTIMATORS)
        _choice("objective", self.objective, tuple(OBJECTIVES))
        _choice("baseline", self.baseline, BASELINES)
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")


class AdaMAEReinforce(TokenSamplerAlgorithm):
    """REINFORCE with AdaMAE's token-level weighting (or a clip-level baseline): its own loss and update
    (:class:`TokenSamplerAlgorithm`), one optimiser over the policy, built as Tianshou's ``Reinforce``
    builds its own."""

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
        recipe: str = "adamae",
        sampling_loss_weight: float = ADAMAE_SAMPLING_LOSS_WEIGHT,
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
        :param recipe: ``"separate"`` (``optim`` trains the actor in :meth:`update`) or ``"adamae"``
            (the MAE's step trains it: :meth:`mae_param_groups`, :meth:`mae_step_loss`; see the
            module docstring).
        :param sampling_loss_weight: recipe ``"adamae"``: weight of L_S in the MAE's loss.
        """
        super().__init__(objective=objective, policy=policy)
        self.optim = self._create_optimizer(self.policy, optim, max_grad_norm=max_grad_norm)
        _choice("estimator", estimator, ESTIMATORS)
        _choice("baseline", baseline, BASELINES)
        _choice("recipe", recipe, RECIPES)
        if recipe == "adamae" and estimator != "token":
            raise ValueError(f"recipe='adamae' needs estimator='token', got {estimator!r}")
        self.recipe, self.sampling_loss_weight = recipe, sampling_loss_weight
        self._joined_mae = False  # recipe adamae: mae_param_groups() was handed to an MAE optimiser
        self._step_stats = StatsAccumulator()  # recipe adamae: the in-step losses since the last update
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
            # dist.logits are the normalised log p_i (temperature applied)
            pg_loss, stats["masked_error_mean"] = token_estimator_loss(
                dist.logits, ~dist.visible_mask(minibatch.act), minibatch.token_error)
        else:
            pg_loss = -(minibatch.adv * self.objective.log_prob(dist, minibatch.act)).mean()
        entropy = dist.entropy().mean()
        loss = pg_loss - self.entropy_coef * entropy
        stats.update(loss=loss, pg_loss=pg_loss, entropy=entropy)
        return loss, {key: value.detach() for key, value in stats.items()}

    # ---- recipe "adamae": the sampler trains in the MAE's step
    @property
    def trains_with_mae(self) -> bool:
        """The MAE's optimisation step trains the sampler (recipe ``"adamae"``)."""
        return self.recipe == "adamae"

    def mae_param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The sampler's parameters as param groups for the MAE's optimiser (recipe ``"adamae"``).

        The MAE's no-decay rule (timm's ``param_groups_weight_decay``, as ``create_optimizer_v2``
        applies it to the MAE; AdaMAE's ``optim_factory.get_parameter_groups``): no decay for
        1-D tensors and biases (and a ``no_weight_decay()`` set of the actor, if it has one),
        ``weight_decay`` for the rest. The groups carry no lr: the MAE's schedule sets it.
        Marks the algorithm as joined, so :meth:`update` moves nothing.
        """
        if not self.trains_with_mae:
            raise RuntimeError("mae_param_groups() is for recipe='adamae'; recipe='separate' has its own optimiser")
        actor = self.policy.actor
        skip = set(actor.no_weight_decay()) if hasattr(actor, "no_weight_decay") else set()
        groups = param_groups_weight_decay(actor, weight_decay, no_weight_decay_list=skip)
        self._joined_mae = True
        return [{**group, "name": f"sampler_{'decay' if group['weight_decay'] > 0 else 'no_decay'}"}
                for group in groups]

    def mae_step_loss(self, tokens: torch.Tensor, visible: torch.Tensor, token_error: torch.Tensor) -> torch.Tensor:
        """``sampling_loss_weight * (L_S - entropy_coef * H)`` for the MAE's step (recipe ``"adamae"``).

        :param tokens: ``(B, N, D)`` the MAE's token embeddings of the step's clips, with gradient.
        :param visible: ``(B, N)`` bool, the visible tokens the policy drew for them.
        :param token_error: ``(B, N)`` the MAE's per-token error on them (detached).
        :return: the scalar to add to the reconstruction loss; its parts are kept for :meth:`update`'s log.
        """
        logits, _ = self.policy.actor(tokens)
        dist = self.policy.dist_fn(logits.float())
        pg_loss, masked_error = token_estimator_loss(dist.logits, ~visible, token_error.detach().float())
        entropy = dist.entropy().mean()
        loss = pg_loss - self.entropy_coef * entropy
        weighted = self.sampling_loss_weight * loss
        self._step_stats.add(loss=loss.detach(), pg_loss=pg_loss.detach(), entropy=entropy.detach(),
                             masked_error_mean=masked_error, weighted_loss=weighted.detach())
        return weighted

    def _update_with_batch(self, batch: Batch, batch_size: int | None, repeat: int) -> ScalarTrainingStats:
        if not self.trains_with_mae:
            return super()._update_with_batch(batch, batch_size, repeat)
        if not self._joined_mae:
            raise RuntimeError("recipe='adamae' trains the sampler inside the MAE's step: hand mae_param_groups() "
                               "to the MAE's optimiser and mae_step_loss to the environment (train_joint.py does), "
                               "or use recipe='separate' to train it from the buffer")
        # the MAE's steps already trained the sampler on these episodes: log, move nothing
        scalars = self._step_stats.means()
        self._step_stats = StatsAccumulator()
        scalars.update(self.batch_stats(batch))
        return ScalarTrainingStats(scalars=scalars, gradient_steps=0)

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
        entropy_coef=config.entropy_coef, max_grad_norm=config.max_grad_norm, recipe=config.recipe,
        sampling_loss_weight=config.sampling_loss_weight)
