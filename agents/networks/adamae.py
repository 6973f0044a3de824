"""AdaMAE's token sampler (Bandara et al., CVPR 2023): one multi-head self-attention block.

AdaMAE's ``get_token_probs``: tokens + a learnable position embedding -> one pre-norm ViT
block (8 heads, MLP ratio 4, no qkv bias) -> Linear -> one score per token (softmax and
sampling happen in :class:`agents.distributions.PlackettLuce`). The block is timm's ViT
``Block``, whose attention runs ``torch.nn.functional.scaled_dot_product_attention``
(timm's fused attention, on unless ``TIMM_FUSED_ATTN=0``).

As the sampler of the paper's Table 3a ablation ("MHA" against "TA"), it is
interchangeable with :class:`agents.networks.tats.TATSActor`: same call, same logit head.
Differences from AdaMAE's code, on purpose: no dropout (AdaMAE: 0.1 after the
projections; dropout would make a PPO ratio differ from 1 at unchanged parameters) and the
logit Linear starts near zero like TATS's (AdaMAE: Xavier), so both samplers begin close
to random masking.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from timm.models.vision_transformer import Block
from torch import nn

from agents.networks.tats import TokenLogitHead, as_tokens, init_linear_layers


class AdaMAEActor(nn.Module):
    """[Linear D -> W] -> + position embedding -> MHA block -> [LayerNorm] -> Linear -> logits.

    Shapes:
        obs ``(B, N, D)`` -> logits ``(B, N)`` (raw, no temperature).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_tokens: int,
        sampler_dim: int | None = None,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        learnable_pos_embed: bool = True,
        final_norm: bool = False,
        head_init_std: float = 1e-3,
    ) -> None:
        """
        :param embed_dim: width D of the observed tokens (ViT-B: 768).
        :param num_tokens: N, the number of tokens per clip (paper: 1568).
        :param sampler_dim: width W of the sampler; if set and != D, a Linear D -> W comes
            first. None: W = D (AdaMAE).
        :param num_heads: attention heads (AdaMAE: 8); W must be a multiple.
        :param mlp_ratio: MLP width of the block as a multiple of W (AdaMAE: 4).
        :param qkv_bias: bias on the qkv projection (AdaMAE: False).
        :param learnable_pos_embed: add a zero-initialised learnable position embedding
            ``(1, N, W)`` before the block (AdaMAE: yes).
        :param final_norm: LayerNorm before the logit Linear (AdaMAE: no).
        :param head_init_std: initial weight std of the logit Linear.
        """
        super().__init__()
        width = sampler_dim or embed_dim
        if width % num_heads:
            raise ValueError(f"sampler width {width} must be a multiple of num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_tokens = num_tokens
        self.input_proj = nn.Linear(embed_dim, width) if width != embed_dim else nn.Identity()
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, width)) if learnable_pos_embed else None
        self.block = Block(
            dim=width, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
        )
        self.apply(init_linear_layers)
        self.head = TokenLogitHead(width=width, final_norm=final_norm, init_std=head_init_std)

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
        """Tianshou actor call: ``(obs, state, info) -> (logits (B, N), state)``."""
        tokens = self.input_proj(as_tokens(obs, embed_dim=self.embed_dim, num_tokens=self.num_tokens,
                                           device=self.head.linear.weight.device))
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed
        return self.head(self.block(tokens)), state
