"""What an agent knows about the environment: N, K, the token width and grid, the action space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about the environment (read off :class:`MAEVectorEnv`).

    :param num_tokens: N, tokens per clip.
    :param num_visible: K = round(N * (1 - mask_ratio)), visible tokens per clip.
    :param embed_dim: D, width of the observed tokens.
    :param grid: token grid ``(T', H', W')``, frame-major.
    :param action_space: the single-env action space ``MultiDiscrete([N] * K)``.
    :param group_size: copies of each clip per step (GRPO groups; 1 = none).
    :param mask_ratio: rho (the lowest of a range: the one whose K is the action's length).
    :param min_visible: the fewest visible tokens a batch keeps (``num_visible`` unless the environment
        draws its budget per batch; then each clip's K is in ``info.num_visible``).
    """

    num_tokens: int
    num_visible: int
    embed_dim: int
    grid: tuple[int, int, int]
    action_space: gym.Space
    group_size: int
    mask_ratio: float
    min_visible: int | None = None

    def __post_init__(self) -> None:
        if self.min_visible is None:
            object.__setattr__(self, "min_visible", self.num_visible)

    @classmethod
    def from_env(cls, env: Any) -> EnvSpec:
        """Read the spec off an :class:`envs.MAEVectorEnv` (or anything with the same fields;
        a grid is taken from ``env.grid`` or ``env.mae.grid``)."""
        grid = getattr(env, "grid", None) or env.mae.grid
        return cls(num_tokens=int(env.num_tokens), num_visible=int(env.num_visible),
                   embed_dim=int(env.single_observation_space.shape[-1]),
                   grid=tuple(int(g) for g in grid), action_space=env.single_action_space,
                   group_size=int(getattr(env, "group_size", 1)), mask_ratio=float(env.mask_ratio),
                   min_visible=int(getattr(env, "min_visible", env.num_visible)))
