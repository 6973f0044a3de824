"""Configuration of the downstream entry points: fine-tuning and linear probing.

``python -m downstream.finetune`` composes ``configs/finetune.yaml``, ``python -m
downstream.linear_probe`` composes ``configs/linear_probe.yaml``; both reuse the ``model``
and ``data`` groups (:class:`ModelConfig`, :class:`DataConfig`) of pretraining. As there,
an unknown key or a value of the wrong type is an error, and :func:`validate_downstream`
checks what types cannot.

The encoder's architecture: with ``checkpoint_format=tats`` it is read from the checkpoint
(its resolved pretraining config), and ``model.name``/``model.img_size`` are not used; with
``checkpoint_format=videomae`` or no checkpoint it is ``model.name`` (+ ``model.img_size``).
``data.num_frames`` is always the clip length of the downstream data (the position table
is recomputed for it). ``model.drop_path_rate`` and ``model.decoder_depth`` are
pretraining keys; fine-tuning has ``train.drop_path``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from configs.schema import BACKGROUNDS, DATA_NAMES, MODEL_NAMES, ConfigError, DataConfig, ModelConfig, check_reader

CHECKPOINT_FORMATS = ("tats", "videomae")


@dataclass
class TestConfig:
    num_clips: int = 2
    """Temporal clips per video, evenly spaced (Table 7: 2 for SSv2/HMDB51/UCF101, 5 for K400)."""
    num_crops: int = 3
    """Spatial crops per clip along the long side of the short-side-resized frames (Table 7: 3)."""
    list: Optional[str] = None
    """data=list: the evaluation list file (``path<TAB>label``; relative paths joined to data.root)."""
    synthetic_clips: int = 256
    """data=synthetic: clips of the held-out ("val") split to evaluate on."""
    batch_size: Optional[int] = None
    """Videos per evaluation batch (each brings num_clips x num_crops views); None = train.batch_size."""


@dataclass
class FinetuneTrainConfig:
    epochs: int = 30
    """Passes over the training data (VideoMAE: 100 on UCF101/HMDB51/SSv2 with big models)."""
    batch_size: int = 8
    """Clips per step on each process (Table 7: 8); even when mixup/cutmix is on."""
    max_steps: int = -1
    """Stop after this many optimiser steps in total; -1 = all epochs (the schedule still spans them)."""
    blr: float = 1e-3
    """Base learning rate (Table 7); the applied peak is blr * total_batch / 256."""
    lr: Optional[float] = None
    """Absolute peak learning rate, not scaled; overrides blr when set."""
    min_blr: float = 1e-6
    """Base floor of the cosine (VideoMAE's --min_lr 1e-6), scaled by total_batch / 256 like blr."""
    min_lr: Optional[float] = None
    """Absolute floor of the cosine, not scaled; overrides min_blr when set. Above the peak = an error."""
    warmup_epochs: float = 5.0
    """Linear warm-up length in epochs (Table 7: 5), then cosine to the floor at the last step."""
    warmup_blr: float = 0.0
    """Base lr at the start of the warm-up, scaled like blr (0: VideoMAE parses --warmup_lr 1e-6
    but never passes it to its scheduler, so its warm-up starts at 0)."""
    warmup_lr: Optional[float] = None
    """Absolute lr at the start of the warm-up, not scaled; overrides warmup_blr when set."""
    opt_betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas (Table 7)."""
    weight_decay: float = 0.05
    """AdamW weight decay (Table 7), not applied to norms and biases."""
    layer_decay: float = 0.75
    """Layer-wise lr decay (Table 7): block i of depth L gets lr * layer_decay ** (L - i); 1 = off."""
    drop_path: float = 0.1
    """Stochastic depth of the last encoder block, linear from 0 (Table 7)."""
    head_init_scale: float = 1e-3
    """The head's initial weights are trunc-normal(0.02) times this (VideoMAE's --init_scale). From
    scratch, 1: with 1e-3 the near-zero head passes the encoder almost no gradient while AdamW's
    normalised steps move it anyway, and the micro ViT stays at chance (docs/testbed.md)."""
    clip_grad: Optional[float] = None
    """Max gradient norm; None = no clipping (VideoMAE's default)."""
    mixup: float = 0.8
    """Mixup alpha (Table 7); 0 = off."""
    cutmix: float = 1.0
    """CutMix alpha (VideoMAE); 0 = off. Mixup and CutMix both off = plain label smoothing."""
    mixup_prob: float = 1.0
    """Probability of mixing a batch at all."""
    mixup_switch_prob: float = 0.5
    """Probability of CutMix instead of Mixup when both are on."""
    label_smoothing: float = 0.1
    """Label smoothing of the (mixed) targets (Table 7)."""
    randaug: Optional[str] = "rand-m9-mstd0.5-inc1"
    """timm RandAugment string, the same ops for every frame of a clip (Table 7: "9, 0.5"); null = off."""
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    """Area range of the random resized crop (VideoMAE: 0.08-1)."""
    flip_prob: Optional[float] = None
    """Horizontal flip probability; None = 0.5 for data=list, 0 for data=synthetic (its labels are
    directions). Set 0 for direction-dependent datasets such as SSv2."""
    amp: bool = True
    """bf16 autocast on CUDA; ignored on CPU."""
    eval_every: int = 1
    """Multi-view evaluation every this many epochs (and always at the end); 0 = only at the end."""
    save_ckpt_freq: int = 1
    """Write a checkpoint every this many epochs (and always at the end)."""
    log_every: int = 10
    """Log training scalars every this many steps."""


@dataclass
class DownstreamConfig:
    """What fine-tuning and linear probing share: the encoder's weights, the data, the run."""

    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    test: TestConfig = field(default_factory=TestConfig)
    checkpoint: Optional[str] = None
    """Pretrained weights; null = a randomly initialised encoder (fine-tuning from scratch, for comparisons
    and smoke runs; the linear probe's chance-level baseline)."""
    checkpoint_format: str = "tats"
    """tats (train_joint.py's checkpoint-latest.pt) | videomae (an official VideoMAE .pth: the pretraining
    layout, or for fine-tuning also the fine-tuned one)."""
    num_classes: Optional[int] = None
    """Classes of the head; None = from the data (synthetic: 8; list: the largest label + 1)."""
    seed: int = 0
    """Seed of every random generator (each rank adds its rank)."""
    device: str = "auto"
    """auto (CUDA when available, else CPU) | cpu | cuda | cuda:N."""


@dataclass
class FinetuneConfig(DownstreamConfig):
    train: FinetuneTrainConfig = field(default_factory=FinetuneTrainConfig)
    output_dir: str = "runs/finetune-${model.name}-${data.name}"
    """Where logs (TensorBoard), the resolved config, checkpoints and metrics.json go."""
    resume: bool = False
    """Continue the run found in output_dir from its latest checkpoint."""


@dataclass
class ProbeTrainConfig:
    epochs: int = 50
    """Passes over the training features."""
    batch_size: int = 64
    """Feature vectors per step (and clips per feature-extraction batch)."""
    max_steps: int = -1
    """Stop after this many optimiser steps; -1 = all epochs."""
    opt: str = "sgd"
    """sgd (momentum, MAE's LARS without the layer-wise trust ratio) | adamw."""
    blr: float = 0.1
    """Base learning rate; the applied peak is blr * batch_size / 256 (MAE linear probing: 0.1)."""
    lr: Optional[float] = None
    """Absolute peak learning rate, not scaled; overrides blr when set."""
    momentum: float = 0.9
    """SGD momentum (adamw: beta1)."""
    weight_decay: float = 0.0
    """Weight decay of the linear layer (MAE: 0)."""
    warmup_epochs: float = 5.0
    """Linear warm-up length in epochs, then cosine to the floor at the last step."""
    min_blr: float = 0.0
    """Base floor of the cosine, scaled by batch_size / 256 like blr (MAE: 0)."""
    min_lr: Optional[float] = None
    """Absolute floor of the cosine, not scaled; overrides min_blr when set. Above the peak = an error."""
    warmup_blr: float = 0.0
    """Base lr at the start of the warm-up, scaled like blr (MAE: 0)."""
    warmup_lr: Optional[float] = None
    """Absolute lr at the start of the warm-up, not scaled; overrides warmup_blr when set."""
    augment: bool = False
    """false: features of each training clip extracted once, without augmentation (fast);
    true: random resized crop + flip per step, features recomputed through the frozen encoder."""
    flip_prob: Optional[float] = None
    """train.augment: horizontal flip probability; None = 0.5 for data=list, 0 for data=synthetic."""
    log_every: int = 10
    """Log training scalars every this many steps."""


@dataclass
class LinearProbeConfig(DownstreamConfig):
    train: ProbeTrainConfig = field(default_factory=ProbeTrainConfig)
    head: str = "linear"
    """linear (MAE's protocol: BatchNorm + Linear on the mean token) | attentive (a learned query
    cross-attends over all tokens, then LayerNorm + Linear; train it with train.opt=adamw)."""
    layer: int = -1
    """Which tokens the head reads: -1 the encoder's output (its last block, then its final
    LayerNorm: MAE's protocol); 0 the patch embedding with positions; k the output of block k
    (1 .. depth, no final norm). For a per-layer sweep of how linearly a feature is exposed."""
    output_dir: str = "runs/linprobe-${model.name}-${data.name}"
    """Where logs, the resolved config, the probe's weights and metrics.json go."""


def register_downstream_configs() -> None:
    """Store the schemas; the ``model`` and ``data`` YAML files extend ``base_model``/``base_data``."""
    store = ConfigStore.instance()
    store.store(name="base_finetune", node=FinetuneConfig)
    store.store(name="base_linear_probe", node=LinearProbeConfig)
    store.store(group="model", name="base_model", node=ModelConfig)
    store.store(group="data", name="base_data", node=DataConfig)


def validate_downstream(cfg: Any) -> None:
    """Check values types cannot; raise :class:`ConfigError` naming the key and what is allowed."""

    def require(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    require(cfg.model.name in MODEL_NAMES, f"model.name must be one of {MODEL_NAMES}, got {cfg.model.name!r}")
    require(cfg.data.name in DATA_NAMES, f"data.name must be one of {DATA_NAMES}, got {cfg.data.name!r}")
    require(cfg.data.name != "folder", "data=folder has no labels; downstream training needs data=list "
                                       "(data.train_list=train.csv test.list=val.csv) or data=synthetic")
    require(cfg.data.num_frames > 0, f"data.num_frames must be positive, got {cfg.data.num_frames}")
    require(cfg.data.sampling_rate > 0, f"data.sampling_rate must be positive, got {cfg.data.sampling_rate}")
    require(cfg.data.num_workers >= 0, f"data.num_workers must be >= 0, got {cfg.data.num_workers}")
    check_reader(cfg.data.reader, require)
    require(cfg.data.synthetic_background in BACKGROUNDS,
            f"data.synthetic_background must be one of {BACKGROUNDS}, got {cfg.data.synthetic_background!r}")
    require(cfg.data.synthetic_clips > 0, f"data.synthetic_clips must be positive, got {cfg.data.synthetic_clips}")
    require(cfg.model.drop_path_rate == 0.0, "model.drop_path_rate is a pretraining key; set the fine-tuning "
                                             "stochastic depth with train.drop_path")
    require(cfg.checkpoint_format in CHECKPOINT_FORMATS,
            f"checkpoint_format must be one of {CHECKPOINT_FORMATS}, got {cfg.checkpoint_format!r}")
    if cfg.checkpoint is not None:
        require(Path(cfg.checkpoint).is_file(), f"checkpoint: no such file: {cfg.checkpoint}")
    require(cfg.num_classes is None or cfg.num_classes >= 1, f"num_classes must be >= 1, got {cfg.num_classes}")
    require(cfg.test.num_clips >= 1, f"test.num_clips must be >= 1, got {cfg.test.num_clips}")
    require(cfg.test.num_crops >= 1, f"test.num_crops must be >= 1, got {cfg.test.num_crops}")
    require(cfg.test.synthetic_clips >= 1, f"test.synthetic_clips must be >= 1, got {cfg.test.synthetic_clips}")
    require(cfg.test.batch_size is None or cfg.test.batch_size >= 1,
            f"test.batch_size must be >= 1, got {cfg.test.batch_size}")
    if cfg.data.name == "list":
        require(cfg.data.train_list is not None, "data=list needs data.train_list=PATH (the training list file)")
        require(Path(cfg.data.train_list).is_file(), f"data.train_list: no such file: {cfg.data.train_list}")
        require(cfg.test.list is not None, "data=list needs test.list=PATH (the evaluation list file)")
        require(Path(cfg.test.list).is_file(), f"test.list: no such file: {cfg.test.list}")
        if cfg.data.root is not None:
            require(Path(cfg.data.root).is_dir(), f"data.root: no such folder: {cfg.data.root}")
    if "head" in cfg:  # probing
        require(cfg.head in ("linear", "attentive"), f"head must be linear or attentive, got {cfg.head!r}")
        require(cfg.layer >= -1, f"layer must be -1 (the encoder's output) or a block index >= 0, got {cfg.layer}")
    train = cfg.train
    require(train.epochs > 0, f"train.epochs must be positive, got {train.epochs}")
    require(train.batch_size > 0, f"train.batch_size must be positive, got {train.batch_size}")
    require(train.warmup_epochs >= 0, f"train.warmup_epochs must be >= 0, got {train.warmup_epochs}")
    require(train.weight_decay >= 0, f"train.weight_decay must be >= 0, got {train.weight_decay}")
    require(train.log_every >= 1, f"train.log_every must be >= 1, got {train.log_every}")
    if train.flip_prob is not None:
        require(0 <= train.flip_prob <= 1, f"train.flip_prob must be in [0, 1], got {train.flip_prob}")
    if "layer_decay" in cfg.train:  # fine-tuning
        require(0 < train.layer_decay <= 1, f"train.layer_decay must be in (0, 1], got {train.layer_decay}")
        require(0 <= train.drop_path < 1, f"train.drop_path must be in [0, 1), got {train.drop_path}")
        require(train.head_init_scale > 0, f"train.head_init_scale must be positive, got {train.head_init_scale}")
        require(train.mixup >= 0 and train.cutmix >= 0,
                f"train.mixup and train.cutmix must be >= 0, got {train.mixup}, {train.cutmix}")
        require(0 <= train.label_smoothing < 1, f"train.label_smoothing must be in [0, 1), got {train.label_smoothing}")
        mixing = train.mixup > 0 or train.cutmix > 0
        require(not mixing or train.batch_size % 2 == 0,
                f"train.batch_size={train.batch_size} must be even with mixup/cutmix on (timm pairs each clip "
                "with the batch reversed); or set train.mixup=0 train.cutmix=0")
        require(len(train.opt_betas) == 2, f"train.opt_betas needs two values, got {list(train.opt_betas)}")
        require(len(train.crop_scale) == 2 and 0 < train.crop_scale[0] <= train.crop_scale[1] <= 1,
                f"train.crop_scale must be [low, high] with 0 < low <= high <= 1, got {list(train.crop_scale)}")
        require(train.eval_every >= 0, f"train.eval_every must be >= 0, got {train.eval_every}")
        require(train.save_ckpt_freq >= 1, f"train.save_ckpt_freq must be >= 1, got {train.save_ckpt_freq}")
        if train.randaug:
            require(str(train.randaug).startswith("rand"),
                    f"train.randaug must be a timm RandAugment string like 'rand-m9-mstd0.5-inc1' or null, "
                    f"got {train.randaug!r}")
    else:  # linear probing
        require(train.opt in ("sgd", "adamw"), f"train.opt must be sgd or adamw, got {train.opt!r}")
