"""Small-scale study on the built-in data: pretrain with each agent, then probe and measure.

For every (agent, objective) and seed: ``train_joint.py`` at the same budget and mask ratio,
then ``downstream.linear_probe`` (and ``downstream.finetune`` with ``--finetune``) on the
checkpoint, then ``tools.motion_visibility``. Prints a markdown table of means and spreads
over seeds, and writes every number to ``<out>/study.json``.

    python -m tools.study --out runs/study --seeds 0 1 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tools.motion_visibility import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[1]

# (row name, train_joint overrides). The sampler lr is raised from the paper's 1.5e-6 and
# PPO's entropy bonus dropped, else nothing moves at this budget (see the README).
ARMS = [
    ("random", ["agent=random"]),
    ("tube", ["agent=tube"]),
    ("adamae (reinforce, mha)", ["agent=reinforce", "agent.lr=1e-4"]),
    ("tats ppo paper", ["agent=ppo", "agent.objective=paper", "agent.lr=1e-4", "agent.entropy_coef=0"]),
    ("tats ppo cooperative", ["agent=ppo", "agent.objective=cooperative", "agent.lr=1e-4", "agent.entropy_coef=0"]),
    ("tats ppo adversarial", ["agent=ppo", "agent.objective=adversarial", "agent.lr=1e-4", "agent.entropy_coef=0"]),
    ("grpo cooperative", ["agent=grpo", "agent.lr=1e-4"]),
]


def run(args: list[str]) -> None:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=4, help="pretraining epochs of 64 steps (batch 8)")
    parser.add_argument("--mask-ratio", type=float, default=0.95)
    parser.add_argument("--mae-lr", type=float, default=1.5e-3)
    parser.add_argument("--finetune", action="store_true", help="also fine-tune (slower)")
    parser.add_argument("--finetune-epochs", type=int, default=5)
    args = parser.parse_args(argv)
    out = Path(args.out)
    results: list[dict] = []
    for name, overrides in ARMS:
        for seed in args.seeds:
            run_dir = out / f"{name.split(' (')[0].replace(' ', '_')}-s{seed}"
            tic = time.perf_counter()
            if not (run_dir / "checkpoint-latest.pt").is_file():
                run(["train_joint.py", *overrides, f"seed={seed}", f"mask_ratio={args.mask_ratio}",
                     f"train.epochs={args.epochs}", f"train.lr={args.mae_lr}", f"output_dir={run_dir}"])
            ckpt = run_dir / "checkpoint-latest.pt"
            run(["-m", "downstream.linear_probe", f"checkpoint={ckpt}", f"seed={seed}",
                 f"output_dir={run_dir / 'probe'}"])
            row = {"arm": name, "seed": seed,
                   "probe_top1": json.loads((run_dir / "probe" / "metrics.json").read_text())["eval/top1"]}
            if args.finetune:
                run(["-m", "downstream.finetune", f"checkpoint={ckpt}", f"seed={seed}",
                     f"train.epochs={args.finetune_epochs}", f"output_dir={run_dir / 'finetune'}"])
                row["finetune_top1"] = json.loads((run_dir / "finetune" / "metrics.json").read_text())["eval/top1"]
            row.update({k: v for k, v in evaluate_checkpoint(str(ckpt), num_clips=128).items()
                        if k.endswith("enrichment")})
            row["wall_s"] = time.perf_counter() - tic
            results.append(row)
            print(json.dumps(row), flush=True)
    (out / "study.json").write_text(json.dumps(results, indent=2))
    columns = ["probe_top1"] + (["finetune_top1"] if args.finetune else []) + ["visible_enrichment", "prob_enrichment"]
    print("\n| arm | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for name, _ in ARMS:
        rows = [r for r in results if r["arm"] == name]
        cells = []
        for column in columns:
            values = [r[column] for r in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3g} +- {spread:.2g}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
