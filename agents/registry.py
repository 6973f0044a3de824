"""All agents by name: ``agent=<name>`` is the whole change between runs.

    agent = build_agent("ppo", env=env, config={"objective": "cooperative"}, device=device)
    collector = Collector(agent.policy, TianshouVectorEnv(env), buffer)
    ...; stats = agent.update(buffer)

Adding an agent is one module in :mod:`agents.algorithms` (a config dataclass and a
``build(spec, config, device, *, actor=None, critic=None) -> OnPolicyAlgorithm``) and one line
here. Without touching the project, ``agent=custom agent._target_=my_pkg.build_agent`` builds
a user's own algorithm with a builder of the same signature (:mod:`agents.algorithms.custom`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from agents.algorithms.agent import Agent
from agents.algorithms.optim import guarding
from agents.algorithms.spec import EnvSpec
from runtime.nonfinite import NonFiniteGuard
from agents.algorithms.custom import CustomConfig, build_custom
from agents.algorithms.fixed import FixedConfig, build_fixed
from agents.algorithms.grpo import GRPOConfig, build_grpo
from agents.algorithms.ppo import PPOConfig, build_ppo
from agents.algorithms.reinforce import ReinforceConfig, build_reinforce


@dataclass(frozen=True)
class AgentEntry:
    """A registered agent: its options dataclass and its builder
    ``build(spec, config, device, *, actor=None, critic=None)``, which returns a Tianshou
    on-policy algorithm (:func:`build_agent` wraps it in an :class:`Agent`)."""

    config: type
    build: Callable[..., Any]


AGENTS: dict[str, AgentEntry] = {
    "ppo": AgentEntry(PPOConfig, build_ppo),
    "reinforce": AgentEntry(ReinforceConfig, build_reinforce),
    "grpo": AgentEntry(GRPOConfig, build_grpo),
    "random": AgentEntry(FixedConfig, build_fixed),
    "tube": AgentEntry(FixedConfig, build_fixed),
    "custom": AgentEntry(CustomConfig, build_custom),
}


def make_config(name: str, config: Any = None) -> Any:
    """The options of agent ``name``: defaults, a dict of overrides, or a config dataclass.

    A mapping may be a plain dict or any Mapping (e.g. an OmegaConf node converted with
    ``OmegaConf.to_container``); unknown keys are errors naming the allowed ones.
    """
    entry = _entry(name)
    if config is None:
        config = {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        if not isinstance(config, entry.config):
            raise TypeError(f"agent {name!r} takes a {entry.config.__name__}, got {type(config).__name__}")
        result = config
    elif isinstance(config, Mapping):
        values = {**{"name": name}, **dict(config)}
        allowed = {f.name for f in dataclasses.fields(entry.config)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for agent {name!r}; allowed: {sorted(allowed)}")
        result = entry.config(**{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()})
    else:
        raise TypeError(f"config must be None, a dict or a {entry.config.__name__}, got {type(config).__name__}")
    if result.name != name:
        raise ValueError(f"config.name={result.name!r} does not match the agent {name!r}")
    return result


def group_size_of(name: str, config: Any = None) -> int:
    """Copies of each clip the environment must present per step (build the env with it)."""
    return int(getattr(make_config(name, config), "group_size", 1))


def build_agent(name: str, *, env: Any, config: Any = None, device: torch.device | str = "cpu",
                actor: nn.Module | None = None, critic: nn.Module | None = None) -> Agent:
    """Build agent ``name`` for ``env``.

    :param name: one of :data:`AGENTS` (``ppo``, ``reinforce``, ``grpo``, ``random``, ``tube``, ``custom``).
    :param env: the :class:`envs.MAEVectorEnv` (N, K, token width, grid and group size are
        read off it); for ``grpo`` its ``group_size`` must equal the config's.
    :param config: the agent's options: None (defaults), a dict of overrides, or the
        agent's config dataclass (:class:`PPOConfig`, :class:`ReinforceConfig`,
        :class:`GRPOConfig`, :class:`FixedConfig`, :class:`CustomConfig`).
    :param device: where the networks live (the env's device).
    :param actor: use this actor instead of building ``config.actor`` (e.g. wrapped in
        DistributedDataParallel, or a test stand-in).
    :param critic: likewise for PPO's critic.
    :raises TypeError: the builder returned something other than a Tianshou on-policy algorithm.
    :raises ValueError: a learning agent of the project on an env whose reward is not +L_R (``env.reward``).
    """
    config = make_config(name, config)
    spec = EnvSpec.from_env(env)
    if spec.group_size != 1 and not hasattr(config, "group_size"):
        raise ValueError(f"agent {name!r} expects one copy per clip; the env has group_size={spec.group_size}")
    env_reward = getattr(env, "reward", "loss")
    if name not in ("custom", "random", "tube") and env_reward != "loss":
        raise ValueError(f"agent {name!r} reads the paper's reward, +L_R (its objective sets the sign it maximises), "
                         f"but this env gives reward={env_reward!r}: build the env with reward='loss' "
                         f"(agent=custom takes the env's reward as it is)")
    with guarding(NonFiniteGuard()) as guard:  # every guarded optimiser of the algorithm counts here
        algorithm = _entry(name).build(spec, config, torch.device(device), actor=actor, critic=critic)
    return Agent(name=name, config=config, spec=spec, algorithm=algorithm, guard=guard)


def _entry(name: str) -> AgentEntry:
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of {tuple(AGENTS)}")
    return AGENTS[name]
