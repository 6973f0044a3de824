"""SyntheticMotionVideos: procedural clips whose class is the direction of motion.

Each clip is a static background (``textured``: smooth colour noise, soft stripes or a checker;
``smooth``: a low-frequency colour field; ``flat``: one colour) with one to ``max_objects``
squares or discs (``striped`` in two colours, or ``solid``) gliding at constant velocity. All objects of a
clip move in the class direction (one of 8 compass directions), each at its own speed. Space
wraps around (an object leaving on the right comes back on the left), so every frame's object
positions are uniform whatever the direction: one frame tells nothing about the class, two do.

Coordinates: x is the column, y the row (down), both in pixels; a pixel (row, col) belongs to
an object when its integer coordinates fall inside it, distances taken modulo the frame size.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import Dataset

from data.transforms import normalize_clip

SPLITS = ("train", "val", "test")
BACKGROUNDS = ("textured", "smooth", "flat")
OBJECTS = ("striped", "solid")
CONTRASTS = ("random", "bright")
# contrast="bright": the background is dimmed into [0, 89], object colours lifted into [160, 255].
BRIGHT_BACKGROUND_SCALE, BRIGHT_OBJECT_FLOOR = 0.35, 160


@dataclass(frozen=True)
class MovingObject:
    """A rigid textured square or disc; its stripes move with it.

    ``radius`` is the half side of a square. ``colours`` (2, 3) uint8 alternate in stripes of
    width ``stripe_period / 2`` across the direction ``stripe_angle`` (radians).
    """

    x: float
    y: float
    vx: float
    vy: float
    radius: float
    shape: str = "square"
    colours: tuple = ((255, 255, 255), (255, 255, 255))
    stripe_angle: float = 0.0
    stripe_period: float = 8.0


def render_clip(background: np.ndarray, objects: list[MovingObject], num_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the objects over the static background, later objects on top.

    Each object is drawn only inside its bounding box (all frames at once), then its covered
    pixels are written through flat indices wrapped around the frame edges: a tenth of the
    frame's pixels per object, hence the speed.

    Shapes:
        background: (S, S, 3) uint8
        returns: frames (T, S, S, 3) uint8, moving (T, S, S) bool: pixels covered by any object
    """
    size = background.shape[0]
    frames = np.broadcast_to(background, (num_frames, *background.shape)).copy()
    moving = np.zeros(frames.shape[:3], dtype=bool)
    frame_pixels, moving_pixels = frames.reshape(-1, 3), moving.reshape(-1)  # views
    time = np.arange(num_frames, dtype=np.float64)
    for obj in objects:
        if not 0 < 2 * obj.radius + 2 <= size:
            raise ValueError(f"object radius {obj.radius} does not fit a {size}-pixel frame")
        box = int(2 * obj.radius) + 2  # enough integer positions to span [centre - r, centre + r]
        cx, cy = obj.x + obj.vx * time, obj.y + obj.vy * time  # (T,)
        cols = np.floor(cx - obj.radius)[:, None] + np.arange(box)  # (T, box), not yet wrapped
        rows = np.floor(cy - obj.radius)[:, None] + np.arange(box)
        dx, dy = cols - cx[:, None], rows - cy[:, None]  # (T, box) offsets from the centre
        if obj.shape == "square":
            inside = (np.abs(dx) <= obj.radius)[:, None, :] & (np.abs(dy) <= obj.radius)[:, :, None]
        elif obj.shape == "disc":
            inside = (dx * dx)[:, None, :] + (dy * dy)[:, :, None] <= obj.radius * obj.radius
        else:
            raise ValueError(f"unknown object shape {obj.shape!r} (square or disc)")
        t, i, j = np.nonzero(inside)  # (T, box, box) -> covered (frame, box row, box column)
        across = dx[t, j] * math.cos(obj.stripe_angle) + dy[t, i] * math.sin(obj.stripe_angle)
        stripe = np.floor(across * (2.0 / obj.stripe_period)).astype(np.int64) & 1
        wrapped_rows = rows.astype(np.int64) % size + (np.arange(num_frames) * size)[:, None]
        flat = wrapped_rows[t, i] * size + cols.astype(np.int64)[t, j] % size
        frame_pixels[flat] = np.asarray(obj.colours, dtype=np.uint8)[stripe]
        moving_pixels[flat] = True
    return frames, moving


def token_motion(moving: np.ndarray, patch_size: int, tubelet_size: int) -> np.ndarray:
    """Per token: does a moving object cover any pixel of it in any frame of its tubelet?

    Tokens are frame-major: index = t' * (H/p * W/p) + h * (W/p) + w.

    Shapes:
        moving: (T, H, W) bool -> (T/tubelet_size * H/p * W/p,) bool
    """
    tokens = rearrange(moving, "(t u) (h p) (w q) -> (t h w) (u p q)", u=tubelet_size, p=patch_size, q=patch_size)
    return tokens.any(axis=1)


def _background(rng: np.random.Generator, size: int, style: str = "textured") -> np.ndarray:
    """A static texture (smooth colour noise, soft stripes or a checker), a smooth field, or one colour.

    A flat patch's per-patch-normalised target is about 0 (round-off only), so with ``flat`` only the moving
    objects carry anything to reconstruct. Shapes: returns (S, S, 3) uint8.
    """
    if style == "smooth":  # bicubic from a 2x2 or 3x3 grid of colours: neighbouring patches look alike
        cells = int(rng.integers(2, 4))
        coarse = torch.from_numpy(rng.uniform(20, 230, size=(1, 3, cells, cells)).astype(np.float32))
        smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
        return rearrange(smooth[0], "c h w -> h w c").clamp(0, 255).to(torch.uint8).numpy()
    if style == "flat":
        return np.broadcast_to(rng.integers(20, 200, size=3).astype(np.uint8), (size, size, 3)).copy()
    kind = rng.integers(3)
    colours = rng.uniform(20, 200, size=(2, 3)).astype(np.float32)
    if kind == 0:
        cells = int(rng.integers(3, 7))
        coarse = torch.from_numpy(rng.uniform(20, 200, size=(1, 3, cells, cells)).astype(np.float32))
        smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
        return rearrange(smooth[0], "c h w -> h w c").clamp(0, 255).to(torch.uint8).numpy()
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 1:
        angle, period = rng.uniform(0, math.pi), rng.uniform(0.1, 0.3) * size
        weight = 0.5 + 0.5 * np.sin((x * math.cos(angle) + y * math.sin(angle)) * (2 * math.pi / period))
    else:
        cell = max(2, int(rng.uniform(0.06, 0.2) * size))
        weight = ((x + rng.integers(cell)) // cell + (y + rng.integers(cell)) // cell) % 2
    mixed = colours[0] + weight[..., None] * (colours[1] - colours[0])
    return mixed.astype(np.uint8)


def repeat_first_frame(video: torch.Tensor) -> torch.Tensor:
    """A static version of clips: the first frame repeated. Shapes: ``(B, 3, T, H, W)`` -> same."""
    return video[:, :, :1].expand_as(video).contiguous()


def synthetic_style(data_config) -> dict[str, str]:
    """``background`` and ``objects`` from a run's ``data`` config (a DictConfig or a stored dict);
    runs saved before a key existed get its default."""
    get = data_config.get
    return {"background": get("synthetic_background", "textured"), "objects": get("synthetic_objects", "striped"),
            "contrast": get("synthetic_contrast", "random")}


class SyntheticMotionVideos(Dataset):
    """Procedural clips labelled by motion direction, generated on the fly.

    Clip ``i`` is a pure function of ``(seed, split, i)``: ``split`` ("train", "val", "test")
    gives independent draws for one seed. ``background`` is ``textured``, ``smooth`` or ``flat``
    (see :func:`_background`); ``objects`` is ``striped`` or ``solid`` (one colour each; the
    random draws are the same, so a clip's objects, label and motion do not depend on it).
    ``contrast`` is ``random`` (any colours: an object may be darker or brighter than what it
    covers) or ``bright`` (the same scene with the background dimmed and the objects lifted, so
    every object is brighter than the background: motion shows with one sign in a frame
    difference, which a linear patch embedding can read; see docs/testbed.md).
    ``fresh=True`` draws new clips every epoch (clip ``i`` of epoch ``e`` is a function of
    ``(seed, split, i, e)``; see :meth:`set_epoch`): an endless stream that a small MAE cannot
    memorise. No augmentation (the motion ground truth stays aligned
    with the tokens); ``video`` is only normalised.

    Items: ``video`` (3, T, S, S) float32 ImageNet-normalised; ``label`` int in [0, 8) (see
    ``CLASSES``); ``index`` int; ``skipped`` 0; ``motion`` (N,) bool per token, N = T/tubelet *
    (S/patch)^2, True where a moving object covers any pixel of the token.
    """

    # Direction k points at k * 45 degrees counter-clockwise from east, on screen.
    CLASSES = ("east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east")
    SPEED_RANGE = (0.75 / 64, 2.0 / 64)  # pixels per frame, as a fraction of the frame size
    RADIUS_RANGE = (0.07, 0.15)  # as a fraction of the frame size

    def __init__(self, num_clips: int, *, num_frames: int = 16, input_size: int = 64, patch_size: int = 16,
                 tubelet_size: int = 2, seed: int = 0, max_objects: int = 3, split: str = "train",
                 background: str = "textured", objects: str = "striped", contrast: str = "random",
                 fresh: bool = False):
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not a multiple of patch_size {patch_size}")
        if num_frames % tubelet_size:
            raise ValueError(f"num_frames {num_frames} is not a multiple of tubelet_size {tubelet_size}")
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if background not in BACKGROUNDS:
            raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
        if objects not in OBJECTS:
            raise ValueError(f"objects must be one of {OBJECTS}, got {objects!r}")
        if contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
        self.num_clips, self.num_frames, self.input_size = num_clips, num_frames, input_size
        self.patch_size, self.tubelet_size, self.seed = patch_size, tubelet_size, seed
        self.max_objects, self.split, self.background, self.objects = max_objects, split, background, objects
        self.contrast = contrast
        self.fresh, self.epoch = fresh, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the clip source at each epoch; with ``fresh=True`` it selects that epoch's clips."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_clips

    def scene(self, index: int) -> tuple[np.ndarray, list[MovingObject], int]:
        """The clip's ingredients: background (S, S, 3) uint8, objects, label."""
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        key = [self.seed, SPLITS.index(self.split), index] + ([self.epoch] if self.fresh else [])
        rng = np.random.default_rng(key)
        size, label = self.input_size, int(rng.integers(len(self.CLASSES)))
        angle = label * math.pi / 4
        objects = []
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            speed = rng.uniform(*self.SPEED_RANGE) * size
            # drawn in this order whatever the style, so a clip's scene does not depend on it
            x, y = rng.uniform(0, size), rng.uniform(0, size)
            radius = rng.uniform(*self.RADIUS_RANGE) * size
            shape = ("square", "disc")[rng.integers(2)]
            colours = rng.integers(0, 256, size=(2, 3))
            if self.objects == "solid":
                colours[1] = colours[0]
            if self.contrast == "bright":
                colours = BRIGHT_OBJECT_FLOOR + colours * (255 - BRIGHT_OBJECT_FLOOR) // 255
            objects.append(MovingObject(
                x=x, y=y, vx=speed * math.cos(angle), vy=-speed * math.sin(angle),  # rows grow downwards
                radius=radius, shape=shape, colours=tuple(map(tuple, colours.tolist())),
                stripe_angle=rng.uniform(0, math.pi), stripe_period=rng.uniform(0.05, 0.15) * size,
            ))
        background = _background(rng, size, self.background)
        if self.contrast == "bright":
            background = (background * BRIGHT_BACKGROUND_SCALE).astype(np.uint8)
        return background, objects, label

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        """Shapes: returns frames (T, S, S, 3) uint8, moving (T, S, S) bool, and the label."""
        background, objects, label = self.scene(index)
        frames, moving = render_clip(background, objects, self.num_frames)
        return frames, moving, label

    def frames(self, index: int) -> np.ndarray:
        """Shapes: returns (T, S, S, 3) uint8."""
        return self.render(index)[0]

    def __getitem__(self, index: int) -> dict:
        frames, moving, label = self.render(index)
        return {"video": normalize_clip(frames), "label": label, "index": int(index), "skipped": 0,
                "motion": torch.from_numpy(token_motion(moving, self.patch_size, self.tubelet_size))}

    def export(self, out_dir: str | os.PathLike, *, fps: int = 10, codec: str = "libx264") -> str:
        """Write every clip as ``clip_<index>.mp4`` (yuv420p) plus ``list.txt`` of ``path<TAB>label``.

        Paths in the list are absolute. libx264 is written near-lossless (crf 12), others at 8 Mb/s;
        chroma subsampling still blurs colour edges a little.

        Returns:
            the list file's path, for ``VideoListDataset``.
        """
        import av  # only needed for export

        if self.input_size % 2:
            raise ValueError(f"yuv420p needs an even frame size, input_size is {self.input_size}")
        out_dir = os.path.abspath(os.fspath(out_dir))
        os.makedirs(out_dir, exist_ok=True)
        lines = []
        for index in range(self.num_clips):
            frames, _, label = self.render(index)
            path = os.path.join(out_dir, f"clip_{index:06d}.mp4")
            with av.open(path, "w") as container:
                stream = container.add_stream(codec, rate=fps)
                stream.width = stream.height = self.input_size
                stream.pix_fmt = "yuv420p"
                if codec == "libx264":
                    stream.options = {"crf": "12"}
                else:  # mpeg4 and others ignore crf; a generous bit rate instead
                    stream.bit_rate = 8_000_000
                for frame in frames:
                    container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                container.mux(stream.encode())
            lines.append(f"{path}\t{label}\n")
        list_file = os.path.join(out_dir, "list.txt")
        with open(list_file, "w", encoding="utf-8") as out:
            out.writelines(lines)
        return list_file
