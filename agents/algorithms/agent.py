"""One object per agent: what the training loop collects with, updates and checkpoints.

Every entry of :data:`agents.registry.AGENTS` builds an :class:`Agent` around a Tianshou
on-policy algorithm (the fixed maskers' learns nothing); the loop never needs to know which
algorithm is inside.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from numbers import Real
from typing import Any

import torch
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm
from tianshou.data import ReplayBuffer
from tianshou.utils.torch_utils import policy_within_training_step

from agents.algorithms.config import scheduled_temperature
from agents.algorithms.spec import EnvSpec
from runtime.nonfinite import NonFiniteGuard


class Agent:
    """A Tianshou on-policy algorithm, its policy to collect with, and the options of its update.

    :param name: registry name (``ppo``, ``reinforce``, ``grpo``, ``random``, ``tube``, ``custom``).
    :param config: the agent's options (a dataclass from its module); ``batch_size`` and
        ``update_steps_policy``, where it has them, set the update's minibatch and passes.
    :param spec: what the agent knows about the environment.
    :param algorithm: the Tianshou algorithm; ``algorithm.policy`` is handed to the Collector.
    :param guard: the guard its optimisers report to (:mod:`agents.algorithms.optim`); a new one
        (that nothing reports to) when None.
    """

    def __init__(self, *, name: str, config: Any, spec: EnvSpec, algorithm: OnPolicyAlgorithm,
                 guard: NonFiniteGuard | None = None) -> None:
        if not isinstance(algorithm, OnPolicyAlgorithm):
            raise TypeError(f"agent {name!r}: train_joint.py's cycle (collect, update on the whole buffer, clear it) "
                            f"is on-policy; expected a tianshou OnPolicyAlgorithm (Reinforce, A2C, PPO, ...), "
                            f"got {type(algorithm).__name__}")
        self.name, self.config, self.spec = name, config, spec
        self.algorithm, self.policy = algorithm, algorithm.policy
        self.guard = guard if guard is not None else NonFiniteGuard()
        if self.learns and not self.guard.attached and not getattr(algorithm, "trains_with_mae", False):
            warnings.warn(f"agent {name!r}: none of its optimisers is guarded against non-finite steps; build them "
                          f"from agents.algorithms.guarded(factory) to get the guard and policy/skipped_nonfinite",
                          stacklevel=2)

    @property
    def group_size(self) -> int:
        """Copies of each clip the environment must present per step (GRPO's G; else 1)."""
        return int(getattr(self.config, "group_size", 1))

    @property
    def trains_with_mae(self) -> bool:
        """The MAE's optimisation step trains the sampler (``agent=reinforce``, ``agent.recipe=adamae``):
        its parameters go into the MAE's optimiser (``algorithm.mae_param_groups(weight_decay)``), its loss
        into the environment's step (``algorithm.mae_step_loss``), and :meth:`update` only logs."""
        return bool(getattr(self.algorithm, "trains_with_mae", False))

    @property
    def learns(self) -> bool:
        """The algorithm has weights to train (the fixed maskers' has none)."""
        return any(p.requires_grad for p in self.algorithm.parameters())

    def set_step(self, step: int, total_steps: int) -> dict[str, float]:
        """Put the policy at ``step`` of the run's ``total_steps`` before a collection: the softmax
        temperature of ``softmax_temp`` .. ``softmax_temp_end`` (:func:`scheduled_temperature`).

        A function of the step alone, so a resumed run continues the schedule where it stopped. Called
        once per cycle before collecting; the update that follows uses the same temperature.

        :return: ``{"policy/temperature": tau}`` for a policy with a temperature, else ``{}``.
        """
        if not hasattr(self.policy, "temperature"):
            return {}
        end = getattr(self.config, "softmax_temp_end", None)
        if end is not None:
            self.policy.temperature = scheduled_temperature(
                float(self.config.softmax_temp), float(end), getattr(self.config, "softmax_temp_decay", "exp"),
                step, total_steps)
        return {"policy/temperature": float(self.policy.temperature)}

    def update(self, buffer: ReplayBuffer) -> dict[str, float]:
        """Phase 2 of Algorithm 1: learn from every episode in ``buffer`` (lines 15-20).

        Runs ``algorithm.update`` inside Tianshou's training-step context with the agent's
        minibatch size and number of passes. The buffer is left as it is (the caller resets
        it, line 22); the project's algorithms write the advantages they used into its
        ``policy.adv`` slot.

        :return: the algorithm's ``TrainingStats.get_loss_stats_dict()`` keyed ``policy/...``
            (numbers only; a nested mapping's keys are joined with ``/``), with
            ``policy/skipped_nonfinite`` and ``policy/update_time_s``; empty for agents that
            do not learn.
        """
        if len(buffer) == 0 and self.learns:
            raise ValueError("update() got an empty buffer: collect episodes first")
        with policy_within_training_step(self.policy):
            stats = self.algorithm.update(buffer=buffer, batch_size=getattr(self.config, "batch_size", None),
                                          repeat=getattr(self.config, "update_steps_policy", 1))
        # Tianshou zeroes gradients before each backward, not after the step: drop them now, or
        # the sampler's gradients (one copy of its weights) sit in memory through the next
        # cycle's MAE steps, on top of the MAE's peak.
        self.algorithm.zero_grad(set_to_none=True)
        out = {f"policy/{key}": value for key, value in _scalars(stats.get_loss_stats_dict()).items()}
        if self.learns:
            out["policy/skipped_nonfinite"] = float(self.guard.total)
            out["policy/update_time_s"] = float(stats.train_time)
        return out

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
        """The algorithm's state (actor, critic, reference policy, optimisers; a fixed masker's
        generator), the skip count and the policy's current softmax temperature."""
        state = {"algorithm": self.algorithm.state_dict(), "skipped_nonfinite": self.guard.state_dict()}
        if hasattr(self.policy, "temperature"):  # where a temperature schedule left it: a loaded policy samples so
            state["temperature"] = float(self.policy.temperature)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "algorithm" not in state:  # a fixed masker's checkpoint from before it had an algorithm
            self.policy.load_state_dict(state["policy"])
            return
        self.algorithm.load_state_dict(dict(state["algorithm"]))  # it pops the optimizer key
        self.guard.load_state_dict(state.get("skipped_nonfinite", {}))  # absent in checkpoints before the count
        if "temperature" in state and hasattr(self.policy, "temperature"):
            self.policy.temperature = float(state["temperature"])

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, algorithm={type(self.algorithm).__name__})"


def _scalars(stats: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numbers of a stats dict as floats (a nested mapping's keys joined with ``/``); anything
    else (strings, arrays) is left out: a log takes scalars."""
    out: dict[str, float] = {}
    for key, value in stats.items():
        if isinstance(value, Mapping):
            out.update(_scalars(value, f"{prefix}{key}/"))
        elif isinstance(value, torch.Tensor) and value.numel() == 1:
            out[f"{prefix}{key}"] = float(value)
        elif isinstance(value, Real):  # Python and numpy numbers
            out[f"{prefix}{key}"] = float(value)
    return out
