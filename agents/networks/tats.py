"""TATS, the trajectory-aware token sampler g_theta (paper Section 3.2, Eq. 3-5).

g_theta has two branches (Eq. 5: pi_theta(X), psi_theta(X_mu) = g_theta(X)):

- :class:`TATSActor`: Z = TA(X) (Eq. 3), then a Linear to one score per token; the
  softmax of Eq. 4 is applied by :class:`agents.distributions.PlackettLuce`, together with
  the temperature, so the actor returns raw logits and the temperature lives in one place;
- :class:`TATSCritic`: the value psi_theta(X_mu), an MLP with ReLU on the mean token.

Both follow Tianshou's network call conventions: ``actor(obs, state=None, info=None) ->
(logits, state)`` and ``critic(obs) -> (B, 1)``. The observation X is the MAE tokenizer's
output (``PretrainVideoMAE`` tokens with their positions), frame-major, no CLS token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.utils.checkpoint
from timm.layers import trunc_normal_
from torch import nn

from agents.networks.trajectory_attention import (
    AttentionImpl,
    TemporalValues,
    TrajectoryAttentionBlock,
    token_grid,
)


def as_tokens(obs: Any, *, embed_dim: int, num_tokens: int | None, device: torch.device) -> torch.Tensor:
    """Check an observation and return it as a float tensor ``(B, N, D)`` on ``device``.

    Torch observations stay where they are (Tianshou hands them over as stored); numpy
    ones are converted once, here.
    """
    tokens = torch.as_tensor(obs, device=device)
    if not tokens.is_floating_point():
        tokens = tokens.float()
    if tokens.dim() != 3 or tokens.shape[-1] != embed_dim or (
        num_tokens is not None and tokens.shape[1] != num_tokens
    ):
        expected = f"(B, {num_tokens if num_tokens is not None else 'N'}, {embed_dim})"
        raise ValueError(f"obs must be token embeddings of shape {expected}, got {tuple(tokens.shape)}")
    return tokens


class TokenLogitHead(nn.Module):
    """Optional LayerNorm, then Linear(width -> 1, no bias): one raw score per token.

    No bias: the softmax over tokens ignores a shift shared by all logits, so a bias would
    never receive gradient.

    The head starts with tiny weights, so the initial policy is close to uniform: its
    first masks look like random masking, which is what the MAE trained on until then.

    Shapes:
        ``(B, N, W)`` -> ``(B, N)``.
    """

    def __init__(self, *, width: int, final_norm: bool, init_std: float) -> None:
        """
        :param width: token width W entering the head.
        :param final_norm: LayerNorm before the Linear.
        :param init_std: std of the Linear's initial weights.
        """
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6) if final_norm else nn.Identity()
        self.linear = nn.Linear(width, 1, bias=False)
        trunc_normal_(self.linear.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x)).squeeze(-1)


def init_linear_layers(module: nn.Module) -> None:
    """ViT initialisation (timm, VideoMAE): truncated normal std 0.02, zero bias."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class TATSActor(nn.Module):
    """Actor of TATS: [Linear D -> W] -> TA blocks -> [LayerNorm] -> Linear -> logits (Eq. 3-4).

    Shapes:
        obs ``(B, N, D)``, N = T' * P frame-major -> logits ``(B, N)`` (raw, no temperature).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        grid: tuple[int, ...],
        sampler_dim: int | None = None,
        num_blocks: int = 1,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        temporal_values: TemporalValues = "projected",
        attn_impl: AttentionImpl = "full",
        num_landmarks: int = 128,
        final_norm: bool = True,
        head_init_std: float = 1e-3,
        checkpoint_blocks: bool = False,
    ) -> None:
        """
        :param embed_dim: width D of the observed tokens (ViT-B: 768).
        :param grid: token grid ``(T', P)`` or ``(T', H', W')`` (paper: (8, 196)).
        :param sampler_dim: width W of the sampler; if set and != D, a Linear D -> W comes
            first (a narrower, cheaper sampler). None: W = D.
        :param num_blocks: trajectory-attention blocks (paper: 1, Table 3e).
        :param num_heads: attention heads; W must be a multiple (Motionformer ViT-B: 12).
        :param mlp_ratio: MLP width of each block as a multiple of W.
        :param qkv_bias: biases of the attention projections.
        :param temporal_values: values of Eq. 2, ``"projected"`` (paper) or ``"trajectory"``
            (Motionformer's released code); see :mod:`agents.networks.trajectory_attention`.
        :param attn_impl: ``"full"`` (exact Eq. 1) or ``"orthoformer"`` (landmarks).
        :param num_landmarks: Orthoformer landmarks (Motionformer: 128).
        :param final_norm: LayerNorm before the logit Linear. On by default: the tokens come
            from an MAE that trains at the same time, and without it their drifting scale
            would pass straight into the logits, i.e. change the policy's temperature.
        :param head_init_std: initial weight std of the logit Linear; small = near-uniform
            initial policy.
        :param checkpoint_blocks: recompute each block's activations in the backward pass
            instead of keeping them (less memory in the policy update, one more forward).
        """
        super().__init__()
        width = sampler_dim or embed_dim
        self.embed_dim = embed_dim
        self.num_tokens = token_grid(grid)[0] * token_grid(grid)[1]
        self.input_proj = nn.Linear(embed_dim, width) if width != embed_dim else nn.Identity()
        self.blocks = nn.Sequential(*(
            TrajectoryAttentionBlock(
                dim=width, num_heads=num_heads, grid=grid, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                temporal_values=temporal_values, attn_impl=attn_impl, num_landmarks=num_landmarks,
            )
            for _ in range(num_blocks)
        ))
        self.apply(init_linear_layers)
        self.head = TokenLogitHead(width=width, final_norm=final_norm, init_std=head_init_std)
        self.checkpoint_blocks = checkpoint_blocks

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
        """Tianshou actor call: ``(obs, state, info) -> (logits (B, N), state)``."""
        tokens = as_tokens(obs, embed_dim=self.embed_dim, num_tokens=self.num_tokens,
                           device=self.head.linear.weight.device)
        x = self.input_proj(tokens)
        for block in self.blocks:
            if self.checkpoint_blocks and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.head(x), state


CRITIC_INPUTS = ("mean_token", "token_means")


class TATSCritic(nn.Module):
    """Critic of TATS: an MLP with ReLU on X_mu -> value psi_theta(X_mu) (Eq. 5).

    The paper: "the mean representation of all the tokens (X_mu) [...] a feed-forward network
    consisting of two linear layers with a ReLU activation Linear(1568) -> ReLU(Linear(784)) -> 1".
    It reads two ways:

    - ``input="mean_token"`` (default): X_mu is the mean over the N tokens, a D-vector, and
      1568 and 784 are hidden widths: D -> 1568 -> ReLU -> 784 -> ReLU -> 1 (``hidden_dims``),
      three Linears (with two Linears and no ReLU between them, the first two would collapse into one).
    - ``input="token_means"`` (the literal one): X_mu is each token's mean over its D channels,
      an N-vector (N = 1568 for ViT-B on 16 x 224 x 224 clips), and the two Linears are
      N -> N/2 -> ReLU -> 1: exactly ``Linear(1568) -> ReLU(Linear(784)) -> 1`` at the paper's scale.
      ``hidden_dims`` is not used.

    Shapes:
        obs ``(B, N, D)`` -> ``(B, 1)``.
    """

    def __init__(self, *, embed_dim: int, hidden_dims: Sequence[int] = (1568, 784), input: str = "mean_token",
                 num_tokens: int | None = None) -> None:
        """
        :param embed_dim: width D of the observed tokens.
        :param hidden_dims: ``input="mean_token"``: widths of the hidden layers (paper: 1568, 784); () = linear value.
        :param input: ``"mean_token"`` or ``"token_means"`` (see above).
        :param num_tokens: N; needed by ``input="token_means"``.
        """
        super().__init__()
        if input not in CRITIC_INPUTS:
            raise ValueError(f"critic input must be one of {CRITIC_INPUTS}, got {input!r}")
        self.embed_dim, self.input = embed_dim, input
        layers: list[nn.Module] = []
        if input == "token_means":
            if not num_tokens or num_tokens < 2:
                raise ValueError(f"the token_means critic needs num_tokens >= 2, got {num_tokens}")
            layers = [nn.Linear(num_tokens, num_tokens // 2), nn.ReLU(), nn.Linear(num_tokens // 2, 1)]
        else:
            width = embed_dim
            for hidden in hidden_dims:
                layers += [nn.Linear(width, hidden), nn.ReLU()]
                width = hidden
            layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> torch.Tensor:
        """Tianshou critic call: ``critic(obs) -> (B, 1)``."""
        tokens = as_tokens(obs, embed_dim=self.embed_dim, num_tokens=None,
                           device=self.mlp[-1].weight.device)
        return self.mlp(tokens.mean(dim=1) if self.input == "mean_token" else tokens.mean(dim=2))
