"""The token sampler's learning algorithms (Tianshou subclasses) and the fixed maskers.

One module per agent: its options (a dataclass), its Tianshou algorithm, its builder;
:mod:`agents.algorithms.base` what the learning ones share, :mod:`agents.algorithms.custom`
a user's own. :mod:`agents.registry` maps names to them.
"""

from agents.algorithms.agent import Agent
from agents.algorithms.base import TokenSamplerAlgorithm
from agents.algorithms.config import SamplerConfig, build_critic_network
from agents.algorithms.custom import CustomConfig
from agents.algorithms.fixed import FixedConfig, FixedMaskAlgorithm, FixedMaskPolicy
from agents.algorithms.grpo import GRPO, GRPOConfig, group_advantages
from agents.algorithms.objectives import OBJECTIVES, Objective, get_objective
from agents.algorithms.optim import guarded
from agents.algorithms.policy import TokenSamplerPolicy, token_sampler_policy
from agents.algorithms.ppo import PPOConfig, TATSPPO
from agents.algorithms.reinforce import AdaMAEReinforce, ReinforceConfig
from agents.algorithms.spec import EnvSpec

__all__ = [
    "GRPO", "OBJECTIVES", "TATSPPO", "AdaMAEReinforce", "Agent", "CustomConfig", "EnvSpec", "FixedConfig",
    "FixedMaskAlgorithm", "FixedMaskPolicy", "GRPOConfig", "Objective", "PPOConfig", "ReinforceConfig",
    "SamplerConfig", "TokenSamplerAlgorithm", "TokenSamplerPolicy", "build_critic_network", "get_objective",
    "group_advantages", "guarded", "token_sampler_policy",
]
