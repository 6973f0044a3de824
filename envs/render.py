"""Drawing a mask over a clip, without matplotlib: shared by the visualiser and the environment's ``render()``."""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


def to_pixels(video: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised ``(B, 3, T, H, W)`` -> pixels in [0, 1]."""
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN, device=video.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD, device=video.device).view(1, 3, 1, 1, 1)
    return video.float() * std + mean


def dim_masked(frames: np.ndarray, visible: torch.Tensor, grid: tuple[int, int, int], tubelet: int) -> np.ndarray:
    """Frames with masked tokens dimmed to a quarter over grey. Shapes: ``(T, H, W, 3)``, visible ``(N,)``."""
    t, h, w = grid
    keep = visible.detach().cpu().reshape(t, h, w).numpy().astype(np.float32)
    size = frames.shape[1] // h
    keep = keep.repeat(tubelet, 0).repeat(size, 1).repeat(size, 2)[..., None]
    return frames * (0.25 + 0.75 * keep) + 0.35 * (1 - keep)


def mask_strip(video: torch.Tensor, visible: torch.Tensor, grid: tuple[int, int, int], tubelet: int) -> np.ndarray:
    """One clip's mask as an RGB image: the first frame of each tubelet step side by side, masked tokens dimmed.

    Shapes:
        video ``(3, T, H, W)`` ImageNet-normalised, visible ``(N,)`` bool -> ``(H, T' * W, 3)`` uint8.
    """
    frames = rearrange(to_pixels(video[None].detach())[0].cpu(), "c t h w -> t h w c").numpy()
    steps = dim_masked(frames, visible, grid, tubelet)[::tubelet]
    return (np.clip(rearrange(steps, "t h w c -> h (t w) c"), 0.0, 1.0) * 255).round().astype(np.uint8)
