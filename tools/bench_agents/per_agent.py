"""Part 1: time per MAE step of every row (one process, rows stepped in turn) and peak memory (one
fresh process per row)."""

from __future__ import annotations

import argparse
import gc
import resource
from typing import Any

import torch

from tools.bench_agents.build import Cycle, Row, build_mae, make_pool


def agent_times(rows: list[Row], args: argparse.Namespace) -> dict[str, Any]:
    """Per row: collect, update and cycle seconds of every timed round; sampler params."""
    device = torch.device(args.device)
    pool = make_pool(args)
    model, mae_optimizer = build_mae(args, pool, device)
    cycles = {row.label: Cycle(row, model, mae_optimizer, pool, args, device) for row in rows}
    times: dict[str, list[tuple[float, float]]] = {row.label: [] for row in rows}
    for round_index in range(args.warmup + args.repeats):
        for label, cycle in cycles.items():
            parts = cycle()
            if round_index >= args.warmup:
                times[label].append(parts)
    return {"times": times, "params": {label: cycle.num_params for label, cycle in cycles.items()},
            "grid": tuple(model.grid), "num_tokens": model.num_tokens, "embed_dim": model.embed_dim,
            "num_visible": next(iter(cycles.values())).env.num_visible}


def memory_now(device: torch.device) -> int:
    """Bytes: allocated on CUDA (after resetting the peak), else the peak RSS so far."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def memory_peak(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def row_peak_memory(row: Row, args: argparse.Namespace, all_rows: list[Row]) -> float:
    """Peak memory (MiB) of building one row and running two cycles, from before the MAE exists.

    Every row of the table first runs two cycles on a miniature MAE (tiny, 4 frames), so that
    what a first run allocates once per process - lazy imports (Tianshou pulls in numba and
    scipy when an agent is built), JIT-compiled kernels, thread pools, oneDNN/cuBLAS workspaces -
    is in the baseline, and every row's process starts measuring from the same state.
    """
    device = torch.device(args.device)
    for warm_row in all_rows:
        miniature = argparse.Namespace(**{**vars(args), "model": "tiny", "num_frames": 4,
                                          "batch": warm_row.group_size})
        warm_pool = make_pool(miniature)
        warm = Cycle(warm_row, *build_mae(miniature, warm_pool, device), warm_pool, miniature, device)
        warm()
        warm()
        del warm, warm_pool
    gc.collect()
    pool = make_pool(args)
    baseline = memory_now(device)
    model, mae_optimizer = build_mae(args, pool, device)
    cycle = Cycle(row, model, mae_optimizer, pool, args, device)
    cycle()
    cycle()
    return (memory_peak(device) - baseline) / 2**20
