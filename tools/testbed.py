"""The CPU testbed's evidence: the MAE learns, and its features carry the label.

Four commands, each printing its numbers and writing them to ``<out>/<command>.json``:

    python -m tools.testbed static --minutes 5      # static clips, mask 0.75: below the copy predictor?
    python -m tools.testbed moving --steps 3072     # moving clips, mask 0.9 (train_joint.py agent=random),
                                                    # then linear probes and a from-scratch fine-tune
    python -m tools.testbed layers                  # linear probes of every layer of moving's MAE
                                                    # (--seeds 0 1 2: several runs, 95 % intervals)
    python -m tools.testbed gradients               # why the paper's PPO objective barely moves

``static`` trains the micro MAE in-process with random masking on built-in clips whose first
frame is repeated (nothing moves), for a wall-clock budget, and scores it every
``--eval-every`` steps on 64 fixed held-out clips against the trivial predictors of
:mod:`mae.baselines`. ``--norm-target``, ``--pos-embed 1d``, ``--background textured`` and
``--objects striped`` switch the testbed's choices back one at a time (docs/testbed.md, "Why").
It ends by saying why the MAE is above or below copying: both errors split by whether a masked
token's position is visible at another time step, where the decoder's heads look, and how well
a code as wide as a decoder head, and as the decoder, can carry a patch.

``moving`` runs ``train_joint.py agent=random`` on the testbed (preset ``cpu``) for ``--steps``
MAE steps, reads the held-out curve from its TensorBoard log, then probes the checkpoint and an untrained encoder
(``downstream.linear_probe``) and fine-tunes from scratch (``downstream.finetune``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from timm.optim import create_optimizer_v2

import mae
from data.synthetic import CONTRASTS, SyntheticMotionVideos, repeat_first_frame
from envs.heldout import heldout_batch
from mae.baselines import copy_split_losses, heldout_losses, seen_at_some_time

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = len(SyntheticMotionVideos.CLASSES)
# The from-scratch fine-tune that shows the label's ceiling: VideoMAE's recipe without what breaks a
# direction label on 32-pixel clips (random resized crops down to 8 % of the frame change speeds and,
# through the aspect ratio, directions; mixup and cutmix blend two directions; RandAugment shears and
# rotates), at a learning rate that trains the micro ViT from scratch in a few hundred steps, with a
# head initialised at full scale (VideoMAE's 1e-3 suits a pretrained encoder, not a random one).
FINETUNE_CEILING = ["train.lr=1e-3", "train.head_init_scale=1", "train.batch_size=16", "train.warmup_epochs=1",
                    "train.layer_decay=1", "train.drop_path=0", "train.mixup=0", "train.cutmix=0",
                    "train.randaug=null", "train.crop_scale=[1.0,1.0]"]


# The attentive probe of the testbed (downstream.linear_probe head=attentive): AdamW at a fixed
# recipe, long enough that the probes of trained and untrained encoders both converge (docs/testbed.md).
ATTENTIVE_PROBE = ["head=attentive", "train.opt=adamw", "train.lr=1e-2", "train.weight_decay=0.05",
                   "train.batch_size=256", "train.epochs=200"]


def testbed_data(contrast: str = "bright") -> list[str]:
    """The testbed's data keys (configs/preset/cpu.yaml), for the downstream entry points, which take
    no preset; ``contrast="random"`` gives the earlier clips."""
    return ["data.num_frames=16", "data.synthetic_background=smooth", "data.synthetic_objects=solid",
            f"data.synthetic_contrast={contrast}"]


def static_batch(dataset: SyntheticMotionVideos, start: int, size: int) -> torch.Tensor:
    """Clips ``start .. start + size`` of a fresh stream with their first frame repeated: ``(B, 3, T, H, W)``."""
    return repeat_first_frame(torch.stack([dataset[i % len(dataset)]["video"] for i in range(start, start + size)]))


def run_static(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    decoder = {key: value for key, value in (("decoder_num_heads", args.decoder_heads),
                                             ("decoder_embed_dim", args.decoder_width)) if value is not None}
    model = mae.create_model("micro", num_frames=args.frames, norm_target=args.norm_target, pos_embed=args.pos_embed,
                             **decoder)
    style = {"synthetic_background": args.background, "synthetic_objects": args.objects,
             "synthetic_contrast": args.contrast}
    held = heldout_batch(model, style, args.mask_ratio, static=True, seed=args.seed)
    train = SyntheticMotionVideos(10**9, num_frames=args.frames, input_size=32, patch_size=8, seed=args.seed + 1,
                                  background=args.background, objects=args.objects, contrast=args.contrast)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=args.lr, weight_decay=0.05, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(args.seed)
    curve, step, tic = [], 0, time.perf_counter()
    print("| step | minutes | MAE | copy | clip mean | zeros |\n|---|---|---|---|---|---|")
    while True:
        elapsed = (time.perf_counter() - tic) / 60
        if step % args.eval_every == 0 or elapsed >= args.minutes:
            scores = heldout_losses(model, held["video"], held["visible"])
            curve.append({"step": step, "minutes": elapsed, **scores})
            print(f"| {step} | {elapsed:.2f} | {scores['mae']:.4f} | {scores['copy']:.4f} | "
                  f"{scores['mean_visible']:.4f} | {scores['zeros']:.4f} |", flush=True)
            if elapsed >= args.minutes:
                break
        for group in optimizer.param_groups:  # linear warm-up, then constant
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup_steps)
        video = static_batch(train, step * args.batch_size, args.batch_size)
        visible = mae.random_mask(args.batch_size, model.num_tokens, args.mask_ratio, generator=generator)
        loss = model.loss(video, visible).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    below = next((point for point in curve if point["mae"] < point["copy"]), None)
    split = copy_split_losses(model, held["video"], held["visible"])
    attention = own_position_attention(model, held["video"], held["visible"])
    places = model.num_tokens // model.grid[0]  # static clips: every time step holds the same patches
    patches = model.target(held["video"])[:, :places].reshape(-1, model.decoder.head.out_features)
    head_dim = model.decoder.head.in_features // model.decoder.blocks[0].attn.num_heads
    floors = {dims: linear_code_error(patches, dims) for dims in (head_dim, model.decoder.head.in_features)}
    summary = {"final": curve[-1], "first_below_copy": below, "split": split, "own_position_attention": attention,
               "linear_code_error": floors, "curve": curve, "args": vars(args)}
    final = curve[-1]
    print(f"\nfinal: MAE {final['mae']:.4f} vs copy {final['copy']:.4f} "
          f"({100 * (1 - final['mae'] / final['copy']):+.1f} % below); "
          + (f"first below the copy predictor at step {below['step']} ({below['minutes']:.2f} min)"
             if below else "never below the copy predictor"))
    print(f"masked tokens whose position is visible at another time step ({100 * split['seen_fraction']:.1f} %): "
          f"MAE {split['mae_seen']:.4f}, copy {split['copy_seen']:.4f}; the others: MAE {split['mae_unseen']:.4f}, "
          f"copy (the clip mean) {split['copy_unseen']:.4f}")
    print("attention of those masked tokens on the visible tokens at their own position, per decoder block: "
          + "; ".join(f"block {i + 1} heads " + ", ".join(f"{w:.2f}" for w in heads)
                      for i, heads in enumerate(attention)))
    print("the best linear code of the held-out patches errs " + ", ".join(
        f"{error:.5f} in {dims} dimensions" for dims, error in floors.items())
        + f" (a decoder head's width, the decoder's); the clip mean errs {final['mean_visible']:.4f}")
    return summary


def linear_code_error(tokens: torch.Tensor, dims: int) -> float:
    """Mean squared error per value of the best ``dims``-dimensional linear code of ``tokens`` ``(M, C)``
    (principal components around their mean): what any ``dims``-wide linear path must lose at least."""
    centred = tokens - tokens.mean(0)
    singular = torch.linalg.svdvals(centred.double())
    return float(singular[dims:].pow(2).sum() / centred.numel())


@torch.no_grad()
def own_position_attention(model, video: torch.Tensor, visible: torch.Tensor) -> list[list[float]]:
    """Per decoder block and head: the mean attention a masked token whose position is visible at another
    time step puts on the visible tokens at its own spatial position (1: it attends to nothing else, the
    routing copying needs; chance is about 1 / (visible tokens))."""
    inputs = []
    hooks = [block.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
             for block in model.decoder.blocks]
    was_training = model.training
    model.eval()
    try:
        model(video, visible)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    num_visible = int(visible[0].sum())
    places = visible.shape[1] // model.grid[0]
    # the decoder's token order: the visible tokens, then the masked ones, each in token order
    order = torch.cat([mask.nonzero()[:, 1].view(len(visible), -1) for mask in (visible, ~visible)], dim=1)
    place = order % places
    own_place = (place[:, :, None] == place[:, None, :])[:, :, :num_visible]  # (B, L, K): key at the query's place
    queries = torch.gather(seen_at_some_time(visible, model.grid), 1, order)
    queries[:, :num_visible] = False  # masked queries only
    result = []
    for block, x in zip(model.decoder.blocks, inputs):
        attn = block.attn
        q, k, _ = (attn.qkv(block.norm1(x)).unflatten(-1, (3, attn.num_heads, -1)).permute(2, 0, 3, 1, 4))
        weights = ((attn.q_norm(q) * attn.scale) @ attn.k_norm(k).transpose(-2, -1)).softmax(-1)  # (B, H, L, L)
        on_own = (weights[..., :num_visible] * own_place[:, None]).sum(-1)  # (B, H, L)
        result.append([float(on_own[:, head][queries].mean()) for head in range(attn.num_heads)])
    return result


def run(cmd: list[str], log: Path, *, threads: int | None = None) -> None:
    """``python cmd`` in the repository root, its output to ``log``; RuntimeError if it fails.

    ``threads`` sets OMP_NUM_THREADS (runs sharing the cores pass 1); None keeps the caller's, else 1.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads) if threads else os.environ.get("OMP_NUM_THREADS", "1"))
    with open(log, "w") as out:
        result = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}")


def scalars(tb_dir: Path, prefix: str) -> tuple[dict[str, list[tuple[int, float]]], tuple[float, float]]:
    """The scalars whose tag starts with ``prefix``, and the wall times of the first and last scalar."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = events.Tags()["scalars"]
    times = [e.wall_time for tag in tags for e in events.Scalars(tag)]
    return ({tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags if tag.startswith(prefix)},
            (min(times), max(times)))


def top1(metrics_dir: Path) -> float:
    """Top-1 of a ``downstream.linear_probe`` or ``downstream.finetune`` output folder."""
    return float(json.loads((metrics_dir / "metrics.json").read_text())["eval/top1"])


def run_moving(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    run_dir = out / f"moving-seed{args.seed}"
    ckpt = run_dir / "checkpoint-latest.pt"
    steps = args.steps
    if not ckpt.is_file():
        run(["train_joint.py", "agent=random", f"mask_ratio={args.mask_ratio}", f"seed={args.seed}",
             f"train.epochs={math.ceil(steps / 64)}", f"train.max_steps={steps}", f"output_dir={run_dir}"],
            out / f"moving-seed{args.seed}.log")
    curve, wall = scalars(run_dir / "tb", "mae/heldout_")
    pretrain_minutes = (wall[1] - wall[0]) / 60  # first to last logged scalar, also when the run was cached
    last_step = curve["mae/heldout_loss"][-1][0]
    rows = [dict(step=s, **{k.removeprefix("mae/heldout_"): dict(curve[k])[s] for k in curve})
            for s, _ in curve["mae/heldout_loss"] if s % 32 == 0 or s == last_step]  # the preset's eval_every
    print("| step | MAE | copy | clip mean | zeros |\n|---|---|---|---|---|")
    for row in rows:
        if row["step"] % 320 == 0 or row["step"] == last_step:
            print(f"| {row['step']} | {row['loss']:.4f} | {row['copy']:.4f} | {row['mean_visible']:.4f} | "
                  f"{row['zeros']:.4f} |")
    final = rows[-1]
    best_trivial = min(final["copy"], final["mean_visible"], final["zeros"])
    result = {"steps": steps, "pretrain_minutes": pretrain_minutes, "curve": rows,
              "final_mae": final["loss"], "best_trivial": best_trivial,
              "below_best_trivial_pct": 100 * (1 - final["loss"] / best_trivial)}
    print(f"\nfinal held-out MAE loss {final['loss']:.4f}, best trivial predictor {best_trivial:.4f}: "
          f"{result['below_best_trivial_pct']:.1f} % below, after {steps} steps in {pretrain_minutes:.1f} minutes")
    encoders = {"pretrained": [f"checkpoint={ckpt}"], "untrained": ["model=micro"]}
    heads = {"probe": [], "attentive": ATTENTIVE_PROBE}  # linear (MAE's protocol) and attentive probes
    for head, head_args in heads.items():
        for name, extra in encoders.items():
            probe_dir = run_dir / f"{head}-{name}"
            if not (probe_dir / "metrics.json").is_file():
                run(["-m", "downstream.linear_probe", *extra, *head_args, *testbed_data(), f"seed={args.seed}",
                     f"data.synthetic_clips={args.probe_clips}", f"test.synthetic_clips={args.test_clips}",
                     f"output_dir={probe_dir}"], out / f"{head}-{name}-seed{args.seed}.log")
            result[f"{head}_{name}"] = top1(probe_dir)
    finetune_dir = run_dir / "finetune-scratch"
    if not args.no_finetune:
        if not (finetune_dir / "metrics.json").is_file():
            run(["-m", "downstream.finetune", "model=micro", *testbed_data(), *FINETUNE_CEILING, f"seed={args.seed}",
                 f"data.synthetic_clips={args.probe_clips}", f"test.synthetic_clips={args.test_clips}",
                 f"train.epochs={args.finetune_epochs}", f"output_dir={finetune_dir}"],
                out / f"finetune-seed{args.seed}.log")
        result["finetune_scratch"] = top1(finetune_dir)
    n = args.test_clips
    for head, label in (("probe", "linear probe"), ("attentive", "attentive probe")):
        pre, un = result[f"{head}_pretrained"], result[f"{head}_untrained"]
        se_pre, se_un = standard_error(pre, n), standard_error(un, n)
        result[f"{head}_difference_in_se"] = difference_in_se(pre, un, n)
        print(f"{label} top-1: pretrained {pre:.1f} % (+- {se_pre:.1f}), untrained encoder {un:.1f} % "
              f"(+- {se_un:.1f}); chance {100 / NUM_CLASSES:.1f} %; difference "
              f"{result[f'{head}_difference_in_se']:.1f} standard errors")
    if "finetune_scratch" in result:
        print(f"fine-tune from scratch {result['finetune_scratch']:.1f} %")
    return result


def standard_error(top1_pct: float, num_clips: int) -> float:
    """Standard error, in points, of a top-1 accuracy measured on ``num_clips`` test clips."""
    return math.sqrt(max(top1_pct * (100 - top1_pct), 1e-9) / num_clips)


def difference_in_se(a: float, b: float, num_clips: int) -> float:
    """``a - b`` in standard errors of the difference of two accuracies on independent test sets."""
    return (a - b) / math.hypot(standard_error(a, num_clips), standard_error(b, num_clips))


def layer_name(layer: int) -> str:
    return "output (final norm)" if layer == -1 else "patch embedding" if layer == 0 else f"block {layer}"


def run_layers(args: argparse.Namespace) -> dict:
    """MAE's linear probe (mean token, BatchNorm, Linear) of every layer of the ``moving`` run's
    pretrained encoder and of an untrained one: is the label linear in some layer's features?
    With several ``--seeds``, each seed's run against its own untrained encoder, then the paired
    differences' means and 95 % intervals over seeds."""
    from runtime.stats import interval

    seeds = args.seeds or [args.seed]
    result: dict = {"seeds": {seed: layer_rows(args, seed) for seed in seeds}}
    if len(seeds) > 1:
        print(f"\nover seeds {', '.join(map(str, seeds))}: mean top-1 and the pretrained - untrained difference, "
              "+- the half-width of its 95 % interval")
        print("| layer | untrained | pretrained | difference |\n|---|---|---|---|")
        result["summary"] = []
        for index, row in enumerate(result["seeds"][seeds[0]]["rows"]):
            rows = [result["seeds"][seed]["rows"][index] for seed in seeds]
            untrained, pretrained, difference = (interval([r[key] for r in rows]) for key in
                                                 ("untrained", "pretrained", "difference"))
            result["summary"].append({"layer": row["layer"], "untrained": untrained, "pretrained": pretrained,
                                      "difference": difference})
            print(f"| {layer_name(row['layer'])} | {untrained[0]:.1f} | {pretrained[0]:.1f} | "
                  f"{difference[0]:+.1f} +- {difference[1]:.1f} |")
    return result


def layer_rows(args: argparse.Namespace, seed: int) -> dict:
    """One seed's probes of every layer, pretrained (its ``moving`` run, or ``--checkpoint``) and untrained."""
    from mae.classifier import CheckpointMismatchError
    from runtime import checkpoint

    run_dir = Path(args.out) / f"moving-seed{seed}"
    ckpt = Path(args.checkpoint) if args.checkpoint else run_dir / "checkpoint-latest.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"no checkpoint {ckpt}: run `python -m tools.testbed moving --seed {seed}` first, "
                                "or pass --checkpoint")
    state = checkpoint.load(ckpt, mmap=True)  # the encoder's depth, without building the run's agent
    blocks = [int(key.split(".")[2]) for key in state.get("mae", {}) if key.startswith("encoder.blocks.")]
    if not blocks:
        raise CheckpointMismatchError(f"{ckpt} is not a train_joint.py checkpoint (no 'mae' encoder blocks)")
    depth = 1 + max(blocks)
    layers = [*range(depth + 1), -1]  # the patch embedding, each block, the output with its final norm
    encoders = {"untrained": ["model=micro"], "pretrained": [f"checkpoint={ckpt}"]}
    result: dict = {"checkpoint": str(ckpt), "rows": []}
    (run_dir / "layers").mkdir(parents=True, exist_ok=True)
    print(f"seed {seed}, {ckpt}:\n| layer | untrained | pretrained | difference (standard errors) |\n|---|---|---|---|")
    for layer in layers:
        row = {"layer": layer}
        for name, extra in encoders.items():
            probe_dir = run_dir / "layers" / f"{name}-layer{layer}"
            if not (probe_dir / "metrics.json").is_file():
                run(["-m", "downstream.linear_probe", *extra, *testbed_data(), f"layer={layer}", f"seed={seed}",
                     f"data.synthetic_clips={args.probe_clips}", f"test.synthetic_clips={args.test_clips}",
                     f"output_dir={probe_dir}"], run_dir / "layers" / f"{name}-layer{layer}.log")
            row[name] = top1(probe_dir)
        row["difference"] = row["pretrained"] - row["untrained"]
        row["difference_in_se"] = difference_in_se(row["pretrained"], row["untrained"], args.test_clips)
        result["rows"].append(row)
        print(f"| {layer_name(layer)} | {row['untrained']:.1f} | {row['pretrained']:.1f} | "
              f"{row['difference_in_se']:+.1f} |", flush=True)
    return result


def run_gradients(args: argparse.Namespace) -> dict:
    """Size of d log pi / d logits at uniform logits: the paper's mean masked-token log-prob
    against the exact Plackett-Luce one, for the paper's and the testbed's N and K."""
    from agents.distributions import PlackettLuce

    torch.manual_seed(args.seed)
    rows = []
    print("| N | K | exact log-prob | paper (mean over masked) | ratio |\n|---|---|---|---|---|")
    for num_tokens, ratio in ((1568, 0.95), (1568, 0.9), (128, 0.95), (128, 0.9)):
        k = mae.num_visible(num_tokens, ratio)
        norms = {}
        for name in ("exact", "paper"):
            logits = torch.zeros(args.draws, num_tokens, requires_grad=True)
            dist = PlackettLuce(logits, k)
            action = dist.sample()
            log_prob = dist.log_prob(action) if name == "exact" else dist.masked_log_prob(action)
            norms[name] = float(torch.autograd.grad(log_prob.sum(), logits)[0].norm(dim=1).mean())
        rows.append({"N": num_tokens, "K": k, **norms, "ratio": norms["exact"] / norms["paper"]})
        print(f"| {num_tokens} | {k} | {norms['exact']:.3g} | {norms['paper']:.3g} | {rows[-1]['ratio']:.0f} |")
    # The actor's parameter gradients under PPO's c1 * A * log-prob at the testbed's scale, against AdamW's eps.
    from agents.networks.tats import TATSActor

    actor = TATSActor(embed_dim=96, grid=(8, 4, 4), num_heads=3)
    tokens = torch.randn(16, 128, 96)
    advantage = torch.randn(16) * args.adv_std
    print(f"\nTATS actor (micro testbed), batch 16, advantages ~ N(0, {args.adv_std}): median |grad| over the "
          "actor's parameters of c1 * A * log-prob (AdamW's eps is 1e-8; below it, a step shrinks by |grad| / eps)")
    medians = {}
    for name, normalised, coef in (("exact", False, 1e-4), ("exact", True, 1e-4), ("paper", False, 1e-4),
                                   ("paper", True, 1e-4), ("exact", True, 1.0), ("paper", True, 1.0)):
        logits = actor(tokens)[0]
        dist = PlackettLuce(logits, mae.num_visible(128, 0.9))
        action = dist.sample()
        log_prob = dist.log_prob(action) if name == "exact" else dist.masked_log_prob(action)
        adv = (advantage - advantage.mean()) / advantage.std() if normalised else advantage
        grads = torch.autograd.grad(-(coef * adv * log_prob).mean(), list(actor.parameters()))
        key = f"{name}, {'standardised' if normalised else 'raw'} advantages, c1 = {coef:g}"
        medians[key] = float(torch.cat([g.abs().flatten() for g in grads]).median())
        print(f"  {key}: {medians[key]:.2g}")
    return {"rows": rows, "actor_grad_median": medians, "adv_std": args.adv_std}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    static = sub.add_parser("static", help="static clips: does the MAE beat the copy predictor?")
    static.add_argument("--minutes", type=float, default=5.0, help="wall-clock training budget")
    static.add_argument("--mask-ratio", type=float, default=0.75)
    static.add_argument("--lr", type=float, default=1e-3)
    static.add_argument("--warmup-steps", type=int, default=40)
    static.add_argument("--batch-size", type=int, default=16)
    static.add_argument("--eval-every", type=int, default=100)
    static.add_argument("--frames", type=int, default=16, help="frames per clip (8 time steps of 2 at 16)")
    static.add_argument("--norm-target", action="store_true", help="per-patch normalised targets (VideoMAE's)")
    static.add_argument("--pos-embed", choices=("1d", "3d"), default="3d")
    static.add_argument("--background", choices=("smooth", "textured", "flat"), default="smooth")
    static.add_argument("--objects", choices=("solid", "striped"), default="solid")
    static.add_argument("--contrast", choices=CONTRASTS, default="bright")
    static.add_argument("--decoder-heads", type=int, help="the decoder's heads (micro: 2 of 32 dimensions)")
    static.add_argument("--decoder-width", type=int, help="the decoder's width (micro: 64)")
    moving = sub.add_parser("moving", help="moving clips at 0.9: MAE against trivial predictors, probes")
    moving.add_argument("--steps", type=int, default=2048, help="MAE steps of train_joint.py agent=random")
    moving.add_argument("--mask-ratio", type=float, default=0.9)
    moving.add_argument("--probe-clips", type=int, default=2048, help="training clips of the probes and fine-tune")
    moving.add_argument("--test-clips", type=int, default=1024, help="held-out clips they are scored on")
    moving.add_argument("--finetune-epochs", type=int, default=10)
    moving.add_argument("--no-finetune", action="store_true")
    layers = sub.add_parser("layers", help="linear probes of every layer, pretrained (moving's run) and untrained")
    layers.add_argument("--checkpoint", help="a pretraining checkpoint; default: the moving run's of --seed")
    layers.add_argument("--probe-clips", type=int, default=2048, help="training clips of each probe")
    layers.add_argument("--test-clips", type=int, default=1024, help="held-out clips it is scored on")
    layers.add_argument("--seeds", type=int, nargs="+",
                        help="several moving runs' seeds: each probed, then means and 95 %% intervals over them")
    gradients = sub.add_parser("gradients", help="d log-prob / d logits: the paper's objective against the exact one")
    gradients.add_argument("--draws", type=int, default=64, help="sampled actions averaged over")
    gradients.add_argument("--adv-std", type=float, default=0.008,
                           help="spread of raw advantages (the testbed's policy/adv_std is about 0.005-0.009)")
    for p in (static, moving, layers, gradients):
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", default="runs/testbed")
    args = parser.parse_args(argv)
    if args.command == "layers" and args.checkpoint and args.seeds and len(args.seeds) > 1:
        parser.error("--checkpoint is one run's; with several --seeds each seed's moving run is probed")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    try:
        result = {"static": run_static, "moving": run_moving, "layers": run_layers,
                  "gradients": run_gradients}[args.command](args)
    except RuntimeError as error:  # a sub-run failed: one line, its log named
        raise SystemExit(f"error: {error}") from None
    seeds = args.seeds if args.command == "layers" and args.seeds else [args.seed]
    name = f"{args.command}-seed{'-'.join(map(str, seeds))}" + ("" if args.command != "static" else "-" + "-".join(
        [f"f{args.frames}", ("norm" if args.norm_target else "raw"), args.pos_embed, args.background, args.objects,
         args.contrast] + ([] if args.decoder_heads is None else [f"dh{args.decoder_heads}"])
        + ([] if args.decoder_width is None else [f"dw{args.decoder_width}"])))
    path = Path(args.out) / f"{name}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    from runtime.errors import run_tool

    run_tool(main)
