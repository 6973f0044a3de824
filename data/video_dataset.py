"""Video datasets read with decord or PyAV (``reader``): from a list file or from a folder.

Bad input never stops a run and never passes silently: an unreadable video is reported once
per process (an ``UnreadableVideoWarning`` naming the file and the reason), remembered, and
replaced by the next readable one; the item's ``skipped`` says how many were passed over.
The memo is per process: DataLoader workers inherit what the parent knew when they were forked,
and each worker warns about the files it finds bad itself, unless ``report_in_items`` is set (as
``envs.ClipSource`` does): then workers name them in the item and the main process warns, once
per file per run.

Randomness (train only: clip start, crop, flip; eval is deterministic). Item ``i`` gets its
own torch generator, seeded in one of two ways:

- after ``set_epoch(e)`` (called by the training loop before each epoch, as ``ClipSource``
  does): from ``(seed, e, i)``. The same clip whatever ``num_workers``, the worker that
  fetches it, or the point a run was resumed from.
- otherwise: from ``(seed, worker_seed, n, i)``: ``worker_seed`` is
  ``torch.utils.data.get_worker_info().seed`` in a DataLoader worker (drawn from the
  DataLoader's generator at each new iterator, plus the worker id) and 0 in the main process;
  ``n`` counts how often this copy of the dataset has fetched ``i``. So the same seed,
  DataLoader generator and ``num_workers`` give the same clips, and each epoch gets fresh
  crops even with persistent workers and no ``set_epoch``.
"""

from __future__ import annotations

import operator
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from data.transforms import EvalClipTransform, TrainClipTransform
from data.video_io import VideoReadError, read_clip
from runtime.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")

# The one piece of global state: videos found unreadable in this process, path -> reason.
_UNREADABLE_VIDEOS: dict[str, str] = {}


class VideoDataError(UserError, ValueError):
    """A list file or folder that yields no videos (empty, not UTF-8, malformed)."""


class NoReadableVideoError(UserError, RuntimeError):
    """Every video of a list or folder is unreadable."""


class UnreadableVideoWarning(UserWarning):
    """A video was skipped because it could not be read (issued once per file per process)."""


def unreadable_videos() -> dict[str, str]:
    """A copy of this process's memo of unreadable videos, path -> reason."""
    return dict(_UNREADABLE_VIDEOS)


def _seed_of(key: list[int]) -> int:
    """A torch seed from ``key`` (numpy's SeedSequence mixes it; ``manual_seed`` wants < 2**63)."""
    return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0]) >> 1


def restore_unreadable(memo: dict[str, str]) -> None:
    """Add a saved memo (:func:`unreadable_videos`) to this process's, without warnings: a resumed
    run skips the videos it already knew as unreadable, drawing no random numbers for them, as the
    uninterrupted run did."""
    _UNREADABLE_VIDEOS.update(memo)


WARN_FILES = 5
"""Unreadable videos named one by one in this process; after them, one line says the rest are only counted."""
_warned = 0


def _remember_unreadable(error: VideoReadError, *, warn: bool = True) -> None:
    global _warned
    if error.path not in _UNREADABLE_VIDEOS:
        _UNREADABLE_VIDEOS[error.path] = error.reason
        if warn and _warned <= WARN_FILES:
            _warned += 1
            message = (f"skipping unreadable video {error.path}: {error.reason}" if _warned <= WARN_FILES else
                       f"more unreadable videos (the latest {error.path}: {error.reason}); the others are not named "
                       "one by one: env/skipped_videos counts them and the run summary gives the total")
            warnings.warn(message, UnreadableVideoWarning, stacklevel=3)


def report_unreadable(entries: list[str]) -> None:
    """Warn, once per file in this process, about the videos a DataLoader worker found unreadable.

    :param entries: the ``unreadable`` values of a batch's items (``path<TAB>reason`` lines).
    Used with ``report_in_items``: workers then stay silent and the main process, which outlives
    every epoch's workers and hands its memo to the next ones, warns once per file per run.
    """
    for entry in entries:
        for line in entry.splitlines():
            path, _, reason = line.partition("\t")
            _remember_unreadable(VideoReadError(path, reason))


def parse_list_file(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[tuple[str, int]]:
    """Read a list of ``path<TAB>label`` or ``path label`` lines.

    With a tab on the line, the path is everything before the last tab (it may hold spaces);
    otherwise the line splits on its last whitespace. Blank lines and ``#`` comments are
    ignored. Relative paths are joined to ``root`` when one is given.

    Raises:
        FileNotFoundError: no list file at ``path``.
        ValueError: a line without an integer label (naming file, line number and line), or no videos.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"video list file not found: {path}")
    videos = []
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors) is not a path
    except UnicodeDecodeError as error:
        line = Path(path).read_bytes()[: error.start].count(b"\n") + 1
        raise VideoDataError(f"video list file {path} is not UTF-8 text (line {line}: {error.reason}); "
                             "save it as UTF-8") from None
    for line_number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.rsplit("\t", 1) if "\t" in line else line.rsplit(None, 1)
        try:
            video_path, label = fields[0].strip(), int(fields[1])
            if not video_path:
                raise ValueError("empty path")
        except (IndexError, ValueError):
            raise VideoDataError(f"{path}, line {line_number}: expected 'path<TAB>label' or 'path label' "
                                 f"with an integer label, got {line!r}") from None
        if root is not None and not os.path.isabs(video_path):
            video_path = os.path.join(os.fspath(root), video_path)
        videos.append((video_path, label))
    if not videos:
        raise VideoDataError(f"video list file {path} lists no videos")
    return videos


def find_videos(root: str | os.PathLike) -> list[str]:
    """All video files under ``root`` (recursive, by extension, hidden entries skipped), sorted.

    Symlinked subfolders are followed, each real folder once (a link loop ends there)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {root}")
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found += [os.path.join(folder, name) for name in files
                  if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_EXTENSIONS
                  and os.path.isfile(os.path.join(folder, name))]
    found.sort()
    if not found:
        raise VideoDataError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) found under {root}")
    return found


class _VideoClipDataset(Dataset):
    """Clips from a fixed list of ``(path, label)``; see the module docstring for skipping and RNG.

    Items: ``video`` (3, T, input_size, input_size) float32, ImageNet-normalised; ``label`` int;
    ``index`` int (of the clip returned); ``skipped`` int (unreadable videos passed over).
    """

    def __init__(self, videos: list[tuple[str, int]], source: str, *, num_frames: int, sampling_rate: int,
                 input_size: int, train: bool = True, seed: int = 0, reader: str = "auto"):
        for name, value in (("num_frames", num_frames), ("sampling_rate", sampling_rate),
                            ("input_size", input_size)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.videos, self.source = videos, source
        self.num_frames, self.sampling_rate, self.input_size = num_frames, sampling_rate, input_size
        self.train, self.seed, self.reader = train, seed, reader
        self.transform = TrainClipTransform(input_size) if train else EvalClipTransform(input_size)
        self.epoch: int | None = None  # set by set_epoch
        self.report_in_items = False
        """True: a DataLoader worker does not warn about an unreadable video but names it in the item's
        ``unreadable`` (``path<TAB>reason`` lines) for :func:`report_unreadable` in the main process."""
        self._fetch_counts: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.videos)

    def unreadable_count(self) -> int:
        """How many of this dataset's videos are known to be unreadable (files, not passes over them)."""
        if not _UNREADABLE_VIDEOS:
            return 0
        paths = {path for path, _ in self.videos}
        return sum(path in paths for path in _UNREADABLE_VIDEOS)

    def set_epoch(self, epoch: int) -> None:
        """Seed train items from ``(seed, epoch, index)`` from now on (see the module docstring)."""
        self.epoch = int(epoch)

    def _item_seed(self, index: int) -> int:
        if self.epoch is not None:
            key = [self.seed % (1 << 64), self.epoch, index]
        else:
            worker = get_worker_info()
            fetch_count = self._fetch_counts.get(index, 0)
            self._fetch_counts[index] = fetch_count + 1
            key = [self.seed % (1 << 64), worker.seed if worker is not None else 0, fetch_count, index]
        return _seed_of(key)

    def __getitem__(self, index: int) -> dict:
        index = operator.index(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        seed = self._item_seed(index) if self.train else None
        skipped, found = 0, []
        quiet = self.report_in_items and get_worker_info() is not None
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            path, label = self.videos[candidate]
            if path in _UNREADABLE_VIDEOS:
                skipped += 1
                continue
            # a replacement's own generator: the clip does not depend on whether the bad videos before
            # it were read (drawing numbers before failing) or skipped from the memo
            generator = None if seed is None else torch.Generator().manual_seed(
                seed if offset == 0 else _seed_of([seed, candidate]))
            try:
                frames, _ = read_clip(path, self.num_frames, self.sampling_rate, train=self.train,
                                      generator=generator, reader=self.reader)
            except VideoReadError as error:
                _remember_unreadable(error, warn=not quiet)
                found.append(f"{error.path}\t{error.reason}")
                skipped += 1
                continue
            item = {"video": self.transform(frames, generator), "label": int(label),
                    "index": candidate, "skipped": skipped}
            if self.report_in_items:
                item["unreadable"] = "\n".join(found)
            return item
        path, _ = self.videos[index]
        raise NoReadableVideoError(f"all {len(self)} videos in {self.source} are unreadable "
                           f"(e.g. {path}: {_UNREADABLE_VIDEOS.get(path)}); see the warnings above")


class VideoListDataset(_VideoClipDataset):
    """Labelled clips listed in a text file (see ``parse_list_file``)."""

    def __init__(self, list_file: str | os.PathLike, *, root: str | os.PathLike | None = None, num_frames: int,
                 sampling_rate: int, input_size: int, train: bool = True, seed: int = 0, reader: str = "auto"):
        super().__init__(parse_list_file(list_file, root), f"list file {os.fspath(list_file)}",
                         num_frames=num_frames, sampling_rate=sampling_rate, input_size=input_size,
                         train=train, seed=seed, reader=reader)


class VideoFolderDataset(_VideoClipDataset):
    """Every video under a folder (recursive, sorted by path), unlabelled: ``label`` is -1."""

    def __init__(self, root: str | os.PathLike, *, num_frames: int, sampling_rate: int, input_size: int,
                 train: bool = True, seed: int = 0, reader: str = "auto"):
        super().__init__([(path, -1) for path in find_videos(root)], f"folder {os.fspath(root)}",
                         num_frames=num_frames, sampling_rate=sampling_rate, input_size=input_size,
                         train=train, seed=seed, reader=reader)
