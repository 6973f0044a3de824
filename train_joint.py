"""Joint pretraining of VideoMAE and its token sampler (TATS paper, Algorithm 1).

    python train_joint.py                                   # tiny model, built-in data, CPU ok
    python train_joint.py agent=tube mask_ratio=0.95 train.max_steps=100
    python train_joint.py model=base data=list data.train_list=train.csv

This first form trains the MAE with the fixed maskers (random space-time, tube).
Reads top to bottom: config, logging, seeding, data, model, optimiser and schedule,
the training loop, checkpoints.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import mae
from configs import CONFIG_DIR, ConfigError, register_configs, validate
from data import build_dataset
from runtime import checkpoint
from runtime.setup import pick_device, save_resolved_config, seed_everything

register_configs()


def build_model(cfg: DictConfig) -> mae.PretrainVideoMAE:
    overrides = dict(num_frames=cfg.data.num_frames, drop_path_rate=cfg.model.drop_path_rate)
    if cfg.model.img_size is not None:
        overrides["img_size"] = cfg.model.img_size
    if cfg.model.decoder_depth is not None:
        overrides["decoder_depth"] = cfg.model.decoder_depth
    return mae.create_model(cfg.model.name, **overrides)


def sample_mask(agent: str, model: mae.PretrainVideoMAE, batch_size: int, mask_ratio: float,
                generator: torch.Generator, device: torch.device) -> torch.Tensor:
    if agent == "random":
        return mae.random_mask(batch_size, model.num_tokens, mask_ratio, generator=generator, device=device)
    if agent == "tube":
        return mae.tube_mask(batch_size, model.grid, mask_ratio, generator=generator, device=device)
    raise ConfigError(f"agent.name={agent!r} is not available yet; choose random or tube")


def train(cfg: DictConfig) -> dict[str, float]:
    validate(cfg)
    output_dir = Path(cfg.output_dir)
    resume_from = checkpoint.latest_checkpoint(output_dir)
    if resume_from is not None and not cfg.resume:
        raise ConfigError(
            f"output_dir={output_dir} already holds a run ({resume_from.name}); pass resume=true "
            "to continue it, or choose another output_dir"
        )
    save_resolved_config(cfg, output_dir)
    writer = SummaryWriter(str(output_dir / "tb"))
    device = pick_device(cfg.device)
    generator = seed_everything(cfg.seed)

    # ---- data
    model = build_model(cfg).to(device)
    dataset = build_dataset(
        cfg.data.name, train_list=cfg.data.train_list, root=cfg.data.root,
        num_frames=cfg.data.num_frames, sampling_rate=cfg.data.sampling_rate,
        input_size=model.img_size, patch_size=model.patch_size, tubelet_size=model.tubelet_size,
        train=True, seed=cfg.seed, synthetic_clips=cfg.data.synthetic_clips,
    )
    if len(dataset) < cfg.train.batch_size:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} exceeds the {len(dataset)} clips in the data")
    loader = DataLoader(
        dataset, batch_size=cfg.train.batch_size, shuffle=True, drop_last=True,
        num_workers=cfg.data.num_workers, persistent_workers=cfg.data.num_workers > 0,
        generator=torch.Generator().manual_seed(cfg.seed), pin_memory=device.type == "cuda",
    )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps > 0:
        total_steps = min(total_steps, cfg.train.max_steps)

    # ---- optimiser and schedule (lr scaled by total batch / 256, warm-up then cosine)
    lr = cfg.train.lr if cfg.train.lr is not None else cfg.train.blr * cfg.train.batch_size / 256
    optimizer = create_optimizer_v2(model, opt=cfg.train.opt, lr=lr, weight_decay=cfg.train.weight_decay,
                                    betas=tuple(cfg.train.opt_betas))
    warmup_steps = min(int(cfg.train.warmup_epochs * steps_per_epoch), max(total_steps - 1, 0))
    scheduler = CosineLRScheduler(optimizer, t_initial=max(total_steps, 1), lr_min=cfg.train.min_lr,
                                  warmup_t=warmup_steps, warmup_lr_init=lr * 1e-3, warmup_prefix=True,
                                  t_in_epochs=False)

    step, epoch = 0, 0
    if resume_from is not None:
        state = checkpoint.load(resume_from, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch = state["step"], state["epoch"]
        generator.set_state(state["mask_generator"])

    def save(name: str) -> None:
        state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                     scheduler=scheduler.state_dict(), step=step, epoch=epoch,
                     mask_generator=generator.get_state(), config=OmegaConf.to_container(cfg, resolve=True))
        checkpoint.save_atomic(state, output_dir / name)

    # ---- training loop
    skipped_videos, last = 0, {}
    progress = tqdm(total=total_steps, initial=step, desc="train", dynamic_ncols=True)
    model.train()
    while step < total_steps:
        for batch in loader:
            if step >= total_steps:
                break
            tic = time.perf_counter()
            video = batch["video"].to(device, non_blocking=True)
            skipped_videos += int(batch["skipped"].sum())
            visible = sample_mask(cfg.agent.name, model, video.shape[0], cfg.mask_ratio, generator, device)
            loss = model.loss(video, visible).loss
            optimizer.zero_grad(set_to_none=True)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"non-finite MAE loss at step {step}")
            loss.backward()
            if cfg.train.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad)
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            elapsed = time.perf_counter() - tic
            last = {"mae/loss": loss.item(), "mae/lr": optimizer.param_groups[0]["lr"],
                    "perf/clips_per_s": video.shape[0] / elapsed, "env/skipped_videos": skipped_videos}
            if step % cfg.train.log_every == 0 or step == total_steps:
                for key, value in last.items():
                    writer.add_scalar(key, value, step)
            progress.update(1)
            progress.set_postfix(loss=f"{last['mae/loss']:.4f}", lr=f"{last['mae/lr']:.2e}")
        else:
            epoch += 1
            if epoch % cfg.train.save_ckpt_freq == 0:
                save(checkpoint.LATEST)
    save(checkpoint.LATEST)
    progress.close()
    writer.close()
    return last


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except (ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
