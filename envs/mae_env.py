"""The MAE as a batched, vectorised Gymnasium environment (paper Section 3.3, Algorithm 1).

One ``step()`` handles all ``num_envs`` clips at once:

    obs      X (B, N, D): token embeddings of each clip, a torch tensor (detached, on the
             training device; the space is a :class:`envs.spaces.TensorBox`)
    action   (B, K) distinct visible token indices per clip, in draw order
             (:class:`envs.spaces.KSubset`, a ``MultiDiscrete([N] * K)`` without duplicates)
    reward   (B,) each clip's L_R, the MSE on its masked tokens (Eq. 6): ``reward="loss"`` gives
             +L_R (the paper's, lower is better), ``"negative_loss"`` -L_R (higher is better)
    done     every episode is one step: terminated
    info     numpy arrays with Gymnasium's ``_key`` masks (see :class:`MAEVectorEnv`); ``num_visible``
             is the K a clip's action keeps

In ``"train"`` mode a step is one MAE optimisation step (Algorithm 1 line 11: the MAE in
train mode, gradients on even when the caller collects under ``torch.no_grad()``); in
``"frozen"`` mode it only evaluates.

Autoreset (``autoreset_mode``, Gymnasium's three modes; every episode ends at every step):

- ``SAME_STEP`` (the default; what the Tianshou adapter and ``train_joint.py`` use): ``step``
  loads the next clips and returns their observation and reset info; the finished episodes'
  info is under ``info["final_info"]`` and the observations they were acted on under
  ``info["final_obs"]`` (an object array of B ``(N, D)`` tensors, views of the observation
  ``reset``/``step`` returned before).
- ``DISABLED``: ``step`` returns the finished episodes' observation and info; call ``reset()``
  (the next clips) before the next ``step``. Gymnasium's observation wrappers accept it.
- ``NEXT_STEP``: as ``DISABLED``, but the ``step`` after an episode ends ignores its action and
  loads the next clips (reward 0, not terminated): half the steps score nothing. The only mode
  ``NormalizeObservation`` accepts.

:class:`MAEEnv` is one clip per episode as a ``gymnasium.Env``.

Group mode (GRPO): each clip appears ``group_size`` times in a row, each copy with its own
action. ``group_update="all"`` trains the MAE on every copy (each copy is a distinct masking
of the clip, like extra data); ``"first"`` trains it on the first copy of each group only,
so the MAE sees each clip once per step as without groups.

A budget drawn per batch (``mask_ratio=(low, high)``, AutoGaze's ``uniform`` strategy): the
action space stays ``KSubset(N, K_max)`` with K_max = K(low), so ``action_space.sample()``
returns K_max distinct indices; each loaded batch draws its K uniformly from the integers
[K(high), K(low)] with the env's own generator (``np_random``, seeded by ``reset(seed=...)``
or set by the caller), announces it with the observation as ``info["num_visible"]`` (B,), and
``step`` keeps the first K of each action's indices (a prefix of a uniformly ordered K_max-subset
is a uniformly ordered K-subset, so random actions stay random masking). Every clip of a batch
has the same K (the MAE encodes equal-length visible sets); K changes between batches. With a
fixed ratio ``info["num_visible"]`` is K for every clip.

An extra loss (``sampler_loss``, AdaMAE's recipe) joins the MAE's step: in train mode the
environment computes the step's token embeddings again *with* gradient, calls
``sampler_loss(tokens, visible, token_error)`` (every clip of the step; ``token_error`` the
detached per-token error) and adds the scalar it returns to the reconstruction loss before the
one backward and optimiser step, so its gradient reaches the patch embedding and whatever
parameters the callable uses (they must be in the MAE's optimiser). The non-finite check and
gradient clipping see the sum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import nn

from envs.clip_source import ClipSource
from envs.mae_optimizer import MAEOptimizer
from envs.render import mask_strip
from envs.spaces import token_spaces
from mae import PretrainVideoMAE, indices_to_mask, num_visible
from mae.baselines import trivial_losses

MODES = ("train", "frozen")
GROUP_UPDATES = ("all", "first")
REWARDS = ("loss", "negative_loss")
"""``reward=``: +L_R (the paper's; its objectives turn it into what they maximise) or -L_R (what a
stock RL algorithm, which maximises its reward, needs to lower the loss)."""


def autoreset_mode_from(value: AutoresetMode | str) -> AutoresetMode:
    """An :class:`AutoresetMode` from itself or its value (``"SameStep"``, ``"NextStep"``, ``"Disabled"``)."""
    try:
        return AutoresetMode(value)
    except ValueError:
        allowed = [mode.value for mode in AutoresetMode]
        raise ValueError(f"autoreset_mode must be a gymnasium.vector.AutoresetMode or one of {allowed}, "
                         f"got {value!r}") from None


def mask_ratio_range(mask_ratio: float | tuple[float, float] | list[float]) -> tuple[float, float]:
    """``(low, high)`` from one ratio or a pair, each in (0, 1), low <= high."""
    pair = (mask_ratio, mask_ratio) if np.ndim(mask_ratio) == 0 else tuple(mask_ratio)
    if len(pair) != 2:
        raise ValueError(f"mask_ratio must be a number or a pair (low, high), got {mask_ratio!r}")
    low, high = float(pair[0]), float(pair[1])
    if not (0.0 < low <= high < 1.0):
        raise ValueError(f"mask_ratio must lie in (0, 1), and a pair must have low <= high; got {mask_ratio!r}")
    return low, high


def motion_enrichment(visible: torch.Tensor, motion: torch.Tensor,
                      probs: torch.Tensor | None = None) -> tuple[float, float]:
    """How much more often than chance moving tokens are visible (1.0 = random masking).

    ``visible``: mean over clips of P(visible | moving) / P(visible) = (|V & M| / |M|) / (K / N);
    ``prob`` (when ``probs`` is given): mean over clips of p(M) / (|M| / N), the single-draw
    probability mass on moving tokens over their share. Clips with no moving or no still token
    are left out; NaN if none is left.

    Shapes: visible, motion ``(B, N)`` bool; probs ``(B, N)``.
    """
    num_tokens = visible.shape[1]
    keep = motion.any(dim=1) & ~motion.all(dim=1)
    visible, motion = visible[keep], motion[keep]
    share_visible = visible.sum(dim=1) / num_tokens
    share_moving = motion.sum(dim=1) / num_tokens
    enrich_visible = float(((visible & motion).sum(dim=1) / motion.sum(dim=1) / share_visible).mean())
    if probs is None:
        return enrich_visible, float("nan")
    return enrich_visible, float(((probs[keep] * motion).sum(dim=1) / share_moving).mean())


class MAEVectorEnv(VectorEnv):
    """VideoMAE reconstruction as a batch of one-step episodes.

    :param mae: the MAE (unwrapped module); its tokenizer makes the observations.
    :param clips: where clip batches come from; its batch size is ``num_envs / group_size``.
    :param mask_ratio: K = round(N * (1 - mask_ratio)) visible tokens per clip; a pair ``(low, high)``
        draws K per batch from [K(high), K(low)] (module docstring), with actions of K(low) indices.
    :param optimizer: the MAE's optimisation step; required for ``mode="train"``.
    :param forward_module: what computes predictions in train mode, e.g. the MAE wrapped in
        DistributedDataParallel; defaults to ``mae``.
    :param mode: ``"train"`` (each step updates the MAE) or ``"frozen"``.
    :param group_size: copies of each clip per step (GRPO groups); 1 = no groups.
    :param group_update: ``"all"`` or ``"first"`` copies update the MAE (train mode).
    :param amp: bf16 autocast of the MAE forward on CUDA (the loss stays fp32).
    :param render_mode: None or ``"rgb_array"``: :meth:`render` draws each clip's mask.
    :param reward: ``"loss"`` (+L_R, the paper's; the default) or ``"negative_loss"`` (-L_R).
    :param autoreset_mode: ``SAME_STEP`` (the default), ``DISABLED`` or ``NEXT_STEP`` (module docstring).
    :param sampler_loss: None, or ``sampler_loss(tokens (B, N, D) with gradient, visible (B, N) bool,
        token_error (B, N)) -> scalar`` added to the MAE's loss in each train-mode step (see the
        module docstring); its value is logged as ``last_stats["sampler_loss"]``.

    ``info`` from ``reset`` and ``step`` has the same keys (Tianshou writes reset infos into
    the step's slots), each a numpy array over the B clips with its Gymnasium mask ``_key``
    (all True: every clip has every key), so ``gymnasium.wrappers.vector.DictInfoToList``
    splits it per clip: ``token_error`` (B, N) float32 (0 at visible tokens, and before the
    first step), ``visible`` (B, N) bool, ``clip_index``, ``label``, ``group``, ``num_visible`` (B,)
    int64. The
    info of the episodes that ended describes the clips just acted on (in ``SAME_STEP`` mode
    ``info["final_info"]``), a reset's the clips now waiting.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"]}
    """The class's defaults; an instance's ``metadata`` carries its own ``autoreset_mode``."""

    def __init__(self, mae: PretrainVideoMAE, clips: ClipSource, *, mask_ratio: float | tuple[float, float],
                 optimizer: MAEOptimizer | None = None, forward_module: nn.Module | None = None,
                 mode: str = "train", group_size: int = 1, group_update: str = "all", amp: bool = True,
                 render_mode: str | None = None, reward: str = "loss",
                 autoreset_mode: AutoresetMode | str = AutoresetMode.SAME_STEP,
                 sampler_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None):
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        self.reward = reward
        self.autoreset_mode = autoreset_mode_from(autoreset_mode)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        if group_update not in GROUP_UPDATES:
            raise ValueError(f"group_update must be one of {GROUP_UPDATES}, got {group_update!r}")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.mae, self.clips, self.optimizer = mae, clips, optimizer
        self.forward_module = forward_module if forward_module is not None else mae
        self.sampler_loss = sampler_loss
        self.group_size, self.group_update = group_size, group_update
        self.num_envs = clips.batch_size * group_size
        self.num_tokens = mae.num_tokens
        low, high = mask_ratio_range(mask_ratio)
        self.mask_ratio = low  # the ratio whose K is the action's length
        self.mask_ratio_range = (low, high) if high != low else None
        # K of the action space (K_max under a range) and the fewest a batch may keep
        self.num_visible, self.min_visible = num_visible(self.num_tokens, low), num_visible(self.num_tokens, high)
        self.device = next(mae.parameters()).device
        self.amp = amp and self.device.type == "cuda"
        self.set_mode(mode)

        self.single_observation_space, self.single_action_space = token_spaces(
            self.num_tokens, self.num_visible, mae.embed_dim, self.device)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        self.last_stats: dict[str, float] = {}
        self.skipped_videos = 0
        self.batches_loaded = 0  # how many clip batches reset and autoreset have loaded: tells a new batch from the last
        self._groups_emitted = 0
        self._batch: dict[str, Any] | None = None
        self._episodes_over = False  # DISABLED / NEXT_STEP: the waiting clips were acted on; a reset comes next
        self._last_scored: tuple[torch.Tensor, torch.Tensor] | None = None
        self._rendered: tuple[torch.Tensor, torch.Tensor] | None = None  # (video, visible) of the last step
        self._clips_state = clips.state_dict()
        self._budget_state: dict | None = None  # np_random's state before the waiting batch drew its K

    @property
    def draws_budget(self) -> bool:
        """Whether each batch draws its own K (``mask_ratio=(low, high)``)."""
        return self.min_visible != self.num_visible

    @property
    def batch_num_visible(self) -> int:
        """K of the clips now waiting for an action (the action's first K indices are kept)."""
        if self._batch is None:
            raise RuntimeError("call reset() first: no clips are waiting")
        return int(self._batch["num_visible"][0])

    # ---- modes
    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "train" and self.optimizer is None:
            raise ValueError("mode='train' needs an MAEOptimizer (optimizer=...)")
        self.mode = mode

    # ---- Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Load the next clips (the clip stream restarts from ``seed`` when one is given).

        ``options={"reset_mask": mask}`` is accepted with every entry True only: all clips reset together."""
        super().reset(seed=seed)
        reset_mask = (options or {}).get("reset_mask")
        if reset_mask is not None and not np.asarray(reset_mask, dtype=bool).all():
            raise ValueError(f"the {self.num_envs} clips reset together: options['reset_mask'] must be all True, "
                             f"got {np.asarray(reset_mask).tolist()}")
        if seed is not None:
            self.clips.seed(seed)
        self._rendered = None
        self._load_next_batch()
        return self.observation, self.reset_info()

    def step(self, actions):
        if self._batch is None:
            raise RuntimeError("call reset() before step()")
        if self._episodes_over:
            if self.autoreset_mode == AutoresetMode.NEXT_STEP:  # this step only resets: its action is ignored
                self._load_next_batch()
                no_episode_ended = np.zeros(self.num_envs, dtype=bool)
                return (self.observation, np.zeros(self.num_envs, dtype=np.float32), no_episode_ended,
                        no_episode_ended.copy(), self.reset_info())
            raise RuntimeError("autoreset_mode=DISABLED: every episode ends at its first step; call reset() "
                               "for the next clips before the next step()")
        visible = indices_to_mask(self.check_action(actions)[:, : self.batch_num_visible], self.num_tokens)
        video, target = self._batch["video"], self._batch["target"]
        training = self.mode == "train"
        self.mae.train(training)
        model = self.forward_module if training else self.mae
        with torch.enable_grad() if training else torch.no_grad():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                pred = model(video, visible)
            out = self.mae.reconstruction_loss(pred.float(), target, visible)
            if training:
                update_loss = out.per_clip if self.group_update == "all" else out.per_clip[:: self.group_size]
                loss, extra = update_loss.mean(), None
                if self.sampler_loss is not None:  # the observation's tokens, now with gradient
                    extra = self.sampler_loss(self.mae.tokenize(video).float(), visible, out.per_token.detach())
                    loss = loss + extra
                # clipping and the gradient norm over everything the optimiser steps (a sampler's groups too)
                self.last_stats = self.optimizer.backward_and_step(loss, self.optimizer.parameters())
                if extra is not None:
                    self.last_stats["sampler_loss"] = float(extra.detach())
        loss = out.per_clip.detach().float().cpu().numpy()
        reward = loss if self.reward == "loss" else -loss
        info = self._info(out.per_token.detach(), visible)
        self.last_stats = {**self.last_stats, "loss": float(loss.mean()), "num_visible": self.batch_num_visible}
        self._last_scored = (target, visible)  # for trivial_losses(), asked for when the loop logs
        if self._batch["motion"] is not None:  # built-in data: which tokens a moving object covers
            self.last_stats["motion_enrichment"] = motion_enrichment(visible, self._batch["motion"])[0]
        if self.render_mode is not None:
            self._rendered = (video, visible)
        terminated = np.ones(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        if self.autoreset_mode != AutoresetMode.SAME_STEP:
            self._episodes_over = True
            return self.observation.clone(), reward, terminated, truncated, info  # a copy: reset returned this one
        final_obs = _per_clip(self.observation)
        self._load_next_batch()
        every_clip = np.ones(self.num_envs, dtype=bool)
        info = {**self.reset_info(), "final_obs": final_obs, "_final_obs": every_clip,
                "final_info": info, "_final_info": every_clip.copy()}
        return self.observation, reward, terminated, truncated, info

    @torch.no_grad()
    def trivial_losses(self) -> dict[str, float]:
        """What the trivial predictors of :mod:`mae.baselines` (``zeros``, ``mean_visible``, ``copy``)
        score on the last step's clips and masks, next to ``last_stats["loss"]``: computed on demand,
        off the per-step path."""
        if self._last_scored is None:
            raise RuntimeError("no step taken yet: trivial_losses() scores the last step's clips and masks")
        target, visible = self._last_scored
        return {name: float(loss.mean())
                for name, loss in trivial_losses(target, visible, self.mae.grid, self.mae.loss_type).items()}

    # ---- actions
    def check_action(self, actions) -> torch.Tensor:
        """Validate a batch of actions; return them as int64 ``(B, K)`` on the device."""
        act = torch.as_tensor(np.asarray(actions) if not torch.is_tensor(actions) else actions)
        expected = (self.num_envs, self.num_visible)
        if act.ndim != 2 or act.shape[0] != self.num_envs:
            raise ValueError(f"action must have shape (num_envs, K) = {expected}, got {tuple(act.shape)}")
        if act.shape[1] != self.num_visible:
            budget = (f"K_max = K(lowest mask_ratio {self.mask_ratio}) = {self.num_visible}, of which the batch keeps "
                      f"the first {self.batch_num_visible}" if self.draws_budget else
                      f"K = round(N * (1 - mask_ratio)) = {self.num_visible}")
            raise ValueError(f"action has {act.shape[1]} indices per clip, but {budget} (N={self.num_tokens}, "
                             f"mask_ratio={self.mask_ratio_range or self.mask_ratio})")
        if act.is_floating_point():
            if not torch.equal(act, act.round()):
                raise ValueError("action indices must be integers")
        act = act.long()
        bad = (act < 0) | (act >= self.num_tokens)
        if bad.any():
            row, col = bad.nonzero()[0].tolist()
            raise ValueError(f"action index {int(act[row, col])} out of range [0, {self.num_tokens}) "
                             f"(clip {row}, position {col})")
        ordered = act.sort(dim=1).values
        dup = ordered[:, 1:] == ordered[:, :-1]
        if dup.any():
            row = int(dup.any(dim=1).nonzero()[0])
            value = int(ordered[row, 1:][dup[row]][0])
            raise ValueError(f"action of clip {row} has duplicate index {value}: the K visible tokens must be distinct")
        return act.to(self.device)

    # ---- internals
    def _load_next_batch(self) -> None:
        self._clips_state = self.clips.state_dict()  # the position of the batch about to wait for actions
        k = self.num_visible
        if self.draws_budget:
            self._budget_state = self.np_random.bit_generator.state
            k = int(self.np_random.integers(self.min_visible, self.num_visible + 1))
        batch = self.clips.next_batch()
        self.batches_loaded += 1
        self._episodes_over = False
        with torch.no_grad():
            target = self.mae.target(batch["video"])
            tokens = self.mae.tokenize(batch["video"]).float()
        g = self.group_size
        unique = batch["video"].shape[0]
        groups = self._groups_emitted + np.arange(unique)
        self._groups_emitted += unique
        self.skipped_videos += int(batch["skipped"].sum())
        repeat = (lambda t: t.repeat_interleave(g, dim=0)) if g > 1 else (lambda t: t)
        self._batch = {
            "video": repeat(batch["video"]), "target": repeat(target), "tokens": repeat(tokens),
            "clip_index": np.repeat(batch["index"].cpu().numpy().astype(np.int64), g),
            "label": np.repeat(batch["label"].cpu().numpy().astype(np.int64), g),
            "group": np.repeat(groups.astype(np.int64), g),
            "motion": repeat(batch["motion"]) if "motion" in batch else None,
            "num_visible": np.full(self.num_envs, k, dtype=np.int64),
        }

    @property
    def has_batch(self) -> bool:
        return self._batch is not None

    @property
    def observation(self) -> torch.Tensor:
        """Tokens ``(B, N, D)`` of the clips waiting for an action."""
        return self._batch["tokens"]

    def reset_info(self) -> dict[str, Any]:
        """Info of the clips now waiting for an action: no error, no visible token yet."""
        zeros = np.zeros((self.num_envs, self.num_tokens), dtype=np.float32)
        return self._info(zeros, zeros.astype(bool))

    def _info(self, token_error: torch.Tensor | np.ndarray, visible: torch.Tensor | np.ndarray) -> dict[str, Any]:
        """Gymnasium's vector layout: ``{key: (B, ...) array, "_key": (B,) bool}``, new arrays each call."""
        values = {"token_error": _numpy(token_error).astype(np.float32, copy=False), "visible": _numpy(visible),
                  **{key: self._batch[key].copy() for key in ("clip_index", "label", "group", "num_visible")}}
        if self._batch["motion"] is not None:  # built-in data: the tokens a moving object covers
            values["motion"] = _numpy(self._batch["motion"]).astype(bool)
        every_clip = np.ones(self.num_envs, dtype=bool)
        return {**values, **{f"_{key}": every_clip for key in values}}

    def render(self) -> tuple[np.ndarray, ...] | None:
        """``render_mode="rgb_array"``: per clip an ``(H, T' * W, 3)`` uint8 image, the first frame
        of each tubelet step side by side with the masked tokens dimmed (as
        ``python -m downstream.visualise`` draws its "visible" row). After a step these are the
        clips just acted on and their masks; before the first step, the waiting clips, all visible.
        None when ``render_mode`` is None."""
        if self.render_mode is None or self._batch is None:
            return None
        if self._rendered is not None:
            video, visible = self._rendered
        else:
            video = self._batch["video"]
            visible = torch.ones(self.num_envs, self.num_tokens, dtype=torch.bool)
        grid, tubelet = self.mae.grid, self.mae.tubelet_size
        return tuple(mask_strip(video[i], visible[i], grid, tubelet) for i in range(self.num_envs))

    @property
    def epoch(self) -> int:
        return self.clips.epoch

    def state_dict(self) -> dict:
        """What a resumed run needs: the position of the waiting batch (``reset`` reloads it) and counters."""
        return {"clips": self._clips_state, "skipped_videos": self.skipped_videos,
                "groups_emitted": self._groups_emitted, "budget": self._budget_state}

    def load_state_dict(self, state: dict) -> None:
        self.clips.load_state_dict(state["clips"])
        self.skipped_videos, self._groups_emitted = state["skipped_videos"], state["groups_emitted"]
        if state.get("budget") is not None:  # the waiting batch draws the same K again
            self.np_random.bit_generator.state = state["budget"]


class MAEEnv(gymnasium.Env):
    """One clip per episode, as a ``gymnasium.Env``: a one-clip :class:`MAEVectorEnv` in ``DISABLED`` mode.

    ``reset`` loads the next clip (from the restarted clip stream when given a seed), ``step``
    scores the action on it and ends the episode. Observations are numpy float32 ``(N, D)`` in a
    plain ``Box`` (as generic Gymnasium code and ``SyncVectorEnv`` expect; the batched env keeps
    torch tensors on its device); actions are :class:`envs.spaces.KSubset` ``(K,)``; the reward
    is a float; info holds ``token_error`` (N,), ``visible`` (N,) and the ints ``clip_index`` and
    ``label`` (not the vector env's ``group``, a running id that only its group mode needs).

    :param vector_env: a :class:`MAEVectorEnv` with ``num_envs=1`` and ``autoreset_mode=DISABLED``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, vector_env: MAEVectorEnv):
        if vector_env.num_envs != 1 or vector_env.autoreset_mode != AutoresetMode.DISABLED:
            raise ValueError(f"MAEEnv wraps a MAEVectorEnv of one clip with autoreset_mode=DISABLED, got num_envs="
                             f"{vector_env.num_envs} and autoreset_mode={vector_env.autoreset_mode}")
        self.vector_env = vector_env
        self.render_mode = vector_env.render_mode
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, vector_env.single_observation_space.shape,
                                                      np.float32)
        self.action_space = vector_env.single_action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self.vector_env.reset(seed=seed, options=options)
        return _first(obs), _first_info(info)

    def step(self, action):
        actions = action[None] if torch.is_tensor(action) else np.asarray(action)[None]
        obs, reward, terminated, truncated, info = self.vector_env.step(actions)
        return _first(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), _first_info(info)

    def render(self) -> np.ndarray | None:
        frames = self.vector_env.render()
        return None if frames is None else frames[0]

    def close(self) -> None:
        self.vector_env.close()


def _first(obs: torch.Tensor) -> np.ndarray:
    """The one clip's observation as a numpy array of its own (not a view of the env's tokens)."""
    return obs[0].detach().cpu().numpy().copy()


def _first_info(info: dict[str, Any]) -> dict[str, Any]:
    """The one clip's entries of a vector info, without Gymnasium's ``_key`` masks and ``group``; ids as ints."""
    values = {key: value[0] for key, value in info.items() if not key.startswith("_") and key != "group"}
    return {key: int(value) if np.ndim(value) == 0 else value.copy() for key, value in values.items()}


def _per_clip(tokens: torch.Tensor) -> np.ndarray:
    """``(B, N, D)`` -> object array of B ``(N, D)`` views, the layout of Gymnasium's ``final_obs``."""
    array = np.empty(len(tokens), dtype=object)
    for index, clip in enumerate(tokens.unbind(0)):
        array[index] = clip
    return array


def _numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    return array.detach().cpu().numpy() if torch.is_tensor(array) else np.asarray(array)
