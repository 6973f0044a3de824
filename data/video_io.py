"""Reading clips from video files with decord, and choosing which frames to read.

Each reader decodes with one thread: parallelism comes from DataLoader workers, one reader each.
"""

from __future__ import annotations

import os
import re

import numpy as np

from data.transforms import Generator, draw_int


class VideoReadError(Exception):
    """A video could not be read: missing, not a video, no frames, or a decode failure.

    Attributes:
        path: the file.
        reason: a short human-readable cause (the decoder's first message line where there is one).
    """

    def __init__(self, path: str, reason: str):
        super().__init__(path, reason)  # keeps it picklable across DataLoader workers
        self.path, self.reason = str(path), reason

    def __str__(self) -> str:
        return f"cannot read video {self.path}: {self.reason}"


def clip_span(num_frames: int, sampling_rate: int) -> int:
    """Frames covered by a clip of ``num_frames`` frames taken every ``sampling_rate`` frames."""
    return (num_frames - 1) * sampling_rate + 1


def sample_frame_indices(
    video_length: int,
    num_frames: int,
    sampling_rate: int,
    *,
    train: bool,
    generator: Generator = None,
) -> np.ndarray:
    """Indices ``start + k * sampling_rate`` for k < num_frames.

    The start is uniform over the positions where the clip fits (train) or centred (eval). A
    video shorter than the clip starts at 0 and its indices are clamped to the last frame, so
    the last frame repeats.

    Shapes:
        returns: (num_frames,) int64
    """
    if video_length < 1 or num_frames < 1 or sampling_rate < 1:
        raise ValueError(f"need video_length, num_frames, sampling_rate >= 1, "
                         f"got {video_length}, {num_frames}, {sampling_rate}")
    slack = max(video_length - clip_span(num_frames, sampling_rate), 0)
    start = draw_int(generator, slack + 1) if train else slack // 2
    indices = start + sampling_rate * np.arange(num_frames, dtype=np.int64)
    return np.minimum(indices, video_length - 1)


def _decoder_message(error: BaseException) -> str:
    """The useful part of a decord error: its type and first line, less decord's log prefixes."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    first_line = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", first_line)  # "[11:13:34] src/x.cc:292: "
    return f"{type(error).__name__}: {first_line[:300]}"


def _read_frames_pyav(path: str, indices: np.ndarray) -> np.ndarray:
    """Frames ``indices`` decoded in order with PyAV. Shapes: returns (len(indices), H, W, 3) uint8."""
    import av

    wanted, frames = set(indices.tolist()), {}
    try:
        with av.open(path) as container:
            for position, frame in enumerate(container.decode(video=0)):
                if position in wanted:
                    frames[position] = frame.to_ndarray(format="rgb24")
                if position >= indices.max():
                    break
    except Exception as error:
        raise VideoReadError(path, f"PyAV fallback failed ({type(error).__name__}: {error})") from error
    missing = wanted - set(frames)
    if missing:
        raise VideoReadError(path, f"PyAV fallback found no frames {sorted(missing)[:5]}")
    return np.stack([frames[i] for i in indices.tolist()])


def read_clip(
    path: str | os.PathLike,
    num_frames: int,
    sampling_rate: int,
    *,
    train: bool,
    generator: Generator = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one clip with decord (one decoding thread: DataLoader workers give the parallelism).

    Raises:
        VideoReadError: missing file, not a video, no frames, or any decode failure.

    Shapes:
        returns: frames (num_frames, H, W, 3) uint8, indices (num_frames,) int64
    """
    import decord  # imported here so that `import data` works without decord (synthetic data)

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoReadError(path, "no such file")
    try:
        reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))
        video_length = len(reader)
    except Exception as error:  # decord raises RuntimeError or DECORDError, depending on the stage
        raise VideoReadError(path, f"cannot open as a video ({_decoder_message(error)})") from error
    if video_length < 1:
        raise VideoReadError(path, "video has no frames")
    indices = sample_frame_indices(video_length, num_frames, sampling_rate, train=train, generator=generator)
    try:
        frames = reader.get_batch(indices.tolist()).asnumpy()
    except Exception as error:
        if "DECORDArrayCopyFromTo" not in str(error):
            raise VideoReadError(path, f"decoding frames {indices.min()}..{indices.max()} of {video_length} "
                                       f"failed ({_decoder_message(error)})") from error
        # decord cannot copy out frames of a few narrow widths (16, 24, 48, 72 px: its padded
        # rows do not match); PyAV decodes those correctly.
        frames = _read_frames_pyav(path, indices)
    finally:
        del reader
    if frames.shape[0] != num_frames or frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoReadError(path, f"decoder returned frames of shape {frames.shape}")
    return frames, indices

