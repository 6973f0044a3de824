"""AutoGaze's budget option on the frozen-MAE benchmark: one policy trained over a range of mask ratios
against policies trained at each fixed ratio, every policy scored at every ratio.

    python -m benchmark.budget --agent grpo --seeds 0 1 2           # 4 arms x 3 seeds, then the report

Arms (the same agent, RL episodes and frozen MAE; ``train.mae=frozen``):

- ``fixed-0.75``, ``fixed-0.9``, ``fixed-0.95``: ``mask_ratio=r``;
- ``range``: ``mask_ratio_range=[0.75,0.95]`` (K drawn per batch, uniformly from K(0.95) = 6 to
  K(0.75) = 32 on the testbed), held-out scores during training at 0.9.

Each run is scored at 0.75, 0.9 and 0.95 (:func:`benchmark.evaluate.evaluate_run`). The report
(``budget.md``, ``budget.json``, ``budget.png`` in ``--out``) has mean ± 95 % Student-t half-width
over seeds of every arm at every ratio, and at each ratio the paired difference (by seed) of the
range policy to the policy trained at that ratio. The held-out clips are the same for every run.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmark.evaluate import BENCHMARK_CLIPS, EVAL_RATIOS, evaluate_run, reference_cache
from benchmark.leaderboard import ARMS, frozen_run_overrides, reference_rows, train_run
from runtime.stats import interval

BATCH = 16
RANGE = (0.75, 0.95)


def arms(agent: str) -> dict[str, tuple[list[str], float]]:
    """Arm name -> (train_joint.py overrides, the ratio of its held-out scores during training)."""
    base = ARMS[agent]
    out = {f"fixed-{ratio:g}": (base, ratio) for ratio in EVAL_RATIOS}
    out["range"] = ([*base, f"mask_ratio_range=[{RANGE[0]},{RANGE[1]}]"], 0.9)
    return out


def paired(runs: list[dict[str, Any]], arm: str, base: str, ratio: str) -> tuple[float, float]:
    """Mean and 95 % half-width of ``arm - base`` at ``ratio``, paired by seed."""
    by_seed = {r["seed"]: r["eval"]["ratios"][ratio]["score"] for r in runs if r["arm"] == base}
    return interval([r["eval"]["ratios"][ratio]["score"] - by_seed[r["seed"]] for r in runs
                     if r["arm"] == arm and r["seed"] in by_seed])


def report(runs: list[dict[str, Any]], ratios: list[float]) -> tuple[str, dict[str, Any]]:
    """The markdown table and its numbers: every arm at every ratio, and range minus fixed-at-that-ratio."""
    keys = [f"{r:g}" for r in ratios]
    summary: dict[str, Any] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        summary[arm] = {key: interval([r["eval"]["ratios"][key]["score"] for r in mine]) for key in keys}
        summary[arm]["wall_s"] = interval([r["wall_s"] for r in mine])
    lines = ["| trained at | " + " | ".join(f"score @ {key}" for key in keys) + " | wall s |",
             "|---|" + "---|" * (len(keys) + 1)]
    for arm, row in summary.items():
        lines.append(f"| {arm} | " + " | ".join(f"{row[k][0]:.1f} ± {row[k][1]:.1f}" for k in keys)
                     + f" | {row['wall_s'][0]:.0f} |")
    if "range" in summary:
        differences = {key: paired(runs, "range", f"fixed-{key}", key) for key in keys
                       if f"fixed-{key}" in summary}
        summary["range"]["vs_fixed_at_ratio"] = differences
        lines += ["", "| range minus the policy trained at the ratio | " + " | ".join(f"@ {k}" for k in differences)
                  + " |", "|---|" + "---|" * len(differences),
                  "| paired by seed | " + " | ".join(f"{d[0]:+.1f} ± {d[1]:.1f}" for d in differences.values()) + " |"]
    return "\n".join(lines), summary


def figure(summary: dict[str, Any], ratios: list[float], path: Path) -> None:
    """Score at each evaluation ratio, one line (mean, 95 % bars) per training arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    keys = [f"{r:g}" for r in ratios]
    for offset, (arm, row) in enumerate(summary.items()):
        xs = [r + 0.002 * (offset - 1.5) for r in ratios]  # side by side, not on top of each other
        ax.errorbar(xs, [row[k][0] for k in keys], yerr=[row[k][1] for k in keys], marker="o", capsize=3,
                    linestyle="-" if arm == "range" else "--", label=f"trained {arm}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(ratios, [f"{r:g}" for r in ratios])
    ax.set_xlabel("mask ratio at evaluation")
    ax.set_ylabel("score (0 = random masks, 100 = greedy oracle)")
    ax.set_title("One policy over [0.75, 0.95] vs one per ratio (mean, 95 % CI over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.budget", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mae", default="runs/benchmark/mae-seed0/checkpoint-latest.pt")
    parser.add_argument("--agent", default="grpo", choices=sorted(ARMS), help="a leaderboard arm")
    parser.add_argument("--arms", nargs="+", default=None, help="default: every arm")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=512, help="RL steps per run (16 episodes each)")
    parser.add_argument("--eval-every", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--out", default=None, help="default: runs/benchmark/budget-AGENT")
    args = parser.parse_args(argv)

    mae, out = Path(args.mae), Path(args.out or f"runs/benchmark/budget-{args.agent}")
    if not mae.is_file():
        parser.error(f"no MAE checkpoint at {mae}: run python -m benchmark mae first")
    table_of_arms = arms(args.agent)
    unknown = sorted(set(args.arms or []) - set(table_of_arms))
    if unknown:
        parser.error(f"unknown arm(s) {unknown}; choose from {sorted(table_of_arms)}")
    ratios = sorted(EVAL_RATIOS)

    def one(job: tuple[str, int]) -> dict[str, Any]:
        arm, seed = job
        overrides, ratio = table_of_arms[arm]
        run_dir = out / "runs" / f"{arm}-seed{seed}"
        command = frozen_run_overrides(overrides, seed, mae_checkpoint=mae, steps=args.steps,
                                       eval_every=args.eval_every, mask_ratio=ratio, eval_clips=BENCHMARK_CLIPS,
                                       run_dir=run_dir)
        run = train_run(arm, seed, run_dir, command, steps=args.steps, batch_size=BATCH)
        print(f"{arm} seed {seed}: {run['wall_s']:.0f} s", flush=True)
        return run

    jobs = [(arm, seed) for arm in (args.arms or table_of_arms) for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(one, jobs))
    for result in runs:  # after training: the evaluations do not share the cores with it
        result["eval"] = evaluate_run(result["run_dir"], ratios=ratios, cache_dir=reference_cache(mae), progress=False)
    text, summary = report(runs, ratios)
    out.mkdir(parents=True, exist_ok=True)
    (out / "budget.json").write_text(json.dumps({
        "mae_checkpoint": str(mae), "agent": args.agent, "range": RANGE, "steps": args.steps,
        "episodes": args.steps * BATCH, "seeds": args.seeds, "summary": summary,
        "references": reference_rows(mae, ratios, BENCHMARK_CLIPS, names=("random", "greedy", "motion")),
        "runs": runs}, indent=1))
    (out / "budget.md").write_text(text + "\n")
    figure(summary, ratios, out / "budget.png")
    print(text)
    print(f"\nwrote {out / 'budget.md'}, {out / 'budget.json'}, {out / 'budget.png'}")


if __name__ == "__main__":
    main()
