"""One object per agent: what the training loop collects with, updates and checkpoints.

Every entry of :data:`agents.registry.AGENTS` builds an :class:`Agent`; the loop never
needs to know which algorithm is inside.
"""

from __future__ import annotations

from typing import Any

from tianshou.algorithm import Algorithm
from tianshou.algorithm.algorithm_base import Policy
from tianshou.data import ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

from agents.algorithms.common import EnvSpec, ScalarTrainingStats, nonfinite_skips


class Agent:
    """A policy to collect with, and the algorithm (or none) that learns from its buffer.

    :param name: registry name (``ppo``, ``reinforce``, ``grpo``, ``random``, ``tube``).
    :param config: the agent's options (a dataclass from its module).
    :param spec: what the agent knows about the environment.
    :param policy: the Tianshou policy handed to the Collector.
    :param algorithm: the Tianshou algorithm that updates ``policy``; None for fixed maskers.
    """

    def __init__(self, *, name: str, config: Any, spec: EnvSpec, policy: Policy,
                 algorithm: Algorithm | None) -> None:
        self.name, self.config, self.spec = name, config, spec
        self.policy, self.algorithm = policy, algorithm

    @property
    def group_size(self) -> int:
        """Copies of each clip the environment must present per step (GRPO's G; else 1)."""
        return int(getattr(self.config, "group_size", 1))

    @property
    def learns(self) -> bool:
        return self.algorithm is not None

    def update(self, buffer: ReplayBuffer) -> dict[str, float]:
        """Phase 2 of Algorithm 1: learn from every episode in ``buffer`` (lines 15-20).

        Runs ``algorithm.update`` inside Tianshou's training-step context with the agent's
        minibatch size and number of passes. The buffer is left as it is (the caller resets
        it, line 22), with the advantages used written into its ``policy.adv`` slot.

        :return: scalar stats keyed ``policy/...`` (means over the gradient steps); empty
            for agents that do not learn.
        """
        if self.algorithm is None:
            return {}
        if len(buffer) == 0:
            raise ValueError("update() got an empty buffer: collect episodes first")
        with policy_within_training_step(self.policy):
            stats = self.algorithm.update(buffer=buffer, batch_size=self.config.batch_size,
                                          repeat=self.config.update_steps_policy)
        # Tianshou zeroes gradients before each backward, not after the step: drop them now, or
        # the sampler's gradients (one copy of its weights) sit in memory through the next
        # cycle's MAE steps, on top of the MAE's peak.
        self.algorithm.zero_grad(set_to_none=True)
        assert isinstance(stats, ScalarTrainingStats)
        out = {f"policy/{key}": float(value) for key, value in stats.scalars.items()}
        out["policy/gradient_steps"] = float(stats.gradient_steps)
        out["policy/skipped_nonfinite"] = float(nonfinite_skips(self.algorithm).total)
        out["policy/update_time_s"] = float(stats.train_time)
        return out

    @property
    def skipped_nonfinite(self) -> int:
        """Gradient steps skipped for a non-finite loss, gradient or weight since the run began."""
        return nonfinite_skips(self.algorithm).total if self.algorithm is not None else 0

    @property
    def consecutive_skipped(self) -> int:
        """Gradient steps skipped in a row, up to the last one."""
        return nonfinite_skips(self.algorithm).consecutive if self.algorithm is not None else 0

    def metadata(self) -> dict[str, Any]:
        """Plain values describing the agent and the token grid (HDF5 dump attributes)."""
        meta: dict[str, Any] = {
            "agent": self.name, "num_tokens": self.spec.num_tokens,
            "num_visible": self.spec.num_visible, "grid": list(self.spec.grid),
            "mask_ratio": self.spec.mask_ratio, "group_size": self.group_size,
        }
        for key in ("objective", "softmax_temp", "masked_logprob", "actor"):
            if hasattr(self.config, key):
                meta[key] = getattr(self.config, key)
        return meta

    def state_dict(self) -> dict[str, Any]:
        """Actor, critic, reference policy, optimizer state (or a fixed masker's RNG)."""
        if self.algorithm is None:
            return {"policy": self.policy.state_dict()}
        skips = nonfinite_skips(self.algorithm)
        return {"algorithm": self.algorithm.state_dict(),
                "skipped_nonfinite": {"total": skips.total, "consecutive": skips.consecutive}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.algorithm is None:
            self.policy.load_state_dict(state["policy"])
        else:
            self.algorithm.load_state_dict(dict(state["algorithm"]))  # it pops the optimizer key
            skips = nonfinite_skips(self.algorithm)
            stored = state.get("skipped_nonfinite", {})  # absent in checkpoints written before the count
            skips.total, skips.consecutive = int(stored.get("total", 0)), int(stored.get("consecutive", 0))

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, algorithm={type(self.algorithm).__name__})"
