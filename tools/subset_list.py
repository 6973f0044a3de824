"""A seeded subset of a list file that keeps each class's share: the paper's small-scale K400 and SSv2.

The paper pretrains on K400 and SSv2 subsets of about 15 % of the training set (the size of
the validation set) "while maintaining a class distribution consistent with the original
dataset". This writes such a list: from each class, ``floor(fraction * n_c + 0.5)`` of its
``n_c`` videos (at least one), drawn without replacement from ``numpy.random.default_rng(seed)``
class by class in label order; the chosen lines are written verbatim, in the order of the full
list. The same full list, fraction and seed give the same subset.

    python -m tools.subset_list k400_train.csv k400_train_15.csv --fraction 0.15 --seed 0
    python train_joint.py preset=k400_mr90 data.train_list=k400_train_15.csv data.root=/data/k400
"""

from __future__ import annotations

import argparse
import math
import os
from collections import Counter, defaultdict

import numpy as np

from data.video_dataset import parse_list_file
from runtime.errors import report_error


def subset_lines(list_file: str | os.PathLike, fraction: float, seed: int = 0) -> list[str]:
    """The chosen lines of ``list_file`` (verbatim, without their newline), in the list's order.

    Raises:
        ValueError: ``fraction`` outside (0, 1], or a malformed list (see :func:`parse_list_file`).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    videos = parse_list_file(list_file)  # validates every line, same rules as training
    with open(list_file, encoding="utf-8") as handle:
        lines = [line.rstrip("\r\n") for line in handle if line.strip() and not line.strip().startswith("#")]
    assert len(lines) == len(videos)
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, (_, label) in enumerate(videos):
        by_class[label].append(index)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        keep = max(1, math.floor(fraction * len(members) + 0.5))
        chosen += [members[i] for i in rng.permutation(len(members))[:keep]]
    return [lines[i] for i in sorted(chosen)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("list_file", help="the full list (path<TAB>label or path label per line)")
    parser.add_argument("out", help="where to write the subset list")
    parser.add_argument("--fraction", type=float, default=0.15, help="share of each class to keep (paper: ~0.15)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        lines = subset_lines(args.list_file, args.fraction, args.seed)
    except (FileNotFoundError, ValueError) as error:
        report_error(error)
        return 2
    with open(args.out, "w", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    full = Counter(label for _, label in parse_list_file(args.list_file))
    print(f"{args.out}: {len(lines)} of {sum(full.values())} videos ({len(lines) / sum(full.values()):.1%}), "
          f"{len(full)} classes, fraction {args.fraction}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    from runtime.errors import run_tool

    raise SystemExit(run_tool(main))
