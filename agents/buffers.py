"""Rollout buffers on disk: one flat HDF5 file per dump, loadable by Tianshou and h5py.

A ``VectorReplayBuffer`` holding torch tensors writes its storage once per sub-buffer
(9.5x the data at 8 sub-buffers), so :func:`dump_hdf5` first copies the valid episodes
into one flat :class:`tianshou.data.ReplayBuffer` and saves that. The file reads back with
``ReplayBuffer.load_hdf5(path)`` (the metadata then sits in the loaded buffer's
``metadata`` dict) and with plain h5py:

    _meta/obs (E, N, D)          X, the observed tokens (a (E,) placeholder if include_obs=False)
    _meta/act (E, K)             visible token indices in draw order
    _meta/rew (E,)               +L_R of each clip
    _meta/info/token_error (E, N), _meta/info/visible (E, N), clip_index, label, group
    _meta/policy/log_prob, masked_log_prob, entropy, value, adv (E,), probs (E, N)
    metadata (group attrs)       grid (T', H', W'), num_tokens, num_visible, agent, ...

Which ``policy`` entries exist depends on the agent (:mod:`agents.algorithms.policy`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tianshou.data import Batch, ReplayBuffer

from runtime.checkpoint import write_atomic

METADATA_GROUP = "metadata"
EPISODE_KEYS = ("obs", "act", "rew", "terminated", "truncated", "done", "info", "policy")


def flatten_buffer(buffer: ReplayBuffer, *, include_obs: bool = True) -> ReplayBuffer:
    """A flat ``ReplayBuffer`` holding exactly the valid episodes of ``buffer``, in its order.

    Reads the stored fields directly (``buffer[:]`` would also build ``obs_next``, a second
    copy of every observation).
    """
    if len(buffer) == 0:
        raise ValueError("the buffer is empty: nothing to dump")
    indices = buffer.sample_indices(0)  # every valid slot, oldest first per sub-buffer
    size = len(indices)
    fields: dict[str, Any] = {}
    for key in EPISODE_KEYS:
        try:
            stored = getattr(buffer, key)
        except AttributeError:  # e.g. no policy entries (fixed maskers)
            continue
        if isinstance(stored, Batch) and len(stored.get_keys()) == 0:
            continue
        fields[key] = stored[indices]
    if not include_obs:
        fields["obs"] = np.zeros(size, dtype=np.float32)
    flat = ReplayBuffer(size, ignore_obs_next=True)
    flat.set_batch(Batch(fields))
    # what ReplayBuffer.from_data does after set_batch: mark every slot as filled
    flat._size, flat._insertion_idx, flat.last_index = size, 0, np.array([size - 1])
    return flat


def dump_hdf5(buffer: ReplayBuffer, path: str | Path, *, metadata: dict[str, Any] | None = None,
              include_obs: bool = True, compression: str | None = None) -> Path:
    """Write the episodes of ``buffer`` (any Tianshou buffer) to ``path`` as a flat buffer.

    :param buffer: a ``ReplayBuffer`` or ``VectorReplayBuffer`` filled by the Collector.
    :param path: the HDF5 file to write (parent folders are created).
    :param metadata: plain values stored as attributes of the ``metadata`` group, e.g.
        :meth:`agents.algorithms.Agent.metadata` (grid, N, K, agent, objective); the
        inspector draws heatmaps on ``grid``.
    :param include_obs: write the observed tokens (E x N x D floats: the bulk of the file).
    :param compression: h5py compression of the datasets, e.g. ``"gzip"``.
    :return: the path written.
    """
    def write(tmp: Path) -> None:
        flatten_buffer(buffer, include_obs=include_obs).save_hdf5(str(tmp), compression=compression)
        with h5py.File(tmp, "a") as f:
            group = f.create_group(METADATA_GROUP)
            group.attrs["include_obs"] = include_obs
            for key, value in (metadata or {}).items():
                if value is None:
                    continue
                if isinstance(value, torch.Tensor):
                    value = value.cpu().numpy()
                group.attrs[key] = np.asarray(value) if isinstance(value, list | tuple) else value

    return write_atomic(path, write, what="a rollout dump")  # a full disk: one error, no truncated file


def read_rollouts(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a dump with h5py only: ``({"rew": ..., "act": ..., "info/visible": ..., "policy/probs": ...}, metadata)``.

    Works on files written by :func:`dump_hdf5` and on ``save_hdf5`` of a flat
    ``ReplayBuffer`` (only its first ``_size`` rows are read).
    """
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        if "_meta" not in f:
            raise ValueError(f"{path} is not a Tianshou buffer file (no _meta group)")
        size = int(f.attrs.get("_size", len(f["_meta/rew"])))

        def visit(name: str, node: Any) -> None:
            if isinstance(node, h5py.Dataset) and node.attrs.get("__data_type__") in ("ndarray", "Tensor"):
                arrays[name] = np.asarray(node[:size]) if node.ndim else np.asarray(node[()])

        f["_meta"].visititems(visit)
        metadata = {k: _plain(v) for k, v in f[METADATA_GROUP].attrs.items()} if METADATA_GROUP in f else {}
    return arrays, metadata


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
