"""One guard against non-finite optimiser steps, for the MAE's optimiser and the sampler's alike.

    guard = NonFiniteGuard()
    guard.attach(optimizer)      # torch's public step hooks; nothing else of the optimiser changes
    loss.backward()              # always: ranks that all-reduce gradients in it stay in step
    optimizer.step()             # skipped or undone by the guard
    if guard.last_skipped: ...

Before each step the guard checks that the gradients are finite; if not, it drops them (every
torch optimiser skips a parameter whose ``grad`` is None), so the step changes nothing. Otherwise
it copies the weights and the optimiser state into buffers kept between steps (one fused copy;
memory: the weights and the state once more) and, after the step, checks that the weights are
finite; if not (a huge learning rate, say), it puts weights and state back. Under
torch.distributed both decisions are taken jointly (one all-reduce of a flag): one rank's
non-finite value skips the step on every rank, so replicas never drift apart and no rank waits
in a collective the others skipped.
"""

from __future__ import annotations

import torch

from runtime.distributed import any_rank


class NonFiniteGuard:
    """Counts and undoes optimiser steps with non-finite gradients or results (module docstring)."""

    def __init__(self) -> None:
        self.total = 0
        """Steps skipped since the run began."""
        self.consecutive = 0
        """Steps skipped in a row up to now (0 after a step that went through)."""
        self.last_skipped = False
        """Whether the latest step was skipped."""
        self.attached = 0
        """Optimisers guarded."""
        self._backup: list[torch.Tensor] = []
        self._sources: list[torch.Tensor] = []  # what _backup copies; other tensors get new buffers
        self._params: list[torch.Tensor] = []  # what the current step changes
        self._saved_state: dict | None = None  # None: the gradients were not finite, the step is void

    def attach(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Guard every later ``optimizer.step()``; returns ``optimizer``."""
        optimizer.register_step_pre_hook(self._before_step)
        optimizer.register_step_post_hook(self._after_step)
        self.attached += 1
        return optimizer

    def state_dict(self) -> dict[str, int]:
        return {"total": self.total, "consecutive": self.consecutive}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.total, self.consecutive = int(state.get("total", 0)), int(state.get("consecutive", 0))

    # ---- the hooks
    def _before_step(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        params = _stepped(optimizer)
        grads = [p.grad for p in params]
        if any_rank(not _all_finite(grads)):
            for p in params:
                p.grad = None
            self._saved_state = None
            return
        self._params = params
        self._saved_state = {p: dict(optimizer.state[p]) for p in params if p in optimizer.state}
        sources = _with_state(params, self._saved_state)
        if len(self._sources) != len(sources) or any(a is not b for a, b in zip(self._sources, sources)):
            self._sources, self._backup = sources, [torch.empty_like(t) for t in sources]
        with torch.no_grad():
            torch._foreach_copy_(self._backup, sources)

    def _after_step(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        saved_state, self._saved_state = self._saved_state, None
        params, self._params = self._params, []
        if saved_state is not None and not any_rank(not _all_finite(params)):
            self.last_skipped, self.consecutive = False, 0
            return
        if saved_state is not None:  # the step left a weight non-finite: put everything back
            for p in params:  # the state entries as they were (a first step had none)
                if p in saved_state:
                    optimizer.state[p] = saved_state[p]
                else:
                    optimizer.state.pop(p, None)
            with torch.no_grad():
                torch._foreach_copy_(_with_state(params, saved_state), self._backup)
        self.last_skipped, self.total, self.consecutive = True, self.total + 1, self.consecutive + 1


def _stepped(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The parameters this step changes: those with a gradient."""
    return [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]


def _with_state(params: list[torch.Tensor], saved_state: dict) -> list[torch.Tensor]:
    state = (value for p in params for value in saved_state.get(p, {}).values() if torch.is_tensor(value))
    return [*params, *state]


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """First one fused norm (one sync); only when it overflows, the exact check (an L2 norm also
    overflows for huge finite values, above about 1e19)."""
    if not tensors:
        return True
    with torch.no_grad():
        if bool(torch.isfinite(torch.nn.utils.get_total_norm(tensors))):
            return True
        return all(bool(torch.isfinite(t).all()) for t in tensors)


