"""Look inside a dumped rollout buffer: ``python -m agents.inspect FILE [--png OUT] [--json]``.

Prints what the sampler did and how sure it was:

- reward (+L_R per clip), advantage (where the update wrote one), value estimate;
- entropy of pi (and as a fraction of log N), the log-probabilities stored with each
  episode next to a uniform policy's (exact Plackett-Luce: -sum_{j<K} log(N - j);
  the paper's masked mean: -log N);
- concentration, from the stored single-draw probabilities: how many tokens carry half
  the probability mass (uniform: N/2), the largest p, and exp(H), the effective number
  of tokens;
- how evenly tokens were kept visible (each token's visible frequency; uniform: K/N), and
  which share of the visible tokens fell in each frame t' (uniform: 1/T').

``--png`` draws one panel per temporal index t' of the (t', h, w) token grid: how often
each token was visible, and, if stored, the mean probability the policy gave it.
The file comes from :func:`agents.buffers.dump_hdf5`.
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
        summary["uniform_policy"] = {
            "log_prob": -float(sum(math.log(num_tokens - j) for j in range(num_visible))),
            "masked_log_prob_mean": -math.log(num_tokens),
            "tokens_for_half_mass": math.ceil(num_tokens / 2), "visible_frequency": num_visible / num_tokens,
        }
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
            per_frame = frequency.reshape(int(grid[0]), -1).sum(1) / num_visible
            summary["visible_share_per_frame"] = {f"t'={t}": float(v) for t, v in enumerate(per_frame)}
    return summary


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


def draw_heatmaps(arrays: dict[str, np.ndarray], metadata: dict[str, Any], path: str | Path) -> Path:
    """One panel per t': visible frequency of each (h, w) token, and mean p if stored."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "grid" not in metadata:
        raise ValueError("the file has no grid metadata (T', H', W'): dump it with metadata=agent.metadata()")
    frames, height, width = (int(g) for g in metadata["grid"])
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
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.inspect", description=__doc__.split("\n")[0])
    parser.add_argument("file", help="an HDF5 rollout dump (agents.buffers.dump_hdf5)")
    parser.add_argument("--png", help="write per-frame heatmaps of the visible tokens to this PNG")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    from runtime.errors import report_error

    if not Path(args.file).is_file():
        report_error(f"no such file: {args.file}")
        return 2
    try:
        arrays, metadata = read_rollouts(args.file)
    except (OSError, KeyError, ValueError) as error:  # not HDF5, or HDF5 of something else
        report_error(f"{args.file} is not a rollout dump (the HDF5 files train_joint.py writes to "
                     f"output_dir/buffers/): {error}")
        return 2
    summary = summarize(arrays, metadata)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    if args.png:
        print(f"heatmaps: {draw_heatmaps(arrays, metadata, args.png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
