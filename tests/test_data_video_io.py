"""Frame index sampling and decord reading, on clips written here with PyAV."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from data.video_io import VideoReadError, read_clip, sample_frame_indices

HEIGHT, WIDTH = 48, 64


def grey_level(frame_index: int) -> int:
    """Frame k of a test clip is uniformly this grey, so a decoded frame tells its index."""
    return 5 + 10 * frame_index


def write_video(path, num_frames: int, *, noise: bool = False, codec: str = "libx264", fps: int = 10,
                width: int = WIDTH) -> str:
    """Write a small yuv420p clip: uniform grey frames (grey_level) or, with noise, random pixels."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, HEIGHT, "yuv420p"
        for k in range(num_frames):
            if noise:
                frame = rng.integers(0, 256, (HEIGHT, width, 3), dtype=np.uint8)
            else:
                frame = np.full((HEIGHT, width, 3), grey_level(k), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return str(path)


def write_corrupt_mid_stream(path) -> str:
    """A 20-frame mp4 whose container is intact but whose second half of frame data is 0xFF.

    decord opens it and (usually) decodes the first frames, then fails, like decord's corrupted.mp4.
    """
    write_video(path, 20, noise=True)  # noise: large frames, so the damage lands on late frames only
    data = bytearray(path.read_bytes())
    media_start, index_start = data.find(b"mdat"), data.find(b"moov")
    assert 0 < media_start < index_start, "expected PyAV's mp4 layout: frame data, then the index"
    damage_from = media_start + (index_start - media_start) // 2
    data[damage_from:index_start - 8] = b"\xff" * (index_start - 8 - damage_from)
    path.write_bytes(bytes(data))
    return str(path)


def write_zero_frame_video(path) -> str:
    """A valid mp4 header with a video stream and no frames at all."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        container.start_encoding()
    return str(path)


def decoded_frame_indices(frames: np.ndarray) -> list[int]:
    """Invert grey_level on decoded frames (compression moves the grey by a unit or two)."""
    means = frames.reshape(len(frames), -1).mean(axis=1)
    return [round((m - 5) / 10) for m in means]


# ---- sample_frame_indices -------------------------------------------------------------------

def test_eval_indices_are_centred():
    # span = 3 * 2 + 1 = 7 of 20 frames: 13 to spare, start at 13 // 2 = 6
    assert sample_frame_indices(20, 4, 2, train=False).tolist() == [6, 8, 10, 12]


def test_train_indices_cover_every_start_that_fits():
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(500):
        indices = sample_frame_indices(20, 4, 2, train=True, generator=generator)
        assert np.all(np.diff(indices) == 2)
        starts.add(int(indices[0]))
    assert starts == set(range(14))  # 0 .. 20 - 7


def test_short_video_repeats_last_frame():
    assert sample_frame_indices(3, 5, 2, train=True).tolist() == [0, 2, 2, 2, 2]
    assert sample_frame_indices(3, 4, 1, train=False).tolist() == [0, 1, 2, 2]


def test_train_indices_reproducible_with_numpy_or_torch_generators():
    draw = lambda g: [sample_frame_indices(100, 4, 3, train=True, generator=g)[0] for _ in range(5)]
    assert draw(np.random.default_rng(7)) == draw(np.random.default_rng(7))
    assert draw(torch.Generator().manual_seed(7)) == draw(torch.Generator().manual_seed(7))


# ---- read_clip --------------------------------------------------------------------------------

def test_read_clip_returns_the_sampled_frames(tmp_path):
    path = write_video(tmp_path / "grey.mp4", 20)
    frames, indices = read_clip(path, 4, 2, train=False)
    assert frames.shape == (4, HEIGHT, WIDTH, 3) and frames.dtype == np.uint8
    assert indices.tolist() == [6, 8, 10, 12]
    assert decoded_frame_indices(frames) == [6, 8, 10, 12]


@pytest.mark.parametrize("width", [48, 72])
def test_widths_decord_cannot_copy_fall_back_to_pyav(tmp_path, width):
    import decord

    path = write_video(tmp_path / f"narrow{width}.mp4", 20, width=width)
    with pytest.raises(decord.DECORDError, match="DECORDArrayCopyFromTo"):  # the decord bug worked around
        decord.VideoReader(path, num_threads=1).get_batch([0, 1])
    frames, indices = read_clip(path, 4, 2, train=False)
    assert frames.shape == (4, HEIGHT, width, 3) and frames.dtype == np.uint8
    assert decoded_frame_indices(frames) == indices.tolist() == [6, 8, 10, 12]


def test_too_short_video_repeats_its_last_frame(tmp_path):
    path = write_video(tmp_path / "three.mp4", 3)
    frames, indices = read_clip(path, 6, 2, train=True, generator=torch.Generator().manual_seed(0))
    assert indices.tolist() == [0, 2, 2, 2, 2, 2]
    assert decoded_frame_indices(frames) == [0, 2, 2, 2, 2, 2]


def test_missing_file(tmp_path):
    with pytest.raises(VideoReadError, match="no such file") as caught:
        read_clip(tmp_path / "absent.mp4", 4, 1, train=False)
    assert caught.value.path == str(tmp_path / "absent.mp4")


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoReadError, match="cannot open as a video"):
        read_clip(path, 4, 1, train=False)


def test_zero_frame_video_fails_at_open(tmp_path):
    # decord refuses it when opening ("cannot find video stream"), before any frame count exists
    with pytest.raises(VideoReadError, match="cannot open as a video"):
        read_clip(write_zero_frame_video(tmp_path / "empty.mp4"), 4, 1, train=False)


def test_reader_reporting_zero_frames(tmp_path, monkeypatch):
    import decord

    class NoFrames:
        def __init__(self, *args, **kwargs):
            pass

        def __len__(self):
            return 0

    monkeypatch.setattr(decord, "VideoReader", NoFrames)
    path = tmp_path / "x.mp4"
    path.write_bytes(b"\0")
    with pytest.raises(VideoReadError, match="no frames"):
        read_clip(path, 4, 1, train=False)


def test_truncated_mp4_fails_at_open(tmp_path):
    path = tmp_path / "half.mp4"
    write_video(path, 20)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the index (moov) is at the end
    with pytest.raises(VideoReadError, match="cannot open as a video"):
        read_clip(path, 4, 1, train=False)


def test_corrupt_mid_stream_reads_early_frames_then_fails(tmp_path):
    import decord

    path = write_corrupt_mid_stream(tmp_path / "corrupt.mp4")
    reader = decord.VideoReader(path, num_threads=1, ctx=decord.cpu(0))
    assert len(reader) == 20  # the container and its index are intact: opening succeeds
    # Early frames usually decode too, but not always: decord's decoder thread reads ahead and
    # can hit the damage first, depending on timing. So only the sure failure is tested.
    with pytest.raises(VideoReadError, match="decoding frames 0..19 of 20 failed") as caught:
        read_clip(path, 20, 1, train=False)
    assert "DECORDError" in caught.value.reason


# ---- readers: decord and PyAV give the same frames --------------------------------------------

def exported_clip(tmp_path) -> str:
    """A built-in clip written as an mp4 (moving objects, so frames differ from each other)."""
    from data import SyntheticMotionVideos

    videos = SyntheticMotionVideos(1, num_frames=16, input_size=64, patch_size=16, tubelet_size=2, seed=3)
    return open(videos.export(tmp_path)).readline().split("\t")[0]


def test_decord_and_pyav_read_the_same_clip(tmp_path):
    path = exported_clip(tmp_path)
    decord_frames, decord_indices = read_clip(path, 6, 3, train=False, reader="decord")
    pyav_frames, pyav_indices = read_clip(path, 6, 3, train=False, reader="pyav")
    assert decord_indices.tolist() == pyav_indices.tolist() == [0, 3, 6, 9, 12, 15]
    assert pyav_frames.shape == decord_frames.shape == (6, 64, 64, 3) and pyav_frames.dtype == np.uint8
    assert np.abs(decord_frames.astype(int) - pyav_frames).max() <= 2  # same decoder library underneath
    assert np.abs(pyav_frames[0].astype(int) - pyav_frames[-1]).mean() > 1  # the frames do differ
    train = [read_clip(path, 4, 2, train=True, generator=torch.Generator().manual_seed(5), reader=name)
             for name in ("decord", "pyav")]
    assert train[0][1].tolist() == train[1][1].tolist()
    np.testing.assert_allclose(train[0][0], train[1][0], atol=2)


def test_evaluation_windows_go_through_both_readers(tmp_path):
    from downstream.evaluate import read_windows

    path = exported_clip(tmp_path)
    windows = [read_windows(path, 4, 2, 3, reader=name) for name in ("decord", "pyav")]
    assert windows[0].shape == windows[1].shape == (3, 4, 64, 64, 3)
    np.testing.assert_allclose(windows[0], windows[1], atol=2)


@pytest.mark.parametrize("reader", ["decord", "pyav"])
def test_each_reader_reads_grey_frames_and_repeats_the_last_of_a_short_video(tmp_path, reader):
    frames, indices = read_clip(write_video(tmp_path / "grey.mp4", 20), 4, 2, train=False, reader=reader)
    assert decoded_frame_indices(frames) == indices.tolist() == [6, 8, 10, 12]
    frames, indices = read_clip(write_video(tmp_path / "three.mp4", 3), 6, 2, train=False, reader=reader)
    assert decoded_frame_indices(frames) == indices.tolist() == [0, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("reader", ["decord", "pyav"])
def test_each_reader_names_unreadable_files(tmp_path, reader):
    with pytest.raises(VideoReadError, match="no such file"):
        read_clip(tmp_path / "absent.mp4", 4, 1, train=False, reader=reader)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoReadError, match="cannot open as a video"):
        read_clip(text, 4, 1, train=False, reader=reader)
    truncated = tmp_path / "half.mp4"
    write_video(truncated, 20)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    with pytest.raises(VideoReadError, match="cannot open as a video"):
        read_clip(truncated, 4, 1, train=False, reader=reader)
    with pytest.raises(VideoReadError, match="cannot open as a video"):  # no stream: neither finds one
        read_clip(write_zero_frame_video(tmp_path / "empty.mp4"), 4, 1, train=False, reader=reader)


def test_auto_falls_back_to_pyav_where_decord_is_missing(tmp_path, monkeypatch):
    import sys

    from data import VideoListDataset
    from data import video_io

    assert video_io.resolve_reader("auto") == "decord"  # installed here
    with pytest.raises(ValueError, match="data.reader must be one of"):
        video_io.resolve_reader("opencv")
    video_io.decord_available.cache_clear()
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now fails, as on macOS arm64
    try:
        assert not video_io.decord_available()
        assert video_io.resolve_reader("auto") == "pyav"
        with pytest.raises(ValueError, match="use data.reader=pyav"):
            video_io.resolve_reader("decord")
        path = write_video(tmp_path / "grey.mp4", 20)
        (tmp_path / "list.txt").write_text(f"{path}\t1\n")
        item = VideoListDataset(tmp_path / "list.txt", num_frames=4, sampling_rate=2, input_size=32, train=False)[0]
        assert item["video"].shape == (3, 4, 32, 32) and item["skipped"] == 0
    finally:
        video_io.decord_available.cache_clear()


def test_decord_is_required_only_where_it_has_wheels():
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    requirements = [Requirement(line) for line in pyproject["project"]["dependencies"]]
    decord = next(r for r in requirements if r.name == "decord")
    assert any(r.name == "av" and r.marker is None for r in requirements)  # PyAV everywhere
    wheels = {("linux", "x86_64"): True, ("win32", "AMD64"): True, ("linux", "aarch64"): False,
              ("darwin", "arm64"): False, ("darwin", "x86_64"): False}
    for (platform, machine), required in wheels.items():
        assert decord.marker.evaluate({"sys_platform": platform, "platform_machine": machine}) is required
