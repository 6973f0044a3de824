"""The environment under a Gymnasium id, on the built-in data with the CPU testbed's settings.

    import gymnasium as gym
    import envs  # registers the id (or: gym.make_vec("envs:tats/MaskedVideoMAE-v0", ...))

    env = gym.make_vec("tats/MaskedVideoMAE-v0", num_envs=8, vectorization_mode="vector_entry_point")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

    single = gym.make("tats/MaskedVideoMAE-v0", mode="frozen")   # one clip per episode

Each step trains the MAE once (``mode="train"``, AdamW at a constant ``lr``) on ``num_envs``
built-in clips; ``mode="frozen"`` only scores the masks. The reward is -L_R (higher is better)
unless ``reward="loss"``. The settings are those of ``configs/preset/cpu.yaml``, composed onto
the config files its defaults list picks, so every key of the preset's ``model`` and ``data``
sections is a keyword here (:func:`testbed_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
from gymnasium.vector import AutoresetMode
from omegaconf import DictConfig, OmegaConf

from envs.build import build_clips, build_env, build_model
from envs.mae_env import MODES, MAEEnv, MAEVectorEnv

ENV_ID = "tats/MaskedVideoMAE-v0"
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
"""The project's config folder, found from this file (the package layers below the configs)."""
TESTBED_PRESET = CONFIG_DIR / "preset" / "cpu.yaml"
SETTING_SECTIONS = ("model", "data")
"""Every key the preset sets in these sections is a keyword of the registered environment."""


def testbed_config() -> DictConfig:
    """``configs/preset/cpu.yaml`` composed onto the group files its defaults list picks
    (``override /model: micro`` reads ``configs/model/micro.yaml``, and so on); keys of the
    structured schema that no file sets are left to the builders' own defaults."""
    preset = OmegaConf.load(TESTBED_PRESET)
    composed = OmegaConf.create()
    for entry in preset.pop("defaults", []):
        if entry == "_self_":
            continue
        ((choice, option),) = entry.items()
        group = choice.removeprefix("override").strip().strip("/")
        picked = OmegaConf.load(CONFIG_DIR / group / f"{option}.yaml")
        picked.pop("defaults", None)  # the schema's own defaults (base_model, base_data)
        composed[group] = picked
    return OmegaConf.merge(composed, preset)


def _setting_keys() -> dict[str, str]:
    """Each keyword of the environment -> its key in :func:`testbed_config`."""
    preset = OmegaConf.load(TESTBED_PRESET)
    keys = {"mask_ratio": "mask_ratio", "lr": "train.lr"}
    for section in SETTING_SECTIONS:
        keys.update({key: f"{section}.{key}" for key in preset[section]})
    return keys


def testbed_settings() -> dict[str, Any]:
    """The registered environment's settings and their testbed values: ``mask_ratio``, ``lr`` (the
    preset's ``train.lr``) and every key of the preset's ``model`` and ``data`` sections."""
    config = testbed_config()
    return {name: OmegaConf.select(config, key) for name, key in _setting_keys().items()}


def _build(num_envs: int, *, model: str | None, mode: str, reward: str, autoreset_mode: AutoresetMode | str,
           checkpoint: str | Path | None, seed: int, device: str, render_mode: str | None,
           settings: dict[str, Any]) -> MAEVectorEnv:
    keys = _setting_keys()
    unknown = sorted(set(settings) - set(keys))
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; allowed: {sorted(keys)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    config = testbed_config()
    for name, value in settings.items():
        pair = name == "mask_ratio" and isinstance(value, (tuple, list))  # a budget drawn per batch
        OmegaConf.update(config, "mask_ratio_range" if pair else keys[name], list(value) if pair else value)
    # the environment's own choices, as the shared builders read them
    OmegaConf.update(config, "seed", seed)
    OmegaConf.update(config, "train.batch_size", num_envs)
    OmegaConf.update(config, "train.mae", "frozen" if mode == "frozen" else "joint")
    OmegaConf.update(config, "train.reward", reward)
    if model:
        OmegaConf.update(config, "model.name", model)
    mae = build_model(config, seed=seed, checkpoint=checkpoint).to(device)
    clips = build_clips(config, mae, device=device)
    return build_env(config, mae, clips, device=device, constant_lr=True, render_mode=render_mode,
                     autoreset_mode=autoreset_mode)


def make_mae_vector_env(num_envs: int = 8, *, model: str | None = None, mode: str = "train",
                        reward: str = "negative_loss", autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
                        checkpoint: str | Path | None = None, seed: int = 0, device: str = "cpu",
                        render_mode: str | None = None, **settings: Any) -> MAEVectorEnv:
    """An :class:`envs.MAEVectorEnv` of ``num_envs`` clips on the built-in data (Gymnasium's
    ``vector_entry_point`` of :data:`ENV_ID`).

    :param model: the VideoMAE size; None = the preset's (``micro``, 32 px); ``tiny`` is 64 px.
    :param mode: ``"train"`` (each step is one AdamW step of the MAE at the constant ``lr``) or ``"frozen"``.
    :param reward: ``"negative_loss"`` (-L_R, higher is better: what a stock RL algorithm needs) or
        ``"loss"`` (+L_R, the paper's, what the project's agents read).
    :param autoreset_mode: ``SAME_STEP``, ``DISABLED`` or ``NEXT_STEP`` (see :mod:`envs.mae_env`).
    :param checkpoint: MAE weights to load (strictly): a ``train_joint.py`` checkpoint (its MAE) or an
        official VideoMAE file; ``model``, ``num_frames`` and ``norm_target`` must be the ones it was
        trained with.
    :param seed: the MAE's initial weights (without a checkpoint), the clip stream and a drawn
        budget's K; the global torch generator is left as it was.
    :param settings: replace the CPU testbed's values (:func:`testbed_settings`): ``mask_ratio`` (a
        pair ``(low, high)`` draws K per batch, see :mod:`envs.mae_env`), ``lr``, ``norm_target`` and
        the preset's data keys (``num_frames``, ``synthetic_clips``, ``synthetic_background``,
        ``synthetic_objects``, ``synthetic_contrast``, ``synthetic_fresh``, ``num_workers``).
    """
    return _build(num_envs, model=model, mode=mode, reward=reward, autoreset_mode=autoreset_mode,
                  checkpoint=checkpoint, seed=seed, device=device, render_mode=render_mode, settings=settings)


def make_mae_env(*, model: str | None = None, mode: str = "train", reward: str = "negative_loss",
                 checkpoint: str | Path | None = None, seed: int = 0, device: str = "cpu",
                 render_mode: str | None = None, **settings: Any) -> MAEEnv:
    """One clip per episode (:class:`envs.MAEEnv`, Gymnasium's ``entry_point`` of :data:`ENV_ID`): the
    keywords of :func:`make_mae_vector_env`. Under ``gymnasium.make_vec(..., vectorization_mode="sync")``
    each sub-environment has its own MAE; reset it with a seed (sub-environment i gets seed + i) so
    that their clip streams differ."""
    return MAEEnv(_build(1, model=model, mode=mode, reward=reward, autoreset_mode=AutoresetMode.DISABLED,
                         checkpoint=checkpoint, seed=seed, device=device, render_mode=render_mode,
                         settings=settings))


def register() -> None:
    """Register :data:`ENV_ID` with Gymnasium (once; importing :mod:`envs` does it)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, entry_point="envs.registration:make_mae_env",
                           vector_entry_point="envs.registration:make_mae_vector_env")
