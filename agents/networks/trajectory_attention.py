"""Trajectory attention (Motionformer; the paper's Eq. 1-2) and its pre-norm block.

For a query q_st (token at spatial position s of frame t) and every frame t', Eq. 1 pools
the values of frame t' with a softmax over that frame's P positions only, giving one
trajectory token per frame:

    y~_stt' = sum_s' v_s't' * softmax_s'(<q_st, k_s't'>)                       (Eq. 1)

Eq. 2 then attends over the T' trajectory tokens of that query with a 1-D softmax: the
query is a projection of the trajectory token at the query's own frame (Motionformer takes
the "diagonal" t' = t), keys and values are projections of all T' trajectory tokens:

    y_st = sum_t' v~_stt' * softmax_t'(<q~_st, k~_stt'>)                        (Eq. 2)

Motionformer's released code (``use_original_code=True``, its default) uses the
trajectory tokens themselves as the values of Eq. 2 instead of v~ = W_v y~, a typo its own
comments call "not recommended". Both are here, by name:

- ``temporal_values="projected"`` (default): Eq. 2 as written, v~ = W_v y~;
- ``temporal_values="trajectory"``: the released code, v = y~ (each head its own slice).

The default follows the paper's equation: TATS is trained from scratch, so parity with
Motionformer's released weights buys nothing, and the projected values are the design the
Motionformer authors intended. Use ``"trajectory"`` to reproduce the reference code.

VideoMAE tokens have no CLS token, so Motionformer's CLS branch is dropped. Eq. 1 is
computed exactly (``attn_impl="full"``, O(N^2), through ``scaled_dot_product_attention``
so the fused kernels never hold an N x N matrix) or with the Orthoformer approximation
(``attn_impl="orthoformer"``, see :mod:`agents.networks.orthoformer`).

Eq. 2 is evaluated re-associated: <q~_h, W_k,h y~_t'> = <W_k,h^T q~_h, y~_t'> and
sum_t' a_t' W_v,h y~_t' = W_v,h sum_t' a_t' y~_t', which costs O(N D^2 + N H T' D) instead
of projecting all N * T' trajectory tokens, O(N T' D^2). It is the same function (the
tests compare it with a loop over Eq. 1-2). A key bias would add the same number to all
T' logits of a query, so the temporal key projection has none.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from timm.layers import Mlp
from torch import nn

from agents.networks.orthoformer import orthoformer_trajectory_tokens

TemporalValues = Literal["projected", "trajectory"]
AttentionImpl = Literal["full", "orthoformer"]


def token_grid(grid: tuple[int, ...]) -> tuple[int, int]:
    """``(T', P)`` or ``(T', H', W')`` -> ``(T', P)``: frames and spatial positions per frame."""
    if len(grid) == 3:
        return int(grid[0]), int(grid[1]) * int(grid[2])
    if len(grid) == 2:
        return int(grid[0]), int(grid[1])
    raise ValueError(f"grid must be (T', P) or (T', H', W'), got {grid}")


def full_trajectory_tokens(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_frames: int
) -> torch.Tensor:
    """Exact trajectory tokens of Eq. 1: per query, softmax attention within each frame.

    Shapes:
        q, k, v ``(B, H, N, c)`` with N = T' * P frame-major -> ``(B, H, N, T', c)``.
    """
    # Each frame is one attention problem of all N queries against that frame's P keys.
    queries = repeat(q, "b h n c -> (b t) h n c", t=num_frames)
    keys, values = (rearrange(x, "b h (t p) c -> (b t) h p c", t=num_frames) for x in (k, v))
    tokens = F.scaled_dot_product_attention(queries, keys, values)
    return rearrange(tokens, "(b t) h n c -> b h n t c", t=num_frames)


class TrajectoryAttention(nn.Module):
    """Motionformer trajectory attention without a CLS token (Eq. 1-2).

    Shapes:
        x ``(B, N, D)``, N = T' * P frame-major (index = t' * P + s) -> ``(B, N, D)``.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        grid: tuple[int, ...],
        qkv_bias: bool = True,
        temporal_values: TemporalValues = "projected",
        attn_impl: AttentionImpl = "full",
        num_landmarks: int = 128,
    ) -> None:
        """
        :param dim: token width D; a multiple of ``num_heads``.
        :param num_heads: attention heads H (head width c = D / H).
        :param grid: token grid ``(T', P)`` or ``(T', H', W')``; N = T' * P.
        :param qkv_bias: bias on the q, k, v projections of Eq. 1 and on q~, v~ of Eq. 2.
        :param temporal_values: values of Eq. 2: ``"projected"`` (v~ = W_v y~, the paper's
            equation, default) or ``"trajectory"`` (y~ itself, Motionformer's released code).
        :param attn_impl: Eq. 1 exactly (``"full"``, O(N^2)) or through Orthoformer
            landmarks (``"orthoformer"``, O(N * L * T')).
        :param num_landmarks: Orthoformer landmarks L (Motionformer: 128); clamped to N.
        """
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be a multiple of num_heads {num_heads}")
        if temporal_values not in ("projected", "trajectory"):
            raise ValueError(f"temporal_values must be 'projected' or 'trajectory', got {temporal_values!r}")
        if attn_impl not in ("full", "orthoformer"):
            raise ValueError(f"attn_impl must be 'full' or 'orthoformer', got {attn_impl!r}")
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks}")
        self.num_heads = num_heads
        self.num_frames, self.num_positions = token_grid(grid)
        self.temporal_values = temporal_values
        self.attn_impl = attn_impl
        self.num_landmarks = num_landmarks
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)  # W of Eq. 1
        self.traj_q = nn.Linear(dim, dim, bias=qkv_bias)  # W~ of Eq. 2: query ...
        self.traj_k = nn.Linear(dim, dim, bias=False)  # ... keys (a bias would cancel) ...
        # ... and values; absent in "trajectory" mode so no parameter goes without gradient (DDP)
        self.traj_v = nn.Linear(dim, dim, bias=qkv_bias) if temporal_values == "projected" else None
        self.proj = nn.Linear(dim, dim)

    def trajectory_tokens(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Eq. 1, exact or approximate. Shapes: ``(B, H, N, c)`` x3 -> ``(B, H, N, T', c)``."""
        if self.attn_impl == "orthoformer":
            return orthoformer_trajectory_tokens(
                q, k, v, num_frames=self.num_frames, num_landmarks=self.num_landmarks
            )
        return full_trajectory_tokens(q, k, v, num_frames=self.num_frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, num_tokens, dim = x.shape
        if num_tokens != self.num_frames * self.num_positions:
            raise ValueError(
                f"expected N = T' * P = {self.num_frames} * {self.num_positions} tokens, got {num_tokens}"
            )
        heads = self.num_heads
        q, k, v = rearrange(self.qkv(x), "b n (three h c) -> three b h n c", three=3, h=heads)
        tokens = self.trajectory_tokens(q, k, v)  # (B, H, N, T', c), Eq. 1

        # Eq. 2 query: the trajectory token at the query's own frame ("diagonal").
        token_index = torch.arange(num_tokens, device=x.device)
        own = tokens[:, :, token_index, token_index // self.num_positions]  # (B, H, N, c)
        query = rearrange(self.traj_q(rearrange(own, "b h n c -> b n (h c)")),
                          "b n (h c) -> b n h c", h=heads) * (dim // heads) ** -0.5
        trajectory = rearrange(tokens, "b h n t c -> b n t (h c)")  # heads concatenated, as W~ sees them

        # Eq. 2 logits <q~_h, W_k,h y~_t> computed as <W_k,h^T q~_h, y~_t>.
        key_weight = rearrange(self.traj_k.weight, "(h c) d -> h c d", h=heads)
        query_in = torch.einsum("bnhc,hcd->bnhd", query, key_weight)
        attn = torch.einsum("bnhd,bntd->bnht", query_in, trajectory).softmax(dim=-1)

        if self.traj_v is None:  # Motionformer's released code: values are y~ itself
            out = torch.einsum("bnht,bhntc->bnhc", attn, tokens)
        else:  # Eq. 2: sum_t a_t W_v,h y~_t = W_v,h (sum_t a_t y~_t)
            pooled = torch.einsum("bnht,bntd->bnhd", attn, trajectory)
            value_weight = rearrange(self.traj_v.weight, "(h c) d -> h c d", h=heads)
            out = torch.einsum("bnhd,hcd->bnhc", pooled, value_weight)
            if self.traj_v.bias is not None:  # attention weights sum to 1: the bias passes through
                out = out + rearrange(self.traj_v.bias, "(h c) -> h c", h=heads)
        return self.proj(rearrange(out, "b n h c -> b n (h c)"))


class TrajectoryAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + TA(LN(x)), then x + MLP(LN(x)).

    Shapes:
        x ``(B, N, D)`` -> ``(B, N, D)``.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        grid: tuple[int, ...],
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        temporal_values: TemporalValues = "projected",
        attn_impl: AttentionImpl = "full",
        num_landmarks: int = 128,
        norm_eps: float = 1e-6,
    ) -> None:
        """
        :param dim: token width D.
        :param num_heads: attention heads.
        :param grid: token grid ``(T', P)`` or ``(T', H', W')``.
        :param mlp_ratio: MLP hidden width as a multiple of D (ViT: 4).
        :param qkv_bias: see :class:`TrajectoryAttention`.
        :param temporal_values: see :class:`TrajectoryAttention`.
        :param attn_impl: see :class:`TrajectoryAttention`.
        :param num_landmarks: see :class:`TrajectoryAttention`.
        :param norm_eps: LayerNorm epsilon (VideoMAE: 1e-6).
        """
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = TrajectoryAttention(
            dim=dim, num_heads=num_heads, grid=grid, qkv_bias=qkv_bias,
            temporal_values=temporal_values, attn_impl=attn_impl, num_landmarks=num_landmarks,
        )
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
