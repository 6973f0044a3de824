"""List parsing, list/folder datasets, skipping bad videos, randomness, DataLoader use."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader

from data.transforms import IMAGENET_MEAN, IMAGENET_STD
from data.video_dataset import (UnreadableVideoWarning, VideoFolderDataset, VideoListDataset, parse_list_file,
                                unreadable_videos)
from tests.test_data_video_io import (grey_level, write_corrupt_mid_stream, write_video,
                                      write_zero_frame_video)

CLIP = dict(num_frames=4, sampling_rate=2, input_size=32)


def frame_greys(video: torch.Tensor) -> list[float]:
    """Undo the normalisation of channel 0 and average each frame. Shapes: (3, T, H, W) -> T values."""
    red = video[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    return (red.mean(dim=(1, 2)) * 255).tolist()


def write_list(path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


@pytest.fixture
def good_videos(tmp_path):
    return [write_video(tmp_path / f"good{k}.mp4", 20) for k in range(2)]


# ---- parse_list_file ------------------------------------------------------------------------

def test_parse_both_formats_comments_and_root(tmp_path):
    list_file = write_list(tmp_path / "list.txt", [
        "# a comment", "", "clips/a b.mp4\t3", "clips/c.mp4 4", "  /abs/d e.mp4   5  ", "x.mp4\t-1",
    ])
    assert parse_list_file(list_file) == [("clips/a b.mp4", 3), ("clips/c.mp4", 4), ("/abs/d e.mp4", 5),
                                          ("x.mp4", -1)]
    assert parse_list_file(list_file, root="/data")[:3] == [
        ("/data/clips/a b.mp4", 3), ("/data/clips/c.mp4", 4), ("/abs/d e.mp4", 5)]


@pytest.mark.parametrize("bad_line", ["lonely.mp4", "clip.mp4 three", "clip.mp4\t", "clip.mp4 1.5"])
def test_unparsable_line_names_file_line_number_and_line(tmp_path, bad_line):
    list_file = write_list(tmp_path / "bad.txt", ["# header", "ok.mp4 1", bad_line])
    with pytest.raises(ValueError) as caught:
        parse_list_file(list_file)
    message = str(caught.value)
    assert list_file in message and "line 3" in message and bad_line.strip() in message


def test_missing_and_empty_list_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        parse_list_file(tmp_path / "nowhere.txt")
    with pytest.raises(ValueError, match="no videos"):
        parse_list_file(write_list(tmp_path / "empty.txt", ["# nothing", ""]))


# ---- reading --------------------------------------------------------------------------------

def test_list_dataset_items(tmp_path, good_videos):
    list_file = write_list(tmp_path / "list.txt", [f"{good_videos[0]}\t7", f"{good_videos[1]} 2"])
    dataset = VideoListDataset(list_file, train=False, **CLIP)
    assert len(dataset) == 2
    item = dataset[1]
    assert set(item) == {"video", "label", "index", "skipped"}
    assert item["video"].shape == (3, 4, 32, 32) and item["video"].dtype == torch.float32
    assert (item["label"], item["index"], item["skipped"]) == (2, 1, 0)
    # eval: frames 6, 8, 10, 12 of 20 (centred), recognisable by their grey level
    assert frame_greys(item["video"]) == pytest.approx([grey_level(k) for k in (6, 8, 10, 12)], abs=3)


def test_too_short_video_repeats_its_last_frame_in_the_dataset(tmp_path):
    list_file = write_list(tmp_path / "list.txt", [f"{write_video(tmp_path / 'short.mp4', 3)} 0"])
    item = VideoListDataset(list_file, train=True, seed=0, **CLIP)[0]
    assert item["skipped"] == 0
    assert frame_greys(item["video"]) == pytest.approx([grey_level(k) for k in (0, 2, 2, 2)], abs=3)


def test_root_prefix_is_used(tmp_path, good_videos):
    list_file = write_list(tmp_path / "list.txt", ["good0.mp4 1"])
    assert VideoListDataset(list_file, root=tmp_path, train=False, **CLIP)[0]["skipped"] == 0


def test_bad_videos_are_skipped_counted_and_warned_once(tmp_path, good_videos):
    not_video = tmp_path / "text.mp4"
    not_video.write_text("plain text, not a video\n" * 10)
    bad = [str(tmp_path / "missing.mp4"), str(not_video), write_zero_frame_video(tmp_path / "zero.mp4"),
           write_corrupt_mid_stream(tmp_path / "corrupt.mp4")]
    lines = [f"{good_videos[0]} 0"] + [f"{path} {9}" for path in bad] + [f"{good_videos[1]} 5"]
    # whole-clip reads (20 frames) so that the mid-stream damage is always reached
    dataset = VideoListDataset(write_list(tmp_path / "list.txt", lines), num_frames=20, sampling_rate=1,
                               input_size=32, train=False)
    with pytest.warns(UnreadableVideoWarning) as caught:
        item = dataset[1]
    assert (item["index"], item["label"], item["skipped"]) == (5, 5, 4)
    assert len(caught) == 4
    for path, record in zip(bad, caught):
        assert path in str(record.message)
    assert "no such file" in str(caught[0].message) and "decoding frames" in str(caught[3].message)
    assert set(bad) <= set(unreadable_videos())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning for the same files would raise here
        again = dataset[3]
    assert (again["index"], again["skipped"]) == (5, 2)
    assert dataset[0]["skipped"] == 0


def test_skipping_wraps_around_the_end(tmp_path, good_videos):
    list_file = write_list(tmp_path / "list.txt", [f"{good_videos[0]} 4", f"{tmp_path / 'gone.mp4'} 1"])
    with pytest.warns(UnreadableVideoWarning, match="gone.mp4"):
        item = VideoListDataset(list_file, train=False, **CLIP)[1]
    assert (item["index"], item["label"], item["skipped"]) == (0, 4, 1)


def test_all_unreadable_raises(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00" * 100)
    list_file = write_list(tmp_path / "list.txt", [f"{tmp_path / 'a.mp4'} 0", f"{junk} 1", f"{tmp_path / 'b.mp4'} 2"])
    dataset = VideoListDataset(list_file, train=False, **CLIP)
    with pytest.warns(UnreadableVideoWarning), pytest.raises(RuntimeError, match="all 3 videos in list file"):
        dataset[0]
    with pytest.raises(RuntimeError, match="unreadable"):  # remembered: fails again, without decoding
        dataset[2]


def test_folder_dataset(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    paths = [write_video(tmp_path / "b" / "deep" / "z.mp4", 6), write_video(tmp_path / "a.MP4", 6),
             write_video(tmp_path / ".hidden" / "h.mp4", 6), write_video(tmp_path / "b" / "c.avi", 6, codec="mpeg4")]
    (tmp_path / "notes.txt").write_text("not listed")
    dataset = VideoFolderDataset(tmp_path, train=True, **CLIP)
    assert [path for path, _ in dataset.videos] == sorted([paths[1], paths[3], paths[0]])
    item = dataset[2]
    assert item["label"] == -1 and item["video"].shape == (3, 4, 32, 32) and item["skipped"] == 0
    with pytest.raises(FileNotFoundError, match="absent"):
        VideoFolderDataset(tmp_path / "absent", **CLIP)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos"):
        VideoFolderDataset(tmp_path / "empty", **CLIP)


# ---- randomness -----------------------------------------------------------------------------

def test_train_items_reproducible_per_seed_and_fresh_on_refetch(tmp_path, good_videos):
    list_file = write_list(tmp_path / "list.txt", [f"{good_videos[0]} 0"])
    first, second = (VideoListDataset(list_file, train=True, seed=1, **CLIP) for _ in range(2))
    draws = [first[0]["video"] for _ in range(4)]
    assert all(torch.equal(a, second[0]["video"]) for a in draws)  # same seed, same sequence
    assert not all(torch.equal(draws[0], d) for d in draws[1:])  # a refetch draws a new clip/crop
    other = VideoListDataset(list_file, train=True, seed=2, **CLIP)
    assert not all(torch.equal(a, other[0]["video"]) for a in draws)


def test_eval_items_are_deterministic(tmp_path, good_videos):
    dataset = VideoListDataset(write_list(tmp_path / "list.txt", [f"{good_videos[0]} 0"]), train=False, **CLIP)
    assert torch.equal(dataset[0]["video"], dataset[0]["video"])


# one persistent worker fetches every item each epoch: only the fetch count can vary its crops
@pytest.mark.parametrize("num_workers, persistent_workers", [(2, False), (1, True)])
def test_dataloader_workers_reproducible_given_its_generator(tmp_path, num_workers, persistent_workers):
    # noise videos so that different crops give different tensors
    videos = [write_video(tmp_path / f"n{k}.mp4", 12, noise=True) for k in range(4)]
    dataset = VideoListDataset(write_list(tmp_path / "list.txt", [f"{v} {k}" for k, v in enumerate(videos)]),
                               train=True, seed=0, num_frames=2, sampling_rate=2, input_size=16)

    def epochs(generator_seed: int, count: int = 2) -> list[dict]:
        loader = DataLoader(dataset, batch_size=2, shuffle=True, num_workers=num_workers, persistent_workers=persistent_workers,
                            generator=torch.Generator().manual_seed(generator_seed))
        return [[batch for batch in loader] for _ in range(count)]

    run, rerun, other = epochs(0), epochs(0), epochs(1, count=1)
    batch = run[0][0]
    assert batch["video"].shape == (2, 3, 2, 16, 16) and batch["label"].dtype == torch.int64
    flatten = lambda epoch: torch.cat([b["video"] for b in epoch])
    assert torch.equal(flatten(run[0]), flatten(rerun[0])) and torch.equal(flatten(run[1]), flatten(rerun[1]))
    order = lambda epoch: torch.cat([b["index"] for b in epoch])
    by_index = lambda epoch: flatten(epoch)[order(epoch).argsort()]
    assert not torch.equal(by_index(run[0]), by_index(run[1]))  # a new epoch, new crops
    assert not torch.equal(by_index(run[0]), by_index(other[0]))


def test_set_epoch_fixes_each_item_whatever_the_workers_or_resume_point(tmp_path):
    videos = [write_video(tmp_path / f"n{k}.mp4", 12, noise=True) for k in range(4)]
    dataset = VideoListDataset(write_list(tmp_path / "list.txt", [f"{v} {k}" for k, v in enumerate(videos)]),
                               train=True, seed=0, num_frames=2, sampling_rate=2, input_size=16)

    def clips(epoch: int, batches: list[list[int]], num_workers: int) -> dict[int, torch.Tensor]:
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                            generator=torch.Generator().manual_seed(num_workers))
        return {int(i): v for batch in loader for i, v in zip(batch["index"], batch["video"])}

    full = clips(3, [[2, 0], [3, 1]], num_workers=0)
    resumed = clips(3, [[3, 1]], num_workers=2)  # a run resumed after its first batch, with workers
    assert all(torch.equal(resumed[i], full[i]) for i in (3, 1))
    assert torch.equal(dataset[0]["video"], full[0]) and torch.equal(dataset[0]["video"], full[0])  # no drift
    next_epoch = clips(4, [[2, 0], [3, 1]], num_workers=0)
    assert not all(torch.equal(next_epoch[i], full[i]) for i in range(4))


def test_clip_source_warns_once_per_unreadable_file_across_workers_and_epochs(tmp_path, good_videos, capfd):
    from envs import ClipSource

    bad = [str(tmp_path / f"gone{k}.mp4") for k in range(2)]
    lines = [f"{good_videos[0]} 0", f"{bad[0]} 1", f"{good_videos[1]} 2", f"{bad[1]} 3"]
    dataset = VideoListDataset(write_list(tmp_path / "list.txt", lines), train=False, **CLIP)
    source = ClipSource(dataset, 2, num_workers=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        skipped = sum(int(source.next_batch()["skipped"].sum()) for _ in range(3 * source.steps_per_epoch))
    messages = [str(w.message) for w in caught if issubclass(w.category, UnreadableVideoWarning)]
    assert len(messages) == 2 and all(any(path in m for m in messages) for path in bad), messages
    assert skipped == 6  # counted every time they are passed over
    assert "skipping unreadable" not in capfd.readouterr().err  # the workers stayed silent


def test_a_list_file_with_a_byte_order_mark_keeps_its_first_video(tmp_path):
    from data.video_dataset import parse_list_file

    listing = tmp_path / "list.txt"
    listing.write_text("first.mp4 3\r\nsecond.mp4 4\n", encoding="utf-8-sig")
    assert parse_list_file(listing, root=tmp_path) == [(str(tmp_path / "first.mp4"), 3),
                                                       (str(tmp_path / "second.mp4"), 4)]


def test_a_folder_follows_symlinked_subfolders_once(tmp_path):
    from data.video_dataset import find_videos

    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "a").mkdir(parents=True)
    elsewhere.mkdir()
    for path in (root / "a" / "x.mp4", elsewhere / "y.mp4", root / "a" / "notes.txt"):
        path.write_bytes(b"")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)  # a loop back to the top
    assert find_videos(root) == [str(root / "a" / "x.mp4"), str(root / "linked" / "y.mp4")]


def test_thousands_of_missing_files_are_named_five_times_then_counted(tmp_path):
    import warnings

    from data import video_dataset

    videos = [(str(tmp_path / f"missing-{k}.mp4"), 0) for k in range(40)]
    dataset = video_dataset._VideoClipDataset(videos, "a list", num_frames=4, sampling_rate=1, input_size=32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(video_dataset.NoReadableVideoError):
            dataset[0]
        with pytest.raises(video_dataset.NoReadableVideoError):
            dataset[7]  # every file already known: no more warnings
    messages = [str(w.message) for w in caught if issubclass(w.category, video_dataset.UnreadableVideoWarning)]
    assert len(messages) == video_dataset.WARN_FILES + 1 and "not named one by one" in messages[-1]
    assert dataset.unreadable_count() == 40
