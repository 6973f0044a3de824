"""tools.subset_list: a seeded, per-class proportional subset of a list file."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from data.video_dataset import parse_list_file
from tools.subset_list import main, subset_lines

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def full_list(tmp_path):
    # 20 videos of class 0, 10 of class 1, 3 of class 2; tabs, spaces in a path, a comment, a blank line
    lines = ["# a comment", ""]
    lines += [f"k400/a/{i:02d}.mp4\t0" for i in range(20)]
    lines += [f"k400/b b/{i:02d}.mp4\t1" for i in range(10)]
    lines += [f"k400/c/{i}.mp4 2" for i in range(3)]
    path = tmp_path / "full.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_each_class_keeps_its_share_by_hand(full_list):
    lines = subset_lines(full_list, 0.15, seed=0)
    labels = Counter(int(line.rsplit(None, 1)[1]) for line in lines)
    # 0.15 x 20 = 3; 0.15 x 10 = 1.5 -> 2; 0.15 x 3 = 0.45 -> 0, kept at 1
    assert labels == {0: 3, 1: 2, 2: 1}
    full = full_list.read_text().splitlines()
    assert all(line in full for line in lines)  # verbatim
    assert sorted(lines, key=full.index) == lines  # in the full list's order
    assert len(set(lines)) == len(lines)


def test_seeded(full_list):
    assert subset_lines(full_list, 0.15, seed=0) == subset_lines(full_list, 0.15, seed=0)
    assert subset_lines(full_list, 0.15, seed=0) != subset_lines(full_list, 0.15, seed=1)
    assert len(subset_lines(full_list, 1.0)) == 33
    with pytest.raises(ValueError, match="fraction"):
        subset_lines(full_list, 0.0)


def test_cli_writes_a_list_training_reads(full_list, tmp_path):
    out = tmp_path / "subset.csv"
    result = subprocess.run([sys.executable, "-m", "tools.subset_list", str(full_list), str(out), "--fraction", "0.5",
                             "--seed", "3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "17 of 33 videos" in result.stdout  # 10 + 5 + 2 (1.5 -> 2)
    videos = parse_list_file(out)
    assert Counter(label for _, label in videos) == {0: 10, 1: 5, 2: 2}
    assert any(" " in path for path, _ in videos)  # a path with a space survives
    assert main([str(tmp_path / "missing.csv"), str(out)]) == 2
