"""Reading clips from video files with decord or PyAV, and choosing which frames to read.

Two decoders, one behaviour (:func:`read_frames`): ``reader="decord"`` (fast random access;
installed where it has wheels: Linux x86-64 and Windows x86-64), ``"pyav"`` (PyAV, installed
everywhere; decodes from the start up to the last frame asked for) and ``"auto"`` (decord when
it imports, else PyAV). Both return the same RGB frames up to codec rounding.

Each reader decodes with one thread: parallelism comes from DataLoader workers, one reader each.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable

import numpy as np

from data.transforms import Generator, draw_int

READERS = ("auto", "decord", "pyav")


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
    """The useful part of a decoder error: its type and first line, less decord's log prefixes."""
    first_line = (str(error).strip().splitlines() or [""])[0]
    first_line = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", first_line)  # "[11:13:34] src/x.cc:292: "
    return f"{type(error).__name__}: {first_line[:300]}"


@functools.cache
def decord_available() -> bool:
    """Whether decord imports here (it has no wheel for Linux aarch64 or macOS)."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_reader(reader: str) -> str:
    """``"decord"`` or ``"pyav"`` for a ``data.reader`` value (``auto``: decord when it imports).

    Raises:
        ValueError: an unknown name, or ``decord`` where it is not installed.
    """
    if reader not in READERS:
        raise ValueError(f"data.reader must be one of {READERS}, got {reader!r}")
    if reader == "auto":
        return "decord" if decord_available() else "pyav"
    if reader == "decord" and not decord_available():
        raise ValueError("data.reader=decord, but decord is not installed (it has no wheel for this platform); "
                         "use data.reader=pyav or auto")
    return reader


def read_frames(path: str | os.PathLike, choose: Callable[[int], np.ndarray], *,
                reader: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Open a video, pick frame indices from its length with ``choose``, decode each distinct frame once.

    Raises:
        VideoReadError: missing file, not a video, no frames, or any decode failure.
        ValueError: an unknown or uninstalled ``reader`` (see :func:`resolve_reader`).

    Shapes:
        ``choose(length)`` returns indices of any shape S (in ``[0, length)``); returns frames
        ``(*S, H, W, 3)`` uint8 and the indices.
    """
    path = os.fspath(path)
    decode = _decord_frames if resolve_reader(reader) == "decord" else _pyav_frames
    if not os.path.isfile(path):
        raise VideoReadError(path, "no such file")
    return decode(path, choose)


def _decord_frames(path: str, choose: Callable[[int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import decord  # imported here so that `import data` works without decord

    try:
        reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))
        length = len(reader)
    except Exception as error:  # decord raises RuntimeError or DECORDError, depending on the stage
        raise VideoReadError(path, f"cannot open as a video ({_decoder_message(error)})") from error
    try:
        if length < 1:
            raise VideoReadError(path, "video has no frames")
        indices = np.asarray(choose(length))
        unique, inverse = np.unique(indices, return_inverse=True)
        try:
            frames = reader.get_batch(unique.tolist()).asnumpy()
        except Exception as error:
            if "DECORDArrayCopyFromTo" not in str(error):
                raise VideoReadError(path, f"decoding frames {unique.min()}..{unique.max()} of {length} "
                                           f"failed ({_decoder_message(error)})") from error
            # decord cannot copy out frames of a few narrow widths (16, 24, 48, 72 px: its padded
            # rows do not match); PyAV decodes those correctly.
            frames = _pyav_decode(path, unique, length)
    finally:
        del reader
    return frames[inverse.reshape(indices.shape)], indices


def _pyav_frames(path: str, choose: Callable[[int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoReadError(path, "cannot open as a video (no video stream)")
            stream = container.streams.video[0]
            length = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    except VideoReadError:
        raise
    except Exception as error:
        raise VideoReadError(path, f"cannot open as a video ({_decoder_message(error)})") from error
    if length < 1:
        raise VideoReadError(path, "video has no frames")
    indices = np.asarray(choose(length))
    unique, inverse = np.unique(indices, return_inverse=True)
    return _pyav_decode(path, unique, length)[inverse.reshape(indices.shape)], indices


def _pyav_decode(path: str, unique: np.ndarray, length: int) -> np.ndarray:
    """Frames ``unique`` (sorted, distinct) decoded in order with PyAV.

    A video that ends before a frame its header counts (``length``) repeats its last decoded
    frame there, as a clip longer than its video repeats the last frame.

    Shapes: returns (len(unique), H, W, 3) uint8.
    """
    import av

    wanted, frames, last = set(unique.tolist()), {}, None
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1  # parallelism comes from DataLoader workers
            for position, frame in enumerate(container.decode(stream)):
                last = (position, frame)
                if position in wanted:
                    frames[position] = frame.to_ndarray(format="rgb24")
                if position >= unique[-1]:
                    break
    except Exception as error:
        raise VideoReadError(path, f"decoding frames {unique.min()}..{unique.max()} of {length} failed "
                                   f"({_decoder_message(error)})") from error
    if last is None:
        raise VideoReadError(path, "video has no frames")
    end, final = last
    for position in wanted - set(frames):  # only past the end of what decoded
        frames[position] = frames[end] if end in frames else final.to_ndarray(format="rgb24")
    return np.stack([frames[i] for i in unique.tolist()])


def read_clip(
    path: str | os.PathLike,
    num_frames: int,
    sampling_rate: int,
    *,
    train: bool,
    generator: Generator = None,
    reader: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Decode one clip (``reader``: ``auto``, ``decord`` or ``pyav``; see :func:`read_frames`).

    Raises:
        VideoReadError: missing file, not a video, no frames, or any decode failure.

    Shapes:
        returns: frames (num_frames, H, W, 3) uint8, indices (num_frames,) int64
    """
    frames, indices = read_frames(
        path, lambda length: sample_frame_indices(length, num_frames, sampling_rate, train=train,
                                                  generator=generator), reader=reader)
    if frames.shape[0] != num_frames or frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoReadError(os.fspath(path), f"decoder returned frames of shape {frames.shape}")
    return frames, indices
