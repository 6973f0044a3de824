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

import gymnasium
import torch

ENV_ID = "tats/MaskedVideoMAE-v0"


def make_mae_vector_env(num_envs: int = 8, *, model: str = "micro", mask_ratio: float = 0.9, num_frames: int = 16,
                        mode: str = "train", lr: float = 1e-3, seed: int = 0, device: str = "cpu",
                        synthetic_clips: int = 1024, synthetic_background: str = "smooth",
                        synthetic_objects: str = "solid", norm_target: bool = False,
                        render_mode: str | None = None):
    """An :class:`envs.MAEVectorEnv` of ``num_envs`` clips on the built-in data.

    The defaults are the CPU testbed's (a micro VideoMAE, 32 x 32 clips of 16 frames, smooth
    backgrounds and solid objects, [0, 1] pixel targets, mask ratio 0.9); ``model="tiny"`` is
    the 64 px model. ``seed`` seeds the MAE's initial weights and the clip stream.
    """
    from data import build_dataset
    from envs.clip_source import ClipSource
    from envs.mae_env import MAEVectorEnv
    from envs.mae_optimizer import MAEOptimizer
    from mae.registry import create_model_from_config

    torch.manual_seed(seed)
    mae = create_model_from_config({"name": model, "norm_target": norm_target}, num_frames=num_frames).to(device)
    dataset = build_dataset("synthetic", num_frames=num_frames, sampling_rate=1, input_size=mae.img_size,
                            patch_size=mae.patch_size, tubelet_size=mae.tubelet_size, seed=seed,
                            synthetic_clips=synthetic_clips, synthetic_background=synthetic_background,
                            synthetic_objects=synthetic_objects)
    clips = ClipSource(dataset, num_envs, seed=seed, device=device)
    optimizer = MAEOptimizer(torch.optim.AdamW(mae.parameters(), lr=lr)) if mode == "train" else None
    return MAEVectorEnv(mae, clips, mask_ratio=mask_ratio, optimizer=optimizer, mode=mode, render_mode=render_mode)


def register() -> None:
    """Register :data:`ENV_ID` with Gymnasium (once; importing :mod:`envs` does it)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(ENV_ID, vector_entry_point="envs.registration:make_mae_vector_env")
