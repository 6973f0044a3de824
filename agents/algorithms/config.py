"""The options every learned sampler shares, and the networks they name.

:class:`SamplerConfig` holds the options common to ``ppo``, ``reinforce`` and ``grpo``
(the actor type is independent of the algorithm: PPO with the MHA actor is the paper's
Table 3a ablation). Each algorithm module subclasses it with its own fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from torch import nn

from agents.algorithms.spec import EnvSpec
from agents.networks import build_actor, build_critic

ACTOR_KINDS = ("trajectory", "orthoformer", "mha")
TEMPERATURE_DECAYS = ("exp", "linear")


def scheduled_temperature(start: float, end: float | None, decay: str, step: int, total_steps: int) -> float:
    """The softmax temperature at ``step`` of ``total_steps``: ``start`` at step 0, ``end`` at the last step.

    ``exp``: ``start * (end / start) ** f``; ``linear``: ``start + (end - start) * f``, with
    ``f = step / (total_steps - 1)`` clamped to [0, 1]. ``end=None``: ``start`` throughout.
    """
    if end is None or total_steps <= 1:
        return float(start)
    fraction = min(max(step / (total_steps - 1), 0.0), 1.0)
    if decay == "exp":
        return float(start * (end / start) ** fraction)
    if decay == "linear":
        return float(start + (end - start) * fraction)
    raise ValueError(f"softmax_temp_decay must be one of {TEMPERATURE_DECAYS}, got {decay!r}")


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
    """Softmax temperature tau of pi = softmax(z / tau) (paper Table 4: 1); same for old and new policy.
    With ``softmax_temp_end`` set, the temperature at the run's first step (the schedule's start)."""
    softmax_temp_end: Optional[float] = None
    """The temperature at the run's last step: tau decays from ``softmax_temp`` to this over the run
    (AutoGaze: 3 -> 0.3, exponential); None = a constant ``softmax_temp``. Read at each collection from the
    run's step, so a resumed run is at the same point of the schedule; old and new policy of one update
    use the same tau."""
    softmax_temp_decay: str = "exp"
    """How tau goes from ``softmax_temp`` to ``softmax_temp_end``: exp (geometric) | linear."""
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
        if self.softmax_temp_end is not None:
            _positive("softmax_temp_end", self.softmax_temp_end)
        _choice("softmax_temp_decay", self.softmax_temp_decay, TEMPERATURE_DECAYS)
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
    return build_critic(embed_dim=spec.embed_dim, hidden_dims=tuple(int(h) for h in hidden), input=input,
                        num_tokens=spec.num_tokens)
