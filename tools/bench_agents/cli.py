"""``python -m tools.bench_agents``: the command line and the tables (:mod:`tools.bench_agents`)."""

from __future__ import annotations

import argparse
import os
import statistics

import torch

import tools.bench_agents
from tools.bench_agents.build import in_fresh_process, make_rows, model_shape
from tools.bench_agents.framing import framing_times
from tools.bench_agents.per_agent import agent_times, row_peak_memory
from tools.bench_agents.throughput import video_throughput

PARTS = ("agents", "framing", "data")
TARGETS = {"time": 1.25, "memory": 1.10, "framing": 1.05}
TARGET_MODEL, TARGET_MASK_RATIO = "base", 0.95
# glibc: blocks of 128 KiB and more are mmapped and unmapped when freed, so the peak RSS follows
# the peak of live tensors (as CUDA's max allocated does) instead of what the heap kept.
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def ms(seconds: float) -> str:
    value = 1e3 * seconds
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def median_parts(samples: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Medians of the collect part, the update part and the whole cycle."""
    return (statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples),
            statistics.median(s[0] + s[1] for s in samples))


def paired_ratio(samples: list[tuple[float, float]], reference: list[tuple[float, float]]) -> float:
    """Median over rounds of a cycle's time over the reference's in the same round (load drifts cancel)."""
    return statistics.median(sum(a) / sum(b) for a, b in zip(samples, reference))


def verdict(name: str, ratio: float | None, at_target_shapes: bool) -> str:
    limit = TARGETS[name]
    if ratio is None:
        return "not measured"
    result = "PASS" if ratio <= limit else "MISS"
    return result if at_target_shapes else f"{result} (indicative: not the target shapes)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_agents",
                                     description=tools.bench_agents.__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", choices=("tiny", "small", "base", "large"),
                        help="MAE size (default tiny; base = the paper's ViT-B, N = 1568, D = 768)")
    parser.add_argument("--batch", type=int, default=None,
                        help="clip-copies per MAE step (default: 8 for tiny, 1 for larger models)")
    parser.add_argument("--mask-ratio", type=float, default=TARGET_MASK_RATIO, help="masked fraction (default 0.95)")
    parser.add_argument("--num-frames", type=int, default=16, help="frames per clip (default 16)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="no bf16 autocast of the MAE on CUDA (train.amp=false); CPU never uses it")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default: 10 tiny, 3 larger)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed rounds first (default: 2 tiny, 1 larger)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's)")
    parser.add_argument("--sampler-dim", type=int, default=None,
                        help="width of the narrow TATS row (default D/4 as a multiple of 12, at least 48)")
    parser.add_argument("--group-size", type=int, default=4, help="GRPO's G (default 4; at most the batch)")
    parser.add_argument("--rows", nargs="+", default=None,
                        help="measure only rows whose label contains one of these words (random is always kept)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=None,
                        help="what to run (default: agents framing, plus data when --videos is given)")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-memory processes")
    parser.add_argument("--videos", nargs="+", default=[], metavar="PATH", help="video files for the data part")
    parser.add_argument("--input-size", type=int, default=224, help="crop side of the data part (default 224)")
    parser.add_argument("--sampling-rate", type=int, default=2, help="frame stride of the data part (default 2)")
    parser.add_argument("--data-repeats", type=int, default=5, help="clips read per file in the data part (5)")
    args = parser.parse_args(argv)
    large = args.model != "tiny"
    args.batch = args.batch or (1 if large else 8)
    args.repeats = args.repeats or (3 if large else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if large else 2)
    if args.rows:
        args.rows = ["random", *args.rows]
    parts = args.parts or ["agents", "framing", *(["data"] if args.videos else [])]
    if "data" in parts and not args.videos:
        parser.error("--parts data needs --videos PATH [PATH ...]")
    if not 0 < args.mask_ratio < 1:
        parser.error(f"--mask-ratio must be in (0, 1), got {args.mask_ratio}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else f"CPU, {args.threads or torch.get_num_threads()} threads")
    at_target = args.model == TARGET_MODEL and abs(args.mask_ratio - TARGET_MASK_RATIO) < 1e-9
    print(f"# tools.bench_agents: {device_name}, torch {torch.__version__}", flush=True)
    if "agents" in parts or "framing" in parts:
        print(f"\n## agents in Algorithm 1 (k = 1): model {args.model}, batch {args.batch}, mask ratio "
              f"{args.mask_ratio}, {args.num_frames} frames, bf16 MAE {'on' if args.amp and device.type == 'cuda' else 'off'}; "
              f"median of {args.repeats} rounds after {args.warmup} warm-up; x random: median of per-round ratios",
              flush=True)
    ratios: dict[str, float | None] = {"time": None, "memory": None, "framing": None}

    if "agents" in parts:
        rows, notes = make_rows(args, model_shape(args)["embed_dim"])
        measured = in_fresh_process(agent_times, args.threads, rows, args)
        print(f"\nN = {measured['num_tokens']} tokens (grid {measured['grid']}), D = {measured['embed_dim']}, "
              f"K = {measured['num_visible']} visible; synthetic clips held in memory")
        memory = {row.label: in_fresh_process(row_peak_memory, args.threads, row, args, rows, env=MEMORY_ENV)
                  if args.memory else None for row in rows}
        reference = measured["times"]["random"]
        base_memory = memory["random"]
        mem_kind = "CUDA max allocated" if device.type == "cuda" else "peak RSS growth"
        print(f"\n| agent | sampler params | collect ms | update ms | ms / MAE step | x random | "
              f"peak MiB ({mem_kind}) | x random |")
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            collect, update, total = median_parts(measured["times"][row.label])
            mib = memory[row.label]
            mem_cells = (f"{mib:.0f} | {mib / base_memory:.2f}" if mib is not None and base_memory
                         else "- | -")
            params = measured["params"][row.label]
            print(f"| {row.label} | {params / 1e6:.2f}M | {ms(collect)} | {ms(update)} | {ms(total)} | "
                  f"{paired_ratio(measured['times'][row.label], reference):.2f} | {mem_cells} |", flush=True)
        for note in notes:
            print(f"\n{note}")
        tats = "TATS (ppo, TA full)"
        if tats in measured["times"]:
            ratios["time"] = paired_ratio(measured["times"][tats], reference)
            if memory[tats] is not None and base_memory:
                ratios["memory"] = memory[tats] / base_memory

    if "framing" in parts:
        times = in_fresh_process(framing_times, args.threads, args)
        framework, plain = median_parts(times["framework"]), median_parts(times["plain"])
        ratios["framing"] = paired_ratio(times["framework"], times["plain"])
        print("\n## framing overhead: the TATS cycle through env + Collector + buffer + agent.update, "
              "against the plain loop, its same calls without the framework (stepped alternately)")
        print("| path | collect ms | update ms | cycle ms | x plain |")
        print("|---|---|---|---|---|")
        for name, key, parts_ in (("env + Collector + buffer + agent.update", "framework", framework),
                                  ("plain loop (the reference)", "plain", plain)):
            print(f"| {name} | {ms(parts_[0])} | {ms(parts_[1])} | {ms(parts_[2])} | "
                  f"{paired_ratio(times[key], times['plain']):.3f} |")

    if "agents" in parts or "framing" in parts:
        where = "the target shapes" if at_target else (
            f"not the target shapes (model {args.model}, mask {args.mask_ratio}; targets are for "
            f"{TARGET_MODEL} at {TARGET_MASK_RATIO})")
        print(f"\n## targets ({where}; {device_name})")
        print("| target | measured | limit | result |")
        print("|---|---|---|---|")
        names = {"time": "TATS time per MAE step / random", "memory": "TATS peak memory / random",
                 "framing": "framing overhead (framework / plain loop)"}
        for key, name in names.items():
            ratio = ratios[key]
            measured_text = f"{ratio:.3f}x" if ratio is not None else "-"
            print(f"| {name} | {measured_text} | <= {TARGETS[key]:.2f}x | {verdict(key, ratio, at_target)} |")

    if "data" in parts:
        result = in_fresh_process(video_throughput, 1, args.videos, args)
        print(f"\n## data throughput: one worker (1 thread, decord 1 thread), {args.num_frames} frames at stride "
              f"{args.sampling_rate}, multi-scale crop + flip to {args.input_size} px, median of {args.data_repeats}")
        print("| video | frame size | decode ms | augment ms | clips / s |")
        print("|---|---|---|---|---|")
        for entry in result["files"]:
            name = os.path.basename(entry["path"])
            if "skipped" in entry:
                print(f"| {name} | skipped: {entry['skipped'].split(' (')[0]} | - | - | - |")
            else:
                print(f"| {name} | {entry['size']} | {ms(entry['decode'])} | {ms(entry['augment'])} | "
                      f"{1 / entry['total']:.1f} |")
        dataset = result["dataset"]
        if "error" in dataset:
            print(f"\nVideoListDataset: {dataset['error']}")
        else:
            print(f"\nVideoListDataset over the {len(args.videos)} files, {args.data_repeats} passes: "
                  f"{dataset['clips'] / dataset['seconds']:.1f} clips/s per worker "
                  f"({dataset['clips']} clips in {dataset['seconds']:.1f} s; {dataset['skipped']} unreadable "
                  f"entries replaced by the next readable video)")
        for message in dataset.get("warnings", []):
            print(f"- warning: {message}")
