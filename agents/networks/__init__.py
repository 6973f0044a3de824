"""Actor and critic networks of the token sampler.

The actor type is independent of the RL algorithm (PPO with the MHA actor is the paper's
Table 3a ablation), so it is chosen by name:

- ``"trajectory"``: :class:`TATSActor` with exact trajectory attention (Eq. 1-2);
- ``"orthoformer"``: :class:`TATSActor` with the Orthoformer approximation of Eq. 1;
- ``"mha"``: :class:`AdaMAEActor`, one multi-head self-attention block (AdaMAE).

Every actor maps ``obs (B, N, D) -> (raw logits (B, N), state)``; the softmax and its
temperature are applied by :class:`agents.distributions.PlackettLuce`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from agents.networks.adamae import AdaMAEActor
from agents.networks.tats import TATSActor, TATSCritic
from agents.networks.trajectory_attention import (
    TrajectoryAttention,
    TrajectoryAttentionBlock,
    token_grid,
)

ACTOR_KINDS = ("trajectory", "orthoformer", "mha")


def build_actor(kind: str, *, embed_dim: int, grid: tuple[int, ...], **options: Any) -> nn.Module:
    """Build a sampler actor by name.

    :param kind: ``"trajectory"``, ``"orthoformer"`` or ``"mha"`` (see module docstring).
    :param embed_dim: width D of the observed tokens.
    :param grid: token grid ``(T', P)`` or ``(T', H', W')``.
    :param options: further keyword arguments of :class:`TATSActor` (trajectory,
        orthoformer) or :class:`AdaMAEActor` (mha); unknown names raise ``TypeError``.
    """
    if kind in ("trajectory", "orthoformer"):
        if "attn_impl" in options:
            raise ValueError(f"actor kind {kind!r} sets attn_impl itself; do not pass attn_impl")
        attn_impl = "full" if kind == "trajectory" else "orthoformer"
        return TATSActor(embed_dim=embed_dim, grid=grid, attn_impl=attn_impl, **options)
    if kind == "mha":
        frames, positions = token_grid(grid)
        return AdaMAEActor(embed_dim=embed_dim, num_tokens=frames * positions, **options)
    raise ValueError(f"unknown actor kind {kind!r}; choose one of {ACTOR_KINDS}")


def build_critic(*, embed_dim: int, **options: Any) -> nn.Module:
    """Build the value network: :class:`TATSCritic` (MLP on the mean token).

    :param embed_dim: width D of the observed tokens.
    :param options: further keyword arguments of :class:`TATSCritic` (``hidden_dims``, ``input``, ``num_tokens``).
    """
    return TATSCritic(embed_dim=embed_dim, **options)


__all__ = [
    "ACTOR_KINDS", "AdaMAEActor", "TATSActor", "TATSCritic", "TrajectoryAttention",
    "TrajectoryAttentionBlock", "build_actor", "build_critic", "token_grid",
]
