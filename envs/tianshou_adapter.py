"""What Tianshou's Collector needs from a vectorised environment, over :class:`MAEVectorEnv`.

Tianshou's own ``DummyVectorEnv``/``SubprocVectorEnv`` step sub-environments one by one;
the MAE must see the whole batch in one step, so this adapter exposes the batched env
through the Collector's interface (``len``, ``is_async``, ``reset(env_id=)``,
``step(act, ready_env_ids)``, a per-env ``action_space`` list).

Pitfalls handled (see the project's notes on Tianshou 2.0):
- the Collector resets every finished env after each step; here all are finished, and the
  next clips were already loaded by ``step`` (same-step autoreset), so ``reset(env_id)``
  hands them out. It returns an indexed *copy*: the Collector writes reset observations
  into its copy of ``obs_next`` in place, which fails if both share storage;
- observations stay torch tensors on the env's device; rewards and flags are numpy;
- the Collector wants infos as an object array of per-env dicts (it indexes and assigns
  them by env id), with the same keys for reset and step; Gymnasium's ``_key`` masks (all
  True here) are dropped, so the buffer holds ``info.token_error``, ``info.visible``, ...
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tianshou.data import Batch

from envs.mae_env import MAEVectorEnv


class TianshouVectorEnv:
    """The batched MAE environment, in the shape of a Tianshou ``BaseVectorEnv``."""

    is_async = False

    def __init__(self, env: MAEVectorEnv):
        self.env = env
        self.action_space = [env.single_action_space] * env.num_envs
        self.observation_space = [env.single_observation_space] * env.num_envs

    def __len__(self) -> int:
        return self.env.num_envs

    @property
    def env_num(self) -> int:
        return self.env.num_envs

    def _all(self, ids) -> np.ndarray:
        return np.arange(self.env.num_envs) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)

    def reset(self, env_id=None, **kwargs):
        """Hand out the clips waiting in the env (``step`` loads them); reset the env only when
        it has none yet or a seed is given."""
        ids = self._all(env_id)
        if not self.env.has_batch or kwargs.get("seed") is not None:
            self.env.reset(**kwargs)
        # indexing copies: see the storage pitfall above
        return self.env.observation[ids], _per_env(self.env.reset_info())[ids]

    def step(self, action, id=None):
        ids = self._all(id)
        if len(ids) != self.env.num_envs:
            raise ValueError(
                f"the MAE environment steps all {self.env.num_envs} clips together; got a step for "
                f"env ids {ids.tolist()}. Collect with n_step a multiple of num_envs."
            )
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, _per_env(info)

    def close(self) -> None:
        self.env.close()

    def seed(self, seed: int | None = None) -> list[int]:
        """Seed the clip stream (it restarts at epoch 0 and the env loads its first batch) and the
        action spaces' ``sample()``; ``None`` draws a fresh seed. Returns the seed used for each
        env, as Tianshou's vector envs do."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.env.reset(seed=seed)
        self.env.action_space.seed(seed)
        self.env.single_action_space.seed(seed)
        return [seed] * self.env.num_envs

    def render(self, **kwargs) -> list | None:
        """The env's frames (one per clip, ``render_mode="rgb_array"``), or None."""
        frames = self.env.render()
        return None if frames is None else list(frames)


def _per_env(info: dict[str, Any]) -> np.ndarray:
    """``{key: (B, ...)}`` -> object array of B dicts (views, no copies), without Gymnasium's ``_key`` masks."""
    info = {key: value for key, value in info.items() if not key.startswith("_")}
    array = np.empty(len(next(iter(info.values()))), dtype=object)
    array[:] = Batch(info).to_list_of_dicts()
    return array
