"""Look inside dumped rollout buffers: ``python -m agents.inspect FILE [FILE ...] [--png OUT] [--json]``.

Prints what the sampler did and how sure it was:

- reward (+L_R per clip), advantage (where the update wrote one), value estimate;
- entropy of pi (and as a fraction of log N), the log-probabilities stored with each
  episode next to a uniform policy's (exact Plackett-Luce: -sum_{j<K} log(N - j);
  the paper's masked mean: -log N);
- concentration, from the stored single-draw probabilities: how many tokens carry half
  the probability mass (uniform: N/2), the largest p, and exp(H), the effective number
  of tokens;
- how evenly tokens were kept visible (each token's visible frequency; uniform: K/N), and
  which share of the visible tokens fell in each frame t' (uniform: 1/T');
- where the buffer has motion labels (the built-in data): the motion enrichment of the
  masks, P(visible | moving) / P(visible) (1 = chance), and of p (its mass on the moving
  tokens over their share).

``--png`` draws one panel per temporal index t' of the (t', h, w) token grid: how often
each token was visible, and, if stored, the mean probability the policy gave it, titled
with the buffer's step. With several files (in the order given, e.g. ``buffers/*.h5``) it
draws how the policy changed: one row of mean p (visible frequency where p is not stored)
per buffer on one colour scale (8 rows at most, evenly spaced over the buffers), and the
entropy, the motion enrichment and the largest p of every buffer against the step. The files
come from :func:`agents.buffers.dump_hdf5`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agents.buffers import read_rollouts
from envs.mae_env import motion_enrichment


def _stats(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64).ravel()
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max())}


def tokens_for_half_mass(probs_EN: np.ndarray) -> np.ndarray:
    """Per episode, the fewest tokens whose probabilities sum to at least 1/2, ``(E,)``."""
    ordered = -np.sort(-np.asarray(probs_EN, dtype=np.float64), axis=1)
    return (np.cumsum(ordered, axis=1) < 0.5 - 1e-9).sum(axis=1) + 1


def visible_frequency(arrays: dict[str, np.ndarray], num_tokens: int) -> np.ndarray:
    """How often each token was visible over the episodes, ``(N,)`` in [0, 1]."""
    if "info/visible" in arrays:
        return arrays["info/visible"].astype(np.float64).mean(axis=0)
    act = arrays["act"].astype(np.int64)
    counts = np.zeros(num_tokens)
    np.add.at(counts, act.ravel(), 1.0)
    return counts / len(act)


def summarize(arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> dict[str, Any]:
    """The numbers :func:`main` prints, as a nested dict."""
    act = arrays["act"]
    num_visible = int(metadata.get("num_visible", act.shape[1]))
    num_tokens = int(metadata.get("num_tokens", 0)) or next(
        (arrays[k].shape[1] for k in ("policy/probs", "info/visible", "info/token_error") if k in arrays), 0)
    summary: dict[str, Any] = {
        "episodes": int(len(act)), "num_tokens": num_tokens, "num_visible": num_visible,
        **{k: metadata[k] for k in ("agent", "objective", "grid", "softmax_temp") if k in metadata},
        "reward": _stats(arrays["rew"]),
    }
    adv = arrays.get("policy/adv")
    if adv is not None and np.isfinite(adv).any():
        summary["advantage"] = _stats(adv[np.isfinite(adv)])
    for key, name in (("policy/value", "value"), ("policy/entropy", "entropy"),
                      ("policy/log_prob", "log_prob"), ("policy/masked_log_prob", "masked_log_prob")):
        if key in arrays:
            summary[name] = _stats(arrays[key])
    if "entropy" in summary and num_tokens > 1:
        summary["entropy"]["mean_over_log_n"] = summary["entropy"]["mean"] / math.log(num_tokens)
    if num_tokens:
        # a budget drawn per batch: each episode's own K (the reference is the mean over episodes)
        ks = arrays["info/num_visible"].astype(np.int64) if "info/num_visible" in arrays else np.array([num_visible])
        uniform_log_prob = np.array([-sum(math.log(num_tokens - j) for j in range(k)) for k in range(int(ks.max()) + 1)])
        summary["uniform_policy"] = {
            "log_prob": float(uniform_log_prob[ks].mean()),
            "masked_log_prob_mean": -math.log(num_tokens),
            "tokens_for_half_mass": math.ceil(num_tokens / 2), "visible_frequency": float(ks.mean()) / num_tokens,
        }
        if len(np.unique(ks)) > 1:
            summary["num_visible_per_episode"] = _stats(ks.astype(np.float64))
    if "policy/probs" in arrays:
        probs = arrays["policy/probs"].astype(np.float64)
        entropy = -(np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1.0)), 0.0)).sum(1)
        summary["concentration"] = {
            "tokens_for_half_mass": _stats(tokens_for_half_mass(probs)),
            "max_prob": _stats(probs.max(axis=1)), "effective_tokens": _stats(np.exp(entropy)),
        }
    if num_tokens:
        frequency = visible_frequency(arrays, num_tokens)
        summary["visible_frequency"] = _stats(frequency)
        grid = metadata.get("grid")
        if grid is not None and int(np.prod(grid)) == num_tokens:  # frame-major: (T', H' * W')
            per_frame = frequency.reshape(int(grid[0]), -1).sum(1) / frequency.sum()  # K may vary per batch
            summary["visible_share_per_frame"] = {f"t'={t}": float(v) for t, v in enumerate(per_frame)}
    if "info/motion" in arrays and num_tokens:
        import torch

        motion = torch.as_tensor(arrays["info/motion"].astype(bool))
        visible = torch.as_tensor(visible_mask(arrays, num_tokens))
        probs = torch.as_tensor(arrays["policy/probs"].astype(np.float64)) if "policy/probs" in arrays else None
        of_masks, of_p = motion_enrichment(visible, motion, probs)
        summary["motion_enrichment"] = {"visible": of_masks, **({"p": of_p} if probs is not None else {}),
                                        "moving_share": float(motion.float().mean())}
    return summary


def visible_mask(arrays: dict[str, np.ndarray], num_tokens: int) -> np.ndarray:
    """Each episode's visible tokens ``(E, N)`` bool (stored, or from the actions)."""
    if "info/visible" in arrays:
        return arrays["info/visible"].astype(bool)
    act = arrays["act"].astype(np.int64)
    kept = np.ones(act.shape, dtype=bool)
    if "info/num_visible" in arrays:  # a budget drawn per batch: each episode kept its first K indices
        kept = np.arange(act.shape[1]) < arrays["info/num_visible"].astype(np.int64)[:, None]
    mask = np.zeros((len(act), num_tokens), dtype=bool)
    np.put_along_axis(mask, act, kept, axis=1)
    return mask


def buffer_step(metadata: dict[str, Any], path: str | Path | None = None) -> str:
    """Where in the run the buffer was dumped: the MAE step and the policy update (from the file name if
    the metadata does not say, ``buffer-000016.h5`` being update 16)."""
    parts = []
    if "step" in metadata:
        parts.append(f"MAE step {int(metadata['step'])}")
    update = metadata.get("policy_update")
    if update is None and path is not None and Path(path).stem.startswith("buffer-"):
        digits = Path(path).stem.removeprefix("buffer-")
        update = int(digits) if digits.isdigit() else None
    if update is not None:
        parts.append(f"policy update {int(update)}")
    return ", ".join(parts)


def _title(summary: dict[str, Any], metadata: dict[str, Any], path: str | Path | None) -> str:
    """A figure's title: the file, the agent, the step, the headline numbers."""
    head = " - ".join(part for part in (Path(path).name if path else "", metadata.get("agent", ""),
                                         buffer_step(metadata, path)) if part)
    numbers = [f"{summary['episodes']} episodes"]
    if "motion_enrichment" in summary:
        numbers.append(f"motion enrichment {summary['motion_enrichment']['visible']:.2f} (1 = chance)")
    if "entropy" in summary and "mean_over_log_n" in summary["entropy"]:
        numbers.append(f"entropy {summary['entropy']['mean_over_log_n']:.3f} log N")
    return f"{head}\n{', '.join(numbers)}"


def format_summary(summary: dict[str, Any]) -> str:
    """Aligned text: one line per quantity, its statistics side by side."""

    def cells(stats: dict[str, Any]) -> str:
        return "  ".join(f"{k} {v:.5g}" for k, v in stats.items())

    lines = []
    for key, value in summary.items():
        if isinstance(value, dict) and any(isinstance(v, dict) for v in value.values()):
            lines.append(f"{key}:")
            lines += [f"  {sub:<23} {cells(v) if isinstance(v, dict) else f'{v:.5g}'}" for sub, v in value.items()]
        elif isinstance(value, dict):
            lines.append(f"{key + ':':<23} {cells(value)}")
        else:
            lines.append(f"{key + ':':<23} {value}")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(metadata: dict[str, Any], source: str | Path | None = None) -> tuple[int, int, int]:
    if "grid" not in metadata:
        raise ValueError(f"{source or 'the file'} has no grid metadata (T', H', W'): dump it with "
                         f"metadata=agent.metadata()")
    frames, height, width = (int(g) for g in metadata["grid"])
    return frames, height, width


def draw_heatmaps(arrays: dict[str, np.ndarray], metadata: dict[str, Any], path: str | Path, *,
                  source: str | Path | None = None) -> Path:
    """One panel per t': visible frequency of each (h, w) token, and mean p if stored; titled with the
    buffer's step and its motion enrichment (``source``: the dump's path, for the title)."""
    plt = _pyplot()
    frames, height, width = _grid(metadata, source)
    num_tokens = frames * height * width
    rows = [("visible frequency", visible_frequency(arrays, num_tokens))]
    if "policy/probs" in arrays:
        rows.append(("mean p (single draw)", arrays["policy/probs"].astype(np.float64).mean(axis=0)))
    fig, axes = plt.subplots(len(rows), frames, figsize=(2.2 * frames + 1, 2.2 * len(rows) + 0.4),
                             squeeze=False, constrained_layout=True)
    for row, (title, values) in enumerate(rows):
        grid = values.reshape(frames, height, width)  # frame-major token order
        image = None
        for t in range(frames):
            ax = axes[row, t]
            image = ax.imshow(grid[t], vmin=0.0, vmax=float(grid.max()) or 1.0, cmap="viridis")
            ax.set_title(f"t'={t}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(title, fontsize=8)
        fig.colorbar(image, ax=axes[row, :].tolist(), shrink=0.8)
    fig.suptitle(_title(summarize(arrays, metadata), metadata, source), fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


MAX_HEATMAP_ROWS = 8
"""Buffers drawn as heat-map rows at most (a run dumps dozens): the first, the last, evenly spaced between."""


def heatmap_rows(count: int, most: int = MAX_HEATMAP_ROWS) -> list[int]:
    """Indices of the buffers drawn as rows: all of them up to ``most``, else ``most`` evenly spaced."""
    if count <= most:
        return list(range(count))
    return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})


def draw_evolution(dumps: list[tuple[str | Path, dict[str, np.ndarray], dict[str, Any]]], path: str | Path) -> Path:
    """How the policy changed across buffers: per buffer (a row; :func:`heatmap_rows`) the mean p of each
    token (visible frequency where p is not stored), one panel per t', one colour scale; below, the entropy (/ log N),
    the motion enrichment and the largest mean p against the buffer's step."""
    plt = _pyplot()
    frames, height, width = _grid(dumps[0][2], dumps[0][0])
    num_tokens = frames * height * width
    rows, steps, summaries = [], [], []
    for index, (source, arrays, metadata) in enumerate(dumps):
        if _grid(metadata, source) != (frames, height, width):
            raise ValueError(f"{source} has the token grid {metadata['grid']}, {dumps[0][0]} {[frames, height, width]}: "
                             f"compare buffers of one run")
        probs = "policy/probs" in arrays
        values = (arrays["policy/probs"].astype(np.float64).mean(axis=0) if probs
                  else visible_frequency(arrays, num_tokens))
        rows.append((values.reshape(frames, height, width), probs))
        steps.append(_step_value(metadata, source, index))
        summaries.append(summarize(arrays, metadata))
    kind = "mean p" if all(probs for _, probs in rows) else "mean p / visible frequency"
    shown = heatmap_rows(len(rows))  # the curves below use every buffer
    vmax = max(float(rows[index][0].max()) for index in shown) or 1.0  # the scale of the rows drawn
    fig = plt.figure(figsize=(1.6 * frames + 1.6, 1.5 * len(shown) + 2.8), constrained_layout=True)
    grid = fig.add_gridspec(len(shown) + 1, frames, height_ratios=[1.0] * len(shown) + [1.6])
    image = None
    for r, index in enumerate(shown):
        (values, probs), (source, _, metadata) = rows[index], dumps[index]
        for t in range(frames):
            ax = fig.add_subplot(grid[r, t])
            image = ax.imshow(values[t], vmin=0.0, vmax=vmax, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t'={t}", fontsize=8)
            if t == 0:
                label = buffer_step(metadata, source).replace(", ", "\n") or Path(source).name
                ax.set_ylabel(label + ("" if probs else "\n(visible freq.)"), fontsize=7)
    uniform = [f"p: 1/N = {1 / num_tokens:.2g}"]
    if not all(probs for _, probs in rows):
        uniform.append(f"visible frequency: K/N = {int(dumps[0][2].get('num_visible', 0)) / num_tokens:.2g}")
    fig.colorbar(image, ax=fig.axes, shrink=0.6, label=f"{kind} (uniform {', '.join(uniform)})")
    series = {
        "entropy / log N (1 = uniform)": [s.get("entropy", {}).get("mean_over_log_n") for s in summaries],
        "motion enrichment (1 = chance)": [s.get("motion_enrichment", {}).get("visible") for s in summaries],
        "largest p x N (1 = uniform)": [s["concentration"]["max_prob"]["mean"] * num_tokens
                                        if "concentration" in s else None for s in summaries],
    }
    series = {name: values for name, values in series.items() if any(v is not None for v in values)}
    panels = grid[len(shown), :].subgridspec(1, max(len(series), 1), wspace=0.3)
    x_label = "MAE step" if all("step" in d[2] for d in dumps) else "policy update"
    for number, (name, values) in enumerate(series.items()):
        curves = fig.add_subplot(panels[0, number])
        known = [(x, y) for x, y in zip(steps, values) if y is not None]
        curves.plot(*zip(*known), marker="o", color=f"C{number}")
        if "uniform" in name or "chance" in name:
            curves.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
        curves.set_title(name, fontsize=8)
        curves.set_xlabel(x_label, fontsize=8)
        curves.tick_params(labelsize=7)
        curves.grid(alpha=0.3)
    agent = dumps[0][2].get("agent", "")
    rows_note = f"; rows: {len(shown)} of them, evenly spaced" if len(shown) < len(dumps) else ""
    fig.suptitle(f"How the policy changed over {len(dumps)} buffers" + (f" ({agent})" if agent else "") + rows_note,
                 fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _step_value(metadata: dict[str, Any], source: str | Path, index: int) -> float:
    if "step" in metadata:
        return float(metadata["step"])
    if metadata.get("policy_update") is not None:
        return float(metadata["policy_update"])
    digits = Path(source).stem.removeprefix("buffer-")
    return float(digits) if digits.isdigit() else float(index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.inspect", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="HDF5 rollout dumps (agents.buffers.dump_hdf5); several: how the policy changed")
    parser.add_argument("--png", help="write the heatmaps (one file) or the policy's change (several) to this PNG")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON (several: a list)")
    args = parser.parse_args(argv)
    from runtime.errors import report_error

    dumps = []
    for file in args.files:
        if not Path(file).is_file():
            report_error(f"no such file: {file}")
            return 2
        try:
            arrays, metadata = read_rollouts(file)
        except (OSError, KeyError, ValueError) as error:  # not HDF5, or HDF5 of something else
            report_error(f"{file} is not a rollout dump (the HDF5 files train_joint.py writes to "
                         f"output_dir/buffers/): {error}")
            return 2
        dumps.append((file, arrays, metadata))
    summaries = [summarize(arrays, metadata) for _, arrays, metadata in dumps]
    if args.json:
        if len(dumps) == 1:
            print(json.dumps(summaries[0], indent=2))
        else:
            print(json.dumps([{"file": str(file), "at": buffer_step(metadata, file), **summary}
                              for (file, _, metadata), summary in zip(dumps, summaries)], indent=2))
    else:
        for (file, _, metadata), summary in zip(dumps, summaries):
            if len(dumps) > 1:
                print(f"== {file}" + (f" ({at})" if (at := buffer_step(metadata, file)) else ""))
            print(format_summary(summary))
    if args.png:
        if len(dumps) == 1:
            file, arrays, metadata = dumps[0]
            print(f"heatmaps: {draw_heatmaps(arrays, metadata, args.png, source=file)}")
        else:
            print(f"the policy across {len(dumps)} buffers: {draw_evolution(dumps, args.png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
