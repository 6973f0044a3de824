"""The docs: every relative link and every repository path they name exists; the front page stays short."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Paths written in backticks that point into the repository (a top-level folder or file).
TOP_LEVEL = ("mae/", "envs/", "agents/", "data/", "configs/", "downstream/", "runtime/", "tools/", "tests/", "docs/")


def test_every_relative_link_resolves():
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_every_named_repository_path_exists():
    missing = []
    for page in PAGES:
        for path in re.findall(r"`([A-Za-z_./-]+\.(?:py|yaml|md))`", page.read_text(encoding="utf-8")):
            if path.startswith(TOP_LEVEL) and "<" not in path and not (ROOT / path).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {path}")
    assert not missing, missing


def test_front_page_is_short():
    assert len((ROOT / "README.md").read_bytes()) <= 12 * 1024
