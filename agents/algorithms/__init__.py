"""The token sampler's learning algorithms (Tianshou subclasses) and the fixed maskers.

One module per agent: its options (a dataclass), its Tianshou algorithm, its builder.
:mod:`agents.registry` maps names to them.
"""

from agents.algorithms.agent import Agent
from agents.algorithms.common import EnvSpec, SamplerConfig
from agents.algorithms.fixed import FixedConfig, FixedMaskPolicy
from agents.algorithms.grpo import GRPO, GRPOConfig, group_advantages
from agents.algorithms.objectives import OBJECTIVES, Objective, get_objective
from agents.algorithms.policy import TokenSamplerPolicy
from agents.algorithms.ppo import PPOConfig, TATSPPO
from agents.algorithms.reinforce import AdaMAEReinforce, ReinforceConfig

__all__ = [
    "GRPO", "OBJECTIVES", "TATSPPO", "AdaMAEReinforce", "Agent", "EnvSpec", "FixedConfig",
    "FixedMaskPolicy", "GRPOConfig", "Objective", "PPOConfig", "ReinforceConfig", "SamplerConfig",
    "TokenSamplerPolicy", "get_objective", "group_advantages",
]
