"""Video data for TATS: a procedural motion dataset and list/folder datasets read with decord or PyAV.

Every item is a dict with ``video`` (3, T, H, W) float32 ImageNet-normalised, ``label`` int (-1
when unlabelled), ``index`` int and ``skipped`` int; synthetic items add ``motion`` (N,) bool.
"""

from data.build import DATASET_NAMES, build_dataset
from data.synthetic import MovingObject, SyntheticMotionVideos, render_clip, token_motion
from data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalClipTransform, TrainClipTransform, normalize_clip
from data.video_dataset import (UnreadableVideoWarning, VideoFolderDataset, VideoListDataset, parse_list_file,
                                unreadable_videos)
from data.video_io import READERS, VideoReadError, read_clip, read_frames, sample_frame_indices

__all__ = [
    "DATASET_NAMES", "build_dataset", "MovingObject", "SyntheticMotionVideos", "render_clip", "token_motion",
    "IMAGENET_MEAN", "IMAGENET_STD", "EvalClipTransform", "TrainClipTransform", "normalize_clip",
    "UnreadableVideoWarning", "VideoFolderDataset", "VideoListDataset", "parse_list_file", "unreadable_videos",
    "READERS", "VideoReadError", "read_clip", "read_frames", "sample_frame_indices",
]
