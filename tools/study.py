"""Small-scale study on the built-in data: pretrain with each agent, then probe and measure.

For every (agent, objective) and seed: ``train_joint.py`` at the same budget and mask ratio,
then ``downstream.linear_probe`` (and ``downstream.finetune`` with ``--finetune``) on the
checkpoint, then ``tools.motion_visibility``. A ``no pretraining`` row probes (and fine-tunes)
a randomly initialised encoder: the floor every arm must beat. Runs go ``--jobs`` at a time
with one torch thread each. Prints a markdown table of means and spreads over seeds, and
writes every number to ``<out>/study.json`` and a figure to ``<out>/study.png``; a run whose checkpoint or metrics exist is not
run again, so an interrupted study resumes (a pretraining run cut short continues from its checkpoint).

    python -m tools.study --out runs/study-flat --background flat --epochs 16 --finetune --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from agents.registry import make_config
from configs.schema import FIXED_AGENTS
from data.synthetic import SyntheticMotionVideos, synthetic_style
from mae.masking import random_mask
from tools.motion_visibility import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "no pretraining"

# (row name, train_joint overrides). PPO's entropy bonus is dropped, else c3 = 1e-4 holds its
# policy at uniform (README, "Agents on a toy task"); the sampler lr is --policy-lr for all.
ARMS = [
    ("random", ["agent=random"]),
    ("tube", ["agent=tube"]),
    ("adamae (reinforce, mha)", ["agent=reinforce"]),
    ("tats ppo paper", ["agent=ppo", "agent.objective=paper", "agent.entropy_coef=0"]),
    ("tats ppo cooperative", ["agent=ppo", "agent.objective=cooperative", "agent.entropy_coef=0"]),
    ("tats ppo adversarial", ["agent=ppo", "agent.objective=adversarial", "agent.entropy_coef=0"]),
    ("grpo cooperative", ["agent=grpo"]),
]


def run(args: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")  # parallel runs must not fight over the cores
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")


def heldout_mae_loss(checkpoint: str, *, num_clips: int = 128, seed: int = 0) -> dict[str, float]:
    """Eq. 6 of the checkpoint's MAE on held-out built-in clips under the same random masks for
    every checkpoint, next to the trivial predictors' (zeros, mean_visible, copy) on those masks."""
    from downstream.visualise import load_pretrained

    pretrained = load_pretrained(checkpoint)
    model, cfg = pretrained.model, pretrained.config
    batch = heldout_batch(model, cfg["data"], cfg["mask_ratio"], num_clips=num_clips, seed=seed)
    return heldout_losses(model, batch["video"], batch["visible"])


def top1(metrics_dir: Path) -> float:
    return json.loads((metrics_dir / "metrics.json").read_text())["eval/top1"]


def study_run(name: str, overrides: list[str] | None, seed: int, args: argparse.Namespace) -> dict:
    """Pretrain (unless ``overrides`` is None: the baseline), probe, fine-tune, measure one arm and seed."""
    run_dir = Path(args.out) / f"{name.split(' (')[0].replace(' ', '_')}-s{seed}"
    data = [f"data.synthetic_background={args.background}", "data.num_workers=0"]
    tic = time.perf_counter()
    ckpt_args: list[str] = []
    if overrides is not None:
        ckpt = run_dir / "checkpoint-latest.pt"
        ckpt_args = [f"checkpoint={ckpt}"]
        if not (run_dir / "probe" / "metrics.json").is_file():  # not known to be complete: run or finish it
            learned = overrides[0].removeprefix("agent=") not in FIXED_AGENTS
            # GRPO's epoch has G times as many steps (B / G distinct clips per step): same MAE steps
            epochs = args.epochs // make_config("grpo").group_size if overrides[0] == "agent=grpo" else args.epochs
            run(["train_joint.py", *overrides, *data, f"seed={seed}", f"mask_ratio={args.mask_ratio}",
                 f"train.epochs={max(1, epochs)}", f"train.lr={args.mae_lr}", f"output_dir={run_dir}",
                 *([f"agent.lr={args.policy_lr}"] if learned else []), f"resume={ckpt.is_file()}"])
    row: dict = {"arm": name, "seed": seed}
    if not (run_dir / "probe" / "metrics.json").is_file():
        run(["-m", "downstream.linear_probe", *ckpt_args, *data, f"seed={seed}", f"output_dir={run_dir / 'probe'}"])
    row["probe_top1"] = top1(run_dir / "probe")
    if args.finetune:
        if not (run_dir / "finetune" / "metrics.json").is_file():
            run(["-m", "downstream.finetune", *ckpt_args, *data, f"seed={seed}",
                 f"train.epochs={args.finetune_epochs}", f"output_dir={run_dir / 'finetune'}"])
        row["finetune_top1"] = top1(run_dir / "finetune")
    if overrides is not None:
        row["mae_loss"], row["zero_prediction_loss"] = heldout_mae_loss(str(run_dir / "checkpoint-latest.pt"))
        row.update({k: v for k, v in evaluate_checkpoint(str(run_dir / "checkpoint-latest.pt"),
                                                         num_clips=128).items() if k.endswith("enrichment")})
    row["wall_s"] = time.perf_counter() - tic
    print(json.dumps(row), flush=True)
    return row


def table(results: list[dict], columns: list[str]) -> str:
    lines = ["| arm | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for name in [BASELINE] + [arm for arm, _ in ARMS]:
        rows = [r for r in results if r["arm"] == name]
        if not rows:
            continue
        cells = []
        for column in columns:
            values = [r[column] for r in rows if column in r]
            if not values:
                cells.append("-")
                continue
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3g} +- {spread:.2g}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict], columns: list[str], path: Path) -> None:
    """One panel per column: each arm's mean over seeds, one dot per seed; chance marked, and on
    the ``mae_loss`` panel the loss of predicting zeros (``zero_prediction_loss``, not a panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in [BASELINE] + [arm for arm, _ in ARMS] if any(r["arm"] == name for r in results)]
    chance = {"probe_top1": 100 / 8, "finetune_top1": 100 / 8, "visible_enrichment": 1.0, "prob_enrichment": 1.0}
    zeros = [r["zero_prediction_loss"] for r in results if "zero_prediction_loss" in r]
    columns = [column for column in columns if column != "zero_prediction_loss"]
    fig, axes = plt.subplots(1, len(columns), figsize=(4 * len(columns), 0.45 * len(names) + 1.5), sharey=True)
    for ax, column in zip(axes, columns):
        for y, name in enumerate(names):
            values = [r[column] for r in results if r["arm"] == name and column in r]
            if values:
                ax.barh(y, statistics.mean(values), color="tab:blue", alpha=0.6)
                ax.plot(values, [y] * len(values), "k.", markersize=6)
        if column in chance:
            ax.axvline(chance[column], color="tab:red", linestyle="--", linewidth=1, label="chance")
        if column == "mae_loss" and zeros:
            ax.axvline(statistics.mean(zeros), color="tab:green", linestyle=":", linewidth=1.5,
                       label="predicting zeros")
            ax.legend(loc="lower right")
        ax.set_title(column)
        ax.set_yticks(range(len(names)), names)
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=4, help="pretraining epochs of 64 steps (batch 8)")
    parser.add_argument("--mask-ratio", type=float, default=0.95)
    parser.add_argument("--mae-lr", type=float, default=1.5e-3)
    parser.add_argument("--policy-lr", type=float, default=1e-4, help="every learned sampler's lr")
    parser.add_argument("--background", choices=("textured", "flat"), default="textured",
                        help="the built-in clips' background (data.synthetic_background)")
    parser.add_argument("--finetune", action="store_true", help="also fine-tune (slower)")
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one torch thread each")
    parser.add_argument("--arms", nargs="+", help="only these rows (names as in the table)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arms = [(BASELINE, None)] + ARMS
    if args.arms:
        unknown = set(args.arms) - {name for name, _ in arms}
        if unknown:
            parser.error(f"unknown arms {sorted(unknown)}; choose from {[name for name, _ in arms]}")
        arms = [(name, overrides) for name, overrides in arms if name in args.arms]
    jobs = [(name, overrides, seed) for name, overrides in arms for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda job: study_run(*job, args), jobs))
    columns = ["probe_top1"] + (["finetune_top1"] if args.finetune else []) + [
        "visible_enrichment", "prob_enrichment", "mae_loss", "zero_prediction_loss"]
    (out / "study.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    plot(results, columns, out / "study.png")
    print("\n" + table(results, columns))
    print(f"\nfigure: {out / 'study.png'}")


if __name__ == "__main__":
    main()
