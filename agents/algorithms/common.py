"""What every learned sampler shares: its options, its networks, its optimiser, its stats.

:class:`SamplerConfig` holds the options common to ``ppo``, ``reinforce`` and ``grpo``
(the actor type is independent of the algorithm: PPO with the MHA actor is the paper's
Table 3a ablation). Each algorithm module subclasses it with its own fields.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

import gymnasium as gym
import torch
from tianshou.algorithm.algorithm_base import TrainingStats
from tianshou.algorithm.optim import OptimizerFactory, TorchOptimizerFactory
from torch import nn

ACTOR_KINDS = ("trajectory", "orthoformer", "mha")


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about the environment (read off :class:`MAEVectorEnv`).

    :param num_tokens: N, tokens per clip.
    :param num_visible: K = round(N * (1 - mask_ratio)), visible tokens per clip.
    :param embed_dim: D, width of the observed tokens.
    :param grid: token grid ``(T', H', W')``, frame-major.
    :param action_space: the single-env action space ``MultiDiscrete([N] * K)``.
    :param group_size: copies of each clip per step (GRPO groups; 1 = none).
    :param mask_ratio: rho.
    """

    num_tokens: int
    num_visible: int
    embed_dim: int
    grid: tuple[int, int, int]
    action_space: gym.Space
    group_size: int
    mask_ratio: float

    @classmethod
    def from_env(cls, env: Any) -> EnvSpec:
        """Read the spec off an :class:`envs.MAEVectorEnv` (or anything with the same fields;
        a grid is taken from ``env.grid`` or ``env.mae.grid``)."""
        grid = getattr(env, "grid", None) or env.mae.grid
        return cls(num_tokens=int(env.num_tokens), num_visible=int(env.num_visible),
                   embed_dim=int(env.single_observation_space.shape[-1]),
                   grid=tuple(int(g) for g in grid), action_space=env.single_action_space,
                   group_size=int(getattr(env, "group_size", 1)), mask_ratio=float(env.mask_ratio))


@dataclass
class SamplerConfig:
    """Options shared by the learned samplers (``ppo``, ``reinforce``, ``grpo``)."""

    name: str = "ppo"
    """Agent name in the registry (``agent=<name>``)."""
    actor: str = "trajectory"
    """Actor network: trajectory (TATS, exact Eq. 1-2) | orthoformer (TATS, landmarks) | mha (AdaMAE)."""
    sampler_dim: Optional[int] = None
    """Width of the sampler; a Linear D -> sampler_dim comes first when set. None = D."""
    num_heads: Optional[int] = None
    """Attention heads of the actor; None = the network's default (trajectory 12, mha 8)."""
    num_traj_attn_blocks: int = 1
    """Trajectory-attention blocks of the TATS actor (paper: 1, Table 3e)."""
    num_landmarks: int = 128
    """Orthoformer landmarks (actor=orthoformer; Motionformer: 128)."""
    checkpoint_blocks: bool = False
    """Trajectory-attention actors: recompute block activations in the backward (less memory, more time)."""
    temporal_values: str = "projected"
    """Values of Eq. 2: projected (the paper's equation) | trajectory (Motionformer's released code)."""
    softmax_temp: float = 1.0
    """Softmax temperature tau of pi = softmax(z / tau) (paper Table 4: 1); same for old and new policy."""
    masked_logprob: str = "mean"
    """Reduction of the paper's masked-token log-prob: mean (AdaMAE, paper) | sum."""
    normalize_entropy: bool = False
    """Divide the entropy H by log N (in [0, 1])."""
    lr: float = 1.5e-6
    """Sampler learning rate (paper Table 4: 1.5e-6)."""
    weight_decay: float = 0.0
    """AdamW weight decay of the sampler (the paper does not state one)."""
    opt_betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas (paper Table 4: 0.9, 0.95)."""
    update_steps_policy: int = 1
    """Passes over the buffer per update (flag --update_steps_ppo; Algorithm 1: one pass)."""
    batch_size: Optional[int] = None
    """Minibatch size of the update; None = the whole buffer in one gradient step."""
    max_grad_norm: Optional[float] = None
    """Clip the sampler's gradient norm to this; None = no clipping."""
    store_probs: bool = True
    """Store the (N,) single-draw probabilities of each clip in the buffer (for agents.inspect)."""
    deterministic_eval: bool = False
    """Outside training steps, keep the K most probable tokens instead of sampling."""

    def __post_init__(self) -> None:
        _choice("actor", self.actor, ACTOR_KINDS)
        _choice("temporal_values", self.temporal_values, ("projected", "trajectory"))
        _choice("masked_logprob", self.masked_logprob, ("mean", "sum"))
        _positive("softmax_temp", self.softmax_temp)
        _positive("lr", self.lr)
        _positive("update_steps_policy", self.update_steps_policy)
        if self.batch_size is not None:
            _positive("batch_size", self.batch_size)
        if self.max_grad_norm is not None:
            _positive("max_grad_norm", self.max_grad_norm)
        if len(self.opt_betas) != 2:
            raise ValueError(f"opt_betas needs two values, got {list(self.opt_betas)}")


def _choice(key: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{key} must be one of {allowed}, got {value!r}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{key} must be > 0, got {value}")


def build_actor_network(spec: EnvSpec, config: SamplerConfig) -> nn.Module:
    """The actor named by ``config.actor``, from :func:`agents.networks.build_actor`."""
    from agents.networks import build_actor  # owned by the networks module; imported late

    options: dict[str, Any] = {}
    if config.sampler_dim is not None:
        options["sampler_dim"] = config.sampler_dim
    if config.num_heads is not None:
        options["num_heads"] = config.num_heads
    if config.actor in ("trajectory", "orthoformer"):
        options.update(num_blocks=config.num_traj_attn_blocks, num_landmarks=config.num_landmarks,
                       temporal_values=config.temporal_values, checkpoint_blocks=config.checkpoint_blocks)
    return build_actor(config.actor, embed_dim=spec.embed_dim, grid=spec.grid, **options)


def build_critic_network(spec: EnvSpec, hidden: list[int], input: str = "mean_token") -> nn.Module:
    """The TATS critic (Eq. 5): an MLP on the mean token with ``hidden`` layer widths, or
    (``input="token_means"``) the paper's literal two Linears on the tokens' channel means."""
    from agents.networks import build_critic

    return build_critic(embed_dim=spec.embed_dim, hidden_dims=tuple(int(h) for h in hidden), input=input,
                        num_tokens=spec.num_tokens)


def optimizer_factory(config: SamplerConfig) -> OptimizerFactory:
    """AdamW with the configured lr, betas and weight decay (paper Table 4)."""
    return TorchOptimizerFactory(torch.optim.AdamW, lr=config.lr, betas=tuple(config.opt_betas),
                                 weight_decay=config.weight_decay)


@dataclass(kw_only=True)
class ScalarTrainingStats(TrainingStats):
    """Means over the gradient steps of one update, keyed without the ``policy/`` prefix."""

    scalars: dict[str, float]
    gradient_steps: int


class StatsAccumulator:
    """Collects per-minibatch scalars and averages them (one ``.item()`` per value)."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, **values: torch.Tensor | float) -> None:
        for key, value in values.items():
            self._sums[key] += float(value)
            self._counts[key] += 1

    def means(self) -> dict[str, float]:
        return {key: self._sums[key] / self._counts[key] for key in self._sums}


def write_back_advantages(buffer: Any, indices: Any, adv_B: torch.Tensor) -> None:
    """Store the advantages an update used in the buffer's ``policy.adv`` slot, if it has one.

    The collecting policy reserves the slot (NaN); Tianshou's ``_postprocess_batch`` hook is
    the place where an algorithm writes back into its buffer. ``indices`` are the buffer's
    own (global) indices of the batch, as returned by ``buffer.sample(0)``.
    """
    try:
        slot = buffer.policy.adv
    except (AttributeError, KeyError):  # filled by hand or by another policy: nothing to write
        return
    values = adv_B.detach()
    if isinstance(slot, torch.Tensor):
        slot[torch.as_tensor(indices, device=slot.device)] = values.to(slot.device, slot.dtype)
    else:
        slot[indices] = values.cpu().numpy().astype(slot.dtype)


def minibatch_passes(algorithm: Any, batch: Any, batch_size: int | None, repeat: int) -> tuple[dict[str, float], int]:
    """``repeat`` passes of ``algorithm.compute_loss`` + ``algorithm.optim.step`` over ``batch``.

    Minibatches come in a fresh random order each pass (numpy RNG); with no ``batch_size``
    the whole batch is one minibatch, as is. Returns the stats' means and the step count.
    """
    accumulator, steps = StatsAccumulator(), 0
    for _ in range(repeat):
        for minibatch in batch.split(batch_size or -1, shuffle=batch_size is not None, merge_last=True):
            loss, stats = algorithm.compute_loss(minibatch)
            algorithm.optim.step(loss)
            accumulator.add(**stats)
            steps += 1
    return accumulator.means(), steps
