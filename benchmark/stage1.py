"""AutoGaze's first stage on the frozen-MAE benchmark: imitation before RL, and a temperature schedule.

    python -m benchmark teacher --teacher greedy --clips 32           # the greedy oracle's orders on training clips
    python -m benchmark teacher --teacher motion --clips 32
    python -m benchmark.stage1 --steps 64 --seeds 0 1 2               # the arms below, one run at a time

Arms (TATS PPO, the CPU preset's, as the leaderboard's ``tats-ppo``; the same RL episodes for every arm
that has RL):

- ``rl``: RL alone;
- ``imitation-greedy`` / ``imitation-motion``: imitation of the teacher's orders alone (no RL step);
- ``imitation-greedy+rl`` / ``imitation-motion+rl``: imitation, then the same RL;
- ``grpo`` / ``imitation-greedy+grpo``: ``agent=grpo agent.kl_coef=0.1``, from a fresh or the imitated actor
  (the KL reference is the actor RL starts from);
- ``temperature``: RL with the softmax temperature decayed 3 -> 0.3 exponentially over the run (AutoGaze's
  ``temp_schedule_args``); ``rl`` is its constant temperature of 1.

Each run is scored at 0.75, 0.9 and 0.95 (:func:`benchmark.evaluate.evaluate_run`); the report (``stage1.md``,
``stage1.json``, ``stage1.png`` in ``--out``) has mean ± 95 % Student-t half-width over seeds and the
differences to ``rl`` paired by seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmark.evaluate import BENCHMARK_CLIPS, EVAL_RATIOS, evaluate_run, reference_cache
from benchmark.leaderboard import (LABELS, RUN_THREADS, figure, frozen_run_overrides, reference_rows, summarise,
                                   table, train_run)
from runtime.stats import interval

BATCH = 16


def arms(teachers: dict[str, Path], out: Path, imitate: list[str]) -> dict[str, tuple[list[str], bool]]:
    """Arm name -> (train_joint.py overrides, whether it takes RL steps). ``imitation-T+rl`` starts from the
    actor that ``imitation-T`` of the same seed wrote (``train.init_actor``): the same imitation, then RL."""
    out_arms: dict[str, tuple[list[str], bool]] = {"rl": (["agent=ppo"], True)}
    for name, path in teachers.items():
        out_arms[f"imitation-{name}"] = (["agent=ppo", f"train.imitate={path}", *imitate], False)
        out_arms[f"imitation-{name}+rl"] = (["agent=ppo", f"train.init_actor={out}/runs/imitation-{name}-seed{{seed}}"
                                             f"/imitated-actor.pt"], True)
    out_arms["grpo"] = (["agent=grpo", "agent.kl_coef=0.1"], True)
    if "greedy" in teachers:  # GRPO keeps the imitated actor as its KL reference
        out_arms["imitation-greedy+grpo"] = (["agent=grpo", "agent.kl_coef=0.1", f"train.init_actor={out}/runs/"
                                              "imitation-greedy-seed{seed}/imitated-actor.pt"], True)
    out_arms["temperature"] = (["agent=ppo", "agent.softmax_temp=3.0", "agent.softmax_temp_end=0.3",
                                "agent.softmax_temp_decay=exp"], True)
    return out_arms


def paired(runs: list[dict[str, Any]], arm: str, base: str, ratio: str, key: str = "score") -> tuple[float, float]:
    """Mean and 95 % half-width of ``arm - base`` paired by seed."""
    by_seed = {r["seed"]: r["eval"]["ratios"][ratio][key] for r in runs if r["arm"] == base}
    diffs = [r["eval"]["ratios"][ratio][key] - by_seed[r["seed"]] for r in runs if r["arm"] == arm
             and r["seed"] in by_seed]
    return interval(diffs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.stage1", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mae", default="runs/benchmark/mae-seed0/checkpoint-latest.pt")
    parser.add_argument("--teachers", nargs="+", default=["greedy=runs/benchmark/teachers/greedy-0.9-32.pt",
                                                          "motion=runs/benchmark/teachers/motion-0.9-32.pt"])
    parser.add_argument("--arms", nargs="+", default=None, help="default: every arm")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=64, help="RL steps per run (16 episodes each)")
    parser.add_argument("--eval-every", type=int, default=16)
    parser.add_argument("--threads", type=int, default=RUN_THREADS, help="torch threads per run (the benchmark's: 1)")
    parser.add_argument("--imitate-steps", type=int, default=100)
    parser.add_argument("--imitate-batch-size", type=int, default=16)
    parser.add_argument("--ratios", nargs="+", type=float, default=[0.9], help="mask ratios to score at")
    parser.add_argument("--references", nargs="+", default=["random", "motion", "greedy"],
                        help="reference rows of the table (best_of_m and tube cost more)")
    parser.add_argument("--out", default="runs/benchmark/stage1")
    parser.add_argument("--train-only", action="store_true", help="train the runs, write no report")
    args = parser.parse_args(argv)

    mae, out = Path(args.mae), Path(args.out)
    teachers = {item.partition("=")[0]: Path(item.partition("=")[2]) for item in args.teachers}
    table_of_arms = arms(teachers, out, [f"train.imitate_steps={args.imitate_steps}",
                                         f"train.imitate_batch_size={args.imitate_batch_size}"])
    chosen = args.arms or list(table_of_arms)
    ratios = sorted(set(args.ratios))
    runs: list[dict[str, Any]] = []
    for arm in chosen:
        arm_overrides, has_rl = table_of_arms[arm]
        steps = args.steps if has_rl else 0
        for seed in args.seeds:
            run_dir = out / "runs" / f"{arm}-seed{seed}"
            command = frozen_run_overrides([item.format(seed=seed) for item in arm_overrides], seed,
                                           mae_checkpoint=mae, steps=steps, eval_every=args.eval_every if steps else 0,
                                           mask_ratio=0.9, eval_clips=BENCHMARK_CLIPS, run_dir=run_dir)
            run = train_run(arm, seed, run_dir, command, threads=args.threads, steps=steps, batch_size=BATCH)
            imitation = run_dir / "imitation.json"  # imitation alone has no score curve: no RL step was scored
            runs.append({**run, "imitation": json.loads(imitation.read_text()) if imitation.is_file() else None})
            print(f"{arm} seed {seed}: {run['wall_s']:.0f} s", flush=True)
    if args.train_only:
        return
    for result in runs:
        result["eval"] = evaluate_run(result["run_dir"], ratios=ratios, cache_dir=reference_cache(mae), progress=False)
    references = reference_rows(mae, ratios, BENCHMARK_CLIPS, names=tuple(args.references))
    summary = summarise(runs, 0.9)
    for arm in chosen:
        if arm != "rl" and "rl" in chosen:
            summary[arm]["vs_rl"] = {f"{r:g}": paired(runs, arm, "rl", f"{r:g}") for r in ratios}
            summary[arm]["vs_rl_top_k"] = paired(runs, arm, "rl", f"{ratios[-1] if 0.9 not in ratios else 0.9:g}",
                                                 "score_top_k")
        walls = [r["imitation"]["wall_s"] for r in runs if r["arm"] == arm and r["imitation"]]
        if walls:
            summary[arm]["imitation_wall_s"] = interval(walls)
    lines = [table(summary, references, 0.9), "", "| arm | " + " | ".join(f"vs rl @ {r:g}" for r in ratios)
             + " | vs rl, top-K | imitation wall s |", "|---|" + "---|" * (len(ratios) + 2)]
    for arm, row in summary.items():
        if "vs_rl" in row:
            cells = " | ".join(f"{row['vs_rl'][f'{r:g}'][0]:+.1f} ± {row['vs_rl'][f'{r:g}'][1]:.1f}" for r in ratios)
            imit = row.get("imitation_wall_s")
            lines.append(f"| {arm} | {cells} | {row['vs_rl_top_k'][0]:+.1f} ± {row['vs_rl_top_k'][1]:.1f} | "
                         f"{'-' if imit is None else f'{imit[0]:.1f}'} |")
    text = "\n".join(lines)
    teacher_walls = {}
    for name, path in teachers.items():
        import torch

        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=False)
            teacher_walls[name] = {"wall_s": state["wall_s"], "clips": int(state["order"].shape[0]), "k": state["k"]}
    report = {"mae_checkpoint": str(mae), "steps": args.steps, "episodes": args.steps * BATCH, "seeds": args.seeds,
              "teachers": {**{k: str(v) for k, v in teachers.items()}}, "teacher_cost": teacher_walls,
              "summary": summary, "references": references, "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "stage1.json").write_text(json.dumps(report, indent=1))
    (out / "stage1.md").write_text(text + "\n")
    LABELS.update({"rl": "RL alone (TATS PPO)", "temperature": "RL, temperature 3 -> 0.3", "grpo": "GRPO, KL 0.1"})
    figure([r for r in runs if r["curve"]], references, 0.9, out / "stage1.png")
    print(text)
    print(f"\nwrote {out / 'stage1.md'}, {out / 'stage1.json'}, {out / 'stage1.png'}")


if __name__ == "__main__":
    main()
