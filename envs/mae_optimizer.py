"""One MAE optimisation step, as the environment takes it inside ``step()``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class MAEOptimizer:
    """Backward, accumulation, clipping, the optimiser step and the lr schedule.

    A step is skipped, and counted in ``skipped_nonfinite``, when the loss or the gradient norm
    is not finite (gradients are dropped, weights untouched), or when the optimiser step itself
    leaves a weight that is not finite (a huge learning rate, say): the weights and the
    optimiser state are then put back as they were before it. For that, each optimiser step
    first copies the weights and the optimiser state into buffers kept between steps (one
    fused copy, no allocation; memory: the weights and the optimiser state once more), and
    checks after it that the weights are finite (one fused reduction).

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
    skipped_nonfinite: int = 0
    consecutive_skipped: int = 0
    """Steps skipped in a row up to now (0 after an optimiser step that went through)."""
    _micro_step: int = field(default=0, repr=False)
    _backup: list = field(default_factory=list, repr=False)
    """Copies of the weights and the optimiser state's tensors, taken before each optimiser step."""
    _sources: list = field(default_factory=list, repr=False)
    """The tensors ``_backup`` copies (an optimiser that replaces a state tensor gets new buffers)."""

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
        if parameters is None:
            parameters = self.parameters()
        if not math.isfinite(loss.item()):
            self.skipped_nonfinite += 1
            self.consecutive_skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            self._micro_step = 0
            return {"skipped": 1.0}
        (loss / self.accum_steps).backward()
        self._micro_step += 1
        if self._micro_step < self.accum_steps:
            return {}
        self._micro_step = 0
        params = [p for p in parameters if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.clip_grad if self.clip_grad else float("inf"))
        if not torch.isfinite(grad_norm):
            self.skipped_nonfinite += 1
            self.consecutive_skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
            return {"skipped": 1.0}
        saved_state = self._snapshot(params)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not self._finite(params):
            self._restore(params, saved_state)
            self.skipped_nonfinite += 1
            self.consecutive_skipped += 1
            return {"skipped": 1.0}
        self.num_updates += 1
        self.consecutive_skipped = 0
        if self.scheduler is not None:
            self.scheduler.step_update(self.num_updates)
        return {"grad_norm": float(grad_norm), "lr": self.optimizer.param_groups[0]["lr"]}

    # ---- undoing a step that left a weight non-finite
    def _state_tensors(self, params: list[torch.Tensor], saved_state: dict) -> list[torch.Tensor]:
        state = (value for p in params for value in saved_state.get(p, {}).values() if torch.is_tensor(value))
        return [*params, *state]

    def _snapshot(self, params: list[torch.Tensor]) -> dict:
        """Copy the weights and the optimiser state of ``params`` into the kept buffers; returns
        each parameter's state entries (the tensor objects themselves: an optimiser may update them
        in place or replace them)."""
        saved_state = {p: dict(self.optimizer.state[p]) for p in params if p in self.optimizer.state}
        sources = self._state_tensors(params, saved_state)
        if len(self._sources) != len(sources) or any(a is not b for a, b in zip(self._sources, sources)):
            self._sources = sources  # the first steps, or other tensors: new buffers
            self._backup = [torch.empty_like(t) for t in sources]
        with torch.no_grad():
            torch._foreach_copy_(self._backup, sources)
        return saved_state

    @staticmethod
    def _finite(params: list[torch.Tensor]) -> bool:
        """Every weight of ``params`` is finite: first the cheapest fused reduction (the L2 norms, one
        sync), then, only when that overflows, the exact check (an L2 norm also overflows for huge
        finite weights, above about 1e19)."""
        if not params:
            return True
        with torch.no_grad():
            if bool(torch.isfinite(torch.stack(torch._foreach_norm(params, 2))).all()):
                return True
            return all(bool(torch.isfinite(p).all()) for p in params)

    def _restore(self, params: list[torch.Tensor], saved_state: dict) -> None:
        for p in params:  # the state entries as they were (a first step had none)
            if p in saved_state:
                self.optimizer.state[p] = saved_state[p]
            else:
                self.optimizer.state.pop(p, None)
        with torch.no_grad():
            torch._foreach_copy_(self._state_tensors(params, saved_state), self._backup)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "num_updates": self.num_updates, "skipped_nonfinite": self.skipped_nonfinite,
                "consecutive_skipped": self.consecutive_skipped}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.num_updates, self.skipped_nonfinite = state["num_updates"], state["skipped_nonfinite"]
        self.consecutive_skipped = state.get("consecutive_skipped", 0)
        if self.scheduler is not None:
            self.scheduler.step_update(self.num_updates)  # the lr of the next optimiser step
