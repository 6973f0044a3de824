"""Trivial predictors of the masked tokens: the floor an MAE must beat to have learned anything.

Each predicts every token's target from the clip's visible tokens alone, with no learning:

- ``zeros``: 0 everywhere (the mean of a per-patch-normalised target);
- ``mean_visible``: the clip's mean visible target;
- ``copy``: the target of the nearest visible token at the same spatial position (another
  time step; of two equally near, the earlier), else the clip's mean visible target.

On a static clip ``copy`` is exact wherever the position is visible at some time step, so an
MAE below it has learned to use the other time steps *and* to fill in positions never seen.
Their losses go through :func:`mae.target.reconstruction_loss`, so they are measured exactly
as the MAE is (same masked tokens, same loss kind).
"""

from __future__ import annotations

import torch

from mae.target import reconstruction_loss

PREDICTORS = ("zeros", "mean_visible", "copy")


def mean_visible_prediction(target: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Shapes: target ``(B, N, C)``, visible ``(B, N)`` bool -> ``(B, N, C)``, the clip's mean visible target."""
    weight = visible.to(target.dtype).unsqueeze(-1)
    mean = (target * weight).sum(1) / weight.sum(1).clamp_min(1)
    return mean.unsqueeze(1).expand_as(target)


def seen_at_some_time(visible: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Whether each token's spatial position is visible at some time step: ``(B, N)`` bool.

    A masked token with this set is one the copy predictor copies; the others get the clip mean.
    """
    batch, num_tokens = visible.shape
    steps = grid[0]
    vis = visible.view(batch, steps, num_tokens // steps)
    return vis.any(dim=1, keepdim=True).expand_as(vis).reshape(batch, num_tokens)


def copy_prediction(target: torch.Tensor, visible: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Nearest visible time step at the same spatial position, else the clip's mean visible target.

    Shapes:
        target ``(B, N, C)`` frame-major tokens, visible ``(B, N)`` bool, grid ``(T', H', W')``
        -> ``(B, N, C)``.
    """
    batch, num_tokens, channels = target.shape
    steps = grid[0]
    places = num_tokens // steps
    vis = visible.view(batch, steps, places)  # (B, T', P)
    time = torch.arange(steps, device=target.device, dtype=torch.float32)
    # cost[b, t, u, p]: distance from time t to visible time u (ties to the earlier u); inf if u not visible
    distance = (time[:, None] - time[None, :]).abs() + time[None, :] * 1e-3
    cost = distance[None, :, :, None].expand(batch, steps, steps, places)
    cost = cost.masked_fill(~vis[:, None, :, :], float("inf"))
    source_time = cost.argmin(dim=2)  # (B, T', P)
    source = (source_time * places + torch.arange(places, device=target.device)).view(batch, num_tokens)
    copied = target.gather(1, source.unsqueeze(-1).expand(-1, -1, channels))
    seen = seen_at_some_time(visible, grid).unsqueeze(-1)
    return torch.where(seen, copied, mean_visible_prediction(target, visible))


def trivial_predictions(target: torch.Tensor, visible: torch.Tensor,
                        grid: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """Every predictor's full ``(B, N, C)`` prediction, keyed by the names in :data:`PREDICTORS`."""
    return {"zeros": torch.zeros_like(target), "mean_visible": mean_visible_prediction(target, visible),
            "copy": copy_prediction(target, visible, grid)}


def prediction_loss(prediction: torch.Tensor, target: torch.Tensor, visible: torch.Tensor,
                    loss: str = "mse") -> torch.Tensor:
    """Eq. 6 of a full ``(B, N, C)`` prediction, scored on the masked tokens of ``visible``: ``(B,)``."""
    masked = prediction[~visible].view(target.shape[0], -1, target.shape[-1])
    return reconstruction_loss(masked, target, visible, loss=loss).per_clip


def trivial_losses(target: torch.Tensor, visible: torch.Tensor, grid: tuple[int, int, int],
                   loss: str = "mse") -> dict[str, torch.Tensor]:
    """Eq. 6 of each trivial predictor, per clip ``(B,)``, on the masked tokens of ``visible``."""
    return {name: prediction_loss(pred, target, visible, loss)
            for name, pred in trivial_predictions(target, visible, grid).items()}


@torch.no_grad()
def heldout_losses(model, video: torch.Tensor, visible: torch.Tensor, *, chunk: int = 32) -> dict[str, float]:
    """The MAE's Eq. 6 on held-out clips next to each trivial predictor's, on the same masks.

    Returns ``{"mae": ..., "zeros": ..., "mean_visible": ..., "copy": ...}``, means over clips.
    The model is put in eval mode and back. Shapes: video ``(B, 3, T, H, W)``, visible ``(B, N)``.
    """
    was_training = model.training
    model.eval()
    sums = dict.fromkeys(("mae", *PREDICTORS), 0.0)
    for start in range(0, video.shape[0], chunk):
        clip, vis = video[start:start + chunk], visible[start:start + chunk]
        target = model.target(clip)
        sums["mae"] += float(model.reconstruction_loss(model(clip, vis).float(), target, vis).per_clip.sum())
        for name, loss in trivial_losses(target, vis, model.grid, model.loss_type).items():
            sums[name] += float(loss.sum())
    model.train(was_training)
    return {name: total / video.shape[0] for name, total in sums.items()}


@torch.no_grad()
def copy_split_losses(model, video: torch.Tensor, visible: torch.Tensor) -> dict[str, float]:
    """The MAE's and the copy predictor's mean squared error per masked token, split by whether the
    token's position is visible at another time step (``seen``: copy copies) or not (``unseen``:
    copy predicts the clip mean). ``seen_fraction`` is the share of masked tokens that are seen.

    Why an MAE is above or below the copy predictor on static clips: there copying is exact on
    seen tokens, so an MAE beats it only by copying them almost exactly and filling in unseen ones.
    """
    was_training = model.training
    model.eval()
    target = model.target(video)
    masked = ~visible
    prediction = torch.zeros_like(target)
    prediction[masked] = model(video, visible).float().reshape(-1, target.shape[-1])
    seen = seen_at_some_time(visible, model.grid)
    model.train(was_training)
    result = {"seen_fraction": float((masked & seen).sum() / masked.sum())}
    for name, pred in (("mae", prediction), ("copy", copy_prediction(target, visible, model.grid))):
        error = (pred - target).pow(2).mean(-1)
        for part, where in (("seen", masked & seen), ("unseen", masked & ~seen)):
            result[f"{name}_{part}"] = float(error[where].mean()) if where.any() else float("nan")
    return result
