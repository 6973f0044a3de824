"""The fixed maskers as agents: VideoMAE's random space-time and tube masking.

They act through the same Collector, buffer and logs as the learned samplers, so a
baseline run differs from a TATS run by ``agent=random`` alone. The masks come from
:func:`mae.random_mask` and :func:`mae.tube_mask` (the project's one definition of each);
the visible indices are put in a uniformly random order, so a random-masking action is
distributed exactly as a Plackett-Luce draw from uniform logits. Their algorithm,
:class:`FixedMaskAlgorithm`, learns nothing (as Tianshou's random agent), so the training
loop treats every agent alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, cast

import torch
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm, Policy, TrainingStats
from tianshou.data import Batch, ReplayBuffer
from tianshou.data.types import ActBatchProtocol, ObsBatchProtocol

import mae
from agents.algorithms.config import _choice
from agents.algorithms.spec import EnvSpec
from runtime.errors import ConfigError

MASKERS = ("random", "tube")


@dataclass
class FixedConfig:
    """A fixed masker (no learning)."""

    name: str = "random"
    """random (VideoMAE random space-time masking) | tube (VideoMAE tube masking)."""
    seed: Optional[int] = None
    """Seed of the masker's own generator; None = drawn from torch's global RNG at build time."""

    def __post_init__(self) -> None:
        _choice("name", self.name, MASKERS)


class FixedMaskPolicy(Policy):
    """Acts with a fixed masker: K visible token indices per clip, in a random order.

    Its generator state is part of ``state_dict`` (``_extra_state``), so a resumed run
    draws the same masks as an uninterrupted one.

    Shapes:
        obs ``(B, N, D)`` -> act ``(B, K)`` int64.
    """

    def __init__(self, *, masker: str, spec: EnvSpec, seed: int | None = None) -> None:
        """
        :param masker: ``"random"`` or ``"tube"``.
        :param spec: the environment's token grid, N, K and action space.
        :param seed: seed of the policy's generator; None = one drawn from torch's global RNG.
        """
        super().__init__(action_space=spec.action_space, action_scaling=False, action_bound_method=None)
        _choice("masker", masker, MASKERS)
        self.masker, self.spec = masker, spec
        if seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        self.generator = torch.Generator().manual_seed(seed)

    def masks(self, batch_size: int) -> torch.Tensor:
        """``(B, N)`` bool, True = visible, K per row."""
        if self.masker == "random":
            return mae.random_mask(batch_size, self.spec.num_tokens, self.spec.mask_ratio, generator=self.generator)
        return mae.tube_mask(batch_size, self.spec.grid, self.spec.mask_ratio, generator=self.generator)

    def forward(self, batch: ObsBatchProtocol, state: Any = None, **kwargs: Any) -> ActBatchProtocol:
        visible = self.masks(len(batch.obs))
        index = mae.mask_to_indices(visible)  # (B, K) in token order
        order = torch.rand(index.shape, generator=self.generator).argsort(dim=1)
        return cast(ActBatchProtocol, Batch(act=index.gather(1, order), state=state))

    def get_extra_state(self) -> Any:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: Any) -> None:
        self.generator.set_state(state["generator"])


class FixedMaskAlgorithm(OnPolicyAlgorithm[FixedMaskPolicy]):
    """The fixed maskers' algorithm: it has no weights and its update learns nothing."""

    def __init__(self, *, policy: FixedMaskPolicy) -> None:
        super().__init__(policy=policy)

    def update(self, buffer: ReplayBuffer | None = None, batch_size: int | None = None,
               repeat: int = 1) -> TrainingStats:
        """Nothing to learn: the buffer is not read (empty stats)."""
        return TrainingStats()

    def _update_with_batch(self, batch: Any, batch_size: int | None, repeat: int) -> TrainingStats:
        return TrainingStats()


def build_fixed(spec: EnvSpec, config: FixedConfig, device: torch.device, *,
                actor: Any = None, critic: Any = None) -> FixedMaskAlgorithm:
    """A fixed masker (``config.name``); ``actor``/``critic`` are not used."""
    if config.name == "tube" and spec.min_visible != spec.num_visible:
        raise ConfigError("agent=tube cannot act with a budget drawn per batch (mask_ratio_range): the environment "
                         "keeps a prefix of each action, and a prefix of a tube mask is not a tube mask")
    return FixedMaskAlgorithm(policy=FixedMaskPolicy(masker=config.name, spec=spec, seed=config.seed))
