"""The environment's spaces: K distinct token indices per clip, and token observations as torch tensors.

- :class:`KSubset` is a ``MultiDiscrete([N] * K)`` (so every library that handles discrete
  actions, Tianshou included, takes it) whose elements are K *distinct* indices in draw
  order: ``sample()`` draws K distinct indices uniformly, ``contains()`` rejects duplicates.
- :class:`TensorBox` is the unbounded float32 ``Box`` of the observed tokens, whose elements
  are torch tensors on ``device``: the environment keeps observations on the training device.

Both batch with :func:`gymnasium.vector.utils.batch_space` into the same kind of space
(a batched ``KSubset`` has shape ``(B, K)``, each row K distinct indices).
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector.utils import batch_space


class KSubset(spaces.MultiDiscrete):
    """K distinct indices of ``range(n)``, in draw order; shape ``(*batch_shape, K)``.

    :param n: N, the number of tokens.
    :param k: K, the number of visible tokens, ``1 <= k <= n``.
    :param batch_shape: leading dimensions (``(B,)`` for a batch of clips); each last-axis row
        is one K-subset.
    :param seed: seed of :meth:`sample`.
    """

    def __init__(self, n: int, k: int, *, batch_shape: tuple[int, ...] = (),
                 seed: int | np.random.Generator | None = None):
        n, k = int(n), int(k)
        if not 1 <= k <= n:
            raise ValueError(f"KSubset needs 1 <= k <= n, got n={n}, k={k}")
        super().__init__(np.full((*batch_shape, k), n, dtype=np.int64), dtype=np.int64, seed=seed)
        self.n, self.k = n, k

    def sample(self, mask: Any = None, probability: Any = None) -> np.ndarray:
        """K distinct indices per row, every ordered K-subset equally likely."""
        if mask is not None or probability is not None:
            raise ValueError("KSubset.sample() takes no mask or probability: it draws K distinct indices uniformly")
        rows = int(np.prod(self.shape[:-1], dtype=np.int64))
        keys = self.np_random.random((rows, self.n))
        return np.argsort(keys, axis=1)[:, : self.k].reshape(self.shape).astype(self.dtype)

    def contains(self, x: Any) -> bool:
        """Integers of the right shape, in ``[0, n)``, distinct along the last axis (numpy, list or torch)."""
        if isinstance(x, torch.Tensor):
            if x.is_floating_point() or x.is_complex():
                return False
            x = x.detach().cpu().numpy()
        if not super().contains(x):
            return False
        ordered = np.sort(np.asarray(x), axis=-1)
        return not bool((ordered[..., 1:] == ordered[..., :-1]).any())

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, KSubset) and self.shape == other.shape and (self.n, self.k) == (other.n, other.k)

    def __hash__(self) -> int:
        return hash((type(self), self.shape, self.n))

    def __repr__(self) -> str:
        batch = f", batch_shape={self.shape[:-1]}" if len(self.shape) > 1 else ""
        return f"KSubset(n={self.n}, k={self.k}{batch})"


class TensorBox(spaces.Box):
    """Unbounded float32 ``Box`` whose elements are torch tensors on ``device``.

    ``contains`` accepts a torch tensor (on any device) or a numpy array of the right shape;
    ``sample`` returns a tensor on ``device``.
    """

    def __init__(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                 seed: int | np.random.Generator | None = None):
        super().__init__(-np.inf, np.inf, tuple(shape), np.float32, seed=seed)
        self.device = torch.device(device)

    def sample(self, mask: Any = None, probability: Any = None) -> torch.Tensor:
        return torch.from_numpy(super().sample(mask, probability)).to(self.device)

    def contains(self, x: Any) -> bool:
        if isinstance(x, torch.Tensor):
            if x.dtype != torch.float32:
                return False
            x = x.detach().cpu().numpy()
        return super().contains(x)

    def __eq__(self, other: Any) -> bool:
        """Equal to a TensorBox of the same shape on the same device only: a numpy ``Box`` holds other
        elements (Gymnasium's wrappers reuse an observation buffer where the spaces compare equal)."""
        return isinstance(other, TensorBox) and self.device == other.device and super().__eq__(other)

    def __repr__(self) -> str:
        return f"TensorBox({self.shape}, float32, device={self.device})"


@batch_space.register(KSubset)
def _batch_k_subset(space: KSubset, n: int = 1) -> KSubset:
    return KSubset(space.n, space.k, batch_shape=(n, *space.shape[:-1]), seed=deepcopy(space.np_random))


@batch_space.register(TensorBox)
def _batch_tensor_box(space: TensorBox, n: int = 1) -> TensorBox:
    return TensorBox((n, *space.shape), device=space.device, seed=deepcopy(space.np_random))


def token_spaces(num_tokens: int, num_visible: int, embed_dim: int,
                 device: torch.device | str = "cpu") -> tuple[TensorBox, KSubset]:
    """One clip's observation space ``(N, D)`` and action space (K of N tokens)."""
    return TensorBox((num_tokens, embed_dim), device=device), KSubset(num_tokens, num_visible)
