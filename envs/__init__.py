"""The MAE as a vectorised Gymnasium environment, and its Tianshou adapter.

Importing this package registers the environment as ``tats/MaskedVideoMAE-v0``
(:mod:`envs.registration`).
"""

from envs.clip_source import ClipSource
from envs.mae_env import MAEVectorEnv
from envs.mae_optimizer import MAEOptimizer
from envs.registration import ENV_ID, make_mae_vector_env, register
from envs.spaces import KSubset, TensorBox
from envs.tianshou_adapter import TianshouVectorEnv

register()

__all__ = ["ENV_ID", "ClipSource", "KSubset", "MAEOptimizer", "MAEVectorEnv", "TensorBox", "TianshouVectorEnv",
           "make_mae_vector_env"]
