"""Shared by every test: each test starts with this process's memo of unreadable videos empty (a run
in a fresh process does), so the warnings a test expects do not depend on the tests before it."""

import pytest


@pytest.fixture(autouse=True)
def fresh_unreadable_video_memo(monkeypatch):
    from data import video_dataset

    monkeypatch.setattr(video_dataset, "_UNREADABLE_VIDEOS", {})
    monkeypatch.setattr(video_dataset, "_warned", 0)
