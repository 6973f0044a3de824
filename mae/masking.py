"""Visible-token masks: the one definition of K, the one mask convention.

Convention (used everywhere in this project): a mask is a bool tensor ``(B, N)`` with
**True = visible** (kept, fed to the encoder), False = masked (reconstructed). Tokens are
frame-major: index = t' * (H' * W') + h * W' + w. Every masker keeps exactly
``K = num_visible(N, mask_ratio)`` tokens per clip.
"""

from __future__ import annotations

import torch


def num_visible(num_tokens: int, mask_ratio: float) -> int:
    """``K = round(N * (1 - mask_ratio))``, at least 1 and at most N - 1."""
    if not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    k = int(round(num_tokens * (1.0 - mask_ratio)))
    return min(max(k, 1), num_tokens - 1)


def indices_to_mask(indices: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Visible indices ``(B, K)`` (any order) -> bool mask ``(B, N)``, True = visible."""
    mask = torch.zeros(indices.shape[0], num_tokens, dtype=torch.bool, device=indices.device)
    return mask.scatter_(1, indices.long(), True)


def mask_to_indices(visible: torch.Tensor) -> torch.Tensor:
    """Bool mask ``(B, N)`` with K True per row -> visible indices ``(B, K)`` in token order."""
    k = int(visible[0].sum())
    return visible.nonzero()[:, 1].reshape(visible.shape[0], k)


def random_mask(
    batch_size: int,
    num_tokens: int,
    mask_ratio: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Random space-time masking (VideoMAE ST / MAE): K tokens per clip, uniformly.

    Shapes:
        returns ``(B, N)`` bool, True = visible, exactly K True per row.
    """
    k = num_visible(num_tokens, mask_ratio)
    noise = torch.rand(batch_size, num_tokens, generator=generator)
    visible_idx = noise.argsort(dim=1)[:, :k]
    return indices_to_mask(visible_idx, num_tokens).to(device)


def tube_mask(
    batch_size: int,
    grid: tuple[int, int, int],
    mask_ratio: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Tube masking (VideoMAE): the same spatial positions are visible in every frame.

    VideoMAE keeps ``P * (1 - rho)`` positions per frame, which does not always total
    K. Here ``ceil(K / T')`` random positions are visible through time, and the last
    tube is cut short (its latest frames masked) so that exactly K tokens are visible.

    Shapes:
        grid = ``(T', H', W')``; returns ``(B, T' * H' * W')`` bool, True = visible.
    """
    t, h, w = grid
    positions = h * w
    k = num_visible(t * positions, mask_ratio)
    num_tubes = -(-k // t)  # ceil
    visible = torch.zeros(batch_size, t, positions, dtype=torch.bool)
    for b in range(batch_size):
        chosen = torch.randperm(positions, generator=generator)[:num_tubes]
        visible[b, :, chosen] = True
        surplus = num_tubes * t - k
        if surplus:
            visible[b, t - surplus :, chosen[-1]] = False
    return visible.reshape(batch_size, t * positions).to(device)
