"""The MAE as a vectorised Gymnasium environment, and its Tianshou adapter.

Importing this package registers the environment as ``tats/MaskedVideoMAE-v0``
(:mod:`envs.registration`): ``gymnasium.make`` gives one clip per episode (:class:`MAEEnv`),
``gymnasium.make_vec`` the batched :class:`MAEVectorEnv`.
"""

from envs.clip_source import ClipSource
from envs.mae_env import MAEEnv, MAEVectorEnv
from envs.mae_optimizer import MAEOptimizer
from envs.registration import ENV_ID, make_mae_env, make_mae_vector_env, register
from envs.spaces import KSubset, TensorBox
from envs.tianshou_adapter import BatchCollector, TianshouVectorEnv

register()

__all__ = ["ENV_ID", "BatchCollector", "ClipSource", "KSubset", "MAEEnv", "MAEOptimizer", "MAEVectorEnv", "TensorBox",
           "TianshouVectorEnv", "make_mae_env", "make_mae_vector_env"]
