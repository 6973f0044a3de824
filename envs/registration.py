"""The environment under a Gymnasium id, on the built-in data with a small MAE.

    import gymnasium as gym
    import envs  # registers the id (or: gym.make_vec("envs:tats/MaskedVideoMAE-v0", ...))

    env = gym.make_vec("tats/MaskedVideoMAE-v0", num_envs=8, vectorization_mode="vector_entry_point")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Each step trains the MAE once (``mode="train"``, AdamW at a constant ``lr``) on ``num_envs``
built-in clips; ``mode="frozen"`` only scores the masks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
import torch

ENV_ID = "tats/MaskedVideoMAE-v0"


def testbed_settings() -> dict[str, Any]:
    """The CPU testbed's values (``configs/preset/cpu.yaml``) the registered environment starts from."""
    from omegaconf import OmegaConf

    from configs import CONFIG_DIR

    preset = OmegaConf.load(Path(CONFIG_DIR) / "preset" / "cpu.yaml")
    data = preset.data
    return {"mask_ratio": preset.mask_ratio, "num_frames": data.num_frames, "lr": preset.train.lr,
            "synthetic_clips": data.synthetic_clips, "synthetic_background": data.synthetic_background,
            "synthetic_objects": data.synthetic_objects, "synthetic_contrast": data.synthetic_contrast,
            "norm_target": preset.model.norm_target}


def make_mae_vector_env(num_envs: int = 8, *, model: str = "micro", mode: str = "train", seed: int = 0,
                        device: str = "cpu", render_mode: str | None = None, **settings: Any):
    """An :class:`envs.MAEVectorEnv` of ``num_envs`` clips on the built-in data.

    ``settings`` replace the CPU testbed's values (:func:`testbed_settings`: a micro VideoMAE on
    32 x 32 clips of 16 frames with [0, 1] pixel targets, mask ratio 0.9, AdamW at lr 1e-3, smooth
    backgrounds and solid objects brighter than them): ``mask_ratio``, ``num_frames``, ``lr``,
    ``synthetic_clips``, ``synthetic_background``, ``synthetic_objects``, ``synthetic_contrast``
    (as ``data.synthetic_*``), ``norm_target``. ``model="tiny"`` is the 64 px model. ``seed``
    seeds the MAE's initial weights and the clip stream.
    """
    from data import build_dataset
    from envs.clip_source import ClipSource
    from envs.mae_env import MAEVectorEnv
    from envs.mae_optimizer import MAEOptimizer
    from mae.registry import create_model_from_config

    values = testbed_settings()
    unknown = sorted(set(settings) - set(values))
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; allowed: {sorted(values)}")
    values.update(settings)
    torch.manual_seed(seed)
    mae = create_model_from_config({"name": model, "norm_target": values["norm_target"]},
                                   num_frames=values["num_frames"]).to(device)
    dataset = build_dataset("synthetic", num_frames=values["num_frames"], sampling_rate=1, input_size=mae.img_size,
                            patch_size=mae.patch_size, tubelet_size=mae.tubelet_size, seed=seed,
                            **{key: values[key] for key in values if key.startswith("synthetic_")})
    clips = ClipSource(dataset, num_envs, seed=seed, device=device)
    optimizer = MAEOptimizer(torch.optim.AdamW(mae.parameters(), lr=values["lr"])) if mode == "train" else None
    return MAEVectorEnv(mae, clips, mask_ratio=values["mask_ratio"], optimizer=optimizer, mode=mode,
                        render_mode=render_mode)


def register() -> None:
    """Register :data:`ENV_ID` with Gymnasium (once; importing :mod:`envs` does it)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, vector_entry_point="envs.registration:make_mae_vector_env")
