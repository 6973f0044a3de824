"""Every random generator of a run, saved and restored per rank, so ``resume=true`` is exact.

A run draws from: torch's CPU generator, the CUDA generator of each device it uses (the
samplers draw their masks there on a GPU), numpy's and Python's global generators (data
augmentation), and generators of its own (the random-masking generator of Algorithm 1's
first epochs, a fixed masker's generator). Each rank seeds them with ``seed + rank``, so
each rank's states differ: :func:`gather` collects every rank's state into the one
checkpoint that rank 0 writes, and :func:`restore` gives each rank its own back.

A checkpoint's ``rng`` entry is ``{"per_rank": [state of rank 0, state of rank 1, ...]}``;
each state is ``{"torch", "cuda", "numpy", "python", "generators"}``. The single state of
older checkpoints (``{"mask", "torch", "numpy"}`` or ``{"torch", "numpy", "python"}``,
rank 0's) is still read.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def find_generators(module: torch.nn.Module | None, prefix: str = "") -> dict[str, torch.Generator]:
    """The ``torch.Generator`` attributes of ``module`` and its submodules, by dotted name."""
    if module is None:
        return {}
    found = {}
    for name, sub in module.named_modules():
        for attribute, value in vars(sub).items():
            if isinstance(value, torch.Generator):
                found[".".join(part for part in (prefix, name, attribute) if part)] = value
    return found


def cuda_devices_in_use(device: torch.device | str | None = None) -> list[int]:
    """The CUDA device indices whose generators a process draws from: ``device``'s when it is a
    CUDA device; with no device, the current one if CUDA is initialised; else none. Other
    devices are never touched (reading their state would start a context on each)."""
    if device is not None:
        device = torch.device(device)
        if device.type != "cuda":
            return []
        return [device.index if device.index is not None else torch.cuda.current_device()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return [torch.cuda.current_device()]
    return []


def capture(generators: dict[str, torch.Generator] | None = None,
            device: torch.device | str | None = None) -> dict[str, Any]:
    """This process's generator states (CPU tensors and plain Python objects: picklable).

    :param generators: the run's own generators, by name.
    :param device: the process's device; its CUDA generator is saved (see :func:`cuda_devices_in_use`).
    """
    devices = cuda_devices_in_use(device)
    return {"torch": torch.get_rng_state(),
            "cuda": {int(index): torch.cuda.get_rng_state(index) for index in devices},
            "numpy": np.random.get_state(),
            "python": random.getstate(),
            "generators": {name: g.get_state() for name, g in (generators or {}).items()}}


def gather(state: dict[str, Any], world_size: int) -> dict[str, Any]:
    """Every rank's ``state`` as ``{"per_rank": [...]}``; a collective: every rank must call it."""
    if world_size <= 1:
        return {"per_rank": [state]}
    states: list[Any] = [None] * world_size
    dist.all_gather_object(states, state)
    return {"per_rank": states}


def restore(saved: dict[str, Any], rank: int, generators: dict[str, torch.Generator] | None = None) -> None:
    """Put back ``rank``'s states from a checkpoint's ``rng`` entry.

    Raises:
        ValueError: the checkpoint holds per-rank states but none for ``rank`` (it was written by
            fewer processes), or it lacks one of ``generators``.
    """
    generators = generators or {}
    if "per_rank" not in saved:  # an older checkpoint: rank 0's CPU, numpy and mask states only
        torch.set_rng_state(_cpu(saved["torch"]))
        np.random.set_state(saved["numpy"])
        if "python" in saved:
            random.setstate(saved["python"])
        if "mask" in saved and "mask" in generators:
            generators["mask"].set_state(_cpu(saved["mask"]))
        return
    states = saved["per_rank"]
    if rank >= len(states):
        raise ValueError(f"the checkpoint holds the random states of {len(states)} process(es); this is rank {rank}: "
                         "resume with the number of processes that wrote it")
    state = states[rank]
    torch.set_rng_state(_cpu(state["torch"]))
    for index, cuda_state in state["cuda"].items():
        if torch.cuda.is_available() and index < torch.cuda.device_count():
            torch.cuda.set_rng_state(_cpu(cuda_state), index)
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    missing = sorted(set(generators) - set(state["generators"]))
    if missing:
        raise ValueError(f"the checkpoint has no state for the generator(s) {missing}")
    for name, generator in generators.items():
        generator.set_state(_cpu(state["generators"][name]))


def _cpu(tensor: torch.Tensor) -> torch.Tensor:
    """Generator states are CPU byte tensors; a checkpoint loaded with map_location=cuda moved them."""
    return tensor.cpu()
