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
    """``factory``'s optimisers, guarded."""

    def __init__(self, factory: OptimizerFactory) -> None:
        super().__init__()
        self.factory = factory

    def with_lr_scheduler_factory(self, lr_scheduler_factory):
        self.factory.with_lr_scheduler_factory(lr_scheduler_factory)
        return self

    def create_instances(self, module: torch.nn.Module):
        optimizer, scheduler = self.factory.create_instances(module)
        (_AGENT_GUARD.get() or NonFiniteGuard()).attach(optimizer)
        return optimizer, scheduler

    def _create_optimizer_for_params(self, params):  # create_instances does the work, through ``factory``
        raise NotImplementedError("GuardedOptimizerFactory builds through create_instances(module)")


def guarded(factory: OptimizerFactory) -> GuardedOptimizerFactory:
    """``factory`` with the non-finite guard (module docstring)."""
    return GuardedOptimizerFactory(factory)


def optimizer_factory(config: SamplerConfig) -> GuardedOptimizerFactory:
    """AdamW with the configured lr, betas and weight decay (paper Table 4), guarded."""
    return guarded(TorchOptimizerFactory(torch.optim.AdamW, lr=config.lr, betas=tuple(config.opt_betas),
                                         weight_decay=config.weight_decay))
