"""Structured configuration: every key, its type, default and meaning, declared once.

Values live in the YAML files beside this module (``configs/<group>/<option>.yaml``);
hydra composes them (``model=tiny data=synthetic agent=ppo``) and applies ``key=value``
overrides. The schemas are stored in hydra's ConfigStore, so an unknown key or a value of
the wrong type is an error; :func:`validate` checks the values that types cannot
(ranges, files that must exist).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from data.build import DATASET_NAMES
from data.synthetic import BACKGROUNDS, CONTRASTS, OBJECTS
from data.video_io import resolve_reader
from envs.mae_env import REWARDS
from mae.registry import SIZES
from mae.target import LOSSES
from runtime.errors import ConfigError


@dataclass
class ModelConfig:
    name: str = "tiny"
    """VideoMAE size: micro (the CPU testbed's, 32 px) | tiny (64 px) | small | base (the paper's) | large."""
    img_size: Optional[int] = None
    """Input side in pixels; None = the size's default (micro 32, tiny 64, others 224)."""
    decoder_depth: Optional[int] = None
    """Decoder blocks; None = the size's default (4; micro and tiny 2). Flag --decoder_depth."""
    drop_path_rate: float = 0.0
    """Stochastic depth of the encoder during pretraining."""
    norm_target: bool = True
    """Per-patch normalised pixel targets (VideoMAE, the paper's default); false = [0, 1] pixels
    (the paper's Table 3d "w/o norm"; the CPU testbed's)."""
    loss: str = "mse"
    """Reconstruction loss: mse (Eq. 6) | l1 (Table 3d's alternative)."""
    init_checkpoint: Optional[str] = None
    """MAE weights to start from: a train_joint.py checkpoint (its MAE only) or an official VideoMAE
    pretraining file, loaded strictly; the optimiser, schedule and sampler start fresh. Not read on resume."""


@dataclass
class DataConfig:
    name: str = "synthetic"
    """synthetic (built-in procedural clips) | list (a list file) | folder (a folder of videos)."""
    train_list: Optional[str] = None
    """data=list: the list file, one video per line, ``path<TAB>label`` or ``path label``."""
    root: Optional[str] = None
    """data=list: prefix for relative paths in the list; data=folder: the folder (searched recursively)."""
    num_frames: int = 16
    """Frames per clip (flag --num_frames)."""
    sampling_rate: int = 2
    """Temporal stride between sampled frames (flag --sampling_rate; 4 for K400, 2 otherwise)."""
    synthetic_clips: int = 512
    """data=synthetic: clips per epoch (generated on the fly, deterministic per seed and index)."""
    synthetic_background: str = "textured"
    """data=synthetic: textured (noise, stripes or checker) | smooth (a low-frequency colour field: the
    CPU testbed's) | flat (one colour: only the moving objects carry anything to reconstruct)."""
    synthetic_objects: str = "striped"
    """data=synthetic: striped (two colours) | solid (one colour; the CPU testbed's)."""
    synthetic_contrast: str = "random"
    """data=synthetic: random (object and background colours drawn independently) | bright (the same
    scenes with a dimmed background and lifted object colours, every object brighter than the
    background: the CPU testbed's; docs/testbed.md says why the label needs it)."""
    synthetic_fresh: bool = False
    """data=synthetic: new clips every epoch (an endless stream, nothing to memorise; the CPU testbed's)
    instead of the same synthetic_clips clips each epoch."""
    num_workers: int = 2
    """DataLoader worker processes per rank."""
    reader: str = "auto"
    """data=list|folder: video decoder, auto (decord where it is installed, else PyAV) | decord | pyav."""


@dataclass
class TrainConfig:
    batch_size: int = 8
    """Clips per step on each process (= the environment's num_envs). Flag --batch_size."""
    epochs: int = 4
    """Passes over the data (flag --epochs)."""
    max_steps: int = -1
    """Stop after this many MAE steps in total; -1 = run all epochs."""
    opt: str = "adamw"
    """Optimizer name for timm's create_optimizer_v2 (flag --opt)."""
    opt_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """Optimizer betas (flag --opt_betas)."""
    blr: float = 1.5e-4
    """Base peak learning rate of the MAE (VideoMAE's --lr 1.5e-4); the applied peak is
    blr * total_batch / 256, total_batch = batch_size x processes x accum_steps."""
    lr: Optional[float] = None
    """Absolute peak MAE learning rate, not scaled; overrides blr when set."""
    min_blr: float = 1e-5
    """Base floor of the cosine (VideoMAE's --min_lr 1e-5), scaled by total_batch / 256 like blr."""
    min_lr: Optional[float] = None
    """Absolute floor of the cosine, not scaled; overrides min_blr when set. Above the peak = an error."""
    warmup_blr: float = 0.0
    """Base lr at the start of the warm-up, scaled like blr (0: VideoMAE's warm-up starts at 0)."""
    warmup_lr: Optional[float] = None
    """Absolute lr at the start of the warm-up, not scaled; overrides warmup_blr when set."""
    warmup_epochs: float = 1.0
    """Linear warm-up length in epochs (flag --warmup_epochs; the paper uses 40 of 400); then
    cosine to the floor at the last step (runtime/lr_schedule.py)."""
    weight_decay: float = 0.05
    """AdamW weight decay (not applied to norms, biases and the mask token)."""
    clip_grad: Optional[float] = None
    """Max gradient norm of the MAE; None = no clipping."""
    save_ckpt_freq: int = 1
    """Write a checkpoint every this many epochs (and always at the end). Flag --save_ckpt_freq."""
    save_every_steps: int = 0
    """Also write a checkpoint every this many MAE steps (at the first step boundary after each
    multiple); 0 = only at epochs. SIGTERM and Ctrl-C always save at the next step boundary."""
    max_consecutive_skips: int = 20
    """Stop the run (keeping the last good checkpoint) after this many updates in a row of the MAE
    or of the sampler were skipped for a non-finite loss, gradient or weight; 0 = never stop."""
    log_every: int = 10
    """Log scalars to TensorBoard every this many steps."""
    mae_only_epochs: int = 1
    """Algorithm 1's m_o: epochs of random space-time masking before the sampler acts
    (flag --num_epochs_train_mae_only; the paper uses 10). Not applied to agent=reinforce with
    agent.recipe=adamae (AdaMAE's sampler masks and learns from the first step)."""
    update_steps_mae: int = 1
    """Algorithm 1's k: MAE steps (episodes recorded) per policy update (flag --update_steps_mae)."""
    accum_steps: int = 1
    """MAE gradient accumulation: environment steps per MAE optimiser step."""
    group_update: str = "all"
    """Group mode (GRPO): which copies of a clip update the MAE, all | first."""
    amp: bool = True
    """bf16 autocast of the MAE on CUDA (distribution maths stays fp32); ignored on CPU."""
    mae: str = "joint"
    """joint (the MAE trains with the sampler: Algorithm 1) | frozen (the MAE of model.init_checkpoint is
    fixed, in eval mode, with no optimiser: every step a rollout, the sampler's cycles as in Algorithm 1;
    the benchmark's setting, docs/benchmark.md)."""
    reward: str = "loss"
    """The environment's reward: loss (+L_R, the paper's: the built-in agents' objectives set the sign they
    maximise, and they need it) | negative_loss (-L_R, higher is better: what a stock algorithm through
    agent=custom maximises to lower the loss). docs/agents-and-environment.md, "The reward's sign"."""
    eval_every: int = 100
    """Score on fixed held-out clips every this many steps; 0 = never. Joint training (data=synthetic): the
    MAE under fixed random masks next to the trivial predictors (mae/heldout_*). Frozen MAE (any data): the
    policy's masks against random masks and the greedy oracle (eval/*, docs/benchmark.md)."""
    eval_clips: int = 64
    """train.mae=frozen: held-out clips of the policy's score (the greedy oracle costs about K * N MAE
    forward passes per clip, once per MAE; cached beside model.init_checkpoint)."""
    log_figures: bool = True
    """At every held-out score (train.eval_every), also log to TensorBoard the visualiser's figure of 2 fixed
    held-out clips (figures/clip_*) and a histogram of the policy's p on 8 (policy/p); rank 0 only."""
    dump_buffer_every: int = 50
    """Write the rollout buffer to output_dir/buffers/ every this many policy updates (0 = never)."""
    init_actor: Optional[str] = None
    """Start the sampler's actor from these weights: an ``imitated-actor.pt`` (written by ``train.imitate``) or a
    train_joint.py checkpoint (its agent's actor); None = a fresh actor. Not applied on resume."""
    imitate: Optional[str] = None
    """Before the first RL step, train the sampler's actor by imitation of a teacher's selections (a file of
    ``python -m benchmark teacher``): the exact Plackett-Luce log-likelihood of each ordered K-subset
    (agents/imitation.py); the actor is written to output_dir/imitated-actor.pt. None = no imitation."""
    imitate_steps: int = 300
    """Gradient steps of the imitation (train.imitate)."""
    imitate_lr: float = 1e-3
    """Adam learning rate of the imitation."""
    imitate_batch_size: int = 32
    """Clips per imitation step."""


@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    agent: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    mask_ratio: float = 0.9
    """Fraction of tokens masked, in (0, 1); K = round(N * (1 - mask_ratio)) stay visible."""
    mask_ratio_range: Optional[list[float]] = None
    """[low, high]: train with a budget drawn per batch (AutoGaze's ``uniform`` strategy), K uniform over the
    integers from K(high) to K(low); the actions hold K(low) indices and each batch keeps its first K
    (docs/environment.md). ``mask_ratio`` then sets only the held-out scores' ratio. None = mask_ratio always."""
    output_dir: str = "runs/${agent.name}-${model.name}-${data.name}"
    """Where logs (TensorBoard), the resolved config and checkpoints go."""
    seed: int = 0
    """Seed of every random generator (each rank adds its rank)."""
    device: str = "auto"
    """auto (CUDA when available, else CPU) | cpu | cuda | cuda:N."""
    resume: bool = False
    """Continue the run found in output_dir from its latest checkpoint."""


def register_configs() -> None:
    """Store the schemas so the YAML files can extend them (hydra's schema pattern)."""
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    store.store(group="model", name="base_model", node=ModelConfig)
    store.store(group="data", name="base_data", node=DataConfig)
    # Each agent's options are declared once, as a dataclass beside its algorithm.
    from agents.registry import AGENTS

    for name, entry in AGENTS.items():
        store.store(group="agent", name=f"base_{name}", node=entry.config)


TRAIN_MAE_MODES = ("joint", "frozen")
MODEL_NAMES = tuple(SIZES)  # one source each: the model registry, the dataset dispatcher
DATA_NAMES = DATASET_NAMES


def check_reader(reader: str, require) -> None:
    """``data.reader`` is a known decoder, installed here."""
    try:
        resolve_reader(reader)
    except ValueError as error:
        require(False, str(error))


def validate(cfg: Any) -> None:
    """Check values that the schema's types cannot; raise :class:`ConfigError` naming the key."""

    def require(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    require(0.0 < cfg.mask_ratio < 1.0, f"mask_ratio must be in (0, 1), got {cfg.mask_ratio}")
    if cfg.mask_ratio_range is not None:
        low_high = list(cfg.mask_ratio_range)
        require(len(low_high) == 2 and 0.0 < low_high[0] <= low_high[1] < 1.0,
                f"mask_ratio_range must be [low, high] with 0 < low <= high < 1, got {low_high}")
    require(cfg.model.name in MODEL_NAMES, f"model.name must be one of {MODEL_NAMES}, got {cfg.model.name!r}")
    require(cfg.data.name in DATA_NAMES, f"data.name must be one of {DATA_NAMES}, got {cfg.data.name!r}")
    require(cfg.model.loss in LOSSES, f"model.loss must be one of {LOSSES}, got {cfg.model.loss!r}")
    require(cfg.data.synthetic_objects in OBJECTS,
            f"data.synthetic_objects must be one of {OBJECTS}, got {cfg.data.synthetic_objects!r}")
    require(cfg.data.synthetic_contrast in CONTRASTS,
            f"data.synthetic_contrast must be one of {CONTRASTS}, got {cfg.data.synthetic_contrast!r}")
    require(cfg.data.synthetic_background in BACKGROUNDS,
            f"data.synthetic_background must be one of {BACKGROUNDS}, got {cfg.data.synthetic_background!r}")
    require(cfg.data.num_frames > 0, f"data.num_frames must be positive, got {cfg.data.num_frames}")
    require(cfg.data.sampling_rate > 0, f"data.sampling_rate must be positive, got {cfg.data.sampling_rate}")
    require(cfg.data.num_workers >= 0, f"data.num_workers must be >= 0, got {cfg.data.num_workers}")
    check_reader(cfg.data.reader, require)
    require(cfg.train.batch_size > 0, f"train.batch_size must be positive, got {cfg.train.batch_size}")
    require(cfg.train.epochs > 0, f"train.epochs must be positive, got {cfg.train.epochs}")
    require(cfg.train.update_steps_mae >= 1, f"train.update_steps_mae must be >= 1, got {cfg.train.update_steps_mae}")
    require(cfg.train.accum_steps >= 1, f"train.accum_steps must be >= 1, got {cfg.train.accum_steps}")
    require(cfg.train.mae_only_epochs >= 0, f"train.mae_only_epochs must be >= 0, got {cfg.train.mae_only_epochs}")
    require(cfg.train.mae in TRAIN_MAE_MODES, f"train.mae must be one of {TRAIN_MAE_MODES}, got {cfg.train.mae!r}")
    require(cfg.train.mae != "frozen" or cfg.model.init_checkpoint is not None,
            "train.mae=frozen needs the MAE to keep fixed: model.init_checkpoint=PATH (a train_joint.py checkpoint "
            "or an official VideoMAE pretraining file; `python -m benchmark mae` makes the benchmark's)")
    if cfg.model.init_checkpoint is not None:
        require(Path(cfg.model.init_checkpoint).is_file(),
                f"model.init_checkpoint: no such file: {cfg.model.init_checkpoint}")
    require(cfg.train.reward in REWARDS, f"train.reward must be one of {REWARDS}, got {cfg.train.reward!r}")
    require(cfg.train.reward == "loss" or cfg.agent.name in ("custom", "random", "tube"),
            f"train.reward={cfg.train.reward} is for stock algorithms through agent=custom; agent={cfg.agent.name} "
            "reads the paper's +L_R (its objective sets the sign it maximises): use train.reward=loss")
    require(cfg.train.group_update in ("all", "first"),
            f"train.group_update must be all or first, got {cfg.train.group_update!r}")
    require(len(cfg.train.opt_betas) == 2, f"train.opt_betas needs two values, got {list(cfg.train.opt_betas)}")
    for key in ("init_actor", "imitate"):
        path = cfg.train.get(key)
        require(path is None or Path(path).is_file(), f"train.{key}: no such file: {path}")
    require(cfg.train.imitate_steps >= 0, f"train.imitate_steps must be >= 0, got {cfg.train.imitate_steps}")
    require(cfg.train.imitate_batch_size > 0,
            f"train.imitate_batch_size must be positive, got {cfg.train.imitate_batch_size}")
    _validate_run_keys(cfg, require)
    if cfg.data.name == "list":
        require(cfg.data.train_list is not None, "data=list needs data.train_list=PATH (a list file)")
        require(Path(cfg.data.train_list).is_file(), f"data.train_list: no such file: {cfg.data.train_list}")
    if cfg.data.name == "folder":
        require(cfg.data.root is not None, "data=folder needs data.root=PATH (a folder of videos)")
        require(Path(cfg.data.root).is_dir(), f"data.root: no such folder: {cfg.data.root}")
    from agents.registry import make_config
    from omegaconf import OmegaConf

    try:
        make_config(cfg.agent.name, OmegaConf.to_container(cfg.agent, resolve=True))
    except (ValueError, TypeError) as error:
        raise ConfigError(f"agent: {error}") from error
    if cfg.data.name == "list" and cfg.data.root is not None:
        require(Path(cfg.data.root).is_dir(), f"data.root: no such folder: {cfg.data.root}")


def _validate_run_keys(cfg: Any, require: Any) -> None:
    """Frequencies, rates, sizes and the device: what would otherwise fail after training began."""
    import dataclasses

    for section, schema in ((None, Config), ("model", ModelConfig), ("data", DataConfig), ("train", TrainConfig)):
        node = cfg if section is None else cfg[section]
        known = {f.name for f in dataclasses.fields(schema)} | ({"preset"} if section is None else set())
        unknown = sorted(set(node.keys()) - known)
        where = f"{section}." if section else ""
        require(not unknown, f"unknown key(s) {', '.join(where + key for key in unknown)}: not a setting of this "
                "program (see docs/configuration.md)")
    require(isinstance(cfg.seed, int) and 0 <= cfg.seed < 2**63 - 2**16,
            f"seed must be an integer in [0, 2**63 - 2**16), got {cfg.seed} (each rank seeds with seed + rank)")
    require(str(cfg.output_dir).strip() != "", "output_dir is empty: name the run's folder (output_dir=runs/NAME)")
    train = cfg.train
    for key in ("save_ckpt_freq", "log_every", "eval_clips"):
        require(train[key] >= 1, f"train.{key} must be >= 1, got {train[key]}")
    for key in ("eval_every", "dump_buffer_every", "save_every_steps", "max_consecutive_skips"):
        require(train[key] >= 0, f"train.{key} must be >= 0 (0 = off), got {train[key]}")
    require(train.max_steps >= -1, f"train.max_steps must be >= 0, or -1 for all epochs; got {train.max_steps}")
    if train.lr is not None:
        require(train.lr > 0, f"train.lr must be > 0, got {train.lr} (or null to use train.blr)")
    require(train.blr > 0, f"train.blr must be > 0, got {train.blr}")
    for key in ("min_blr", "warmup_blr", "min_lr", "warmup_lr"):  # the absolute ones may be null (= base x batch)
        require(train[key] is None or train[key] >= 0, f"train.{key} must be >= 0, got {train[key]}")
    require(train.warmup_epochs >= 0, f"train.warmup_epochs must be >= 0, got {train.warmup_epochs}")
    require(train.weight_decay >= 0, f"train.weight_decay must be >= 0, got {train.weight_decay}")
    if train.clip_grad is not None:
        require(train.clip_grad > 0, f"train.clip_grad must be > 0, got {train.clip_grad} (or null: no clipping)")
    require(all(0 <= beta < 1 for beta in train.opt_betas), f"train.opt_betas must be in [0, 1), got "
            f"{list(train.opt_betas)}")
    try:
        from timm.optim import list_optimizers
    except ImportError:  # older timm: create_optimizer_v2 names the problem itself
        list_optimizers = None
    if list_optimizers is not None:
        known = set(list_optimizers())
        require(str(train.opt).lower() in known or str(train.opt).lower().split("_")[-1] in known,
                f"train.opt={train.opt!r} is not an optimizer timm knows (e.g. adamw, sgd, lamb)")
    if cfg.data.name == "synthetic":
        require(cfg.data.synthetic_clips > 0, f"data.synthetic_clips must be positive, got {cfg.data.synthetic_clips}")
    # the model's geometry: patches tile the frame, tubelets tile the clip
    from mae.registry import SIZES

    if cfg.model.name in SIZES:
        size = SIZES[cfg.model.name]
        patch, tubelet = size.get("patch_size", 16), size.get("tubelet_size", 2)
        img_size = cfg.model.img_size if cfg.model.img_size is not None else size.get("img_size", 224)
        require(img_size > 0 and img_size % patch == 0,
                f"model.img_size must be a positive multiple of the {cfg.model.name} model's patch size {patch}, "
                f"got {img_size}")
        require(cfg.data.num_frames % tubelet == 0,
                f"data.num_frames must be a multiple of the tubelet size {tubelet}, got {cfg.data.num_frames}")
        if cfg.model.decoder_depth is not None:
            require(cfg.model.decoder_depth >= 1, f"model.decoder_depth must be >= 1, got {cfg.model.decoder_depth}")
        heads = cfg.agent.get("num_heads", None)
        if heads is not None and cfg.agent.get("actor", None) is not None:
            width = cfg.agent.get("sampler_dim", None) or size["embed_dim"]
            require(width % heads == 0, f"agent.num_heads={heads} must divide the sampler's width {width} "
                    f"({'agent.sampler_dim' if cfg.agent.get('sampler_dim', None) else 'the model width'})")
    from runtime.setup import pick_device

    try:
        pick_device(cfg.device)
    except (ValueError, RuntimeError) as error:
        raise ConfigError(f"device={cfg.device}: {str(error).splitlines()[0]}") from error
