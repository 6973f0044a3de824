"""Fixed sinusoidal position table of VideoMAE.

VideoMAE does not store this table in its checkpoints, so it must be recomputed
bit-for-bit: a 1-D sinusoid over the *flattened* frame-major token index
(index = t' * H'W' + h * W' + w), one table per width (encoder and decoder). The
TATS paper calls it a "3D periodic positional encoding"; in code it is this 1-D table.
"""

from __future__ import annotations

import numpy as np
import torch


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """VideoMAE's ``get_sinusoid_encoding_table``, vectorised.

    Entry ``[pos, j] = pos / 10000 ** (2 * (j // 2) / dim)``, then sin on even
    columns and cos on odd ones. Computed in float64 like the reference (numpy), then
    cast to float32.

    Shapes:
        returns ``(1, num_positions, dim)`` float32.
    """
    position = np.arange(num_positions, dtype=np.float64)[:, None]
    exponent = 2 * (np.arange(dim) // 2) / dim
    table = position / np.power(10000, exponent)[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.from_numpy(table).float().unsqueeze(0)
