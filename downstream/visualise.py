"""What a ``train_joint.py`` checkpoint does with one clip: mask, probabilities, reconstruction.

    python -m downstream.visualise --video clip.mp4 --checkpoint runs/cpu-ppo/checkpoint-latest.pt \\
        --out fig.png [--gif] [--compare random|tube] [--query T,H,W] [--deterministic] [--seed 0]
    python -m downstream.visualise --synthetic 3 --checkpoint CKPT --out fig.png

One column per tubelet step t' (its first frame); the rows:

- ``input``: the clip (a video file: centred window, short side resized, centre crop, as in
  evaluation; ``--synthetic I``: clip I of the built-in held-out split);
- ``visible (policy)``: the mask the checkpoint's agent samples (``--deterministic``: its K
  most probable tokens), masked tokens dimmed;
- ``reconstruction``: visible tokens as they are, masked ones the MAE's prediction,
  de-normalised with the true per-patch mean and std of the input (the target is per patch
  and channel over its tubelet x patch x patch pixels, unbiased std + 1e-6), as VideoMAE's
  visualisation does;
- ``error``: per-token reconstruction MSE (Eq. 6) of the masked tokens;
- ``p (policy)``: the policy's single-draw probabilities pi_theta(X) (Plackett-Luce
  ``probs`` of the actor's logits with its temperature) on the MAE's tokens; uniform for the
  fixed maskers ``random``/``tube``;
- ``motion``: (``--synthetic`` only) the ground truth: tokens a moving object covers
  bright (yellow), still ones dark;
- ``visible (random|tube)``: (``--compare``) a fixed masker's mask at the same ratio, with
  its reconstruction loss in the label;
- ``attention``: (``--query t,h,w``) the actor's first attention layer for that token:
  per-frame spatial softmax of Eq. 1 (trajectory actors, with Eq. 2's weight over frames in
  each title) or the self-attention row (MHA actors); the query is outlined.

Each heat row has its colour bar on the right (the motion row's names its two values).
``--gif`` also writes the same rows as an animation over all T frames (``<out>.gif``).
"""

from __future__ import annotations

import runtime.fast_start  # noqa: F401, I001 - first: before Tianshou compiles its numba kernels

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from einops import rearrange  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import mae  # noqa: E402
from agents.distributions import PlackettLuce  # noqa: E402
from agents.registry import build_agent  # noqa: E402
from data import EvalClipTransform, SyntheticMotionVideos, VideoReadError, read_clip  # noqa: E402
from data.synthetic import synthetic_style  # noqa: E402
from downstream.attention_maps import actor_attention  # noqa: E402
from envs.render import dim_masked, to_pixels  # noqa: E402
from envs.spaces import token_spaces  # noqa: E402
from mae.classifier import CheckpointMismatchError  # noqa: E402
from mae.registry import create_model_from_config  # noqa: E402
from runtime import checkpoint  # noqa: E402
from runtime.errors import one_line, user_error_types  # noqa: E402

PANEL_INCHES, LABEL_INCHES, TITLE_INCHES, COLORBAR_INCHES, DPI = 1.5, 1.3, 0.35, 0.75, 100
MOTION_COLORS = ("#1b1b2f", "#ffd60a")  # still: near black, moving: bright yellow


@dataclass
class Pretrained:
    """A ``train_joint.py`` checkpoint, rebuilt: the MAE, the agent, the run's config."""

    model: mae.PretrainVideoMAE
    agent: object
    config: dict
    num_visible: int


def load_pretrained(path: str | Path) -> Pretrained:
    """Rebuild the MAE and the agent of a checkpoint (CPU, eval mode); works for every agent."""
    state = checkpoint.load(path)
    if not isinstance(state, dict) or not {"mae", "agent", "config"} <= set(state):
        raise CheckpointMismatchError(f"{path} is not a train_joint.py checkpoint (needs 'mae', 'agent', 'config')")
    cfg = state["config"]
    model = create_model_from_config(cfg["model"], num_frames=cfg["data"]["num_frames"])
    model.load_state_dict(state["mae"])
    model.eval()
    env = agent_environment(model, cfg["mask_ratio"], group_size=int(cfg["agent"].get("group_size", 1)))
    agent = build_agent(cfg["agent"]["name"], env=env, config=cfg["agent"], device="cpu")
    agent.load_state_dict(state["agent"])
    agent.algorithm.eval()
    return Pretrained(model, agent, cfg, env.num_visible)


def agent_environment(model: mae.PretrainVideoMAE, mask_ratio: float, *, group_size: int = 1) -> SimpleNamespace:
    """What an agent reads off its environment (:meth:`agents.algorithms.spec.EnvSpec.from_env`), without one."""
    num_tokens, num_visible = model.num_tokens, mae.num_visible(model.num_tokens, mask_ratio)
    observation_space, action_space = token_spaces(num_tokens, num_visible, model.embed_dim)
    return SimpleNamespace(
        num_tokens=num_tokens, num_visible=num_visible, mask_ratio=mask_ratio, mae=model, group_size=group_size,
        single_observation_space=observation_space, single_action_space=action_space)


def load_clip(pretrained: Pretrained, *, video: str | None = None,
              synthetic: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """The clip ``(1, 3, T, S, S)`` (normalised), the synthetic motion ground truth ``(N,)`` or None, a name."""
    model, data = pretrained.model, pretrained.config["data"]
    if synthetic is not None:
        if synthetic < 0:
            raise ValueError(f"--synthetic wants a clip index >= 0, got {synthetic}")
        dataset = SyntheticMotionVideos(synthetic + 1, num_frames=model.num_frames, input_size=model.img_size,
                                        patch_size=model.patch_size, tubelet_size=model.tubelet_size,
                                        seed=pretrained.config["seed"], split="val",
                                        **synthetic_style(data))
        item = dataset[synthetic]
        label = SyntheticMotionVideos.CLASSES[item["label"]]
        return item["video"][None], item["motion"], f"synthetic val clip {synthetic} ({label})"
    frames, _ = read_clip(video, model.num_frames, data["sampling_rate"], train=False,
                          reader=data.get("reader", "auto"))
    return EvalClipTransform(model.img_size)(frames)[None], None, Path(video).name


@torch.no_grad()
def reconstruct(model: mae.PretrainVideoMAE, video: torch.Tensor,
                visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The MAE's reconstruction in pixels: each masked patch is the prediction, de-normalised by the
    patch's true mean/std when the model predicts per-patch-normalised targets (``norm_target``).

    Shapes:
        video ``(1, 3, T, H, W)``, visible ``(1, N)`` -> pixels ``(1, 3, T, H, W)`` in [0, 1],
        per-token error ``(1, N)`` (0 at visible tokens), and the clip's loss L_R.
    """
    pred = model(video, visible)  # (1, N - K, tubelet * p * p * 3) in the model's target space
    out = model.reconstruction_loss(pred, model.target(video), visible)
    u, p = model.tubelet_size, model.patch_size
    patches = rearrange(to_pixels(video), "b c (t u) (h p) (w q) -> b (t h w) (u p q) c", u=u, p=p, q=p)
    predicted = rearrange(pred.float(), "b m (k c) -> (b m) k c", c=3)
    if model.norm_target:  # the prediction is (patch - mean) / std of the true patch
        mean = patches.mean(dim=-2, keepdim=True)
        std = patches.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6
        predicted = predicted * std[~visible] + mean[~visible]
    filled = patches.clone()
    filled[~visible] = predicted
    pixels = rearrange(filled, "b (t h w) (u p q) c -> b c (t u) (h p) (w q)",
                       t=model.grid[0], h=model.grid[1], w=model.grid[2], u=u, p=p, q=p)
    return pixels.clamp(0, 1), out.per_token, float(out.per_clip[0])


@torch.no_grad()
def policy_mask(pretrained: Pretrained, video: torch.Tensor, *, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The agent's single-draw probabilities ``(1, N)`` and its visible mask ``(1, N)`` for the clip."""
    agent, model, num_tokens = pretrained.agent, pretrained.model, pretrained.model.num_tokens
    if not agent.learns:  # fixed masker: every token equally likely to be drawn first
        return torch.full((1, num_tokens), 1.0 / num_tokens), agent.policy.masks(1).cpu()
    logits, _ = agent.policy.actor(model.tokenize(video))
    dist = PlackettLuce(logits, k=pretrained.num_visible, temperature=agent.policy.temperature)
    action = dist.mode if deterministic else dist.sample()
    return dist.probs.float().cpu(), mae.indices_to_mask(action, num_tokens).cpu()


@torch.no_grad()
def single_draw_probs(pretrained: Pretrained, video: torch.Tensor) -> torch.Tensor:
    """A learned agent's single-draw probabilities pi_theta(X) ``(B, N)`` of clips ``(B, 3, T, H, W)``."""
    agent = pretrained.agent
    logits, _ = agent.policy.actor(pretrained.model.tokenize(video))
    return PlackettLuce(logits, k=pretrained.num_visible, temperature=agent.policy.temperature).probs.float()


@dataclass
class Row:
    """One figure row: ``kind`` image (pixels ``(T, H, W, 3)``) or heat (values ``(T', H', W')`` over pixels)."""

    label: str
    kind: str
    pixels: np.ndarray | None = None
    heat: np.ndarray | None = None
    titles: list[str] | None = None
    outline: tuple[int, int, int] | None = None  # (t', h, w) of the attention query
    cmap: str = "magma"
    vmin: float | None = 0.0  # None: the row's smallest value (shows the spread of a narrow range)
    colorbar: str = ""  # the colour bar's label
    ticks: tuple[tuple[float, str], ...] | None = None  # (value, name) pairs in place of the bar's numbers


@dataclass
class Visualisation:
    """Everything drawn, as arrays: ``frames`` ``(T, H, W, 3)`` in [0, 1], the rows, the grid."""

    frames: np.ndarray
    rows: list[Row] = field(default_factory=list)
    grid: tuple[int, int, int] = (1, 1, 1)
    tubelet: int = 2
    title: str = ""


def build_visualisation(pretrained: Pretrained, video: torch.Tensor, *, motion: torch.Tensor | None = None,
                        compare: str | None = None, query: tuple[int, int, int] | None = None,
                        deterministic: bool = False, seed: int = 0, title: str = "",
                        probabilities: bool = True) -> Visualisation:
    """Run the agent and the MAE on one clip and collect the rows (see the module docstring);
    ``probabilities=False`` leaves out the row of p (a fixed masker's is uniform)."""
    torch.manual_seed(seed)
    model, grid, tubelet = pretrained.model, pretrained.model.grid, pretrained.model.tubelet_size
    frames = rearrange(to_pixels(video)[0].cpu(), "c t h w -> t h w c").numpy()
    probs, visible = policy_mask(pretrained, video, deterministic=deterministic)
    recon, error, loss = reconstruct(model, video, visible.to(video.device))
    error_map = np.where(visible[0].numpy(), np.nan, error[0].float().cpu().numpy())
    agent_name = pretrained.config["agent"]["name"]
    rows = [
        Row("input", "image", pixels=frames),
        Row(f"visible ({agent_name})", "image", pixels=dim_masked(frames, visible[0], grid, tubelet)),
        Row(f"reconstruction\nL_R = {loss:.3f}", "image",
            pixels=rearrange(recon[0].cpu(), "c t h w -> t h w c").numpy()),
        Row(f"error (masked)\n{np.nanmin(error_map):.2f}-{np.nanmax(error_map):.2f}", "heat", pixels=frames,
            heat=error_map.reshape(grid), vmin=None, colorbar="token MSE"),
    ]
    if probabilities:
        rows.append(Row(f"p ({agent_name})\nmax {float(probs.max()):.2g}", "heat", pixels=frames,
                        heat=probs[0].numpy().reshape(grid), cmap="viridis",
                        colorbar=f"p (uniform: 1/{model.num_tokens})"))
    if motion is not None:
        rows.append(Row("motion\n(ground truth)", "heat", pixels=frames,
                        heat=motion.float().cpu().numpy().reshape(grid), cmap="motion",
                        ticks=((0.0, "still"), (1.0, "moving"))))
    if compare is not None:
        generator = torch.Generator().manual_seed(seed)
        ratio = pretrained.config["mask_ratio"]
        other = (mae.random_mask(1, model.num_tokens, ratio, generator=generator) if compare == "random"
                 else mae.tube_mask(1, grid, ratio, generator=generator))
        _, _, other_loss = reconstruct(model, video, other.to(video.device))
        rows.append(Row(f"visible ({compare})\nL_R = {other_loss:.3f}", "image",
                        pixels=dim_masked(frames, other[0], grid, tubelet)))
    if query is not None:
        rows.append(_attention_row(pretrained, video, query, frames))
    return Visualisation(frames=frames, rows=rows, grid=grid, tubelet=tubelet, title=title)


def _attention_row(pretrained: Pretrained, video: torch.Tensor, query: tuple[int, int, int],
                   frames: np.ndarray) -> Row:
    grid = pretrained.model.grid
    if any(not 0 <= q < g for q, g in zip(query, grid)):
        raise ValueError(f"--query {','.join(map(str, query))} is outside the token grid (T', H', W') = {grid}")
    if not pretrained.agent.learns:
        raise ValueError(f"--query needs a learned sampler; agent {pretrained.config['agent']['name']!r} has no actor")
    index = (query[0] * grid[1] + query[1]) * grid[2] + query[2]
    attention = actor_attention(pretrained.agent.policy.actor, pretrained.model.tokenize(video), index, grid)
    heat = attention.spatial.mean(0).reshape(grid).numpy()
    titles = None
    if attention.temporal is not None:
        titles = [f"Eq.2 {w:.2f}" for w in attention.temporal.mean(0).tolist()]
    return Row(f"attention\n{attention.kind}", "heat", pixels=frames, heat=heat, titles=titles, outline=query,
               cmap="inferno", vmin=None, colorbar="attention")


def clip_figure(pretrained: Pretrained, video: torch.Tensor, *, compact: bool = True, **options) -> Figure:
    """:func:`build_visualisation`'s rows drawn by :func:`make_figure` (TensorBoard's figures: compact)."""
    return make_figure(build_visualisation(pretrained, video, **options), compact=compact)


def _upsample(heat: np.ndarray, size: int) -> np.ndarray:
    return heat.repeat(size, 0).repeat(size, 1)


def _value_range(row: Row) -> tuple[float, float]:
    if row.ticks is not None:
        return row.ticks[0][0], row.ticks[-1][0]
    finite = row.heat[np.isfinite(row.heat)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(finite.min()) if row.vmin is None else row.vmin), float(finite.max())
    return low, max(high, low + 1e-12)  # a constant map still gets a colour bar


def _norm(row: Row):
    from matplotlib.colors import Normalize

    if row.ticks is not None:  # one colour per named value, each tick at the middle of its colour
        return Normalize(row.ticks[0][0] - 0.5, row.ticks[-1][0] + 0.5)
    return Normalize(*_value_range(row))


def _colormap(row: Row):
    if row.cmap == "motion":
        from matplotlib.colors import ListedColormap

        return ListedColormap(MOTION_COLORS)
    return row.cmap


def _draw(ax, row: Row, frame: np.ndarray, heat: np.ndarray | None, patch: int):
    """An image row's frame, or a heat row's map over the grey frame (NaN = not drawn); returns the heat's image."""
    ax.imshow(frame if row.kind == "image" else frame.mean(-1), cmap=None if row.kind == "image" else "gray",
              vmin=0, vmax=1, interpolation="nearest")
    if heat is None:
        return None
    return ax.imshow(np.ma.masked_invalid(_upsample(heat, patch)), cmap=_colormap(row), norm=_norm(row),
                     alpha=_alpha(row), interpolation="nearest")


def _alpha(row: Row) -> float:
    return 0.9 if row.ticks is not None else 0.75  # the motion row: its named colours, the frame barely through


def figure_size(num_rows: int, num_cols: int) -> tuple[float, float]:
    """Inches of the figure: a label margin, square panels, a colour-bar margin (the PNG is this times DPI)."""
    return LABEL_INCHES + num_cols * PANEL_INCHES + COLORBAR_INCHES, TITLE_INCHES + num_rows * PANEL_INCHES


def _add_colorbar(fig: Figure, image, row: Row, last_ax, width: float) -> None:
    """The row's colour bar in the right margin, beside its last panel."""
    box = last_ax.get_position()
    cax = fig.add_axes((box.x1 + 0.08 / width, box.y0 + 0.1 * box.height, 0.1 / width, 0.8 * box.height))
    bar = fig.colorbar(image, cax=cax)
    if bar.solids is not None:
        bar.solids.set_alpha(1.0)
    bar.ax.tick_params(labelsize=6, length=2)
    if row.ticks is not None:
        bar.set_ticks([value for value, _ in row.ticks], labels=[name for _, name in row.ticks])
    if row.colorbar:
        bar.set_label(row.colorbar, fontsize=6, labelpad=2)


def make_figure(vis: Visualisation, *, compact: bool = False) -> Figure:
    """One column per tubelet step, one row per :class:`Row`, a colour bar per heat row; Agg backend.
    ``compact``: each row one image (the steps side by side), a third of the drawing time (TensorBoard's)."""
    if compact:
        return _compact_figure(vis)
    steps, grid_h = vis.grid[0], vis.grid[1]
    patch = vis.frames.shape[1] // grid_h
    width, height = figure_size(len(vis.rows), steps)
    fig, axes = plt.subplots(len(vis.rows), steps, figsize=(width, height), dpi=DPI, squeeze=False)
    fig.subplots_adjust(left=LABEL_INCHES / width, right=1 - COLORBAR_INCHES / width, bottom=0.01,
                        top=1 - TITLE_INCHES / height, wspace=0.04, hspace=0.1)
    fig.suptitle(vis.title, fontsize=9, y=1 - 0.05 / height * 2, va="top")
    for r, row in enumerate(vis.rows):
        image = None
        for c in range(steps):
            ax = axes[r, c]
            frame_index = c * vis.tubelet
            source = row.pixels if row.pixels is not None else vis.frames
            drawn = _draw(ax, row, source[frame_index], None if row.heat is None else row.heat[c], patch)
            image = drawn if drawn is not None else image
            if row.outline is not None and row.outline[0] == c:
                _, qh, qw = row.outline
                ax.add_patch(plt.Rectangle((qw * patch - 0.5, qh * patch - 0.5), patch, patch, fill=False,
                                           edgecolor="cyan", linewidth=1.5))
            ax.set_xticks([])
            ax.set_yticks([])
            if row.titles is not None:
                ax.set_title(row.titles[c], fontsize=7, pad=2)
            elif r == 0:
                ax.set_title(f"t'={c} (frame {frame_index})", fontsize=7, pad=2)
        axes[r, 0].set_ylabel(row.label, fontsize=8, rotation=0, ha="right", va="center", labelpad=4)
        if image is not None:
            _add_colorbar(fig, image, row, axes[r, -1], width)
    return fig


def _row_strip(row: Row, vis: Visualisation, patch: int, gap: int) -> np.ndarray:
    """A row's panels as one RGB image ``(H, T' * (W + gap) - gap, 3)``: the frame, or the heat blended over it."""
    from matplotlib import colormaps

    source = row.pixels if row.pixels is not None else vis.frames
    panels = []
    for c in range(vis.grid[0]):
        frame = np.clip(source[c * vis.tubelet], 0.0, 1.0)
        if row.kind == "heat":
            grey = np.repeat(frame.mean(-1, keepdims=True), 3, axis=-1)
            heat = _upsample(row.heat[c], patch)
            cmap = _colormap(row)
            cmap = colormaps[cmap] if isinstance(cmap, str) else cmap
            colour = cmap(_norm(row)(np.nan_to_num(heat)))[..., :3]
            alpha = np.where(np.isfinite(heat), _alpha(row), 0.0)[..., None]
            frame = grey * (1 - alpha) + colour * alpha
        panels.append(frame)
        panels.append(np.ones((frame.shape[0], gap, 3)))
    return np.concatenate(panels[:-1], axis=1)


def _compact_figure(vis: Visualisation) -> Figure:
    from matplotlib.cm import ScalarMappable

    steps, patch, gap = vis.grid[0], vis.frames.shape[1] // vis.grid[1], 2
    panel, label, bar, title = 0.9, 1.1, 0.75, 0.3
    width, height = label + steps * panel + bar, title + len(vis.rows) * panel
    fig, axes = plt.subplots(len(vis.rows), 1, figsize=(width, height), dpi=DPI, squeeze=False)
    fig.subplots_adjust(left=label / width, right=1 - bar / width, bottom=0.01, top=1 - title / height, hspace=0.08)
    fig.suptitle(vis.title, fontsize=8, y=1 - 0.04 / height, va="top")
    size = vis.frames.shape[2]
    for r, row in enumerate(vis.rows):
        ax = axes[r, 0]
        ax.imshow(_row_strip(row, vis, patch, gap), interpolation="nearest")
        ax.set_yticks([])
        ax.set_xticks([])
        if r == 0:
            ax.xaxis.set_ticks_position("top")
            ax.set_xticks([c * (size + gap) + size / 2 for c in range(steps)],
                          labels=[f"t'={c}" for c in range(steps)], fontsize=6)
            ax.tick_params(length=0, pad=1)
        ax.set_ylabel(row.label, fontsize=7, rotation=0, ha="right", va="center", labelpad=4)
        if row.kind == "heat":
            _add_colorbar(fig, ScalarMappable(_norm(row), _colormap(row)), row, ax, width)
    return fig


def save_gif(vis: Visualisation, path: str | Path, *, fps: float = 4.0) -> Path:
    """The rows side by side, animated over all T frames (matplotlib, pillow writer)."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    patch = vis.frames.shape[1] // vis.grid[1]
    fig, axes = plt.subplots(1, len(vis.rows), figsize=(1.6 * len(vis.rows), 1.9), dpi=DPI, squeeze=False)
    axes = axes[0]

    def draw(frame_index: int) -> list:
        for ax, row in zip(axes, vis.rows):
            ax.clear()
            heat = None if row.heat is None else row.heat[frame_index // vis.tubelet]
            source = row.pixels if row.pixels is not None else vis.frames
            _draw(ax, row, source[frame_index], heat, patch)
            ax.set_title(row.label.replace("\n", " "), fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"frame {frame_index}", fontsize=7)
        return list(axes)

    animation = FuncAnimation(fig, draw, frames=len(vis.frames), blit=False)
    path = Path(path)
    animation.save(path, writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path


def _parse_query(text: str) -> tuple[int, int, int]:
    try:
        t, h, w = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--query wants three integers t,h,w (a token of the grid), got {text!r}")
    return t, h, w


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m downstream.visualise", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="a video file (any format decord or PyAV reads)")
    source.add_argument("--synthetic", type=int, metavar="INDEX", help="clip INDEX of the built-in held-out data")
    parser.add_argument("--checkpoint", required=True, help="a train_joint.py checkpoint (checkpoint-latest.pt)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--gif", action="store_true", help="also write the rows animated over frames (<out>.gif)")
    parser.add_argument("--compare", choices=("random", "tube"), help="add a fixed masker's mask for comparison")
    parser.add_argument("--query", type=_parse_query, metavar="T,H,W", help="attention map of this token")
    parser.add_argument("--deterministic", action="store_true", help="the K most probable tokens, not a sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled mask(s)")
    args = parser.parse_args(argv)
    try:
        pretrained = load_pretrained(args.checkpoint)
        video, motion, name = load_clip(pretrained, video=args.video, synthetic=args.synthetic)
        vis = build_visualisation(pretrained, video, motion=motion, compare=args.compare, query=args.query,
                                  deterministic=args.deterministic, seed=args.seed,
                                  title=f"{name} - {pretrained.config['agent']['name']}, "
                                        f"mask ratio {pretrained.config['mask_ratio']}")
    except (*user_error_types(), VideoReadError, ValueError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = make_figure(vis)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    print(f"wrote {out}")
    if args.gif:
        print(f"wrote {save_gif(vis, out.with_suffix('.gif'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
