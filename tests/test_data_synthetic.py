"""SyntheticMotionVideos: determinism, motion ground truth, labels, export round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from data.synthetic import MovingObject, SyntheticMotionVideos, render_clip, token_motion
from data.transforms import normalize_clip
from data.video_dataset import VideoListDataset, parse_list_file

RED, BLUE = (255, 0, 0), (0, 0, 255)


def flat_background(size: int) -> np.ndarray:
    return np.full((size, size, 3), 128, dtype=np.uint8)


def test_hand_placed_square_marks_the_tokens_it_crosses():
    # 3x3 square (radius 1) at row 6, columns 5..7, moving 4 px right per frame: columns
    # 5-7, 9-11, 13-15, 17-19 in frames 0..3. Patches are 8 px, tubelets 2 frames, 4x4 tokens each.
    square = MovingObject(x=6, y=6, vx=4, vy=0, radius=1, colours=(RED, RED))
    frames, moving = render_clip(flat_background(32), [square], num_frames=4)
    assert moving[0, 5:8, 5:8].all() and moving[0].sum() == 9
    assert moving[3, 5:8, 17:20].all() and moving[3].sum() == 9
    assert (frames[3, 6, 17] == RED).all() and (frames[3, 6, 16] == 128).all()
    motion = token_motion(moving, patch_size=8, tubelet_size=2)
    assert motion.shape == (2 * 4 * 4,)
    # tubelet 0: tokens (h0, w0), (h0, w1); tubelet 1: (h0, w1), (h0, w2) -> 16 + 1, 16 + 2
    assert np.flatnonzero(motion).tolist() == [0, 1, 17, 18]


def test_objects_wrap_around_the_frame_edges():
    square = MovingObject(x=31, y=16, vx=0, vy=0, radius=1)
    _, moving = render_clip(flat_background(32), [square], num_frames=2)
    assert moving[0, 16, [30, 31, 0]].all() and not moving[0, 16, [1, 29]].any()
    # rows 15..17 -> token rows 1 and 2; columns 30, 31, 0 -> token columns 3 and 0
    assert np.flatnonzero(token_motion(moving, 8, 2)).tolist() == [4, 7, 8, 11]


def test_disc_pixels_and_stripe_texture():
    disc = MovingObject(x=10, y=10, vx=0, vy=0, radius=2, shape="disc")
    assert render_clip(flat_background(32), [disc], 1)[1].sum() == 13  # integer points with dx^2+dy^2 <= 4
    # stripes across x, period 4: colour index floor(dx / 2) % 2 for dx = -3..3 -> 0 1 1 0 0 1 1
    striped = MovingObject(x=10, y=10, vx=1, vy=0, radius=3, colours=(RED, BLUE), stripe_period=4)
    frames, _ = render_clip(flat_background(32), [striped], 2)
    expected = [RED, BLUE, BLUE, RED, RED, BLUE, BLUE]
    assert frames[0, 10, 7:14].tolist() == [list(c) for c in expected]
    assert frames[1, 10, 8:15].tolist() == [list(c) for c in expected]  # the texture moves with it


def torus_reference_mask(objects: list[MovingObject], size: int, num_frames: int) -> np.ndarray:
    """Brute force: every pixel, every frame, distance to each centre taken on the torus."""
    mask = np.zeros((num_frames, size, size), dtype=bool)
    rows, cols = np.mgrid[0:size, 0:size]
    for t in range(num_frames):
        for obj in objects:
            dx = (cols - (obj.x + obj.vx * t) + size / 2) % size - size / 2
            dy = (rows - (obj.y + obj.vy * t) + size / 2) % size - size / 2
            if obj.shape == "square":
                mask[t] |= (np.abs(dx) <= obj.radius) & (np.abs(dy) <= obj.radius)
            else:
                mask[t] |= dx ** 2 + dy ** 2 <= obj.radius ** 2
    return mask


@pytest.mark.parametrize("size", [32, 64])
def test_motion_mask_matches_brute_force(size):
    dataset = SyntheticMotionVideos(12, num_frames=8, input_size=size, seed=5)
    for index in range(len(dataset)):
        _, objects, _ = dataset.scene(index)
        _, moving, _ = dataset.render(index)
        np.testing.assert_array_equal(moving, torus_reference_mask(objects, size, 8))


def test_items_shapes_and_consistency():
    dataset = SyntheticMotionVideos(4, num_frames=16, input_size=64, patch_size=16, tubelet_size=2, seed=0)
    item = dataset[2]
    assert set(item) == {"video", "label", "index", "skipped", "motion"}
    assert item["video"].shape == (3, 16, 64, 64) and item["video"].dtype == torch.float32
    assert item["motion"].shape == (8 * 4 * 4,) and item["motion"].dtype == torch.bool
    assert (item["index"], item["skipped"]) == (2, 0) and 0 <= item["label"] < 8
    frames, moving, label = dataset.render(2)
    assert frames.shape == (16, 64, 64, 3) and frames.dtype == np.uint8 and label == item["label"]
    torch.testing.assert_close(item["video"], normalize_clip(frames), rtol=0, atol=0)
    assert torch.equal(item["motion"], torch.from_numpy(token_motion(moving, 16, 2)))
    assert 0 < item["motion"].sum() < item["motion"].numel()
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["motion"].shape == (4, 128) and batch["label"].shape == (4,)


def test_deterministic_per_seed_split_and_index():
    make = lambda **kw: SyntheticMotionVideos(6, num_frames=4, input_size=32, **kw)
    a, b = make(seed=3), make(seed=3)
    for index in range(6):
        np.testing.assert_array_equal(a.frames(index), b.frames(index))
        assert a[index]["label"] == b[index]["label"]
    assert not np.array_equal(a.frames(0), a.frames(1))
    assert not np.array_equal(a.frames(0), make(seed=4).frames(0))
    assert not np.array_equal(a.frames(0), make(seed=3, split="val").frames(0))


def test_every_object_moves_in_the_labelled_direction():
    dataset = SyntheticMotionVideos(200, input_size=64, seed=1)
    labels = []
    for index in range(len(dataset)):
        _, objects, label = dataset.scene(index)
        labels.append(label)
        assert 1 <= len(objects) <= 3
        for obj in objects:
            angle = math.atan2(-obj.vy, obj.vx)  # screen y points down
            assert math.isclose((angle - label * math.pi / 4 + math.pi) % (2 * math.pi) - math.pi, 0, abs_tol=1e-9)
            assert 0.75 <= math.hypot(obj.vx, obj.vy) <= 2.0
    assert sorted(set(labels)) == list(range(8))
    assert len(SyntheticMotionVideos.CLASSES) == 8


def test_rendered_motion_goes_the_labelled_way():
    # one object: its mask two frames on overlaps the first mask shifted 2 px the labelled way
    # more than the first mask shifted 2 px the opposite way
    dataset = SyntheticMotionVideos(40, num_frames=4, input_size=64, max_objects=1, seed=2)
    directions = {0: (1, 0), 2: (0, -1), 4: (-1, 0), 6: (0, 1)}  # east, north, west, south in (x, y)
    seen = set()
    for index in range(len(dataset)):
        _, moving, label = dataset.render(index)
        if label not in directions:
            continue
        seen.add(label)
        shifted = np.roll(moving[0], shift=(round(2 * directions[label][1]), round(2 * directions[label][0])),
                          axis=(0, 1))
        wrong_way = np.roll(moving[0], shift=(-round(2 * directions[label][1]), -round(2 * directions[label][0])),
                            axis=(0, 1))
        assert (shifted & moving[2]).sum() > (wrong_way & moving[2]).sum(), (index, label)
    assert seen == set(directions)


def test_bad_arguments():
    with pytest.raises(ValueError, match="patch_size"):
        SyntheticMotionVideos(4, input_size=60, patch_size=16)
    with pytest.raises(ValueError, match="tubelet_size"):
        SyntheticMotionVideos(4, num_frames=5, tubelet_size=2)
    with pytest.raises(ValueError, match="split"):
        SyntheticMotionVideos(4, split="dev")
    with pytest.raises(IndexError):
        SyntheticMotionVideos(4)[4]
    with pytest.raises(ValueError, match="background"):
        SyntheticMotionVideos(4, background="noise")


def test_flat_background_leaves_only_moving_tokens_to_reconstruct():
    from mae.target import patchify_target

    clips = SyntheticMotionVideos(6, num_frames=8, input_size=32, patch_size=8, background="flat")
    textured = SyntheticMotionVideos(6, num_frames=8, input_size=32, patch_size=8)
    for index in range(6):
        item = clips[index]
        target = patchify_target(item["video"][None], tubelet_size=2, patch_size=8)[0]  # (N, C)
        still = ~item["motion"]
        assert still.any() and item["motion"].any()
        # a flat patch normalises to zero up to float round-off amplified by the 1e-6 of the std
        assert target[still].square().mean() < 1e-2
        assert target[item["motion"]].square().mean() > 0.2
        # same objects and label as the textured clip of that index; only the background differs
        assert item["label"] == textured[index]["label"]
        assert torch.equal(item["motion"], textured[index]["motion"])


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_export_round_trip_through_decord(tmp_path, codec):
    dataset = SyntheticMotionVideos(3, num_frames=4, input_size=32, patch_size=8, seed=7)
    list_file = dataset.export(tmp_path / "clips", fps=8, codec=codec)
    entries = parse_list_file(list_file)
    assert [label for _, label in entries] == [dataset[i]["label"] for i in range(3)]
    decoded = VideoListDataset(list_file, num_frames=4, sampling_rate=1, input_size=32, train=False)
    for index in range(3):
        item, original = decoded[index], dataset[index]["video"]
        assert item["video"].shape == original.shape == (3, 4, 32, 32)
        assert (item["label"], item["skipped"]) == (dataset[index]["label"], 0)
        error = (item["video"] - original).abs().mean().item()
        other = (item["video"] - dataset[(index + 1) % 3]["video"]).abs().mean().item()
        assert error < other / 3, (error, other)  # lossy codec (4:2:0 chroma), yet plainly the same clip
        frame_errors = (item["video"][:, :, None] - original[:, None]).abs().mean(dim=(0, 3, 4))  # (T, T)
        assert frame_errors.argmin(dim=1).tolist() == [0, 1, 2, 3]  # and the frames come back in order
    with pytest.raises(ValueError, match="even"):
        SyntheticMotionVideos(1, input_size=15, patch_size=5).export(tmp_path / "odd")
