"""Probing a frozen encoder: a linear classifier on its mean-pooled features, or an attentive probe.

    python -m downstream.linear_probe checkpoint=runs/cpu-ppo/checkpoint-latest.pt
    python -m downstream.linear_probe                               # random encoder (the floor)
    python -m downstream.linear_probe head=attentive train.opt=adamw train.lr=1e-3 ...

The encoder is the pretraining encoder as it was trained (eval mode, all N tokens, no
masking, its final LayerNorm kept), frozen. ``head=linear`` (default) is MAE's protocol: the
feature of a clip is the mean of its N output tokens, then ``BatchNorm1d(affine=False,
eps=1e-6)`` and ``Linear`` (weights trunc-normal 0.01). ``head=attentive`` reads all N tokens:
one learned query cross-attends over them (LayerNorm on the tokens, multi-head attention with
the encoder's number of heads), then LayerNorm and ``Linear`` - the attentive probe of V-JEPA
(Bardes et al., 2024) without its MLP, for features that a mean does not expose linearly. MAE trains it with LARS at batch 16384; here plain SGD with
momentum 0.9 (``train.opt=sgd``, lr = blr * batch / 256, blr 0.1, no weight decay, warm-up
then cosine) or AdamW (``train.opt=adamw``). With ``train.augment=false`` (default) the
features of every training clip are extracted once, without augmentation, and the probe
trains on them; ``train.augment=true`` draws a random resized crop + flip per clip per step
and recomputes features. Test: the shared multi-view protocol (:mod:`downstream.evaluate`).
Single process (feature extraction is one pass).
"""

from __future__ import annotations

import runtime.fast_start  # noqa: F401, I001 - first: before Tianshou compiles its numba kernels

import json
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from timm.layers import trunc_normal_
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from configs import CONFIG_DIR, ConfigError
from configs.downstream_schema import register_downstream_configs, validate_downstream
from downstream.common import build_frozen_encoder
from downstream.datasets import default_flip_prob, eval_dataset, infer_num_classes, train_dataset
from downstream.evaluate import evaluate, make_eval_loader
from downstream.video_aug import FinetuneClipTransform
from mae.model import VideoMAEEncoder
from runtime import checkpoint
from runtime.lr_schedule import build_schedule, learning_rates
from runtime.distributed import init_processes
from runtime.setup import log_scalars, run_cli, save_resolved_config, seed_everything

register_downstream_configs()


HEADS = ("linear", "attentive")
MAX_TOKEN_FEATURE_BYTES = 4 * 2**30  # head=attentive keeps every token of every training clip in memory


class AttentivePooling(nn.Module):
    """A learned query attends over the tokens: multi-head attention with one query, computed cheaply.

    Equal to ``nn.MultiheadAttention(dim, num_heads)`` applied to one learned query token
    (then LayerNorm), but with the key projection folded into the query (one ``(heads, dim)``
    table of scores' directions: the key's bias adds the same score to every token and drops
    out of the softmax) and the value projection applied after pooling (it is linear), so a
    step costs O(B N D heads) instead of O(B N D^2).

    Shapes: ``(B, N, D)`` -> ``(B, D)``.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not a multiple of num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.norm_tokens = nn.LayerNorm(dim)
        self.query = nn.Parameter(torch.zeros(num_heads, dim))
        trunc_normal_(self.query, std=0.02)
        self.value = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_out = nn.LayerNorm(dim)

    def attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """Attention pooling without the norms: ``(B, N, D)`` -> ``(B, D)``."""
        batch, _, dim = tokens.shape
        weights = (torch.einsum("bnd,hd->bhn", tokens, self.query) * self.head_dim ** -0.5).softmax(dim=-1)
        pooled = torch.einsum("bhn,bnd->bhd", weights, tokens)  # per head, a weighted mean of the tokens
        value = self.value.weight.view(self.num_heads, self.head_dim, dim)
        heads = torch.einsum("bhd,hed->bhe", pooled, value) + self.value.bias.view(self.num_heads, self.head_dim)
        return self.proj(heads.reshape(batch, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm_out(self.attend(self.norm_tokens(tokens)))


class LinearProbe(nn.Module):
    """Frozen encoder -> mean over tokens -> BatchNorm1d(affine=False) -> Linear (``head="linear"``),
    or frozen encoder -> :class:`AttentivePooling` -> Linear (``head="attentive"``).

    Shapes:
        video ``(B, 3, T, H, W)`` -> logits ``(B, num_classes)``; features ``(B, D)`` (linear) or
        ``(B, N, D)`` (attentive).
    """

    def __init__(self, encoder: VideoMAEEncoder, num_classes: int, head: str = "linear", layer: int = -1):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if not -1 <= layer <= len(encoder.blocks):
            raise ValueError(f"layer must be -1 (the encoder's output), 0 (the patch embedding) or a block "
                             f"1 .. {len(encoder.blocks)}, got {layer}")
        self.layer = layer
        self.encoder = encoder.requires_grad_(False).eval()
        self.pooling = head
        dim = encoder.norm.normalized_shape[0]
        if head == "linear":
            self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        else:
            self.norm = AttentivePooling(dim, encoder.blocks[0].attn.num_heads)
        self.head = nn.Linear(dim, num_classes)
        trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def train(self, mode: bool = True) -> LinearProbe:
        super().train(mode)
        self.encoder.eval()  # frozen: no drop path, ever
        return self

    @torch.no_grad()
    def features(self, video: torch.Tensor) -> torch.Tensor:
        if self.layer == -1:
            tokens = self.encoder(video).float()
        else:  # the residual stream after `layer` blocks
            tokens = self.encoder.tokenize(video)
            for block in self.encoder.blocks[:self.layer]:
                tokens = block(tokens)
            tokens = tokens.float()
        return tokens.mean(dim=1) if self.pooling == "linear" else tokens

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(features))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(video))


@torch.no_grad()
def extract_features(probe: LinearProbe, dataset, *, batch_size: int, num_workers: int,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and labels of every clip of ``dataset``. Shapes: ``(M, D)`` float32, ``(M,)`` int64."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    features, labels = [], []
    for batch in tqdm(loader, desc="features", dynamic_ncols=True, leave=False):
        features.append(probe.features(batch["video"].to(device)).cpu())
        labels.append(batch["label"])
    return torch.cat(features), torch.cat(labels)


def train(cfg: DictConfig) -> dict[str, float]:
    validate_downstream(cfg)
    _, world_size, device = init_processes(cfg.device)
    if world_size > 1:
        raise NotImplementedError("linear probing runs in one process; start it without torchrun")
    seed_everything(cfg.seed)
    wall_start = time.perf_counter()

    # ---- the frozen encoder and the probe, before anything is written (a layer it lacks is a config error)
    num_classes = infer_num_classes(cfg)
    encoder = build_frozen_encoder(cfg)
    try:
        probe = LinearProbe(encoder, num_classes, cfg.head, cfg.layer).to(device)
    except ValueError as error:  # a layer the encoder does not have
        raise ConfigError(str(error)) from None
    output_dir = Path(cfg.output_dir)
    save_resolved_config(cfg, output_dir)
    writer = SummaryWriter(str(output_dir / "tb"))
    patch = encoder.patch_embed.proj.kernel_size
    size = encoder.patch_embed.grid[1] * patch[1]
    shapes = dict(input_size=size, patch_size=patch[1], tubelet_size=patch[0])
    print(f"probe: {cfg.head} head on the frozen encoder's " + ("output" if cfg.layer == -1 else f"layer {cfg.layer}"))

    # ---- training data: features extracted once (no augmentation), or augmented clips every step
    batch_size = cfg.train.batch_size
    if cfg.train.augment:
        transform = FinetuneClipTransform(size, randaug=None, flip_prob=default_flip_prob(cfg))
        source = train_dataset(cfg, **shapes, transform=transform)
    else:
        clips = train_dataset(cfg, **shapes, transform=None)
        if cfg.head == "attentive":
            needed = len(clips) * encoder.patch_embed.num_patches * encoder.norm.normalized_shape[0] * 4
            if needed > MAX_TOKEN_FEATURE_BYTES:
                raise ConfigError(f"head=attentive keeps every token of the {len(clips)} training clips in memory "
                                  f"({needed / 2**30:.1f} GiB); set train.augment=true to recompute them each step")
        tic = time.perf_counter()
        features, labels = extract_features(probe, clips, batch_size=batch_size, num_workers=cfg.data.num_workers,
                                            device=device)
        writer.add_scalar("perf/feature_extraction_s", time.perf_counter() - tic, 0)
        source = TensorDataset(features, labels)
    steps_per_epoch = len(source) // batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"train.batch_size={batch_size} exceeds the {len(source)} training clips: "
                          "not one step per epoch")

    # ---- optimiser and schedule
    lr = learning_rates(cfg.train, batch_size).peak
    params = [p for p in probe.parameters() if p.requires_grad]
    if cfg.train.opt == "sgd":
        optimizer = torch.optim.SGD(params, lr=lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=lr, betas=(cfg.train.momentum, 0.999),
                                      weight_decay=cfg.train.weight_decay)
    schedule_steps = steps_per_epoch * cfg.train.epochs
    scheduler = build_schedule(optimizer, cfg.train, total_batch=batch_size, total_steps=schedule_steps,
                               steps_per_epoch=steps_per_epoch)  # VideoMAE's (runtime/lr_schedule.py)
    print(scheduler.describe("probe lr"))
    criterion = nn.CrossEntropyLoss()

    # ---- the loop
    total_steps = schedule_steps if cfg.train.max_steps < 0 else min(schedule_steps, cfg.train.max_steps)
    progress = tqdm(total=total_steps, desc=f"{cfg.head} probe", dynamic_ncols=True)
    step, last = 0, {}
    probe.train()
    for epoch in range(cfg.train.epochs):
        if hasattr(source, "set_epoch"):
            source.set_epoch(epoch)
        loader = DataLoader(source, batch_size=batch_size, shuffle=True, drop_last=True,
                            num_workers=cfg.data.num_workers if cfg.train.augment else 0,
                            generator=torch.Generator().manual_seed(cfg.seed + epoch))
        for batch in loader:
            if cfg.train.augment:
                inputs, targets = probe.features(batch["video"].to(device)), batch["label"].to(device)
            else:
                inputs, targets = batch[0].to(device), batch[1].to(device)
            logits = probe.classify(inputs)
            loss = criterion(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            scheduler.step_update(step)
            last = {"probe/loss": loss.item(), "probe/lr": optimizer.param_groups[0]["lr"],
                    "probe/train_top1": 100.0 * float((logits.argmax(1) == targets).float().mean())}
            if step % cfg.train.log_every == 0 or step == total_steps:
                log_scalars(writer, last, step)
            progress.update(1)
            progress.set_postfix(loss=f"{last['probe/loss']:.4f}")
            if step >= total_steps:
                break
        if step >= total_steps:
            break
    progress.close()

    # ---- multi-view test
    eval_loader = make_eval_loader(eval_dataset(cfg, **shapes), batch_size=cfg.test.batch_size or batch_size,
                                   num_workers=cfg.data.num_workers)
    result = evaluate(probe, eval_loader, device, progress=True)
    scalars = {**result.scalars(), "eval/views_per_video": result.views_per_video}
    log_scalars(writer, scalars, step)
    writer.close()
    checkpoint.save_atomic(dict(norm=probe.norm.state_dict(), head=probe.head.state_dict(), step=step,
                                pooling=cfg.head, layer=cfg.layer, num_classes=num_classes, config=OmegaConf.to_container(cfg, resolve=True)),
                           output_dir / "probe.pt")
    metrics = {**scalars, "steps": step, "lr": lr, "wall_time_s": time.perf_counter() - wall_start}
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"{cfg.head} probe: top-1 {result.top1:.2f}  top-5 {result.top5:.2f}  over {result.num_videos} videos")
    return {**last, **scalars}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="linear_probe")
def main(cfg: DictConfig) -> None:
    run_cli(train, cfg)


if __name__ == "__main__":
    from runtime.errors import run_main

    run_main(main)
