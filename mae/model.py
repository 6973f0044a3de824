"""VideoMAE pretraining model (paper Table 8), built from timm blocks.

Three short pieces, as in MAE: ``forward_encoder`` (visible tokens only),
``forward_decoder`` (all tokens, predictions for the masked ones), and the loss in
:mod:`mae.target`. Mask convention: bool ``(B, N)``, **True = visible**.

State-dict keys match the released VideoMAE pretraining checkpoints
(``encoder.patch_embed.proj.weight``, ``encoder.blocks.0.attn.q_bias``,
``encoder_to_decoder.weight``, ``mask_token``, ``decoder.head.weight``, ...): timm's
``EvaBlock`` has VideoMAE's attention layout (fused qkv without bias, separate q and v
biases, no k bias) and the same parameter names.
"""

from __future__ import annotations

from functools import partial

import torch
from einops import rearrange
from timm.layers import trunc_normal_
from timm.models.eva import EvaBlock
from torch import nn

from mae.pos_embed import position_table
from mae.target import LOSSES, ReconstructionLoss, patchify_target, reconstruction_loss


class TubeletEmbed(nn.Module):
    """Tubelet embedding: Conv3d with kernel = stride = (tubelet, patch, patch).

    Shapes:
        ``(B, 3, T, H, W)`` -> ``(B, N, D)``, N = T/tubelet * H/patch * W/patch, frame-major.
    """

    def __init__(self, *, img_size: int, patch_size: int, num_frames: int, tubelet_size: int,
                 in_chans: int, embed_dim: int):
        super().__init__()
        if img_size % patch_size or num_frames % tubelet_size:
            raise ValueError(
                f"img_size {img_size} must be a multiple of patch_size {patch_size} and "
                f"num_frames {num_frames} a multiple of tubelet_size {tubelet_size}"
            )
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid[0] * self.grid[1] * self.grid[2]
        kernel = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(video), "b d t h w -> b (t h w) d")


def _blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float) -> nn.ModuleList:
    rates = torch.linspace(0, drop_path, depth).tolist()
    return nn.ModuleList(
        EvaBlock(dim, num_heads, qkv_bias=True, qkv_fused=True, mlp_ratio=mlp_ratio,
                 num_prefix_tokens=0, drop_path=rate, norm_layer=partial(nn.LayerNorm, eps=1e-6))
        for rate in rates
    )


class VideoMAEEncoder(nn.Module):
    """ViT encoder over the visible tokens (VideoMAE ``PretrainVisionTransformerEncoder``)."""

    def __init__(self, *, img_size: int, patch_size: int, num_frames: int, tubelet_size: int,
                 embed_dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float,
                 pos_embed: str = "1d"):
        super().__init__()
        self.patch_embed = TubeletEmbed(img_size=img_size, patch_size=patch_size, num_frames=num_frames,
                                        tubelet_size=tubelet_size, in_chans=3, embed_dim=embed_dim)
        # Not a parameter and not persistent: VideoMAE checkpoints do not hold it.
        self.register_buffer("pos_embed", position_table(pos_embed, self.patch_embed.grid, embed_dim),
                             persistent=False)
        self.blocks = _blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        """Token embeddings with positions, before any masking: ``(B, N, D)`` (the policy's X)."""
        return self.patch_embed(video) + self.pos_embed.to(video.dtype)

    def forward(self, video: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        """Shapes: video ``(B, 3, T, H, W)``, visible ``(B, N)`` -> ``(B, K, D)`` (all N if None)."""
        tokens = self.tokenize(video)
        if visible is not None:
            tokens = tokens[visible].reshape(tokens.shape[0], -1, tokens.shape[-1])
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)


class VideoMAEDecoder(nn.Module):
    """Transformer decoder; predicts pixels for the last ``num_masked`` tokens it is given."""

    def __init__(self, *, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float, out_dim: int):
        super().__init__()
        self.blocks = _blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path=0.0)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, out_dim)

    def forward(self, tokens: torch.Tensor, num_masked: int) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens[:, -num_masked:]))


class PretrainVideoMAE(nn.Module):
    """VideoMAE with an externally chosen visible set.

    ``model(video, visible)`` returns predictions for the masked tokens in token order;
    :meth:`loss` adds the target and Eq. 6.

    Shapes:
        video ``(B, 3, T, H, W)`` ImageNet-normalised; visible ``(B, N)`` bool with K True
        per row; predictions ``(B, N - K, 3 * tubelet * patch * patch)``.
    """

    def __init__(self, *, img_size: int = 224, patch_size: int = 16, num_frames: int = 16,
                 tubelet_size: int = 2, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 decoder_embed_dim: int = 384, decoder_depth: int = 4, decoder_num_heads: int = 6,
                 mlp_ratio: float = 4.0, drop_path_rate: float = 0.0, pos_embed: str = "1d",
                 norm_target: bool = True, loss: str = "mse"):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.img_size, self.patch_size = img_size, patch_size
        self.num_frames, self.tubelet_size = num_frames, tubelet_size
        self.embed_dim = embed_dim
        self.norm_target, self.loss_type = norm_target, loss
        self.encoder = VideoMAEEncoder(img_size=img_size, patch_size=patch_size, num_frames=num_frames,
                                       tubelet_size=tubelet_size, embed_dim=embed_dim, depth=depth,
                                       num_heads=num_heads, mlp_ratio=mlp_ratio, drop_path=drop_path_rate,
                                       pos_embed=pos_embed)
        self.grid = self.encoder.patch_embed.grid
        self.num_tokens = self.encoder.patch_embed.num_patches
        out_dim = 3 * tubelet_size * patch_size**2
        self.decoder = VideoMAEDecoder(embed_dim=decoder_embed_dim, depth=decoder_depth,
                                       num_heads=decoder_num_heads, mlp_ratio=mlp_ratio, out_dim=out_dim)
        self.encoder_to_decoder = nn.Linear(embed_dim, decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.register_buffer("pos_embed", position_table(pos_embed, self.grid, decoder_embed_dim), persistent=False)
        self.apply(_init_weights)
        trunc_normal_(self.mask_token, std=0.02)

    def forward_encoder(self, video: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        return self.encoder(video, visible)

    def forward_decoder(self, latent: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Visible latents first, then one mask token per masked position, as VideoMAE."""
        batch, dim = latent.shape[0], self.mask_token.shape[-1]
        pos = self.pos_embed.to(latent.dtype).expand(batch, -1, -1)
        pos_visible = pos[visible].reshape(batch, -1, dim)
        pos_masked = pos[~visible].reshape(batch, -1, dim)
        tokens = torch.cat(
            [self.encoder_to_decoder(latent) + pos_visible, self.mask_token + pos_masked], dim=1
        )
        return self.decoder(tokens, pos_masked.shape[1])

    def forward(self, video: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        return self.forward_decoder(self.forward_encoder(video, visible), visible)

    def target(self, video: torch.Tensor) -> torch.Tensor:
        return patchify_target(video, tubelet_size=self.tubelet_size, patch_size=self.patch_size,
                               normalize=self.norm_target)

    def reconstruction_loss(self, pred: torch.Tensor, target: torch.Tensor,
                            visible: torch.Tensor) -> ReconstructionLoss:
        """Eq. 6 with this model's loss (``mse`` or ``l1``) on given predictions."""
        return reconstruction_loss(pred, target, visible, loss=self.loss_type)

    def loss(self, video: torch.Tensor, visible: torch.Tensor) -> ReconstructionLoss:
        """Forward pass plus Eq. 6: scalar loss, per-clip ``(B,)`` and per-token ``(B, N)``."""
        return self.reconstruction_loss(self(video, visible), self.target(video), visible)

    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        """The policy's observation X: ``(B, N, D)`` token embeddings with positions."""
        return self.encoder.tokenize(video)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}


def _init_weights(module: nn.Module) -> None:
    # VideoMAE's initialisation: xavier-uniform linears, unit LayerNorms.
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
