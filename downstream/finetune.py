"""End-to-end fine-tuning for action recognition, the paper's Table 7 recipe.

    python -m downstream.finetune checkpoint=runs/cpu-ppo/checkpoint-latest.pt
    python -m downstream.finetune                                   # from scratch (the baseline)
    python -m downstream.finetune model=base data=list data.train_list=train.csv test.list=val.csv \\
        checkpoint=videomae_base_pretrain.pth checkpoint_format=videomae
    torchrun --nproc_per_node=8 -m downstream.finetune model=base ...

Reads top to bottom: config, processes, logging, data, model (the pretrained encoder + a
new head, :class:`mae.VideoClassifier`), optimiser (AdamW, betas 0.9/0.999, lr = blr *
total_batch / 256 with layer-wise decay 0.75, weight decay 0.05), schedule (VideoMAE's: 5 warm-up
epochs, then cosine to min_lr), Mixup 0.8 / CutMix 1.0 with label smoothing 0.1 and soft-target cross-entropy,
RandAugment (9, 0.5) identical across each clip's frames, drop path 0.1; then the loop, with
multi-view testing (``test.num_clips`` x ``test.num_crops`` views, softmax averaged; top-1,
top-5) every ``train.eval_every`` epochs and at the end. Checkpoints are atomic and a run
resumes (``resume=true``) exactly where it stopped, within an epoch included.
"""

from __future__ import annotations

import runtime.fast_start  # noqa: F401, I001 - first: before Tianshou compiles its numba kernels

import itertools
import json
import math
import time

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from configs import CONFIG_DIR, ConfigError
from configs.downstream_schema import register_downstream_configs, validate_downstream
from downstream.common import build_classifier
from downstream.datasets import default_flip_prob, eval_dataset, infer_num_classes, train_dataset
from downstream.evaluate import evaluate, make_eval_loader
from downstream.video_aug import FinetuneClipTransform, VideoMixup
from runtime import checkpoint, rng
from runtime.distributed import close_processes, init_processes
from runtime.lr_schedule import build_schedule, learning_rates
from runtime.setup import RunDir, log_scalars, open_run_dir, run_cli, seed_everything

register_downstream_configs()


class _SkipFirst(Sampler):
    """The wrapped sampler's indices after the first ``skip`` (resuming inside an epoch)."""

    def __init__(self, sampler: Sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fine-tune; the processes, the run folder's lock and TensorBoard are closed on any exit."""
    validate_downstream(cfg)
    rank, world_size, device = init_processes(cfg.device)
    folder = None
    try:
        folder = open_run_dir(cfg, is_main=rank == 0, world_size=world_size, what="downstream.finetune")
        return _train(cfg, rank, world_size, device, folder)
    finally:
        if folder is not None:
            folder.lock.release()
            if folder.writer is not None:
                folder.writer.close()
        close_processes(world_size)


def _train(cfg: DictConfig, rank: int, world_size: int, device: torch.device, folder: RunDir) -> dict[str, float]:
    is_main = rank == 0
    output_dir, resume_from, writer = folder.path, folder.resume_from, folder.writer
    seed_everything(cfg.seed + rank)
    wall_start = time.perf_counter()

    # ---- model: the pretrained encoder (or a random one) + a new head
    num_classes = infer_num_classes(cfg)
    model = build_classifier(cfg, num_classes).to(device)
    size, patch, tubelet = (model.architecture[k] for k in ("img_size", "patch_size", "tubelet_size"))

    # ---- data: augmented training clips (one draw per clip), every test view of the held-out videos
    transform = FinetuneClipTransform(size, randaug=cfg.train.randaug, scale=tuple(cfg.train.crop_scale),
                                      flip_prob=default_flip_prob(cfg))
    train_set = train_dataset(cfg, input_size=size, patch_size=patch, tubelet_size=tubelet, transform=transform)
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    batch_size = cfg.train.batch_size
    steps_per_epoch = len(sampler) // batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size={batch_size} x {world_size} process(es) exceeds the "
                          f"{len(train_set)} training clips: not one step per epoch")
    eval_loader = make_eval_loader(
        eval_dataset(cfg, input_size=size, patch_size=patch, tubelet_size=tubelet),
        batch_size=cfg.test.batch_size or batch_size, num_workers=cfg.data.num_workers, rank=rank,
        world_size=world_size)

    # ---- optimiser (AdamW, layer-wise lr decay), schedule (warm-up then cosine, per step)
    total_batch = batch_size * world_size
    lr = learning_rates(cfg.train, total_batch).peak
    optimizer = create_optimizer_v2(
        model, opt="adamw", lr=lr, weight_decay=cfg.train.weight_decay, betas=tuple(cfg.train.opt_betas),
        layer_decay=cfg.train.layer_decay if cfg.train.layer_decay < 1 else None)
    schedule_steps = steps_per_epoch * cfg.train.epochs
    scheduler = build_schedule(optimizer, cfg.train, total_batch=total_batch, total_steps=schedule_steps,
                               steps_per_epoch=steps_per_epoch)  # VideoMAE's (runtime/lr_schedule.py)
    if is_main:
        print(scheduler.describe("fine-tuning lr"))

    # ---- loss: mixup/cutmix + label smoothing -> soft targets, or plain smoothed cross-entropy
    mixup = None
    if cfg.train.mixup > 0 or cfg.train.cutmix > 0:
        mixup = VideoMixup(mixup_alpha=cfg.train.mixup, cutmix_alpha=cfg.train.cutmix, prob=cfg.train.mixup_prob,
                           switch_prob=cfg.train.mixup_switch_prob, label_smoothing=cfg.train.label_smoothing,
                           num_classes=num_classes)
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
    forward_module = model
    if world_size > 1:
        forward_module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    amp = cfg.train.amp and device.type == "cuda"

    # ---- resume
    step = 0
    if resume_from is not None:
        state = checkpoint.load(resume_from, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        rng.restore(state["rng"], rank)  # this rank's own states (runtime/rng.py)
    scheduler.step_update(step)

    def save() -> None:
        rng_states = rng.gather(rng.capture(device=device), world_size)  # a collective: every rank
        if is_main:
            state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), step=step,
                         epoch=step // steps_per_epoch, num_classes=num_classes,
                         architecture=model.architecture, rng=rng_states,
                         config=OmegaConf.to_container(cfg, resolve=True))
            checkpoint.save_atomic(state, output_dir / checkpoint.LATEST)

    def log(scalars: dict[str, float]) -> None:
        log_scalars(writer, scalars, step)

    def run_eval() -> dict[str, float]:
        result = evaluate(model, eval_loader, device, amp=amp, progress=is_main)
        scalars = result.scalars()
        scalars["eval/views_per_video"] = result.views_per_video
        log(scalars)
        if is_main:
            tqdm.write(f"step {step}: top-1 {result.top1:.2f}  top-5 {result.top5:.2f}  over {result.num_videos} "
                       f"videos ({result.views_per_video:.1f} views each, {result.skipped} unreadable)")
        return scalars

    # ---- the loop
    total_steps = schedule_steps if cfg.train.max_steps < 0 else min(schedule_steps, cfg.train.max_steps)
    progress = tqdm(total=total_steps, initial=step, desc="finetune", dynamic_ncols=True, disable=not is_main)
    last: dict[str, float] = {}  # the latest training scalars
    evaluation: dict[str, float] = {}  # the latest test scalars
    evaluated_at = -1
    model.train()
    while step < total_steps:
        epoch, done_in_epoch = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        # its own generator: making the iterator must not draw from the global RNG (drop path, resume)
        loader = DataLoader(train_set, batch_size=batch_size, sampler=_SkipFirst(sampler, done_in_epoch * batch_size),
                            num_workers=cfg.data.num_workers, drop_last=True, pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed + epoch))
        tic = time.perf_counter()
        for batch in loader:
            video, labels = batch["video"].to(device, non_blocking=True), batch["label"].to(device)
            targets = labels
            if mixup is not None:
                video, targets = mixup(video, labels)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = criterion(forward_module(video).float(), targets)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at step {step}; stopping (lower train.blr?)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.clip_grad is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad)
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            elapsed, tic = time.perf_counter() - tic, time.perf_counter()
            last.update({"finetune/loss": loss_value,
                         "finetune/lr": max(group["lr"] for group in optimizer.param_groups),
                         "finetune/epoch": step / steps_per_epoch, "perf/step_time_s": elapsed,
                         "perf/clips_per_s": total_batch / elapsed})
            if step % cfg.train.log_every == 0 or step == total_steps:
                log(last)
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{last['finetune/lr']:.2e}")
            if step >= total_steps:
                break
        if step % steps_per_epoch == 0:  # an epoch ended
            epoch = step // steps_per_epoch
            if cfg.train.eval_every and epoch % cfg.train.eval_every == 0 and step < total_steps:
                evaluation = run_eval()
                evaluated_at = step
            if epoch % cfg.train.save_ckpt_freq == 0:
                save()
    progress.close()
    if evaluated_at != step:
        evaluation = run_eval()
    save()
    if is_main:
        metrics = {**evaluation, "steps": step,
                   "epochs": step / steps_per_epoch, "num_classes": num_classes, "lr": lr,
                   "wall_time_s": time.perf_counter() - wall_start}
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {**last, **evaluation}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="finetune")
def main(cfg: DictConfig) -> None:
    run_cli(train, cfg)


if __name__ == "__main__":
    from runtime.errors import run_main

    run_main(main)
