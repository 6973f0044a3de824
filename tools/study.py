"""The study on the CPU testbed: does a learned sampler beat random masking?

For every arm, mask ratio and seed: ``train_joint.py`` on the testbed (``preset=cpu``, the
default) for the same number of MAE steps, then a linear probe of the checkpoint
and an attentive probe (``downstream.linear_probe``, ``head=linear`` and ``head=attentive``), the MAE's held-out loss under masks shared by every run
(:func:`envs.heldout.heldout_batch`, next to the trivial predictors), and the enrichment of
moving-object tokens in the sampler's masks (``tools.motion_visibility``). A ``no pretraining``
row probes an untrained encoder: the floor. Runs go ``--jobs`` at a time with one torch
thread each; a run whose results exist is not run again (an interrupted study resumes).

Prints, per mask ratio, each arm's mean and 95 % interval over seeds (Student t) and its
difference to ``random`` paired by seed, with that difference's 95 % interval; writes
every number to ``<out>/study.json`` and a figure to ``<out>/study.png``.

    python -m tools.study --out runs/study --mask-ratios 0.9 0.95 --seeds 0 1 2 --steps 384 --jobs 2
    python -m tools.study --out runs/study --mask-ratios 0.9 0.95 --report   # table and figure of what exists
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from data.synthetic import CONTRASTS
from envs.heldout import heldout_batch
from mae.baselines import heldout_losses
from tools.motion_visibility import evaluate_checkpoint
from runtime.stats import interval
from tools.testbed import ATTENTIVE_PROBE, run, testbed_data, top1

BASELINE = "no pretraining"
REFERENCE = "random"

# (row name, train_joint overrides on top of preset=cpu and its per-agent settings)
ARMS = [
    ("random", ["agent=random"]),
    ("tube", ["agent=tube"]),
    ("adamae (reinforce, mha)", ["agent=reinforce", "agent.recipe=adamae"]),  # AdaMAE's own training recipe
    ("tats ppo paper", ["agent=ppo", "agent.objective=paper"]),
    ("tats ppo cooperative", ["agent=ppo", "agent.objective=cooperative"]),
    ("tats ppo cooperative, narrow", ["agent=ppo", "agent.objective=cooperative", "agent.sampler_dim=24"]),
    ("grpo cooperative", ["agent=grpo"]),
    # The paper's sign of the reward (+L_R: show the MAE what it reconstructs worst) with the exact log-prob.
    ("tats ppo adversarial", ["agent=ppo", "agent.objective=adversarial"]),
]
# Held-out clips and masks of the scores; a result scored with another version is scored again.
SCORE_VERSION = 2
COLUMNS = ["probe_top1", "attentive_top1", "mae_loss", "visible_enrichment", "prob_enrichment"]
# The probes of every checkpoint: result column -> (output folder, downstream.linear_probe overrides).
PROBES = {"probe_top1": ("probe", []), "attentive_top1": ("probe-attentive", ATTENTIVE_PROBE)}
DIFFERENCE_COLUMNS = ("probe_top1", "attentive_top1", "mae_loss")  # each arm minus random, paired by seed
# Two-sided 95 % Student t quantiles by degrees of freedom (n - 1 seeds).


def heldout_mae_loss(checkpoint: str, *, num_clips: int = 128) -> dict[str, float]:
    """The checkpoint's MAE on held-out built-in clips under random masks shared by every run of
    the same mask ratio, next to the trivial predictors (zeros, mean_visible, copy) on them."""
    from downstream.visualise import load_pretrained

    pretrained = load_pretrained(checkpoint)
    model, cfg = pretrained.model, pretrained.config
    batch = heldout_batch(model, cfg["data"], cfg["mask_ratio"], num_clips=num_clips)
    return heldout_losses(model, batch["video"], batch["visible"])


def score(checkpoint: str) -> dict:
    """The held-out MAE loss (and the trivial predictors') and the motion enrichment of one run."""
    losses = heldout_mae_loss(checkpoint)
    row = {"mae_loss": losses.pop("mae"), **{f"trivial_{k}": v for k, v in losses.items()}}
    row.update({k: v for k, v in evaluate_checkpoint(checkpoint, num_clips=128).items() if k.endswith("enrichment")})
    return {**row, "scored_with": SCORE_VERSION}


def folder_name(arm: str) -> str:
    """An arm's run folder: ``"tats ppo cooperative, narrow"`` -> ``tats_ppo_cooperative_narrow``."""
    return "".join(c for c in arm.replace(" ", "_") if c not in ",()")


def probe(row: dict, run_dir: Path, encoder: list[str], probe_data: list[str]) -> None:
    """Every probe in :data:`PROBES` that ``row`` lacks, of the encoder given by ``encoder``."""
    for column, (folder, overrides) in PROBES.items():
        if column not in row:
            run(["-m", "downstream.linear_probe", *encoder, *probe_data, *overrides,
                 f"output_dir={run_dir / folder}"], run_dir / f"{folder}.log", threads=1)
            row[column] = top1(run_dir / folder)


def study_run(name: str, overrides: list[str] | None, ratio: float, seed: int, args: argparse.Namespace) -> dict:
    tic = time.perf_counter()
    run_dir = Path(args.out) / f"mr{ratio}" / folder_name(name) / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    result_file = run_dir / "result.json"
    ckpt = run_dir / "checkpoint-latest.pt"
    probe_data = [*testbed_data(args.contrast), f"data.synthetic_clips={args.probe_clips}",
                  f"test.synthetic_clips={args.test_clips}", "data.num_workers=0", f"seed={seed}"]
    encoder = ["model=micro"] if overrides is None else [f"checkpoint={ckpt}"]
    if result_file.is_file():  # done before: add what is missing (a probe, or a score on new held-out clips)
        row = json.loads(result_file.read_text())
        done = all(column in row for column in PROBES) and (overrides is None or row.get("scored_with") == SCORE_VERSION)
        if not done:
            probe(row, run_dir, encoder, probe_data)
            if overrides is not None and row.get("scored_with") != SCORE_VERSION:
                row.update(score(str(ckpt)))
            result_file.write_text(json.dumps(row))
        return row
    contrast = f"data.synthetic_contrast={args.contrast}"  # train_joint's preset sets the other data keys
    row: dict = {"arm": name, "mask_ratio": ratio, "seed": seed}
    if overrides is not None:
        row["steps"] = args.steps
        # GRPO's batch holds B / G distinct clips: a shorter epoch keeps the random-masking phase
        # (train.mae_only_epochs = 1 epoch) at the same number of MAE steps as the other arms.
        clips = 1024 // (4 if overrides[0] == "agent=grpo" else 1)
        run(["train_joint.py", *overrides, contrast, f"seed={seed}", f"mask_ratio={ratio}",
             f"train.max_steps={args.steps}",
             f"train.epochs={math.ceil(args.steps / (clips // 16))}", f"data.synthetic_clips={clips}",
             "data.num_workers=0", "train.eval_every=0", "train.dump_buffer_every=0", f"output_dir={run_dir}",
             f"resume={ckpt.is_file()}"], run_dir / "train.log", threads=1)
    probe(row, run_dir, encoder, probe_data)  # the untrained encoder's (no mask ratio involved) or the run's
    if overrides is not None:
        row.update(score(str(ckpt)))
    row["wall_s"] = time.perf_counter() - tic
    result_file.write_text(json.dumps(row))
    print(json.dumps(row), flush=True)
    return row


def paired_differences(results: list[dict], arm: str, column: str, ratio: float) -> list[float]:
    """``arm - random`` per seed, over the seeds both have."""
    mine = {r["seed"]: r[column] for r in results if r["arm"] == arm and r.get("mask_ratio") == ratio and column in r}
    reference = {r["seed"]: r[column] for r in results
                 if r["arm"] == REFERENCE and r.get("mask_ratio") == ratio and column in r}
    return [mine[s] - reference[s] for s in sorted(set(mine) & set(reference))]


def table(results: list[dict], columns: list[str], ratio: float) -> str:
    """Markdown: per arm, ``mean +- 95 % half-width`` of each column, and for the probe and the
    MAE loss the difference to random paired by seed."""
    head = columns + [f"{c} - random" for c in DIFFERENCE_COLUMNS if c in columns]
    lines = [f"| arm (mask ratio {ratio}) | seeds | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]
    for name in [BASELINE] + [arm for arm, _ in ARMS]:
        rows = [r for r in results if r["arm"] == name and (name == BASELINE or r.get("mask_ratio") == ratio)]
        if not rows:
            continue
        cells = []
        for column in columns:
            values = [r[column] for r in rows if column in r]
            cells.append("-" if not values else "{:.3g} +- {:.2g}".format(*interval(values)))
        for column in DIFFERENCE_COLUMNS:
            if column not in columns:
                continue
            diffs = paired_differences(results, name, column, ratio) if name not in (BASELINE, REFERENCE) else []
            cells.append("-" if not diffs else "{:+.3g} +- {:.2g}".format(*interval(diffs)))
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict], columns: list[str], ratios: list[float], path: Path) -> None:
    """One row of panels per mask ratio, one panel per column: each arm's mean with its 95 %
    interval and one dot per seed; chance marked, and on the MAE-loss panel the best trivial predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {r["arm"] for r in results}
    names = [name for name in [BASELINE] + [arm for arm, _ in ARMS] if name in present]  # arms that were run
    chance = {"probe_top1": 100 / 8, "attentive_top1": 100 / 8, "visible_enrichment": 1.0, "prob_enrichment": 1.0}
    fig, axes = plt.subplots(len(ratios), len(columns), figsize=(4 * len(columns), (0.4 * len(names) + 1.2) * len(ratios)),
                             sharey=True, squeeze=False)
    for row_axes, ratio in zip(axes, ratios):
        for ax, column in zip(row_axes, columns):
            for y, name in enumerate(names):
                values = [r[column] for r in results if r["arm"] == name and column in r
                          and (name == BASELINE or r.get("mask_ratio") == ratio)]
                if values:
                    mean, half = interval(values)
                    ax.errorbar(mean, y, xerr=half, fmt="o", color="tab:blue", capsize=3)
                    ax.plot(values, [y] * len(values), "k.", markersize=4, alpha=0.6)
            if column in chance:
                ax.axvline(chance[column], color="tab:red", linestyle="--", linewidth=1, label="chance")
                ax.legend(loc="best", fontsize=7)
            if column == "mae_loss":
                trivial = [min(r["trivial_copy"], r["trivial_mean_visible"], r["trivial_zeros"]) for r in results
                           if "trivial_copy" in r and r.get("mask_ratio") == ratio]
                if trivial:
                    ax.axvline(statistics.mean(trivial), color="tab:green", linestyle=":", label="best trivial predictor")
                    ax.legend(loc="best", fontsize=7)
            ax.set_title(f"{column}, mask {ratio}", fontsize=9)
            ax.set_yticks(range(len(names)), names, fontsize=8)
        row_axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mask-ratios", type=float, nargs="+", default=[0.9, 0.95])
    parser.add_argument("--steps", type=int, default=512, help="MAE steps of every pretraining run")
    parser.add_argument("--probe-clips", type=int, default=2048, help="training clips of each probe")
    parser.add_argument("--test-clips", type=int, default=1024, help="held-out clips each probe is scored on")
    parser.add_argument("--contrast", choices=CONTRASTS, default="bright",
                        help="data.synthetic_contrast of every run (random: the data of the first study)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one torch thread each")
    parser.add_argument("--arms", nargs="+", help="only these rows (names as in the table)")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: the table, figure and JSON of the results already under --out")
    args = parser.parse_args(argv)
    for name in ("jobs", "steps", "probe_clips", "test_clips"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not all(0 < ratio < 1 for ratio in args.mask_ratios):
        parser.error(f"--mask-ratios must be in (0, 1), got {args.mask_ratios}")
    arms = [(BASELINE, None)] + ARMS
    if args.arms:
        unknown = set(args.arms) - {name for name, _ in arms}
        if unknown:
            parser.error(f"unknown arms {sorted(unknown)}; choose from {[name for name, _ in arms]}")
        arms = [(name, overrides) for name, overrides in arms if name in args.arms]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(BASELINE, None, 0.0, seed) for name, _ in arms if name == BASELINE for seed in args.seeds]
    jobs += [(name, overrides, ratio, seed) for ratio in args.mask_ratios for seed in args.seeds
             for name, overrides in arms if overrides is not None]
    if args.report:  # only what has been run: every result.json under --out, for the given ratios
        results = [json.loads(path.read_text()) for path in sorted(out.glob("mr*/*/seed*/result.json"))]
        results = [r for r in results if r["arm"] == BASELINE or r["mask_ratio"] in args.mask_ratios]
        if not results:
            parser.error(f"no results under {out}")
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = list(pool.map(lambda job: study_run(*job, args), jobs))
    # A report runs nothing: of its arguments only those that chose what it reports describe the results.
    described = {k: v for k, v in vars(args).items() if not args.report or k in ("out", "mask_ratios", "report")}
    (out / "study.json").write_text(json.dumps({"args": described, "results": results}, indent=1))
    plot(results, COLUMNS, args.mask_ratios, out / "study.png")
    for ratio in args.mask_ratios:
        print("\n" + table(results, COLUMNS, ratio))
    print(f"\nfigure: {out / 'study.png'}")


if __name__ == "__main__":
    from runtime.errors import run_tool

    run_tool(main)
