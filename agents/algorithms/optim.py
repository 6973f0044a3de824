"""The sampler's optimisers: Tianshou optimizer factories whose optimisers are guarded.

Tianshou builds an algorithm's optimisers from factories (``optim=AdamOptimizerFactory(...)``).
:func:`guarded` wraps any factory so that each optimiser it builds skips or undoes a step with
non-finite gradients or weights (:class:`runtime.nonfinite.NonFiniteGuard`, through torch's
public step hooks; Tianshou's own optimiser wrapper is left as it is). Built inside
:func:`agents.registry.build_agent`, every guarded optimiser of an algorithm counts into its
agent's one guard (``policy/skipped_nonfinite``). A user's builder for ``agent=custom`` gets the
guard by wrapping its factory: ``PPO(..., optim=guarded(AdamOptimizerFactory(lr=1e-3)))``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from tianshou.algorithm.optim import OptimizerFactory, TorchOptimizerFactory

from agents.algorithms.config import SamplerConfig
from runtime.nonfinite import NonFiniteGuard

_AGENT_GUARD: ContextVar[NonFiniteGuard | None] = ContextVar("agent_guard", default=None)


@contextmanager
def guarding(guard: NonFiniteGuard) -> Iterator[NonFiniteGuard]:
    """Optimisers built by :func:`guarded` factories inside this block report to ``guard``."""
    token = _AGENT_GUARD.set(guard)
    try:
        yield guard
    finally:
        _AGENT_GUARD.reset(token)


class GuardedOptimizerFactory(OptimizerFactory):
    """``factory``'s optimisers, guarded; clipped to ``max_grad_norm`` first when it is set (for
    algorithms whose Tianshou constructor takes no ``max_grad_norm``, such as ``Reinforce``)."""

    def __init__(self, factory: OptimizerFactory, max_grad_norm: float | None = None) -> None:
        super().__init__()
        self.factory, self.max_grad_norm = factory, max_grad_norm

    def with_lr_scheduler_factory(self, lr_scheduler_factory):
        self.factory.with_lr_scheduler_factory(lr_scheduler_factory)
        return self

    def create_instances(self, module: torch.nn.Module):
        optimizer, scheduler = self.factory.create_instances(module)
        if self.max_grad_norm is not None:  # registered first: the guard sees the clipped gradients
            optimizer.register_step_pre_hook(_clip_hook(self.max_grad_norm))
        (_AGENT_GUARD.get() or NonFiniteGuard()).attach(optimizer)
        return optimizer, scheduler

    def _create_optimizer_for_params(self, params):  # create_instances does the work, through ``factory``
        raise NotImplementedError("GuardedOptimizerFactory builds through create_instances(module)")


def guarded(factory: OptimizerFactory, max_grad_norm: float | None = None) -> GuardedOptimizerFactory:
    """``factory`` with the non-finite guard (module docstring)."""
    return GuardedOptimizerFactory(factory, max_grad_norm=max_grad_norm)


def optimizer_factory(config: SamplerConfig, max_grad_norm: float | None = None) -> GuardedOptimizerFactory:
    """AdamW with the configured lr, betas and weight decay (paper Table 4), guarded."""
    return guarded(TorchOptimizerFactory(torch.optim.AdamW, lr=config.lr, betas=tuple(config.opt_betas),
                                         weight_decay=config.weight_decay), max_grad_norm=max_grad_norm)


def _clip_hook(max_norm: float):
    def clip(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    return clip
