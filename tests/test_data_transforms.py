"""Clip transforms: shapes, normalisation by hand, crops, flips, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data.transforms import (IMAGENET_MEAN, IMAGENET_STD, EvalClipTransform, TrainClipTransform,
                             multiscale_crop_box, normalize_clip)


def normalised(value: float, channel: int) -> float:
    """The hand formula: (pixel / 255 - mean) / std."""
    return (value / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]


def test_imagenet_constants():
    assert IMAGENET_MEAN == pytest.approx((0.485, 0.456, 0.406))
    assert IMAGENET_STD == pytest.approx((0.229, 0.224, 0.225))


def test_normalize_clip_against_hand_values():
    frames = np.zeros((2, 4, 5, 3), dtype=np.uint8)
    frames[1, 2, 3] = (255, 100, 0)
    clip = normalize_clip(frames)
    assert clip.shape == (3, 2, 4, 5) and clip.dtype == torch.float32
    assert clip[0, 1, 2, 3].item() == pytest.approx(normalised(255, 0), abs=1e-5)
    assert clip[1, 1, 2, 3].item() == pytest.approx(normalised(100, 1), abs=1e-5)
    assert clip[2, 1, 2, 3].item() == pytest.approx(normalised(0, 2), abs=1e-5)
    assert clip[1, 0, 0, 0].item() == pytest.approx(normalised(0, 1), abs=1e-5)


def test_rejects_frames_that_are_not_uint8_thwc():
    with pytest.raises(ValueError, match="uint8"):
        normalize_clip(np.zeros((2, 4, 5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        EvalClipTransform(8)(np.zeros((2, 3, 8, 8), dtype=np.uint8))


def test_eval_centre_crop_without_resize_keeps_the_middle_columns():
    # Short side 48 == input_size: no resize, the crop keeps columns 8..55 of 64.
    frames = np.zeros((2, 48, 64, 3), dtype=np.uint8)
    frames[..., 0] = np.arange(64, dtype=np.uint8)  # red = column index
    clip = EvalClipTransform(48)(frames)
    assert clip.shape == (3, 2, 48, 48)
    expected = torch.tensor([normalised(c, 0) for c in range(8, 56)])
    torch.testing.assert_close(clip[0, 1, 5], expected, rtol=0, atol=1e-5)


def test_eval_resizes_short_side_then_centre_crops():
    # 48x96 -> 24x48 -> centre 24x24, which is exactly the white middle band (columns 24..71).
    frames = np.zeros((3, 48, 96, 3), dtype=np.uint8)
    frames[:, :, 24:72] = 255
    clip = EvalClipTransform(24)(torch.from_numpy(frames))
    assert clip.shape == (3, 3, 24, 24)
    white = torch.tensor([normalised(255, c) for c in range(3)]).view(3, 1, 1, 1)
    # Bilinear resampling blurs only the crop's outermost column on each side.
    torch.testing.assert_close(clip[..., 1:-1], white.expand(3, 3, 24, 22), rtol=0, atol=1e-4)
    assert (clip[..., 0] < white[..., 0]).all()


def test_multiscale_crop_boxes_follow_videomae():
    generator = torch.Generator().manual_seed(0)
    boxes = [multiscale_crop_box(256, 340, 224, generator) for _ in range(3000)]
    # sides int(256 * s) for s in (1, .875, .75, .66) = 256, 224, 192, 168; pairs at most one step apart
    sides = [256, 224, 192, 168]
    expected_sizes = {(sides[i], sides[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    assert {(h, w) for _, _, h, w in boxes} == expected_sizes
    for top, left, h, w in boxes:
        h_step, w_step = (256 - h) // 4, (340 - w) // 4
        assert top in {k * h_step for k in range(5)} and left in {k * w_step for k in range(5)}
        assert top + h <= 256 and left + w <= 340
    # 13 fixed offsets: for the 168x168 crop, steps (22, 43) give 13 distinct (top, left) pairs
    assert len({(t, l) for t, l, h, w in boxes if (h, w) == (168, 168)}) == 13


def test_train_transform_shape_and_same_crop_for_all_frames():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    frames = np.stack([frame] * 4)
    clip = TrainClipTransform(32)(frames, torch.Generator().manual_seed(3))
    assert clip.shape == (3, 4, 32, 32) and clip.dtype == torch.float32
    for t in range(1, 4):  # identical frames in, identical frames out: one crop per clip
        torch.testing.assert_close(clip[:, t], clip[:, 0], rtol=0, atol=0)


def test_train_transform_flip_mirrors_the_same_crop():
    frames = np.random.default_rng(1).integers(0, 256, (2, 60, 80, 3), dtype=np.uint8)
    kept = TrainClipTransform(32, flip_prob=0.0)(frames, torch.Generator().manual_seed(5))
    flipped = TrainClipTransform(32, flip_prob=1.0)(frames, torch.Generator().manual_seed(5))
    torch.testing.assert_close(flipped, kept.flip(-1), rtol=0, atol=0)
    assert not torch.equal(flipped, kept)


def test_train_transform_reproducible_and_varies_with_the_generator():
    frames = np.random.default_rng(2).integers(0, 256, (2, 60, 80, 3), dtype=np.uint8)
    transform = TrainClipTransform(32)
    first = transform(frames, np.random.default_rng(9))
    assert torch.equal(first, transform(frames, np.random.default_rng(9)))
    outputs = {transform(frames, torch.Generator().manual_seed(s)).sum().item() for s in range(10)}
    assert len(outputs) > 3
