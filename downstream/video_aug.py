"""Fine-tuning augmentation for clips (paper Table 7): RandAugment, random resized crop, flip, mixup.

Every spatial augmentation is drawn once per clip and applied identically to all its frames,
as VideoMAE's fine-tuning does (its ``rand_augment.py`` applies each op to the frame list).

RandAugment is timm's ``rand_augment_transform`` (config string, e.g.
``rand-m9-mstd0.5-inc1``: 2 ops, magnitude 9, magnitude std 0.5, increasing-severity ops).
timm draws the op choice from numpy's global RNG and each op's probability, magnitude and
sign from python's ``random``. :class:`ClipRandAugment` draws one seed per clip from the
item's generator, seeds both global RNGs with it before *each* frame, so every frame sees the
same ops with the same magnitudes, and restores the global RNG states afterwards: the clip's
augmentation is a pure function of its generator (reproducible across workers and resumes)
and nothing else's randomness is disturbed. (Tiling the frames into one image instead would
rotate, shear and translate the tile about its own centre, not each frame about its own.)

Mixup and CutMix are timm's :class:`timm.data.Mixup`, whose CutMix slices dims 2 and 3 of
its input: right for images ``(B, C, H, W)``, wrong for clips ``(B, C, T, H, W)`` (it would
cut along T and H). :class:`VideoMixup` cuts the box in the last two dims, through all frames.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from timm.data import Mixup
from timm.data.mixup import cutmix_bbox_and_lam

from data.transforms import IMAGENET_MEAN, Generator, draw_int, frames_to_tensor, normalize_clip


def _uniform(generator: Generator, low: float, high: float) -> float:
    if isinstance(generator, np.random.Generator):
        unit = float(generator.random())
    else:
        unit = float(torch.rand((), generator=generator, dtype=torch.float64))
    return low + (high - low) * unit


def _posterize(img, bits_to_keep: int, **_):
    """timm's posterize, but keeping 0 bits gives a black image instead of an error.

    timm's increasing posterize asks for 0 bits at magnitude 10 (reached with mstd 0.5 from
    m9); Pillow >= 10 refuses 0 bits, older Pillow returned black, which is what this does.
    """
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


class ClipRandAugment:
    """timm RandAugment with the same ops and magnitudes for every frame of a clip.

    Shapes:
        frames ``(T, H, W, 3)`` uint8 (numpy or torch) -> ``(T, H, W, 3)`` uint8 numpy.
    """

    def __init__(self, config_str: str = "rand-m9-mstd0.5-inc1", *, input_size: int = 224,
                 mean: tuple[float, float, float] = IMAGENET_MEAN):
        """
        :param config_str: timm RandAugment string (``rand-m9-mstd0.5-inc1`` = Table 7's "9, 0.5").
        :param input_size: the model's input side; translations go up to 0.45 of it (timm, VideoMAE).
        :param mean: fill colour of rotations and shears, as in VideoMAE (the dataset mean).
        """
        from PIL import Image
        from timm.data.auto_augment import rand_augment_transform

        if not config_str.startswith("rand"):
            raise ValueError(f"train.randaug must be a timm RandAugment string like 'rand-m9-mstd0.5-inc1', "
                             f"got {config_str!r}")
        hparams = dict(translate_const=int(input_size * 0.45), img_mean=tuple(round(255 * m) for m in mean),
                       interpolation=Image.BICUBIC)
        self.config_str = config_str
        self.transform = rand_augment_transform(config_str, hparams)
        for op in self.transform.ops:
            if op.name.startswith("Posterize"):
                op.aug_fn = _posterize  # Pillow >= 10 refuses the 0 bits timm asks for at magnitude 10

    def __call__(self, frames: np.ndarray | torch.Tensor, generator: Generator = None) -> np.ndarray:
        from PIL import Image

        frames = frames_to_tensor(frames).numpy()
        seed = draw_int(generator, 2**31 - 1)
        saved_python, saved_numpy = random.getstate(), np.random.get_state()
        try:
            out = []
            for frame in frames:
                random.seed(seed)
                np.random.seed(seed)
                out.append(np.asarray(self.transform(Image.fromarray(frame))))
        finally:
            random.setstate(saved_python)
            np.random.set_state(saved_numpy)
        return np.stack(out)

    def __repr__(self) -> str:
        return f"ClipRandAugment({self.config_str!r})"


def random_resized_crop_box(height: int, width: int, *, scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3),
                            generator: Generator = None) -> tuple[int, int, int, int]:
    """A crop ``(top, left, crop_h, crop_w)`` as torchvision's ``RandomResizedCrop.get_params``.

    Area uniform in ``scale`` of the frame, aspect ratio log-uniform in ``ratio``; after 10
    failed tries, the centre crop of the frame clamped to ``ratio``.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * _uniform(generator, *scale)
        aspect = math.exp(_uniform(generator, *log_ratio))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = draw_int(generator, height - crop_h + 1)
            left = draw_int(generator, width - crop_w + 1)
            return top, left, crop_h, crop_w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        crop_h, crop_w = height, int(round(height * ratio[1]))
    else:
        crop_w, crop_h = width, height
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def resize_frames(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear antialiased resize in uint8. Shapes: ``(T, h, w, 3)`` -> ``(T, height, width, 3)``."""
    if frames.shape[1:3] == (height, width):
        return frames
    clip = rearrange(frames, "t h w c -> t c h w").contiguous(memory_format=torch.channels_last)
    clip = F.interpolate(clip, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return rearrange(clip, "t c h w -> t h w c")


class FinetuneClipTransform:
    """RandAugment -> random resized crop -> horizontal flip -> ImageNet normalisation.

    One draw of each per clip (VideoMAE fine-tuning: ``scale=(0.08, 1)``,
    ``ratio=(3/4, 4/3)``; flip off for direction-dependent labels such as SSv2 and the
    built-in motion data).

    Shapes:
        frames ``(T, H, W, 3)`` uint8 -> ``(3, T, input_size, input_size)`` float32.
    """

    def __init__(self, input_size: int, *, randaug: str | None = "rand-m9-mstd0.5-inc1",
                 scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 flip_prob: float = 0.5):
        self.input_size, self.scale, self.ratio, self.flip_prob = input_size, tuple(scale), tuple(ratio), flip_prob
        self.randaug = ClipRandAugment(randaug, input_size=input_size) if randaug else None

    def __call__(self, frames: np.ndarray | torch.Tensor, generator: Generator = None) -> torch.Tensor:
        if self.randaug is not None:
            frames = self.randaug(frames, generator)
        frames = frames_to_tensor(frames)
        top, left, crop_h, crop_w = random_resized_crop_box(
            frames.shape[1], frames.shape[2], scale=self.scale, ratio=self.ratio, generator=generator)
        clip = resize_frames(frames[:, top:top + crop_h, left:left + crop_w], self.input_size, self.input_size)
        if _uniform(generator, 0.0, 1.0) < self.flip_prob:
            clip = clip.flip(2)
        return normalize_clip(clip)


class VideoMixup(Mixup):
    """timm's Mixup/CutMix for clips ``(B, C, T, H, W)``: the CutMix box spans all frames.

    Batch mode only (VideoMAE's default): one lambda and one box per batch, pairing each clip
    with the batch reversed; the targets are timm's smoothed, mixed one-hots.
    """

    def __init__(self, **kwargs):
        if kwargs.get("mode", "batch") != "batch":
            raise ValueError(f"VideoMixup supports mode='batch' only, got {kwargs['mode']!r}")
        super().__init__(**kwargs)

    def _mix_batch(self, x: torch.Tensor) -> float:
        lam, use_cutmix = self._params_per_batch()
        if lam == 1.0:
            return 1.0
        if use_cutmix:
            (yl, yh, xl, xh), lam = cutmix_bbox_and_lam(
                x.shape, lam, ratio_minmax=self.cutmix_minmax, correct_lam=self.correct_lam)
            x[..., yl:yh, xl:xh] = x.flip(0)[..., yl:yh, xl:xh]
        else:
            x_flipped = x.flip(0).mul_(1.0 - lam)
            x.mul_(lam).add_(x_flipped)
        return lam
