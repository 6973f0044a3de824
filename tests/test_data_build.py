"""build_dataset: dispatch by name and argument errors."""

from __future__ import annotations

import pytest

from data import SyntheticMotionVideos, VideoFolderDataset, VideoListDataset, build_dataset
from tests.test_data_video_io import write_video

SIZES = dict(num_frames=4, sampling_rate=2, input_size=32, patch_size=16, tubelet_size=2)


def test_synthetic_train_and_eval_splits_differ():
    train = build_dataset("synthetic", synthetic_clips=5, seed=3, **SIZES)
    evaluation = build_dataset("synthetic", synthetic_clips=5, seed=3, train=False, **SIZES)
    assert isinstance(train, SyntheticMotionVideos) and len(train) == 5
    assert (train.num_frames, train.input_size, train.patch_size, train.tubelet_size) == (4, 32, 16, 2)
    assert (train.split, evaluation.split) == ("train", "val")
    assert not (train.frames(0) == evaluation.frames(0)).all()


def test_list_and_folder(tmp_path):
    video = write_video(tmp_path / "v.mp4", 8)
    (tmp_path / "list.txt").write_text("v.mp4 3\n")
    listed = build_dataset("list", train_list=str(tmp_path / "list.txt"), root=str(tmp_path), train=False, **SIZES)
    assert isinstance(listed, VideoListDataset) and listed.videos == [(video, 3)] and not listed.train
    assert listed[0]["video"].shape == (3, 4, 32, 32)
    folder = build_dataset("folder", root=str(tmp_path), seed=4, **SIZES)
    assert isinstance(folder, VideoFolderDataset) and folder.videos == [(video, -1)] and folder.seed == 4


@pytest.mark.parametrize("name, extra, message", [
    ("kinetics", {}, "data.name must be one of"),
    ("list", {}, "data=list needs data.train_list"),
    ("folder", {}, "data=folder needs data.root"),
    ("synthetic", {"synthetic_clips": 0}, "data.synthetic_clips"),
    ("synthetic", {"input_size": 40}, r"data.input_size \(40\) must be a multiple of data.patch_size"),
    ("synthetic", {"num_frames": 5}, r"data.num_frames \(5\) must be a multiple of data.tubelet_size"),
    ("synthetic", {"sampling_rate": 0}, "data.sampling_rate"),
])
def test_bad_arguments_name_the_argument(name, extra, message):
    with pytest.raises(ValueError, match=message):
        build_dataset(name, **{**SIZES, **extra})
