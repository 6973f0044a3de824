"""One update of a learned sampler: minibatch passes, their stats, the advantages written back."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch
from tianshou.algorithm.algorithm_base import TrainingStats


@dataclass(kw_only=True)
class ScalarTrainingStats(TrainingStats):
    """Means over the gradient steps of one update, keyed without the ``policy/`` prefix."""

    scalars: dict[str, float]
    gradient_steps: int

    def get_loss_stats_dict(self) -> dict[str, float]:
        """Tianshou's logging view: each scalar by its own name, and ``gradient_steps``."""
        return {**self.scalars, "gradient_steps": self.gradient_steps}


class StatsAccumulator:
    """Collects per-minibatch scalars and averages them (one ``.item()`` per value)."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, **values: torch.Tensor | float) -> None:
        for key, value in values.items():
            self._sums[key] += float(value)
            self._counts[key] += 1

    def means(self) -> dict[str, float]:
        return {key: self._sums[key] / self._counts[key] for key in self._sums}


def write_back_advantages(buffer: Any, indices: Any, adv_B: torch.Tensor) -> None:
    """Store the advantages an update used in the buffer's ``policy.adv`` slot, if it has one.

    The collecting policy reserves the slot (NaN); Tianshou's ``_postprocess_batch`` hook is
    the place where an algorithm writes back into its buffer. ``indices`` are the buffer's
    own (global) indices of the batch, as returned by ``buffer.sample(0)``.
    """
    try:
        slot = buffer.policy.adv
    except (AttributeError, KeyError):  # filled by hand or by another policy: nothing to write
        return
    values = adv_B.detach()
    if isinstance(slot, torch.Tensor):
        slot[torch.as_tensor(indices, device=slot.device)] = values.to(slot.device, slot.dtype)
    else:
        slot[indices] = values.cpu().numpy().astype(slot.dtype)


def minibatch_passes(algorithm: Any, batch: Any, batch_size: int | None, repeat: int) -> tuple[dict[str, float], int]:
    """``repeat`` passes of ``algorithm.compute_loss`` + an optimiser step over ``batch``.

    The step is ``algorithm.optim.step(loss)`` (guarded: :mod:`agents.algorithms.optim`). Minibatches
    come in a fresh random order each pass (numpy RNG); with no ``batch_size`` the whole batch
    is one minibatch, as is. Returns the stats' means and the step count.
    """
    accumulator, steps = StatsAccumulator(), 0
    for _ in range(repeat):
        for minibatch in batch.split(batch_size or -1, shuffle=batch_size is not None, merge_last=True):
            loss, stats = algorithm.compute_loss(minibatch)
            algorithm.optim.step(loss)
            accumulator.add(**stats)
            steps += 1
    return accumulator.means(), steps
