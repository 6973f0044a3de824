"""build_dataset: pick a dataset by name from config values (a thin dispatcher)."""

from __future__ import annotations

from torch.utils.data import Dataset

from data.synthetic import SyntheticMotionVideos
from data.video_dataset import VideoFolderDataset, VideoListDataset

DATASET_NAMES = ("synthetic", "list", "folder")


def build_dataset(name: str, *, train_list: str | None = None, root: str | None = None, num_frames: int,
                  sampling_rate: int, input_size: int, patch_size: int, tubelet_size: int, train: bool = True,
                  seed: int = 0, synthetic_clips: int = 512, synthetic_background: str = "textured",
                  synthetic_objects: str = "striped", synthetic_contrast: str = "random",
                  synthetic_fresh: bool = False, reader: str = "auto") -> Dataset:
    """Build the ``synthetic``, ``list`` or ``folder`` dataset.

    ``synthetic`` ignores ``sampling_rate``, ``train_list`` and ``root``, and draws its eval clips
    from a split disjoint from its train clips. ``list`` reads ``train_list`` (relative paths
    joined to ``root`` when given); ``folder`` reads every video under ``root``; both decode with
    ``reader`` (``auto``, ``decord`` or ``pyav``, see :func:`data.video_io.resolve_reader`).

    Raises:
        ValueError: an unknown name, a missing argument, or sizes that do not tile into tokens.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"data.name must be one of {DATASET_NAMES}, got {name!r}")
    for arg, value in (("num_frames", num_frames), ("sampling_rate", sampling_rate), ("input_size", input_size),
                       ("patch_size", patch_size), ("tubelet_size", tubelet_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"data.{arg} must be a positive int, got {value!r}")
    if input_size % patch_size:
        raise ValueError(f"data.input_size ({input_size}) must be a multiple of data.patch_size ({patch_size})")
    if num_frames % tubelet_size:
        raise ValueError(f"data.num_frames ({num_frames}) must be a multiple of data.tubelet_size ({tubelet_size})")
    clip = dict(num_frames=num_frames, sampling_rate=sampling_rate, input_size=input_size, train=train, seed=seed,
                reader=reader)
    if name == "synthetic":
        if not isinstance(synthetic_clips, int) or synthetic_clips < 1:
            raise ValueError(f"data.synthetic_clips must be a positive int, got {synthetic_clips!r}")
        return SyntheticMotionVideos(synthetic_clips, num_frames=num_frames, input_size=input_size,
                                     patch_size=patch_size, tubelet_size=tubelet_size, seed=seed,
                                     split="train" if train else "val", background=synthetic_background,
                                     objects=synthetic_objects, contrast=synthetic_contrast,
                                     fresh=synthetic_fresh and train)
    if name == "list":
        if not train_list:
            raise ValueError("data=list needs data.train_list (a file of 'path<TAB>label' lines)")
        return VideoListDataset(train_list, root=root, **clip)
    if not root:
        raise ValueError("data=folder needs data.root (a folder searched recursively for videos)")
    return VideoFolderDataset(root, **clip)
