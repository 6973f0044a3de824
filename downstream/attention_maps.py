"""Where a sampler's first attention layer looks, for one query token (for the visualisation).

Recomputed from the actor's own weights (the actor modules are not changed):

- trajectory actors (:class:`agents.networks.TATSActor`, paper Eq. 1-2): for the query
  token q_st and every frame t', the spatial softmax of Eq. 1 over that frame's P positions,
  ``softmax_s'(<q_st, k_s't'> / sqrt(c))`` - exact for ``attn_impl="full"``, the landmark
  approximation for ``"orthoformer"`` (the same one the actor runs) - and the temporal
  softmax of Eq. 2 over the T' trajectory tokens of the query;
- MHA actors (:class:`agents.networks.AdaMAEActor`): the query's row of the block's
  self-attention, one softmax over all N tokens.

Maps are averaged over heads. Inputs are the actor's observation: the MAE's tokens
``model.tokenize(video)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from torch import nn

from agents.networks.orthoformer import orthogonal_landmark_indices
from agents.networks.trajectory_attention import TrajectoryAttention


class AttentionMap(NamedTuple):
    """spatial: ``(H, T', P)`` per head (trajectory: each frame's slice sums to 1; MHA: all sum to 1);
    temporal: ``(H, T')`` Eq. 2 weights (trajectory actors), else None; kind: a short description."""

    spatial: torch.Tensor
    temporal: torch.Tensor | None
    kind: str


def trajectory_weights(attn: TrajectoryAttention, x: torch.Tensor, query: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1 and Eq. 2 weights of token ``query`` in a :class:`TrajectoryAttention` layer.

    Shapes:
        x ``(B, N, D)`` (the layer's input, i.e. after the block's norm1) ->
        spatial ``(B, H, T', P)``, temporal ``(B, H, T')``.
    """
    heads, frames = attn.num_heads, attn.num_frames
    q, k, v = rearrange(attn.qkv(x), "b n (three h c) -> three b h n c", three=3, h=heads)
    scale = q.shape[-1] ** -0.5
    q_n = q[:, :, query]  # (B, H, c)
    if attn.attn_impl == "orthoformer":
        index = orthogonal_landmark_indices(q, attn.num_landmarks)  # (B, H, L), as the layer picks them
        landmarks = q.gather(-2, index.unsqueeze(-1).expand(*index.shape, q.shape[-1]))
        to_landmark = (torch.einsum("bhc,bhlc->bhl", q_n, landmarks) * scale).softmax(-1)
        landmark_to_key = rearrange(torch.einsum("bhlc,bhmc->bhlm", landmarks, k) * scale,
                                    "b h l (t p) -> b h l t p", t=frames).softmax(-1)
        spatial = torch.einsum("bhl,bhltp->bhtp", to_landmark, landmark_to_key)
    else:
        logits = torch.einsum("bhc,bhmc->bhm", q_n, k) * scale
        spatial = rearrange(logits, "b h (t p) -> b h t p", t=frames).softmax(-1)  # Eq. 1
    trajectory = torch.einsum("bhtp,bhtpc->bhtc", spatial, rearrange(v, "b h (t p) c -> b h t p c", t=frames))
    own = trajectory[:, :, query // attn.num_positions]  # the query's own frame ("diagonal")
    query_t = rearrange(attn.traj_q(rearrange(own, "b h c -> b (h c)")), "b (h c) -> b h c", h=heads) * scale
    keys = rearrange(attn.traj_k(rearrange(trajectory, "b h t c -> b t (h c)")), "b t (h c) -> b h t c", h=heads)
    temporal = torch.einsum("bhc,bhtc->bht", query_t, keys).softmax(-1)  # Eq. 2
    return spatial, temporal


def mha_weights(block: nn.Module, x: torch.Tensor, query: int) -> torch.Tensor:
    """The query's attention row in a timm ViT ``Block``. Shapes: x ``(B, N, D)`` (after norm1) -> ``(B, H, N)``."""
    attn = block.attn
    q, k, _ = rearrange(attn.qkv(x), "b n (three h c) -> three b h n c", three=3, h=attn.num_heads)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return (torch.einsum("bhc,bhmc->bhm", q[:, :, query], k) * attn.scale).softmax(-1)


@torch.no_grad()
def actor_attention(actor: nn.Module, tokens: torch.Tensor, query: int, grid: tuple[int, int, int]) -> AttentionMap:
    """The first attention layer's map for ``query`` (one clip: tokens ``(1, N, D)``).

    Raises:
        TypeError: an actor that is neither a trajectory nor an MHA actor.
    """
    frames, height, width = grid
    if not 0 <= query < frames * height * width:
        raise ValueError(f"query token {query} outside [0, {frames * height * width})")
    actor = getattr(actor, "module", actor)
    x = actor.input_proj(tokens.float())
    if hasattr(actor, "blocks") and isinstance(actor.blocks[0].attn, TrajectoryAttention):
        block = actor.blocks[0]
        spatial, temporal = trajectory_weights(block.attn, block.norm1(x), query)
        kind = ("Eq. 1, Orthoformer approximation" if block.attn.attn_impl == "orthoformer" else "Eq. 1")
        return AttentionMap(spatial[0], temporal[0], kind)
    if hasattr(actor, "block"):  # AdaMAE: one MHA block after a learnable position embedding
        if actor.pos_embed is not None:
            x = x + actor.pos_embed
        row = mha_weights(actor.block, actor.block.norm1(x), query)[0]
        return AttentionMap(rearrange(row, "h (t p) -> h t p", t=frames), None, "self-attention row")
    raise TypeError(f"no attention map for actor {type(actor).__name__} (trajectory or MHA actors only)")
