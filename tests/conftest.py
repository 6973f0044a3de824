"""Shared by every test: the entry points' fast start (runtime/fast_start.py: Tianshou's numba kernels
as plain Python, for this process and every process a test starts), and each test starts with this
process's memo of unreadable videos empty (a run in a fresh process does), so the warnings a test
expects do not depend on the tests before it."""

import os

os.environ.setdefault("NUMBA_DISABLE_JIT", "1")  # before anything imports Tianshou (and numba)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_unreadable_video_memo(monkeypatch):
    from data import video_dataset

    monkeypatch.setattr(video_dataset, "_UNREADABLE_VIDEOS", {})
    monkeypatch.setattr(video_dataset, "_warned", 0)
