"""A user's own algorithm: ``agent=custom agent._target_=my_pkg.build_agent``.

The function named by ``_target_`` is called as a registry builder is,

    build(spec: EnvSpec, config: CustomConfig, device: torch.device) -> OnPolicyAlgorithm

(with ``actor=`` and ``critic=`` keywords too when the caller hands in networks of its own),
and returns any Tianshou on-policy algorithm whose ``policy`` acts on the environment:
typically a stock ``PPO``, ``A2C`` or ``Reinforce`` on :func:`token_sampler_policy`.
``config.options`` holds the builder's own settings (``+agent.options.lr=1e-4``);
``batch_size`` and ``update_steps_policy`` set the update's minibatch and passes.
docs/agents-and-environment.md has a worked example.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from tianshou.algorithm.algorithm_base import OnPolicyAlgorithm

from agents.algorithms.spec import EnvSpec

UNSET = "???"  # hydra's mark of a value that must be given


@dataclass
class CustomConfig:
    """A user's own algorithm, built by the function ``_target_`` names."""

    name: str = "custom"
    """Agent name in the registry."""
    _target_: str = UNSET
    """The builder, ``package.module.function``: ``build(spec, config, device) -> OnPolicyAlgorithm``."""
    batch_size: Optional[int] = None
    """Minibatch size of the update; None = the whole buffer in one gradient step."""
    update_steps_policy: int = 1
    """Passes over the buffer per update."""
    options: dict[str, Any] = field(default_factory=dict)
    """The builder's own settings (``+agent.options.<key>=<value>``); the project reads none of them."""

    def __post_init__(self) -> None:
        resolve_builder(self._target_)
        if self.batch_size is not None and not self.batch_size > 0:
            raise ValueError(f"batch_size must be > 0 or null, got {self.batch_size}")
        if not self.update_steps_policy > 0:
            raise ValueError(f"update_steps_policy must be > 0, got {self.update_steps_policy}")


def resolve_builder(target: str) -> Callable[..., Any]:
    """The function ``target`` (``package.module.function``) names; a clear error if there is none."""
    # Not hydra.utils.get_method: it logs every failure through hydra's logger (a multi-line error on
    # stderr) before raising, so catching and re-raising it would not keep the error to one line.
    if not target or target == UNSET:
        raise ValueError("agent=custom needs the builder of the algorithm: agent._target_=package.module.function")
    module_name, _, attribute = target.rpartition(".")
    if not module_name:
        raise ValueError(f"_target_={target!r} must be package.module.function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"_target_={target!r}: cannot import {module_name} ({error})") from error
    builder = getattr(module, attribute, None)
    if not callable(builder):
        raise ValueError(f"_target_={target!r}: {module_name} has no function {attribute}")
    return builder


def build_custom(spec: EnvSpec, config: CustomConfig, device: torch.device, *,
                 actor: torch.nn.Module | None = None, critic: torch.nn.Module | None = None) -> OnPolicyAlgorithm:
    """Call the user's builder (with ``actor``/``critic`` only when given)."""
    networks = {key: value for key, value in (("actor", actor), ("critic", critic)) if value is not None}
    return resolve_builder(config._target_)(spec, config, device, **networks)
