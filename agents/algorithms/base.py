"""What the token sampler's algorithms share, modelled on Tianshou's ``ActorCriticOnPolicyAlgorithm``.

:class:`TokenSamplerAlgorithm` (a Tianshou ``OnPolicyAlgorithm``) is the base of :class:`~agents.algorithms.ppo.TATSPPO`,
:class:`~agents.algorithms.grpo.GRPO`
and :class:`~agents.algorithms.reinforce.AdaMAEReinforce`; each builds its own optimiser. A subclass
writes what makes it itself:

- ``prepare(batch)``: the update's inputs (``act``, ``returns``, ``adv``, ``logp_old``, ...),
  run once per update as Tianshou's ``_preprocess_batch``;
- ``compute_loss(minibatch) -> (loss, stats)``: its loss and the parts to log;
- ``batch_stats(batch)`` (optional): scalars of the whole batch to log.

The base runs the update (``batch_size``-minibatch passes of ``compute_loss``, each a guarded
optimiser step), returns :class:`ScalarTrainingStats`, and writes the advantages the update
used back into the buffer's ``policy.adv`` slot (``_postprocess_batch``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm
from tianshou.data import Batch, ReplayBuffer

from agents.algorithms.update import ScalarTrainingStats, minibatch_passes, write_back_advantages
from agents.algorithms.objectives import get_objective
from agents.algorithms.policy import TokenSamplerPolicy


class TokenSamplerAlgorithm(OnPolicyAlgorithm[TokenSamplerPolicy]):
    """The update loop, stats and buffer write-back of a token-sampler algorithm.

    :param objective: ``"paper"``, ``"cooperative"`` or ``"adversarial"``: which log-prob and
        return the algorithm uses (:mod:`agents.algorithms.objectives`).
    :param kwargs: for the Tianshou algorithm that follows in the class's bases.
    """

    max_batchsize = 256
    """Episodes per forward when ``prepare`` recomputes a value or a log-prob (memory bound)."""

    def __init__(self, *, objective: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.objective = get_objective(objective)

    # ---- what a subclass writes
    def prepare(self, batch: Batch) -> Batch:
        """Add the update's inputs to ``batch`` (the whole buffer) and return it."""
        raise NotImplementedError

    def compute_loss(self, minibatch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss on a prepared minibatch, and its parts (detached) for logging."""
        raise NotImplementedError

    def batch_stats(self, batch: Batch) -> dict[str, float]:
        """Scalars of the prepared batch to log: the advantages' and returns' statistics, where it has them."""
        if "adv" not in batch.get_keys():
            return {}
        return {"adv_mean": float(batch.adv.mean()), "adv_std": float(batch.adv.std()) if len(batch) > 1 else 0.0,
                "return_mean": float(batch.returns.mean())}

    # ---- helpers for prepare
    @property
    def device(self) -> torch.device:
        return next(self.policy.actor.parameters()).device

    def prepare_actions_and_returns(self, batch: Batch) -> Batch:
        """A long ``act`` on the actor's device, and ``returns``: the objective's R of the env reward."""
        batch.act = torch.as_tensor(batch.act, device=self.device).long()
        batch.returns = self.objective.returns(torch.as_tensor(batch.rew, device=self.device))
        return batch

    def stored_or_computed(self, batch: Batch, key: str, compute: Callable[[Batch], torch.Tensor]) -> torch.Tensor:
        """``batch.policy[key]`` as the collecting policy stored it, else ``compute`` over the batch in
        chunks of :attr:`max_batchsize` (no gradients); fp32."""
        stored = batch.get("policy", Batch())
        if key in stored.get_keys():
            return torch.as_tensor(stored[key], device=self.device).float()
        with torch.no_grad():
            parts = [compute(mb) for mb in batch.split(self.max_batchsize, shuffle=False, merge_last=True)]
        return torch.cat(parts).float()

    def old_log_prob(self, batch: Batch) -> torch.Tensor:
        """log pi_old(a | X) of the objective: stored with the episode, else recomputed."""
        return self.stored_or_computed(batch, self.objective.buffer_key,
                                       lambda mb: self.objective.log_prob(self.policy.distribution(mb), mb.act))

    # ---- Tianshou's hooks
    def _preprocess_batch(self, batch: Batch, buffer: ReplayBuffer, indices: np.ndarray) -> Batch:
        return self.prepare(batch)

    def _update_with_batch(self, batch: Batch, batch_size: int | None, repeat: int) -> ScalarTrainingStats:
        scalars, steps = minibatch_passes(self, batch, batch_size, repeat)
        scalars.update(self.batch_stats(batch))
        return ScalarTrainingStats(scalars=scalars, gradient_steps=steps)

    def _postprocess_batch(self, batch: Batch, buffer: ReplayBuffer, indices: np.ndarray) -> None:
        if "adv" in batch.get_keys():
            write_back_advantages(buffer, indices, batch.adv)
        super()._postprocess_batch(batch, buffer, indices)
