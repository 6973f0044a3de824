"""Part 3: data throughput of one DataLoader worker on real video files (``--videos``)."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from typing import Any

import torch

from data import TrainClipTransform, UnreadableVideoWarning, VideoListDataset, VideoReadError, read_clip


def video_throughput(paths: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Per file: decode and augment seconds (or why it was skipped); then the dataset's clips/s."""
    transform = TrainClipTransform(args.input_size)
    generator = torch.Generator().manual_seed(0)
    files = []
    for path in paths:
        try:
            frames, _ = read_clip(path, args.num_frames, args.sampling_rate, train=True, generator=generator)
        except VideoReadError as error:
            files.append({"path": path, "skipped": error.reason})
            continue
        decode, augment = [], []
        for _ in range(args.data_repeats):
            start = time.perf_counter()
            frames, _ = read_clip(path, args.num_frames, args.sampling_rate, train=True, generator=generator)
            decoded = time.perf_counter()
            transform(frames, generator)
            decode.append(decoded - start)
            augment.append(time.perf_counter() - decoded)
        files.append({"path": path, "size": f"{frames.shape[2]}x{frames.shape[1]}",
                      "decode": statistics.median(decode), "augment": statistics.median(augment),
                      "total": statistics.median([d + a for d, a in zip(decode, augment)])})
    dataset_result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreadableVideoWarning)
        list_file = os.path.join(tmp, "videos.txt")
        with open(list_file, "w", encoding="utf-8") as out:
            out.writelines(f"{os.path.abspath(path)}\t0\n" for path in paths)
        dataset = VideoListDataset(list_file, num_frames=args.num_frames, sampling_rate=args.sampling_rate,
                                   input_size=args.input_size, train=True, seed=0)
        count, skipped = 0, 0
        try:
            start = time.perf_counter()
            for _ in range(args.data_repeats):
                for index in range(len(dataset)):
                    item = dataset[index]
                    count, skipped = count + 1, skipped + item["skipped"]
            dataset_result = {"clips": count, "seconds": time.perf_counter() - start, "skipped": skipped}
        except RuntimeError as error:  # every file unreadable
            dataset_result = {"error": str(error)}
        dataset_result["warnings"] = [str(w.message) for w in caught if issubclass(w.category, UnreadableVideoWarning)]
    return {"files": files, "dataset": dataset_result}
