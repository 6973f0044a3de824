"""Time from the command to the first training step of ``python train_joint.py`` (the CPU testbed).

    python -m tools.bench_startup --repeats 3

Each repeat starts ``train_joint.py train.max_steps=1`` in a fresh process, with Tianshou's numba
kernels compiled (``NUMBA_DISABLE_JIT=0``, the library's default) and as plain Python (``1``, what
the entry points set), alternating; the first step's time is the wall time of its TensorBoard
event. Prints each run and the medians with their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def seconds_to_first_step(numba_jit: bool, folder: Path) -> tuple[float, float]:
    """(seconds from the launch to the first step's log, seconds of the whole process)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env = {**os.environ, "NUMBA_DISABLE_JIT": "0" if numba_jit else "1"}
    start = time.time()
    subprocess.run([sys.executable, "train_joint.py", "train.max_steps=1", "train.eval_every=0",
                    f"output_dir={folder}"], cwd=ROOT, env=env, check=True, capture_output=True)
    total = time.time() - start
    events = EventAccumulator(str(folder / "tb"))
    events.Reload()
    first = min(event.wall_time for event in events.Scalars("mae/loss"))
    return first - start, total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_startup", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for jit in (True, False):
                first, total = seconds_to_first_step(jit, Path(tmp) / f"run-{repeat}-{int(jit)}")
                times[jit].append(first)
                print(f"numba {'compiled' if jit else 'off     '}: first step after {first:5.1f} s "
                      f"(process {total:5.1f} s)", flush=True)
    compiled, plain = statistics.median(times[True]), statistics.median(times[False])
    print(f"median to the first step: {compiled:.1f} s compiled, {plain:.1f} s plain Python "
          f"({compiled / plain:.2f}x faster start)")


if __name__ == "__main__":
    from runtime.errors import run_tool

    run_tool(main)
