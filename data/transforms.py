"""Clip transforms: uint8 frames ``(T, H, W, 3)`` -> normalised float ``(3, T, size, size)``.

All frames of a clip share one crop and one flip. Work is done in torch on the whole clip at
once, in uint8 until the final normalisation (crop first, so only kept pixels are resized).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

IMAGENET_MEAN: tuple[float, float, float] = tuple(IMAGENET_DEFAULT_MEAN)
IMAGENET_STD: tuple[float, float, float] = tuple(IMAGENET_DEFAULT_STD)

# VideoMAE's GroupMultiScaleCrop(input_size, [1, .875, .75, .66]).
MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)

Generator = torch.Generator | np.random.Generator | None


def draw_int(generator: Generator, high: int) -> int:
    """Uniform int in [0, high) from a torch or numpy generator (None: torch's global RNG)."""
    if isinstance(generator, np.random.Generator):
        return int(generator.integers(high))
    return int(torch.randint(high, (), generator=generator))


def _random_unit(generator: Generator) -> float:
    if isinstance(generator, np.random.Generator):
        return float(generator.random())
    return float(torch.rand((), generator=generator))


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Check and wrap uint8 frames as a torch tensor without copying.

    Shapes:
        frames: (T, H, W, 3) uint8 -> same, as a torch.Tensor
    """
    frames = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames of shape (T, H, W, 3), got {tuple(frames.shape)} {frames.dtype}")
    return frames


def normalize_clip(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """ImageNet-normalise a clip without changing its size: ``(pixel / 255 - mean) / std``.

    Shapes:
        frames: (T, H, W, 3) uint8 -> (3, T, H, W) float32
    """
    clip = rearrange(frames_to_tensor(frames), "t h w c -> c t h w").contiguous().float()
    return _normalize_channel_first(clip)


def _normalize_channel_first(clip: torch.Tensor) -> torch.Tensor:
    """(C, ...) float in pixel units -> ImageNet-normalised, in place: x * 1/(255 std) - mean/std."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, *[1] * (clip.ndim - 1))
    std = torch.tensor(IMAGENET_STD).view(3, *[1] * (clip.ndim - 1))
    return clip.mul_(1.0 / (255.0 * std)).sub_(mean / std)


def _resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear, antialiased resize kept in uint8 (rounded to whole pixel values).

    uint8 channels-last is torch's fast CPU path, about 10x the float one.

    Shapes:
        frames: (T, h, w, 3) uint8 -> (T, 3, height, width) uint8
    """
    clip = rearrange(frames, "t h w c -> t c h w").contiguous(memory_format=torch.channels_last)
    if clip.shape[-2:] != (height, width):
        clip = F.interpolate(clip, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return clip


def _to_normalized_clip(clip: torch.Tensor) -> torch.Tensor:
    """Shapes: clip (T, 3, H, W) uint8 -> (3, T, H, W) float32, normalised."""
    return _normalize_channel_first(rearrange(clip, "t c h w -> c t h w").contiguous().float())


def multiscale_crop_box(
    height: int,
    width: int,
    input_size: int,
    generator: Generator = None,
    scales: tuple[float, ...] = MULTISCALE_SCALES,
    max_distort: int = 1,
) -> tuple[int, int, int, int]:
    """Draw a crop ``(top, left, crop_h, crop_w)`` as VideoMAE's GroupMultiScaleCrop does.

    Side candidates are ``int(short_side * scale)`` (snapped to ``input_size`` when within 3 px);
    the height and width scales are drawn jointly among pairs at most ``max_distort`` apart in
    the scale list; the offset is one of 13 fixed positions (corners, centre, edge centres and
    quarter points: ``fill_fix_offset`` with ``more_fix_crop=True``).
    """
    sides = [int(min(height, width) * s) for s in scales]
    sides = [input_size if abs(side - input_size) < 3 else side for side in sides]
    pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[draw_int(generator, len(pairs))]
    # Snapping to input_size can exceed a tiny frame; never crop outside it.
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    h_step, w_step = (height - crop_h) // 4, (width - crop_w) // 4
    offsets = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2),  # corners, centre
               (2, 0), (2, 4), (4, 2), (0, 2),  # edge centres
               (1, 1), (1, 3), (3, 1), (3, 3)]  # quarter points
    top_steps, left_steps = offsets[draw_int(generator, len(offsets))]
    return top_steps * h_step, left_steps * w_step, crop_h, crop_w


class TrainClipTransform:
    """Multi-scale crop + horizontal flip (p=``flip_prob``), same for every frame, then normalise.

    VideoMAE pre-training uses the crop without the flip; set ``flip_prob=0`` to match it, and
    for data whose label depends on left/right (e.g. direction of motion).

    Shapes:
        frames: (T, H, W, 3) uint8 (numpy or torch) -> (3, T, input_size, input_size) float32
    """

    def __init__(self, input_size: int, *, scales: tuple[float, ...] = MULTISCALE_SCALES,
                 max_distort: int = 1, flip_prob: float = 0.5):
        self.input_size, self.scales, self.max_distort, self.flip_prob = input_size, scales, max_distort, flip_prob

    def __call__(self, frames: np.ndarray | torch.Tensor, generator: Generator = None) -> torch.Tensor:
        frames = frames_to_tensor(frames)
        top, left, crop_h, crop_w = multiscale_crop_box(
            frames.shape[1], frames.shape[2], self.input_size, generator, self.scales, self.max_distort)
        flip = _random_unit(generator) < self.flip_prob
        clip = _resize(frames[:, top:top + crop_h, left:left + crop_w], self.input_size, self.input_size)
        return _to_normalized_clip(clip.flip(-1) if flip else clip)


class EvalClipTransform:
    """Resize the short side to ``input_size`` (keeping the aspect ratio), centre crop, normalise.

    Shapes:
        frames: (T, H, W, 3) uint8 (numpy or torch) -> (3, T, input_size, input_size) float32
    """

    def __init__(self, input_size: int):
        self.input_size = input_size

    def __call__(self, frames: np.ndarray | torch.Tensor, generator: Generator = None) -> torch.Tensor:
        frames = frames_to_tensor(frames)
        height, width = frames.shape[1:3]
        scale = self.input_size / min(height, width)
        new_h = self.input_size if height <= width else round(height * scale)
        new_w = self.input_size if width <= height else round(width * scale)
        clip = _resize(frames, new_h, new_w)
        top, left = (new_h - self.input_size) // 2, (new_w - self.input_size) // 2
        return _to_normalized_clip(clip[:, :, top:top + self.input_size, left:left + self.input_size])
