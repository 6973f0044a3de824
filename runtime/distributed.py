"""Processes under torchrun: rank, world size and device (NCCL on GPUs, gloo on CPU)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from runtime.setup import pick_device


def init_processes(device_name: str) -> tuple[int, int, torch.device]:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; a plain run is rank 0 of 1 on ``device_name``."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    device = pick_device(device_name)
    if world_size == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device


def close_processes(world_size: int) -> None:
    if world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
