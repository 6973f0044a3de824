"""The frozen-MAE benchmark's commands (docs/benchmark.md).

    python -m benchmark mae                      # the benchmark's MAE (random masking, 3,072 steps; reused)
    python -m benchmark references               # random, tube, motion, best-of-64, greedy oracle at 0.75/0.9/0.95
    python -m benchmark evaluate RUN_DIR [data=list data.train_list=PATH ...]   # a trained policy's scores
    python -m benchmark leaderboard              # every agent x 3 seeds: table, figure, JSON
    python -m benchmark teacher --teacher greedy|motion --clips 128 --out FILE [data=list ...]   # imitation targets
"""

from __future__ import annotations

import runtime.fast_start  # noqa: F401, I001 - first: before Tianshou compiles its numba kernels

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmark.evaluate import BENCHMARK_CLIPS, EVAL_RATIOS
from benchmark.leaderboard import RUN_THREADS

ROOT = Path(__file__).resolve().parents[1]
MAE_STEPS = 3072
"""The benchmark MAE's training: ``train_joint.py agent=random`` on the CPU testbed for this many steps."""


def mae_run_dir(seed: int, steps: int = MAE_STEPS) -> Path:
    return Path("runs/benchmark") / (f"mae-seed{seed}" if steps == MAE_STEPS else f"mae-seed{seed}-steps{steps}")


def make_mae(seed: int = 0, steps: int = MAE_STEPS) -> Path:
    """Train the benchmark's MAE (random masking at 0.9 on the built-in clips) unless it exists; its checkpoint."""
    run_dir = mae_run_dir(seed, steps)
    ckpt = run_dir / "checkpoint-latest.pt"
    if ckpt.is_file() and _steps_of(ckpt) >= steps:
        print(f"the benchmark MAE exists: {ckpt}")
        return ckpt
    cmd = [sys.executable, str(ROOT / "train_joint.py"), "agent=random", "mask_ratio=0.9", f"seed={seed}",
           f"train.epochs={math.ceil(steps / 64)}", f"train.max_steps={steps}", f"output_dir={run_dir}",
           *(["resume=true"] if ckpt.is_file() else [])]  # continue a stopped one
    print("training the benchmark MAE:", " ".join(cmd[1:]), flush=True)
    tic = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS=str(RUN_THREADS))  # the same MAE on any number of cores
    if subprocess.run(cmd, cwd=Path.cwd(), env=env).returncode != 0:
        raise SystemExit(f"error: the benchmark MAE's run failed (its folder: {run_dir})")
    print(f"the benchmark MAE: {ckpt} ({(time.perf_counter() - tic) / 60:.1f} min)")
    return ckpt


def _steps_of(ckpt: Path) -> int:
    from runtime import checkpoint

    return int(checkpoint.load(ckpt, mmap=True)["step"])


def data_overrides(overrides: list[str], base):
    """``data=list data.train_list=PATH ...`` applied to a data config (None when there are none)."""
    from omegaconf import OmegaConf

    if not overrides:
        return None
    data = OmegaConf.create(OmegaConf.to_container(base, resolve=True))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not (key == "data" or key.startswith("data.")):
            raise SystemExit(f"error: {item!r}: only data=NAME and data.KEY=VALUE overrides are taken")
        OmegaConf.update(data, "name" if key == "data" else key.removeprefix("data."), value, force_add=True)
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    mae = sub.add_parser("mae", help="train (or find) the benchmark's MAE")
    mae.add_argument("--seed", type=int, default=0)
    mae.add_argument("--steps", type=int, default=MAE_STEPS)
    refs = sub.add_parser("references", help="the references' losses and scores on the benchmark MAE")
    evaluate = sub.add_parser("evaluate", help="a trained frozen-MAE run's scores at several mask ratios")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("overrides", nargs="*", help="data=list data.train_list=PATH ... (default: the run's data)")
    board = sub.add_parser("leaderboard", help="every agent, several seeds: table, figure, JSON")
    board.add_argument("--arms", nargs="+", default=None, help="default: every arm")
    board.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    board.add_argument("--steps", type=int, default=512, help="environment steps per run (16 episodes each)")
    board.add_argument("--eval-every", type=int, default=32)
    board.add_argument("--jobs", type=int, default=2, help="runs at a time (they share the cores)")
    board.add_argument("--out", default="runs/benchmark/leaderboard", help="runs and the report")
    board.add_argument("--publish", default=None,
                       help="also copy the report here as benchmark-leaderboard.{md,json,png} (the docs': docs)")
    teach = sub.add_parser("teacher", help="a teacher's ordered selections on training clips (imitation targets)")
    teach.add_argument("--teacher", choices=["greedy", "motion"], default="greedy")
    teach.add_argument("--clips", type=int, default=128, help="training clips")
    teach.add_argument("--seed", type=int, default=0, help="seed of the training clips")
    teach.add_argument("--out", default=None, help="default: runs/benchmark/teachers/TEACHER-RATIO-CLIPS.pt")
    teach.add_argument("overrides", nargs="*", help="data=list data.train_list=PATH ... (default: the MAE's data)")
    for command in (refs, evaluate, board):
        command.add_argument("--ratios", nargs="+", type=float, default=list(EVAL_RATIOS))
        command.add_argument("--clips", type=int, default=BENCHMARK_CLIPS, help="held-out clips")
    for command in (refs, board, teach):
        command.add_argument("--mae", default=None, help="an MAE checkpoint; default: `mae`'s (made if missing)")
        command.add_argument("--mask-ratio", type=float, default=0.9)
    args = parser.parse_args(argv)

    if args.command == "mae":
        make_mae(args.seed, args.steps)
        return
    if args.command == "evaluate":
        from benchmark.evaluate import evaluate_run, load_policy

        _, _, cfg = load_policy(args.run_dir)
        result = evaluate_run(args.run_dir, ratios=args.ratios, data_cfg=data_overrides(args.overrides, cfg.data),
                              num_clips=args.clips, cache_dir=_cache_of(cfg))
        print("| mask ratio | score | score, top-K | L_R | L_R random | L_R greedy oracle |\n|---|---|---|---|---|---|")
        for ratio, row in result["ratios"].items():
            print(f"| {ratio} | {row['score']:.1f} | {row['score_top_k']:.1f} | {row['loss']:.4f} | "
                  f"{row['loss_random']:.4f} | {row['loss_oracle']:.4f} |")
        out = Path(args.run_dir) / "benchmark-eval.json"
        out.write_text(json.dumps(result, indent=1))
        print(f"wrote {out}")
        return
    ckpt = Path(args.mae) if args.mae else make_mae()
    if not ckpt.is_file():
        raise SystemExit(f"error: --mae {ckpt}: no such file")
    if args.command == "teacher":
        from omegaconf import OmegaConf

        from benchmark.teacher import make_selections
        from runtime import checkpoint

        base = OmegaConf.create(checkpoint.load(ckpt, mmap=True)["config"]).data
        out = Path(args.out or f"runs/benchmark/teachers/{args.teacher}-{args.mask_ratio:g}-{args.clips}.pt")
        result = make_selections(ckpt, out, teacher=args.teacher, num_clips=args.clips, mask_ratio=args.mask_ratio,
                                 seed=args.seed, data_cfg=data_overrides(args.overrides, base))
        print(f"wrote {out}: {result['order'].shape[0]} clips, K={result['k']}, {result['wall_s']:.0f} s")
        return
    if args.command == "references":
        from benchmark.leaderboard import reference_rows, table

        ratios = sorted({args.mask_ratio, *args.ratios})
        rows = reference_rows(ckpt, ratios, args.clips)
        print(table({}, rows, args.mask_ratio))
        out = ckpt.parent / "benchmark-references.json"
        out.write_text(json.dumps(rows, indent=1))
        print(f"wrote {out}")
        return
    from benchmark.leaderboard import ARMS, run_leaderboard

    out = Path(args.out)
    run_leaderboard(mae_checkpoint=ckpt, out=out, arms=args.arms or list(ARMS), seeds=args.seeds,
                    steps=args.steps, eval_every=args.eval_every, mask_ratio=args.mask_ratio,
                    eval_clips=args.clips, jobs=args.jobs)
    if args.publish:
        import shutil

        for suffix in ("md", "json", "png"):
            shutil.copyfile(out / f"leaderboard.{suffix}", Path(args.publish) / f"benchmark-leaderboard.{suffix}")
        print(f"copied to {args.publish}/benchmark-leaderboard.{{md,json,png}}")


def _cache_of(cfg) -> Path | None:
    from benchmark.evaluate import reference_cache

    return reference_cache(cfg.model.init_checkpoint) if cfg.model.get("init_checkpoint") else None


if __name__ == "__main__":
    main()
