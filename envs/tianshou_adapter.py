"""What Tianshou's Collector needs from a vectorised environment, over :class:`MAEVectorEnv`.

Tianshou's own ``DummyVectorEnv``/``SubprocVectorEnv`` step sub-environments one by one;
the MAE must see the whole batch in one step, so this adapter exposes the batched env
(or a Gymnasium vector wrapper around it) through the Collector's interface (``len``,
``is_async``, ``reset(env_id=)``, ``step(act, ready_env_ids)``, a per-env ``action_space`` list).

Pitfalls handled (see the project's notes on Tianshou 2.0):
- the Collector resets every finished env after each step; here all are finished, and in
  ``SAME_STEP`` mode ``step`` already returned the next clips, so ``reset(env_id)`` hands those
  out. It returns an indexed *copy*: the Collector writes reset observations into its copy of
  ``obs_next`` in place, which fails if both share storage;
- observations stay torch tensors on the env's device; rewards and flags are numpy;
- the Collector wants infos as an object array of per-env dicts (it indexes and assigns
  them by env id), with the same keys for reset and step; Gymnasium's ``_key`` masks (all
  True here) are dropped, so the buffer holds ``info.token_error``, ``info.visible``, ...
- every clip steps at once, so a collect whose last step would run only some envs
  (``n_episode`` not a multiple of the number of envs) is refused: by :class:`BatchCollector`
  before the first step, by the adapter at that step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode
from tianshou.data import Batch, Collector

ADAPTED_MODES = (AutoresetMode.SAME_STEP, AutoresetMode.DISABLED)
FINAL_KEYS = ("final_obs", "final_info")  # SAME_STEP: the finished episodes' entries of a step's info


class TianshouVectorEnv:
    """The batched MAE environment, in the shape of a Tianshou ``BaseVectorEnv``.

    :param env: an :class:`envs.MAEVectorEnv`, or a Gymnasium vector wrapper around one (e.g.
        ``TransformReward``): reset and step go through the wrapper. In ``SAME_STEP`` mode the
        observation and info of the clips ``step`` loaded are held and handed out by the
        Collector's ``reset(env_id)``; in ``DISABLED`` mode that ``reset`` resets the env.

    Only where nothing the wrapper returns can tell does the adapter read ``env.unwrapped``:
    ``batches_loaded``, to see that the env loaded clips outside the adapter (``train_joint.py``'s
    random-masking steps call ``env.step`` itself), and then ``observation`` and ``reset_info()``,
    the clips now waiting.
    """

    is_async = False

    def __init__(self, env: Any):
        mode = env.metadata.get("autoreset_mode")
        if mode not in ADAPTED_MODES:
            raise ValueError(f"TianshouVectorEnv adapts an env with autoreset_mode SAME_STEP or DISABLED (the "
                             f"Collector resets finished envs itself); got {mode}")
        self.env, self.autoreset_mode = env, mode
        self.action_space = [env.single_action_space] * env.num_envs
        self.observation_space = [env.single_observation_space] * env.num_envs
        self._held: tuple[Any, np.ndarray] | None = None  # (obs, per-env infos) of the clips handed out
        self._held_batch = -1  # env.unwrapped.batches_loaded when they were loaded
        self._pending_seed: int | None = None

    def __len__(self) -> int:
        return self.env.num_envs

    @property
    def env_num(self) -> int:
        return self.env.num_envs

    def _all(self, ids) -> np.ndarray:
        return np.arange(self.env.num_envs) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)

    def _hold(self, obs: Any, info: dict[str, Any]) -> None:
        self._held, self._held_batch = (obs, _per_env(info)), self.env.unwrapped.batches_loaded

    def _holds_waiting_clips(self) -> bool:
        return self._held is not None and self._held_batch == self.env.unwrapped.batches_loaded

    def reset(self, env_id=None, **kwargs):
        """Hand out the clips waiting in the env. The env itself is reset when a seed (given here or
        by :meth:`seed` since) or options are passed, when it has no clips waiting, and (``DISABLED``
        mode) after every step."""
        if self._pending_seed is not None:
            kwargs.setdefault("seed", self._pending_seed)
            self._pending_seed = None
        explicit = kwargs.get("seed") is not None or bool(kwargs.get("options"))
        if explicit or not self._holds_waiting_clips():
            if not explicit and self._clips_loaded_outside():
                self._hold(self.env.unwrapped.observation, self.env.unwrapped.reset_info())
            else:
                self._hold(*self.env.reset(**kwargs))
        obs, info = self._held
        ids = self._all(env_id)
        return obs[ids], info[ids]  # indexing copies: see the storage pitfall above

    def _clips_loaded_outside(self) -> bool:
        """Clips wait in the env that it loaded without the adapter (only the env itself knows them)."""
        base = self.env.unwrapped
        return (self.autoreset_mode == AutoresetMode.SAME_STEP and base.has_batch
                and base.batches_loaded != self._held_batch)

    def step(self, action, id=None):
        ids = self._all(id)
        if len(ids) != self.env.num_envs:
            raise ValueError(
                f"the MAE environment steps all {self.env.num_envs} clips together; the Collector asked for a step "
                f"of env ids {ids.tolist()}, as it does when collect(n_episode=...) is not a multiple of "
                f"{self.env.num_envs}. Collect n_step or n_episode in multiples of {self.env.num_envs} "
                f"(envs.BatchCollector checks before the first step).")
        if not self._holds_waiting_clips():
            raise RuntimeError("the environment loaded other clips (a reset or step outside this adapter) after the "
                               "observations these actions were computed for: reset the collector first")
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            finished = info["final_info"]
            self._hold(obs, {key: value for key, value in info.items() if key.lstrip("_") not in FINAL_KEYS})
        else:
            finished, self._held = info, None  # DISABLED: the Collector's reset(env_id) resets the env
        return obs, reward, terminated, truncated, _per_env(finished)

    def close(self) -> None:
        self.env.close()

    def seed(self, seed: int | None = None) -> list[int]:
        """Seed the clip stream from the next reset on (the Collector's ``reset()``, or the reset after the
        next step, so that observations and rewards always come from the same clips) and the action
        spaces' ``sample()`` now; ``None`` draws a fresh seed. Returns the seed used for each env."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self._pending_seed = seed
        self.env.action_space.seed(seed)
        self.env.single_action_space.seed(seed)
        return [seed] * self.env.num_envs

    def render(self, **kwargs) -> list | None:
        """The env's frames (one per clip, ``render_mode="rgb_array"``), or None."""
        frames = self.env.render()
        return None if frames is None else list(frames)


class BatchCollector(Collector):
    """Tianshou's ``Collector`` for an environment whose clips all step together
    (:class:`TianshouVectorEnv`): ``collect`` refuses, before it steps, an ``n_episode`` that is not a
    multiple of the number of envs (the stock Collector would run a first step and then ask for a step
    of only some envs). ``n_step`` is Tianshou's: rounded up to whole steps of every env."""

    def collect(self, n_step: int | None = None, n_episode: int | None = None, *args: Any, **kwargs: Any):
        if n_episode and n_episode % self.env_num:
            lower = n_episode // self.env_num * self.env_num
            nearest = " or ".join(str(n) for n in (lower, lower + self.env_num) if n > 0)
            raise ValueError(f"collect(n_episode={n_episode}): the environment steps its {self.env_num} clips "
                             f"together, one episode each, so n_episode must be a multiple of {self.env_num} "
                             f"({nearest})")
        return super().collect(n_step, n_episode, *args, **kwargs)


def _per_env(info: dict[str, Any]) -> np.ndarray:
    """``{key: (B, ...)}`` -> object array of B dicts (views, no copies), without Gymnasium's ``_key`` masks."""
    info = {key: value for key, value in info.items() if not key.startswith("_")}
    array = np.empty(len(next(iter(info.values()))), dtype=object)
    array[:] = Batch(info).to_list_of_dicts()
    return array
