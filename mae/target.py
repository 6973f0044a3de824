"""Reconstruction target and loss (paper Eq. 6, VideoMAE's recipe, paper Table 3d).

The target of a token is its ``tubelet x patch x patch`` pixels, un-normalised back to
[0, 1], then (``normalize=True``, VideoMAE's ``normlize_target=True`` and the paper's default)
normalised per channel over the patch's pixels (unbiased std + 1e-6), laid out ``(t p p c)``
channel-last. ``normalize=False`` keeps the [0, 1] pixels (VideoMAE's other branch; the
paper's Table 3d "w/o norm"). The loss is the mean squared error (Eq. 6) or, as Table 3d's
alternative, the mean absolute error.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import rearrange
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


LOSSES = ("mse", "l1")


def patchify_target(video: torch.Tensor, *, tubelet_size: int, patch_size: int,
                    normalize: bool = True) -> torch.Tensor:
    """Pixel targets for every token, per-patch normalised unless ``normalize=False``.

    Shapes:
        video: ``(B, 3, T, H, W)`` ImageNet-normalised.
        returns: ``(B, N, tubelet * patch * patch * 3)`` float32, token order frame-major.
    """
    video = video.float()
    mean = torch.as_tensor(IMAGENET_DEFAULT_MEAN, device=video.device).view(1, 3, 1, 1, 1)
    std = torch.as_tensor(IMAGENET_DEFAULT_STD, device=video.device).view(1, 3, 1, 1, 1)
    pixels = video * std + mean
    patches = rearrange(
        pixels,
        "b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c",
        p0=tubelet_size,
        p1=patch_size,
        p2=patch_size,
    )
    if not normalize:
        return rearrange(patches, "b n p c -> b n (p c)")
    patches = (patches - patches.mean(dim=-2, keepdim=True)) / (
        patches.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6
    )
    return rearrange(patches, "b n p c -> b n (p c)")


class ReconstructionLoss(NamedTuple):
    """Eq. 6 at three granularities.

    loss: scalar, mean over the batch (what the MAE optimiser minimises).
    per_clip: ``(B,)`` L_R of each clip: MSE over its masked tokens (the reward).
    per_token: ``(B, N)`` MSE of each token's prediction; 0 at visible tokens.
    """

    loss: torch.Tensor
    per_clip: torch.Tensor
    per_token: torch.Tensor


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, loss: str = "mse"
) -> ReconstructionLoss:
    """MSE (or, ``loss="l1"``, mean absolute error) between predictions of the masked tokens
    and their targets (Eq. 6).

    Every clip has the same number of masked tokens, so the batch mean equals the mean
    of the per-clip losses and VideoMAE's ``MSELoss(outputs, labels)``.

    Shapes:
        pred: ``(B, N - K, C)`` predictions of the masked tokens in token order.
        target: ``(B, N, C)`` from :func:`patchify_target`.
        visible: ``(B, N)`` bool, True = visible.
    """
    batch, num_tokens, channels = target.shape
    masked = ~visible
    masked_target = target[masked].reshape(batch, -1, channels)
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    difference = pred.float() - masked_target
    token_error = (difference.pow(2) if loss == "mse" else difference.abs()).mean(dim=-1)  # (B, N - K)
    per_token = torch.zeros(batch, num_tokens, device=target.device, dtype=token_error.dtype)
    per_token = per_token.masked_scatter(masked, token_error)
    per_clip = token_error.mean(dim=1)
    return ReconstructionLoss(per_clip.mean(), per_clip, per_token)
