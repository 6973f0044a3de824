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
from tianshou.algorithm.algorithm_base import Algorithm, TrainingStats
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
        if self.num_heads is not None:
            _positive("num_heads", self.num_heads)
        if self.sampler_dim is not None:
            _positive("sampler_dim", self.sampler_dim)
            if self.num_heads is not None and self.sampler_dim % self.num_heads:
                raise ValueError(f"sampler_dim={self.sampler_dim} must be a multiple of num_heads={self.num_heads}")
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

    def get_loss_stats_dict(self) -> dict[str, float]:
        """Tianshou's logging view: each scalar by its own name, and ``gradient_steps``."""
        return {**self.scalars, "gradient_steps": self.gradient_steps}


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
    """``repeat`` passes of ``algorithm.compute_loss`` + an optimiser step over ``batch``.

    The step is ``algorithm.optim.step(loss)``, guarded (:class:`GuardedOptimizer`). Minibatches
    come in a fresh random order each pass (numpy RNG); with no ``batch_size`` the whole batch
    is one minibatch, as is. Returns the stats' means and the step count.
    """
    accumulator, steps = StatsAccumulator(), 0
    for _ in range(repeat):
        for minibatch in batch.split(batch_size or -1, shuffle=batch_size is not None, merge_last=True):
            loss, stats = algorithm.compute_loss(minibatch)
            algorithm.optim.step(loss)
            accumulator.add(**stats)
            steps += 1
    return accumulator.means(), steps


@dataclass
class NonFiniteSkips:
    """Sampler updates skipped for a non-finite loss, gradient or weight (:func:`guarded_step`)."""

    total: int = 0
    """Gradient steps skipped since the run began (logged as ``policy/skipped_nonfinite``)."""
    consecutive: int = 0
    """Skipped in a row up to now (0 after any step that went through)."""


def nonfinite_skips(algorithm: Any) -> NonFiniteSkips:
    """The skip counter of ``algorithm`` (created on first use)."""
    counter = getattr(algorithm, "_nonfinite_skips", None)
    if counter is None:
        counter = NonFiniteSkips()
        object.__setattr__(algorithm, "_nonfinite_skips", counter)
    return counter


class GuardedOptimizer(Algorithm.Optimizer):
    """Tianshou's optimiser wrapper whose ``step(loss)`` is :func:`guarded_step`.

    Every Tianshou algorithm steps through ``Algorithm.Optimizer.step(loss)``; :func:`guard_optimizers`
    turns an algorithm's optimisers into these, so a stock ``PPO``, ``A2C`` or ``Reinforce`` gets the
    same non-finite guard and skip count as the project's algorithms.
    """

    skips: NonFiniteSkips

    def step(self, loss: torch.Tensor, retain_graph: bool | None = None, create_graph: bool = False) -> bool:
        return guarded_step(self, loss, self.skips, retain_graph=retain_graph, create_graph=create_graph)


def guard_optimizers(algorithm: Any) -> Any:
    """Make every optimiser of a Tianshou ``algorithm`` a :class:`GuardedOptimizer` counting into
    :func:`nonfinite_skips` of ``algorithm`` (idempotent); returns ``algorithm``.

    Steps a custom algorithm takes on a torch optimiser of its own, outside Tianshou's
    ``Algorithm.Optimizer``, or through a subclass of it, are not guarded.
    """
    skips = nonfinite_skips(algorithm)
    for optim in getattr(algorithm, "_optimizers", ()):
        if type(optim) is Algorithm.Optimizer:
            optim.__class__ = GuardedOptimizer  # the same object: every reference to it is guarded
        if isinstance(optim, GuardedOptimizer):
            optim.skips = skips
    return algorithm


def guarded_step(optim: Any, loss: torch.Tensor, counter: NonFiniteSkips, *, retain_graph: bool | None = None,
                 create_graph: bool = False) -> bool:
    """``optim.step(loss)`` as Tianshou's ``Algorithm.Optimizer`` does it (zero grads, backward,
    clip, step), skipped when the loss, the gradient norm or, after the step, any weight is not finite.

    A skipped step leaves weights and optimiser state as they were (a weight gone non-finite
    is restored from a copy taken before the step) and is counted in ``counter``.
    The backward always runs, so ranks that all-reduce gradients in it stay in step; under
    torch.distributed the decision is taken jointly (one rank's non-finite value skips the
    step on every rank). Returns whether the step was taken.
    """
    module, torch_optim = optim._module, optim._optim
    torch_optim.zero_grad()
    loss.backward(retain_graph=retain_graph, create_graph=create_graph)
    params = [p for p in module.parameters() if p.grad is not None]
    max_norm = optim._max_grad_norm if optim._max_grad_norm is not None else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
    bad = not (torch.isfinite(loss.detach()).all() and torch.isfinite(grad_norm))
    if not _agreed_ok(not bad, grad_norm.device):
        torch_optim.zero_grad(set_to_none=True)
        counter.total, counter.consecutive = counter.total + 1, counter.consecutive + 1
        return False
    saved_params = [p.detach().clone() for p in params]
    saved_state = {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in torch_optim.state[p].items()}
                   for p in params if p in torch_optim.state}
    torch_optim.step()
    finite = all(bool(torch.isfinite(p).all()) for p in params)
    if not _agreed_ok(finite, grad_norm.device):
        with torch.no_grad():
            for p, saved in zip(params, saved_params):
                p.copy_(saved)
        for p in params:
            if p in saved_state:
                torch_optim.state[p] = saved_state[p]
            else:
                torch_optim.state.pop(p, None)
        torch_optim.zero_grad(set_to_none=True)
        counter.total, counter.consecutive = counter.total + 1, counter.consecutive + 1
        return False
    counter.consecutive = 0
    return True


def _agreed_ok(ok: bool, device: torch.device) -> bool:
    """``ok`` on every rank (a plain run: ``ok``)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() == 0.0)
