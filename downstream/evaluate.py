"""Multi-view testing (paper Table 7: temporal clips x 3 spatial crops) and top-k accuracy.

VideoMAE's test protocol, on decoded uint8 frames:

- temporal views: ``num_clips`` windows of ``num_frames`` frames at stride ``sampling_rate``,
  their starts evenly spaced from the first possible to the last possible one (one window,
  centred, when ``num_clips == 1``; a video no longer than a window gives one window);
- spatial views: the frames are resized so the short side is ``input_size``, then
  ``num_crops`` square crops are taken along the long side, evenly spaced from one end to the
  other (left/centre/right for landscape, top/centre/bottom for portrait; one centred crop
  when ``num_crops == 1``; a square frame gives one crop);
- the video's prediction is the mean of the softmax over all its views; top-1 and top-5
  are computed on that mean.

A view that repeats another (a short video, a square frame) is only computed once: the
views are a grid of distinct windows x distinct crops, so each distinct view carries the
same weight and the mean equals VideoMAE's mean over the full ``num_clips x num_crops``
grid. The built-in synthetic clips are square and exactly one window long, so they have a
single view.

An unreadable video is not replaced by another one (as training does): it is skipped with
a warning and counted in ``EvalResult.skipped``; accuracies are over the videos read.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from data.synthetic import SyntheticMotionVideos
from data.transforms import normalize_clip
from data.video_dataset import NoReadableVideoError, UnreadableVideoWarning
from data.video_io import VideoReadError, clip_span, read_frames
from downstream.video_aug import resize_frames


# ---- the views

def window_starts(video_length: int, num_frames: int, sampling_rate: int, num_clips: int) -> list[int]:
    """First frame of each temporal view: evenly spaced over ``[0, length - span]``, distinct ones only."""
    slack = max(video_length - clip_span(num_frames, sampling_rate), 0)
    if num_clips == 1:
        return [slack // 2]
    if slack == 0:
        return [0]
    return [int(i * slack / (num_clips - 1)) for i in range(num_clips)]


def window_indices(video_length: int, num_frames: int, sampling_rate: int, num_clips: int) -> np.ndarray:
    """Frame indices of every temporal view, clamped to the video (short videos repeat the last frame).

    Shapes:
        returns ``(W, num_frames)`` int64, W = number of distinct windows.
    """
    starts = np.asarray(window_starts(video_length, num_frames, sampling_rate, num_clips), dtype=np.int64)
    indices = starts[:, None] + sampling_rate * np.arange(num_frames, dtype=np.int64)[None, :]
    return np.minimum(indices, video_length - 1)


def crop_offsets(long_side: int, input_size: int, num_crops: int) -> list[int]:
    """Offsets of the square crops along the long side: evenly spaced, both ends included."""
    slack = long_side - input_size
    if num_crops == 1:
        return [slack // 2]
    if slack == 0:
        return [0]
    return [int(j * slack / (num_crops - 1)) for j in range(num_crops)]


def spatial_views(frames: np.ndarray | torch.Tensor, input_size: int, num_crops: int) -> torch.Tensor:
    """Short side to ``input_size``, then ``num_crops`` crops along the long side, normalised.

    Shapes:
        frames ``(T, H, W, 3)`` uint8 -> ``(C, 3, T, input_size, input_size)`` float32, C distinct crops.
    """
    frames = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    height, width = frames.shape[1:3]
    scale = input_size / min(height, width)
    new_h = input_size if height <= width else round(height * scale)
    new_w = input_size if width <= height else round(width * scale)
    frames = resize_frames(frames, new_h, new_w)
    crops = []
    for offset in crop_offsets(max(new_h, new_w), input_size, num_crops):
        if new_h > new_w:  # portrait: top / centre / bottom
            crop = frames[:, offset:offset + input_size, :input_size]
        else:  # landscape (or square): left / centre / right
            crop = frames[:, :input_size, offset:offset + input_size]
        crops.append(normalize_clip(crop))
    return torch.stack(crops)


def read_windows(path: str, num_frames: int, sampling_rate: int, num_clips: int, *,
                 reader: str = "auto") -> np.ndarray:
    """Decode the temporal views of a video file, each frame once (``reader``: see :func:`data.video_io.read_frames`).

    Raises:
        VideoReadError: missing file, not a video, no frames, or a decode failure.

    Shapes:
        returns ``(W, num_frames, H, W_px, 3)`` uint8.
    """
    frames, _ = read_frames(path, lambda length: window_indices(length, num_frames, sampling_rate, num_clips),
                            reader=reader)
    return frames


class MultiViewDataset(Dataset):
    """Every distinct test view of each video of a labelled source.

    :param source: a :class:`data.SyntheticMotionVideos` (its clip is one window, frames
        consecutive) or a list of ``(path, label)`` (e.g. :func:`data.parse_list_file`).
    :param reader: video decoder for a list, ``auto``, ``decord`` or ``pyav`` (``data.reader``).

    Items: ``views`` ``(V, 3, T, S, S)`` float32 (V = 0 when the video is unreadable),
    ``label`` int, ``index`` int, ``skipped`` 0 or 1.
    """

    def __init__(self, source: SyntheticMotionVideos | list[tuple[str, int]], *, num_frames: int,
                 sampling_rate: int, input_size: int, num_clips: int, num_crops: int, reader: str = "auto"):
        self.source, self.reader = source, reader
        self.num_frames, self.sampling_rate, self.input_size = num_frames, sampling_rate, input_size
        self.num_clips, self.num_crops = num_clips, num_crops

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        if isinstance(self.source, SyntheticMotionVideos):
            frames, _, label = self.source.render(index)
            windows = frames[window_indices(len(frames), self.num_frames, 1, self.num_clips)]
        else:
            path, label = self.source[index]
            try:
                windows = read_windows(path, self.num_frames, self.sampling_rate, self.num_clips,
                                       reader=self.reader)
            except VideoReadError as error:
                warnings.warn(f"evaluation skips unreadable video {error.path}: {error.reason}",
                              UnreadableVideoWarning, stacklevel=2)
                empty = torch.zeros(0, 3, self.num_frames, self.input_size, self.input_size)
                return {"views": empty, "label": int(label), "index": index, "skipped": 1}
        views = torch.cat([spatial_views(window, self.input_size, self.num_crops) for window in windows])
        return {"views": views, "label": int(label), "index": index, "skipped": 0}


def collate_views(items: list[dict]) -> dict[str, torch.Tensor]:
    """Concatenate the views of a batch of videos; ``video`` maps each view to its video.

    Shapes:
        views ``(sum V, 3, T, S, S)``, video ``(sum V,)`` int64 in [0, B), label/index/skipped ``(B,)``.
    """
    counts = torch.tensor([len(item["views"]) for item in items])
    return {
        "views": torch.cat([item["views"] for item in items]),
        "video": torch.repeat_interleave(torch.arange(len(items)), counts),
        "label": torch.tensor([item["label"] for item in items]),
        "index": torch.tensor([item["index"] for item in items]),
        "skipped": torch.tensor([item["skipped"] for item in items]),
    }


# ---- the numbers

def average_views(probs_V: torch.Tensor, video_V: torch.Tensor, num_videos: int) -> torch.Tensor:
    """Mean of the per-view class probabilities of each video.

    Shapes:
        probs_V ``(V, C)``, video_V ``(V,)`` int64 in [0, num_videos) -> ``(num_videos, C)``;
        a video without views gets NaN.
    """
    sums = torch.zeros(num_videos, probs_V.shape[1], dtype=probs_V.dtype, device=probs_V.device)
    sums.index_add_(0, video_V, probs_V)
    counts = torch.bincount(video_V, minlength=num_videos).to(probs_V.dtype).unsqueeze(1)
    return sums / counts


def topk_correct(probs: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """How many rows have their label among the k highest scores, per k (k capped at C, as timm)."""
    top = probs.topk(min(max(ks), probs.shape[1]), dim=1).indices  # (B, kmax)
    hits = top == labels.unsqueeze(1)
    return {k: int(hits[:, :k].any(dim=1).sum()) for k in ks}


@dataclass
class EvalResult:
    """Multi-view test results: accuracies in percent over the ``num_videos`` read."""

    top1: float
    top5: float
    loss: float
    """Mean negative log of the view-averaged probability of the true class."""
    num_videos: int
    skipped: int
    views_per_video: float

    def scalars(self, prefix: str = "eval") -> dict[str, float]:
        return {f"{prefix}/top1": self.top1, f"{prefix}/top5": self.top5, f"{prefix}/loss": self.loss,
                f"{prefix}/num_videos": float(self.num_videos), f"{prefix}/skipped_videos": float(self.skipped)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device, *, amp: bool = False,
             view_batch: int = 64, progress: bool = False) -> EvalResult:
    """Multi-view top-1/top-5 of ``model`` (clips ``(B, 3, T, H, W)`` -> logits) over ``loader``.

    ``loader`` yields :func:`collate_views` batches. Under ``torch.distributed`` each rank
    passes its own shard of the videos; the counts are summed over ranks.
    """
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    totals = torch.zeros(6, dtype=torch.float64, device=device)  # top1, top5, nll, videos, skipped, views
    for batch in tqdm(loader, desc="eval", dynamic_ncols=True, disable=not progress, leave=False):
        views, video = batch["views"].to(device, non_blocking=True), batch["video"].to(device)
        labels, num_videos = batch["label"].to(device), len(batch["label"])
        logits = []
        for start in range(0, len(views), view_batch):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
                logits.append(model(views[start:start + view_batch]).float())
        if logits:
            probs = average_views(torch.cat(logits).softmax(dim=1), video, num_videos)
            read = ~torch.isnan(probs[:, 0])
            probs, labels = probs[read], labels[read]
            correct = topk_correct(probs, labels)
            nll = -probs.gather(1, labels.unsqueeze(1)).clamp_min(1e-12).log().sum()
            totals += torch.tensor([correct[1], correct[5], float(nll), len(labels), 0, len(views)],
                                   dtype=torch.float64, device=device)
        totals[4] += float(batch["skipped"].sum())
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    model.train(was_training)
    top1, top5, nll, videos, skipped, num_views = totals.tolist()
    if videos == 0:  # an accuracy over nothing is not 0 %: say so (every rank reduced the same totals)
        raise NoReadableVideoError(f"none of the {int(skipped)} test videos could be read (see the warnings "
                                   "above): there is nothing to evaluate on")
    denominator = videos
    return EvalResult(top1=100.0 * top1 / denominator, top5=100.0 * top5 / denominator, loss=nll / denominator,
                      num_videos=int(videos), skipped=int(skipped), views_per_video=num_views / denominator)


def make_eval_loader(dataset: Dataset, *, batch_size: int, num_workers: int, rank: int = 0,
                     world_size: int = 1) -> DataLoader:
    """Videos ``rank, rank + world, ...`` (no padding, so every video counts once over all ranks).

    The loader has its own generator: iterating it leaves the global RNG alone, so a run that
    evaluates at a different point (e.g. before stopping) draws the same training randomness.
    """
    shard = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world_size)))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      collate_fn=collate_views, generator=torch.Generator().manual_seed(0))
