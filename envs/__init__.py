"""The MAE as a vectorised Gymnasium environment, and its Tianshou adapter."""

from envs.clip_source import ClipSource
from envs.mae_env import MAEVectorEnv
from envs.mae_optimizer import MAEOptimizer
from envs.tianshou_adapter import TianshouVectorEnv

__all__ = ["ClipSource", "MAEOptimizer", "MAEVectorEnv", "TianshouVectorEnv"]
