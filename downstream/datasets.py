"""Labelled data for the downstream tasks, from the ``data`` config group.

- training clips: the built-in synthetic "train" split or ``data.train_list``, through a
  clip transform (fine-tuning: :class:`downstream.video_aug.FinetuneClipTransform`; linear
  probing: none, i.e. the evaluation crop, or crop + flip);
- evaluation videos: the synthetic "val" split (``test.synthetic_clips`` clips, disjoint from
  training) or ``test.list``, every test view (:class:`downstream.evaluate.MultiViewDataset`).

Training randomness follows the project's datasets: clip ``i`` of epoch ``e`` draws its
window, RandAugment ops, crop and flip from a generator seeded by ``(seed, e, i)`` once
``set_epoch`` has been called, whatever the worker or resume point.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from configs.schema import ConfigError
from data.synthetic import SyntheticMotionVideos, synthetic_style
from data.video_dataset import VideoListDataset, parse_list_file
from downstream.evaluate import MultiViewDataset

ClipTransform = Callable[..., torch.Tensor]


class TransformedSynthetic(Dataset):
    """Synthetic clips ``(T, S, S, 3)`` uint8 through a clip transform (seeded per epoch and index).

    Items: ``video`` (3, T, size, size) float32, ``label`` int, ``index`` int, ``skipped`` 0.
    """

    def __init__(self, source: SyntheticMotionVideos, transform: ClipTransform, *, seed: int = 0):
        self.source, self.transform, self.seed = source, transform, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        frames, _, label = self.source.render(index)
        key = np.random.SeedSequence([self.seed % (1 << 64), self.epoch, index]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(key) >> 1)
        return {"video": self.transform(frames, generator), "label": label, "index": index, "skipped": 0}


def default_flip_prob(cfg: Any) -> float:
    """``train.flip_prob``, or 0 for the synthetic data (its labels are directions) and 0.5 otherwise."""
    if cfg.train.flip_prob is not None:
        return float(cfg.train.flip_prob)
    return 0.0 if cfg.data.name == "synthetic" else 0.5


def _synthetic(cfg: Any, *, input_size: int, patch_size: int, tubelet_size: int, split: str,
               num_clips: int) -> SyntheticMotionVideos:
    return SyntheticMotionVideos(num_clips, num_frames=cfg.data.num_frames, input_size=input_size,
                                 patch_size=patch_size, tubelet_size=tubelet_size, seed=cfg.seed, split=split,
                                 **synthetic_style(cfg.data))


def train_dataset(cfg: Any, *, input_size: int, patch_size: int, tubelet_size: int,
                  transform: ClipTransform | None) -> Dataset:
    """The labelled training clips; ``transform=None`` = the evaluation crop of the centred window."""
    if cfg.data.name == "synthetic":
        source = _synthetic(cfg, input_size=input_size, patch_size=patch_size, tubelet_size=tubelet_size,
                            split="train", num_clips=cfg.data.synthetic_clips)
        return source if transform is None else TransformedSynthetic(source, transform, seed=cfg.seed)
    dataset = VideoListDataset(cfg.data.train_list, root=cfg.data.root, num_frames=cfg.data.num_frames,
                               sampling_rate=cfg.data.sampling_rate, input_size=input_size,
                               train=transform is not None, seed=cfg.seed, reader=cfg.data.reader)
    if transform is not None:
        dataset.transform = transform  # random window and skipping from the dataset, the rest from us
    return dataset


def eval_dataset(cfg: Any, *, input_size: int, patch_size: int, tubelet_size: int) -> MultiViewDataset:
    """Every test view of the held-out videos."""
    if cfg.data.name == "synthetic":
        source = _synthetic(cfg, input_size=input_size, patch_size=patch_size, tubelet_size=tubelet_size,
                            split="val", num_clips=cfg.test.synthetic_clips)
    else:
        source = parse_list_file(cfg.test.list, cfg.data.root)
    return MultiViewDataset(source, num_frames=cfg.data.num_frames, sampling_rate=cfg.data.sampling_rate,
                            input_size=input_size, num_clips=cfg.test.num_clips, num_crops=cfg.test.num_crops,
                            reader=cfg.data.reader)


def infer_num_classes(cfg: Any) -> int:
    """``num_classes``, or from the data: 8 directions (synthetic), or the largest label + 1 (lists).

    Raises:
        ConfigError: a label outside ``[0, num_classes)``.
    """
    if cfg.data.name == "synthetic":
        labels = [len(SyntheticMotionVideos.CLASSES) - 1]
    else:
        labels = [label for _, label in parse_list_file(cfg.data.train_list, cfg.data.root)]
        labels += [label for _, label in parse_list_file(cfg.test.list, cfg.data.root)]
    low, high = min(labels), max(labels)
    if low < 0:
        raise ConfigError(f"labels must be >= 0 for classification, found {low} (data.train_list / test.list)")
    if cfg.num_classes is None:
        return high + 1
    if high >= cfg.num_classes:
        raise ConfigError(f"num_classes={cfg.num_classes} but the data has label {high}; "
                          f"use num_classes={high + 1} or null")
    return int(cfg.num_classes)
