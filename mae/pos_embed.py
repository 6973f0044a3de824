"""Fixed sinusoidal position tables: VideoMAE's 1-D one, and a factorised 3-D one.

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


POS_EMBEDS = ("1d", "3d")


def factorised_sinusoid_table(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """Separate sin-cos codes of t', h and w, concatenated (a third of the channels each).

    A token's column or row is then a linear function of its code, so "the same spatial
    position at another time" is one attention pattern away; in the 1-D table it is not
    (no frequency of the flattened index has period H'W'). Used by the ``micro`` testbed
    size; the VideoMAE sizes keep the 1-D table.

    Shapes:
        grid ``(T', H', W')``; returns ``(1, T' * H' * W', dim)`` float32, frame-major.
    """
    part = (dim // 6) * 2  # even widths for t' and h; w takes the rest
    widths = (part, part, dim - 2 * part)
    codes = [sinusoid_table(size, width)[0] for size, width in zip(grid, widths)]
    t, h, w = np.meshgrid(*(np.arange(size) for size in grid), indexing="ij")
    table = torch.cat([codes[0][t.ravel()], codes[1][h.ravel()], codes[2][w.ravel()]], dim=1)
    return table.unsqueeze(0)


def position_table(kind: str, grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """``"1d"``: :func:`sinusoid_table` over the flattened index (VideoMAE); ``"3d"``: factorised."""
    if kind == "1d":
        return sinusoid_table(grid[0] * grid[1] * grid[2], dim)
    if kind == "3d":
        return factorised_sinusoid_table(grid, dim)
    raise ValueError(f"pos_embed must be one of {POS_EMBEDS}, got {kind!r}")
