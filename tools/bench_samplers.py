"""Benchmark the sampler actors: forward + backward time and peak memory against N.

For N = 392, 1568, 3136 tokens (T' = 2, 8, 16 frames of P = 14 * 14 = 196 positions, the
paper's ViT-B/16 grid at 4, 16 and 32 input frames) and the paper's width 768, it measures
one policy step - actor forward, Plackett-Luce log-probability of a K = 5% draw, backward -
for the full trajectory-attention actor (1 block), the Orthoformer actor and the AdaMAE MHA
actor, each with its default heads (TA: 12, as Motionformer ViT-B; MHA: 8, as AdaMAE).

Time: the three actors of one N are built in one process and stepped in turn (one step of
each per round), so that load from other processes hits all three alike; the table gives
the median and the minimum of ``--repeats`` rounds after ``--warmup`` rounds.

Peak memory: each (N, actor) pair runs alone in a fresh process:

- CUDA: ``torch.cuda.max_memory_allocated()`` minus the memory allocated before the first
  step (model and input), i.e. activations, gradients and workspace of a step;
- CPU: the growth of the process's peak resident set size (``getrusage`` ``ru_maxrss``)
  over the same span. It counts what the allocator took from the OS, so it is coarser
  than the CUDA number, but it is measured the same way for every actor.

Usage::

    python -m tools.bench_samplers                      # CPU, batch 1, width 768
    python -m tools.bench_samplers --device cuda --batch 8 --repeats 20
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable

import torch

POSITIONS = 196  # 14 x 14 patches of 16 px in a 224 px frame
ACTORS = ("trajectory", "orthoformer", "mha")


def make_step(kind: str, num_tokens: int, args: argparse.Namespace) -> tuple[Callable[[], None], int]:
    """Build one actor and its input; return a policy step (fwd + log-prob + bwd) and its size."""
    from agents.distributions import PlackettLuce
    from agents.networks import build_actor

    torch.manual_seed(0)
    device = torch.device(args.device)
    options = {"num_landmarks": args.num_landmarks} if kind == "orthoformer" else {}
    actor = build_actor(kind, embed_dim=args.width, grid=(num_tokens // POSITIONS, POSITIONS),
                        **options).to(device)
    obs = torch.randn(args.batch, num_tokens, args.width, device=device)
    k = max(1, round(0.05 * num_tokens))

    def step() -> None:
        dist = PlackettLuce(actor(obs)[0], k)
        dist.log_prob(dist.sample()).sum().backward()
        actor.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step, sum(p.numel() for p in actor.parameters())


def step_times(num_tokens: int, args: argparse.Namespace) -> dict[str, list[float]]:
    """Seconds per step of every actor, stepped in turn, ``--repeats`` rounds after warm-up."""
    steps = {kind: make_step(kind, num_tokens, args)[0] for kind in ACTORS}
    times: dict[str, list[float]] = {kind: [] for kind in ACTORS}
    for round_index in range(args.warmup + args.repeats):
        for kind, step in steps.items():
            start = time.perf_counter()
            step()
            if round_index >= args.warmup:
                times[kind].append(time.perf_counter() - start)
    return times


def peak_memory(kind: str, num_tokens: int, args: argparse.Namespace) -> tuple[float, int]:
    """Peak extra memory of two steps of one actor (MiB), and its parameter count."""
    step, num_params = make_step(kind, num_tokens, args)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    step()
    step()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return peak / 2**20, num_params


def _child(function: Callable, threads: int, queue: multiprocessing.Queue, *args: object) -> None:
    if threads:
        torch.set_num_threads(threads)
    queue.put(function(*args))


def in_fresh_process(function: Callable, threads: int, *args: object) -> object:
    """Run ``function(*args)`` in a new interpreter (spawn) and return its result."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(function, threads, queue, *args))
    process.start()
    result = queue.get()  # before join: a large result would block the child's exit
    process.join()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[392, 1568, 3136],
                        help="token counts N, multiples of 196 (default: 392 1568 3136)")
    parser.add_argument("--batch", type=int, default=1, help="clips per step (default 1)")
    parser.add_argument("--width", type=int, default=768, help="token width D (default 768)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--num-landmarks", type=int, default=128, help="Orthoformer landmarks (128)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if any(n % POSITIONS for n in args.tokens):
        parser.error(f"--tokens must be multiples of {POSITIONS}, got {args.tokens}")

    device_name = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                   else f"CPU, {args.threads or torch.get_num_threads()} threads")
    print(f"# sampler actors, forward + backward: {device_name}, torch {torch.__version__}, "
          f"batch {args.batch}, width {args.width}, {args.repeats} rounds after {args.warmup} warm-up")
    print("| N | T' x P | actor | params | median ms | x MHA | min ms | x MHA | peak MiB | x MHA |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    labels = {"trajectory": "TA full (1 block)", "mha": "MHA (AdaMAE)",
              "orthoformer": f"TA Orthoformer (L={args.num_landmarks})"}
    for num_tokens in args.tokens:
        times = in_fresh_process(step_times, args.threads, num_tokens, args)
        memory = {kind: in_fresh_process(peak_memory, args.threads, kind, num_tokens, args)
                  for kind in ACTORS}
        median = {kind: 1e3 * statistics.median(times[kind]) for kind in ACTORS}
        fastest = {kind: 1e3 * min(times[kind]) for kind in ACTORS}
        for kind in ACTORS:
            mib, num_params = memory[kind]
            print(f"| {num_tokens} | {num_tokens // POSITIONS} x {POSITIONS} | {labels[kind]} | "
                  f"{num_params / 1e6:.2f}M | {median[kind]:.0f} | {median[kind] / median['mha']:.2f} | "
                  f"{fastest[kind]:.0f} | {fastest[kind] / fastest['mha']:.2f} | "
                  f"{mib:.0f} | {mib / memory['mha'][0]:.2f} |", flush=True)


if __name__ == "__main__":
    from runtime.errors import run_tool

    run_tool(main)
