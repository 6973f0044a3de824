"""One MAE optimisation step, as the environment takes it inside ``step()``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from runtime.nonfinite import NonFiniteGuard


@dataclass
class MAEOptimizer:
    """Backward, accumulation, clipping, the optimiser step and the lr schedule.

    A step whose gradients are not finite, or that leaves a weight non-finite, is skipped or
    undone by :class:`runtime.nonfinite.NonFiniteGuard` (weights and optimiser state as before,
    counted in ``guard.total``; every rank decides alike). The backward always runs, a
    non-finite loss included, so that DistributedDataParallel's gradient all-reduce in it is
    reached on every rank; with ``accum_steps > 1`` such a loss voids its whole accumulation window.

    :param optimizer: over the MAE's parameters (and, with AdaMAE's recipe, the sampler's:
        :meth:`add_param_groups`).
    :param scheduler: a timm scheduler stepped per optimiser step (``step_update``), or None.
    :param clip_grad: max global gradient norm, or None.
    :param accum_steps: environment steps whose gradients are summed before one optimiser step.
    """

    optimizer: torch.optim.Optimizer
    scheduler: object | None = None
    clip_grad: float | None = None
    accum_steps: int = 1
    num_updates: int = 0
    guard: NonFiniteGuard = field(default_factory=NonFiniteGuard, repr=False)
    _micro_step: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.guard.attach(self.optimizer)

    def add_param_groups(self, groups: list[dict]) -> None:
        """Add parameter groups to the optimiser (e.g. a sampler trained in the MAE's step); they
        follow the schedule like the MAE's own groups, from the current step on."""
        for group in groups:
            self.optimizer.add_param_group(dict(group))
        if self.scheduler is not None:
            self.scheduler.step_update(self.num_updates)  # the new groups get the lr of the next step

    def parameters(self) -> list[torch.nn.Parameter]:
        """Every parameter the optimiser steps."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def backward_and_step(self, loss: torch.Tensor, parameters=None) -> dict[str, float]:
        """Backward of ``loss`` and, every ``accum_steps`` calls, one optimiser step; clipping and the
        gradient norm over ``parameters`` (default: every parameter of the optimiser)."""
        (loss / self.accum_steps).backward()
        self._micro_step += 1
        if self._micro_step < self.accum_steps:
            return {}
        self._micro_step = 0
        params = [p for p in (self.parameters() if parameters is None else parameters) if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.clip_grad if self.clip_grad else float("inf"))
        self.optimizer.step()  # skipped or undone by the guard when a value is not finite
        self.optimizer.zero_grad(set_to_none=True)
        if self.guard.last_skipped:
            return {"skipped": 1.0}
        self.num_updates += 1
        if self.scheduler is not None:
            self.scheduler.step_update(self.num_updates)
        return {"grad_norm": float(grad_norm), "lr": self.optimizer.param_groups[0]["lr"]}

    def state_dict(self) -> dict:
        """The optimiser, the schedule and the counters; stopped inside an accumulation window, also the
        micro-step and the gradients summed so far (so that a resume ends where an unbroken run does)."""
        state = {"optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                 "num_updates": self.num_updates, "skipped_nonfinite": self.guard.total,
                 "consecutive_skipped": self.guard.consecutive, "micro_step": self._micro_step}
        if self._micro_step:
            state["accumulated_grads"] = [None if p.grad is None else p.grad.detach().clone()
                                          for p in self.parameters()]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.num_updates, self._micro_step = state["num_updates"], state.get("micro_step", 0)
        for p, grad in zip(self.parameters(), state.get("accumulated_grads") or []):
            p.grad = None if grad is None else grad.to(p.device, p.dtype)
        self.guard.load_state_dict({"total": state["skipped_nonfinite"],
                                    "consecutive": state.get("consecutive_skipped", 0)})
        if self.scheduler is not None:
            self.scheduler.step_update(self.num_updates)  # the lr of the next optimiser step
