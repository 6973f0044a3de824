"""The leaderboard: every agent, several seeds, the same frozen MAE and episode budget; references as rows.

Each arm is ``train_joint.py train.mae=frozen`` with the arm's overrides (a run folder per
arm and seed under ``--out``, reused when finished), then :func:`benchmark.evaluate.evaluate_run`
at the trained mask ratio and at 0.75, 0.9 and 0.95. Output: ``leaderboard.md`` (the table),
``leaderboard.json`` (every number), ``leaderboard.png`` (score against episodes, mean and
95 % band per agent). Intervals are two-sided 95 % Student-t over training seeds; the held-out
clips are the same for every run, so they do not include the clips' sampling error.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmark.evaluate import (BENCHMARK_CLIPS, EVAL_RATIOS, evaluate_run, heldout_clips, reference_cache,
                                reference_losses)
from benchmark.references import REFERENCES, forward_passes_per_clip, normalised_score
from runtime.stats import interval

ROOT = Path(__file__).resolve().parents[1]
RUN_THREADS = 1
"""Torch threads of every benchmark training run (the MAE's and each agent's). CPU float sums depend on
the thread count, so a fixed count keeps a seed's run the same on machines with more or fewer cores;
the testbed's tiny model runs as fast on one thread as on two. ``--jobs`` runs several at once."""

ARMS: dict[str, list[str]] = {
    "tats-ppo": ["agent=ppo"],  # the CPU preset's: cooperative objective, trajectory attention
    "ppo-mha": ["agent=ppo", "agent.actor=mha"],
    "grpo": ["agent=grpo"],
    "reinforce-clip": ["agent=reinforce", "agent.recipe=separate", "agent.estimator=clip",
                       "agent.objective=cooperative"],
    "stock-ppo": ["agent=custom", "agent._target_=benchmark.stock.build_ppo", "train.reward=negative_loss"],
}
"""Arm name -> train_joint.py overrides (on top of the CPU preset and the frozen MAE)."""
LABELS = {"tats-ppo": "TATS PPO, trajectory attention", "ppo-mha": "TATS PPO, MHA actor",
          "grpo": "GRPO, trajectory attention", "reinforce-clip": "REINFORCE (clip estimator), MHA actor",
          "stock-ppo": "stock Tianshou PPO (agent=custom)"}


def run_overrides(arm: str, seed: int, **options: Any) -> list[str]:
    """The ``train_joint.py`` command line of one arm of :data:`ARMS` and seed (:func:`frozen_run_overrides`)."""
    return frozen_run_overrides(ARMS[arm], seed, **options)


def frozen_run_overrides(arm_overrides: list[str], seed: int, *, mae_checkpoint: Path, steps: int, eval_every: int,
                         mask_ratio: float, eval_clips: int, run_dir: Path) -> list[str]:
    """The ``train_joint.py`` command line of an arm (its own overrides) and seed on the benchmark's MAE."""
    return [*arm_overrides, "train.mae=frozen", f"model.init_checkpoint={mae_checkpoint}", f"seed={seed}",
            f"mask_ratio={mask_ratio}", f"train.max_steps={steps}", f"train.epochs={max(1, math.ceil(steps / 64))}",
            f"train.eval_every={eval_every}", f"train.eval_clips={eval_clips}", "train.dump_buffer_every=0",
            "data.num_workers=0", f"output_dir={run_dir}"]


def train_arm(arm: str, seed: int, run_dir: Path, overrides: list[str], *, threads: int = RUN_THREADS) -> float:
    """Train one arm (skipped when its run is finished); its wall seconds (of the earlier run if reused)."""
    timing = run_dir / "wall_s.json"
    if (run_dir / "checkpoint-latest.pt").is_file() and timing.is_file():
        return float(json.loads(timing.read_text())["wall_s"])
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.parent / f"{run_dir.name}.log"
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    tic = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run([sys.executable, str(ROOT / "train_joint.py"), *overrides,
                               *(["resume=true"] if (run_dir / "checkpoint-latest.pt").is_file() else [])],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{arm} seed {seed} failed; see {log}")
    wall = time.perf_counter() - tic
    timing.write_text(json.dumps({"wall_s": wall}))
    return wall


def train_run(arm: str, seed: int, run_dir: Path, overrides: list[str], *, steps: int, batch_size: int,
              threads: int = RUN_THREADS) -> dict[str, Any]:
    """Train one arm and seed (:func:`train_arm`); its record: wall seconds, episodes, score curve, folder."""
    wall = train_arm(arm, seed, run_dir, overrides, threads=threads)
    return {"arm": arm, "seed": seed, "wall_s": wall, "episodes": steps * batch_size,
            "curve": score_curve(run_dir, batch_size), "run_dir": str(run_dir)}


def score_curve(run_dir: Path, episodes_per_step: int) -> list[tuple[int, float]]:
    """``(episodes, eval/score)`` from a run's TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    if "eval/score" not in events.Tags()["scalars"]:
        return []
    return [(e.step * episodes_per_step, e.value) for e in events.Scalars("eval/score")]


def reference_rows(mae_checkpoint: Path, ratios: list[float], num_clips: int,
                   names: tuple[str, ...] = REFERENCES) -> dict[str, dict[str, Any]]:
    """Every reference (of ``names``; random and greedy always) at each ratio: loss, score, motion enrichment,
    cost, wall time."""
    from omegaconf import OmegaConf

    from mae import num_visible
    from mae.checkpoint import load_mae_weights
    from mae.registry import create_model_from_config
    from runtime import checkpoint

    cfg = OmegaConf.create(checkpoint.load(mae_checkpoint, mmap=True)["config"])
    model = create_model_from_config(cfg.model, num_frames=cfg.data.num_frames)
    load_mae_weights(model, str(mae_checkpoint))
    model.eval()
    clips = heldout_clips(model, cfg.data, num_clips=num_clips)
    rows: dict[str, dict[str, Any]] = {}
    for ratio in ratios:
        k = num_visible(model.num_tokens, ratio)
        refs = reference_losses(model, clips["video"], k, names=tuple(dict.fromkeys(("random", "greedy", *names))),
                                motion=clips["motion"],
                                cache_dir=reference_cache(mae_checkpoint))
        random_loss = sum(refs["random"]["losses"]) / num_clips
        oracle_loss = sum(refs["greedy"]["losses"]) / num_clips
        for name, ref in refs.items():
            loss = sum(ref["losses"]) / num_clips
            rows.setdefault(name, {})[f"{ratio:g}"] = {
                "loss": loss, "score": normalised_score(loss, random_loss, oracle_loss),
                "motion_enrichment": ref.get("motion_enrichment"), "wall_s": ref["wall_s"],
                "forward_passes_per_clip": forward_passes_per_clip(name, model.num_tokens, k)}
    return rows


def summarise(runs: list[dict[str, Any]], ratio: float) -> dict[str, dict[str, Any]]:
    """Per arm: mean and 95 % half-width over seeds of each score and loss."""
    out: dict[str, dict[str, Any]] = {}
    for arm in dict.fromkeys(r["arm"] for r in runs):
        mine = [r for r in runs if r["arm"] == arm]
        row: dict[str, Any] = {"seeds": [r["seed"] for r in mine]}
        for key in ("score", "score_top_k", "loss", "loss_top_k", "motion_enrichment"):
            values = [r["eval"]["ratios"][f"{ratio:g}"].get(key) for r in mine]
            if all(v is not None for v in values):
                row[key] = interval(values)
        for other in EVAL_RATIOS:
            if f"{other:g}" in mine[0]["eval"]["ratios"]:
                row[f"score@{other:g}"] = interval([r["eval"]["ratios"][f"{other:g}"]["score"] for r in mine])
        row["wall_s"] = interval([r["wall_s"] for r in mine])
        row["episodes_per_s"] = interval([r["episodes"] / r["wall_s"] for r in mine])
        out[arm] = row
    return out


def _pm(value: tuple[float, float] | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value[0]:.{digits}f} ± {value[1]:.{digits}f}"


def table(summary: dict[str, dict[str, Any]], references: dict[str, dict[str, Any]], ratio: float) -> str:
    """Markdown: agents (mean ± 95 % half-width over seeds), then the references (one deterministic value)."""
    r = f"{ratio:g}"
    others = [f"{x:g}" for x in EVAL_RATIOS if f"{x:g}" != r]
    head = (f"| agent | score | score, top-K | L_R | enrichment | " + " | ".join(f"score @ {o}" for o in others)
            + " | wall s | episodes/s |")
    lines = [head, "|" + "---|" * (7 + len(others))] if summary else []
    for arm, row in sorted(summary.items(), key=lambda item: -item[1]["score"][0]):
        lines.append(f"| {LABELS.get(arm, arm)} | {_pm(row['score'])} | {_pm(row['score_top_k'])} | "
                     f"{_pm(row['loss'], 4)} | {_pm(row.get('motion_enrichment'), 2)} | "
                     + " | ".join(_pm(row.get(f"score@{o}")) for o in others)
                     + f" | {row['wall_s'][0]:.0f} | {row['episodes_per_s'][0]:.0f} |")
    lines += ["" if lines else None, f"| reference | score | L_R | enrichment | " + " | ".join(f"score @ {o}" for o in others)
              + " | MAE forward passes per clip | wall s (all clips) |", "|" + "---|" * (6 + len(others))]
    for name, by_ratio in references.items():
        ref = by_ratio[r]
        enrichment = "-" if ref["motion_enrichment"] is None else f"{ref['motion_enrichment']:.2f}"
        lines.append(f"| {name} | {ref['score']:.1f} | {ref['loss']:.4f} | {enrichment} | "
                     + " | ".join(f"{by_ratio[o]['score']:.1f}" if o in by_ratio else "-" for o in others)
                     + f" | {ref['forward_passes_per_clip']} | {ref['wall_s']:.1f} |")
    return "\n".join(line for line in lines if line is not None)


def figure(runs: list[dict[str, Any]], references: dict[str, dict[str, Any]], ratio: float, path: Path) -> None:
    """Score against episodes: per agent the mean over seeds and its 95 % band; references as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm in dict.fromkeys(r["arm"] for r in runs):
        curves = [dict(r["curve"]) for r in runs if r["arm"] == arm and r["curve"]]
        if not curves:
            continue
        xs = sorted(set.intersection(*(set(c) for c in curves)))
        stats = [interval([c[x] for c in curves]) for x in xs]
        mean = [s[0] for s in stats]
        ax.plot(xs, mean, label=LABELS.get(arm, arm))
        ax.fill_between(xs, [m - s[1] for m, s in zip(mean, stats)], [m + s[1] for m, s in zip(mean, stats)],
                        alpha=0.2)
    low = -10.0
    for name, style in (("motion", ":"), ("best_of_m", "--"), ("tube", "-.")):
        if name in references:
            score = references[name][f"{ratio:g}"]["score"]
            if score >= low:
                ax.axhline(score, color="grey", linestyle=style, linewidth=1, label=f"{name} (reference): {score:.1f}")
            else:  # off the axis: named, not drawn
                ax.plot([], [], " ", label=f"{name} (reference): {score:.1f}, below the axis")
    ax.axhline(0, color="black", linewidth=0.8, label="random masks (0)")
    ax.axhline(100, color="black", linewidth=0.8, linestyle="--", label="greedy oracle (100)")
    ax.set_ylim(low, 110)
    ax.set_xlabel("training episodes (clips)")
    ax.set_ylabel("score (0 = random masks, 100 = greedy oracle)")
    ax.set_title(f"Frozen-MAE benchmark, mask ratio {ratio:g} (mean and 95 % band over seeds)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_leaderboard(*, mae_checkpoint: Path, out: Path, arms: list[str], seeds: list[int], steps: int,
                    eval_every: int, mask_ratio: float, eval_clips: int = BENCHMARK_CLIPS, jobs: int = 2,
                    batch_size: int = 16) -> dict[str, Any]:
    """Train (or reuse) every arm and seed, evaluate them, write the table, JSON and figure into ``out``."""
    from tqdm import tqdm

    unknown = sorted(set(arms) - set(ARMS))
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; choose from {sorted(ARMS)}")
    out.mkdir(parents=True, exist_ok=True)
    ratios = sorted({mask_ratio, *EVAL_RATIOS})
    print("references (cached beside the MAE after the first time) ...", flush=True)
    references = reference_rows(mae_checkpoint, ratios, eval_clips)
    jobs_list = [(arm, seed) for arm in arms for seed in seeds]
    def one(job: tuple[str, int]) -> dict[str, Any]:
        arm, seed = job
        run_dir = out / "runs" / f"{arm}-seed{seed}"
        overrides = run_overrides(arm, seed, mae_checkpoint=mae_checkpoint, steps=steps, eval_every=eval_every,
                                  mask_ratio=mask_ratio, eval_clips=eval_clips, run_dir=run_dir)
        return train_run(arm, seed, run_dir, overrides, steps=steps, batch_size=batch_size)

    runs = []
    with ThreadPoolExecutor(max_workers=jobs) as pool, tqdm(total=len(jobs_list), desc="arms x seeds") as bar:
        for result in pool.map(one, jobs_list):
            runs.append(result)
            bar.update(1)
    for result in runs:  # after training: the evaluations do not share the cores with it
        result["eval"] = evaluate_run(result["run_dir"], ratios=ratios, num_clips=eval_clips,
                                      cache_dir=reference_cache(mae_checkpoint), progress=False)
    summary = summarise(runs, mask_ratio)
    text = table(summary, references, mask_ratio)
    report = {"mae_checkpoint": str(mae_checkpoint), "mask_ratio": mask_ratio, "steps": steps,
              "episodes": steps * batch_size, "eval_clips": eval_clips, "seeds": seeds, "arms": arms,
              "summary": summary, "references": references, "runs": runs}
    (out / "leaderboard.json").write_text(json.dumps(report, indent=1))
    (out / "leaderboard.md").write_text(text + "\n")
    figure(runs, references, mask_ratio, out / "leaderboard.png")
    print(text)
    print(f"\nwrote {out / 'leaderboard.md'}, {out / 'leaderboard.json'}, {out / 'leaderboard.png'}")
    return report
