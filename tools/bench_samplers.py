"""Benchmark the sampler actors: forward + backward time and peak memory against N.

For N = 392, 1568, 3136 tokens (T' = 2, 8, 16 frames of P = 14 * 14 = 196 positions, the
paper's ViT-B/16 grid at 4, 16 and 32 input frames) and the paper's width 768, it times one
policy step - actor forward, Plackett-Luce log-probability of a K = 5% draw, backward -
for the full trajectory-attention actor (1 block), the Orthoformer actor and the AdaMAE
MHA actor, each with its default heads (TA: 12, as Motionformer ViT-B; MHA: 8, as AdaMAE).

Every (N, actor) pair runs in a fresh process, so that peak memory is that pair's own:

- CUDA: ``torch.cuda.max_memory_allocated()`` minus the memory allocated before the first
  step (model and input), i.e. activations, gradients and workspace of a step;
- CPU: the growth of the process's peak resident set size (``getrusage`` ``ru_maxrss``)
  over the same span. It counts what the allocator took from the OS, so it is coarser
  than the CUDA number, but it is measured the same way for every actor.

Time is the median of ``--repeats`` steps after ``--warmup`` steps (the minimum is printed
too: on a shared machine it is the steadier number). Usage::

    python -m tools.bench_samplers                      # CPU, batch 1, width 768
    python -m tools.bench_samplers --device cuda --batch 8 --repeats 20
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import sys
import time

import torch

POSITIONS = 196  # 14 x 14 patches of 16 px in a 224 px frame
ACTORS = ("trajectory", "orthoformer", "mha")


def measure(kind: str, num_tokens: int, args: argparse.Namespace) -> dict:
    """One actor at one N, in the current process: median step time and peak memory."""
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

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    times = []
    for i in range(args.warmup + args.repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) - baseline
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    return {"ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "mib": peak / 2**20,
            "params": sum(p.numel() for p in actor.parameters())}


def _child(kind: str, num_tokens: int, args: argparse.Namespace, queue: multiprocessing.Queue) -> None:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    queue.put(measure(kind, num_tokens, args))


def measure_in_fresh_process(kind: str, num_tokens: int, args: argparse.Namespace) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(kind, num_tokens, args, queue))
    process.start()
    process.join()
    if process.exitcode != 0:
        return {"ms": float("nan"), "min_ms": float("nan"), "mib": float("nan"), "params": 0}
    return queue.get()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[392, 1568, 3136],
                        help="token counts N, multiples of 196 (default: 392 1568 3136)")
    parser.add_argument("--batch", type=int, default=1, help="clips per step (default 1)")
    parser.add_argument("--width", type=int, default=768, help="token width D (default 768)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--num-landmarks", type=int, default=128, help="Orthoformer landmarks (128)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if any(n % POSITIONS for n in args.tokens):
        parser.error(f"--tokens must be multiples of {POSITIONS}, got {args.tokens}")

    device_name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else (
        f"CPU, {args.threads or torch.get_num_threads()} threads")
    print(f"# sampler actors, forward + backward: {device_name}, torch {torch.__version__}, "
          f"batch {args.batch}, width {args.width}, median of {args.repeats} after {args.warmup} warm-up")
    print("| N | T' x P | actor | params | fwd+bwd ms (median) | x MHA | min ms | peak MiB | x MHA |")
    print("|---|---|---|---|---|---|---|---|---|")
    for num_tokens in args.tokens:
        results = {kind: measure_in_fresh_process(kind, num_tokens, args) for kind in ACTORS}
        mha = results["mha"]
        for kind in ACTORS:
            r = results[kind]
            label = {"trajectory": "TA full (1 block)", "orthoformer":
                     f"TA Orthoformer (L={args.num_landmarks})", "mha": "MHA (AdaMAE)"}[kind]
            print(f"| {num_tokens} | {num_tokens // POSITIONS} x {POSITIONS} | {label} | "
                  f"{r['params'] / 1e6:.2f}M | {r['ms']:.1f} | {r['ms'] / mha['ms']:.2f} | "
                  f"{r['min_ms']:.1f} | {r['mib']:.0f} | {r['mib'] / max(mha['mib'], 1e-9):.2f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
