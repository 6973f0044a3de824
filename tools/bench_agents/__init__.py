"""Benchmark the agents in Algorithm 1: time per MAE step and peak memory, against random masking.

Rows (one MAE, batch and mask ratio for all):

| row | agent | actor |
| --- | --- | --- |
| random, tube | the fixed maskers | - |
| AdaMAE | ``reinforce`` (token estimator, AdaMAE's recipe: trained in the MAE's step) | ``mha`` |
| TATS | ``ppo`` | ``trajectory`` (exact Eq. 1-2) |
| TATS Orthoformer | ``ppo`` | ``orthoformer`` |
| TATS narrow | ``ppo`` | ``trajectory`` at ``sampler_dim`` (``--sampler-dim``; default D/4: 192 at base, 48 at tiny) |
| TATS checkpointed | ``ppo`` | ``trajectory`` with ``checkpoint_blocks`` (activations recomputed in the backward) |
| GRPO | ``grpo`` | ``trajectory``, group size G (``--group-size``) |

Every row is built as ``python train_joint.py preset=none agent=<agent> ...`` builds its run: its
config composed from the schema's defaults (the paper's agent values, no CPU-testbed preset) with
the command line's model, batch, mask ratio, frames and bf16 setting, then ``train_joint.py``'s
build functions (MAE, its optimiser and schedule, environment, agent with AdaMAE's recipe wired
into the MAE's step, buffer and Collector). Only the clips differ (below). As ``train_joint.py``,
the benchmark runs Tianshou's numba kernels as plain Python (:mod:`runtime.fast_start`).

Time: one cycle of ``train_joint.py``'s loop at ``train.update_steps_mae = 1`` (k = 1, the
paper's): the Collector takes one environment step under ``no_grad`` (the sampler acts, the
MAE takes one optimisation step inside ``env.step``, the next clips are tokenised), then
``agent.update`` on the buffer, then the buffer is cleared - the time per MAE step with the
policy update amortised. The fixed maskers go through the same Collector, buffer and (empty)
update, as in training. All rows are built in one process around one shared MAE and its
optimiser and stepped in turn (one cycle of each per round), so load from other processes hits
every row alike; the table gives medians of ``--repeats`` rounds after ``--warmup`` rounds (the
collect and update parts each its own median, so they need not add up), and "x random" is the
median over rounds of the row's time over random masking's in the same round. On a CPU shared
with other jobs, ``--threads 1`` avoids the stalls of an oversubscribed OpenMP pool (several-fold
outliers with 2 threads on 2 busy cores).

GRPO: the environment's group mode presents each clip G times. Its row runs at the same number
of clip-copies per MAE step as the others (B / G distinct clips, each G times), so the MAE's work
per step is the same; per distinct clip it costs G times as much.

Peak memory: each row alone, in a fresh process (spawn), over two cycles (the second holds the
AdamW states and a step's activations together), from just before the MAE is built: on CUDA
``torch.cuda.max_memory_allocated`` minus what was allocated before; on CPU the growth of the
peak resident set size (``getrusage``), as ``tools.bench_samplers`` measures it. Both count the
whole training footprint: MAE, sampler and critic weights, gradients and optimiser states,
activations, the rollout buffer. Two precautions make the CPU figure follow the live tensors
(repeatable to a few MiB; without them it moved by +-30 MiB between runs and was dominated by
one-off allocations at tiny size): before the baseline, every row of the table runs two cycles
on a miniature MAE, so lazy imports, kernel caches and thread pools are already there and every
row starts from the same state; and glibc is told to map blocks of 128 KiB and more with mmap
(``MALLOC_MMAP_THRESHOLD_``), so freed tensors leave the resident set instead of staying in
the heap.

Data: a pool of 2 B clips of the built-in synthetic data (``data.SyntheticMotionVideos``),
rendered once before anything is measured and held in memory, served by ``envs.ClipSource``
with no worker processes, so a cycle's data cost is the collation of one batch (a memory copy,
the same in every row); decoding is measured on its own (``--videos``).

Framing overhead (``--parts framing``): the TATS cycle through the environment, the Tianshou
Collector, the buffer and ``agent.update`` against a reference that calls the same pieces
directly (:class:`~tools.bench_agents.framing.PlainLoop`). The reference is built by the same
functions (same MAE, optimisers, actor, critic and initialisation) and shares every line of
maths with the framework's cycle: the clips' batch, the MAE's target and tokens, the policy's
Plackett-Luce distribution and the episode's records (both log-probs, entropy, value,
probabilities), the MAE step (forward, reconstruction loss, the same :class:`envs.MAEOptimizer`
step), then the algorithm's own ``prepare``, ``compute_loss`` and guarded optimiser step (one
step on the whole batch, as the default ``batch_size=None``, ``update_steps_policy=1``). Only
the framework's bookkeeping is left out of it, and that is what the ratio measures: action
checks, ``Batch``/buffer copies, numpy round trips of rewards, per-env info dicts, the
Collector's statistics, Tianshou's update wrapper, writing advantages back. The two are stepped
alternately (each goes first every other round); the ratio is the median over rounds of
framework / reference.

Data throughput (``--videos PATH ...``): clips per second of one DataLoader worker (one
process, one thread, decord with one thread): each file alone through ``data.read_clip`` and
``data.TrainClipTransform`` (decode and augmentation timed apart), then all of them through
``data.VideoListDataset`` (what a worker runs; an unreadable file is skipped with a warning
and replaced by the next readable one).

Targets (the project issue, at the paper's ViT-B shapes, N = 1568, D = 768, mask ratio 0.95):
TATS step time <= 1.25 x random masking, TATS peak memory <= 1.10 x (the paper reports
1.21 x), framing overhead <= 1.05 x; each printed PASS or MISS with the measured ratio.

Usage::

    python -m tools.bench_agents --threads 1                             # tiny, batch 8, CPU
    python -m tools.bench_agents --model base --batch 1 --repeats 5 --threads 1   # ViT-B, mask 0.95
    python -m tools.bench_agents --parts data --videos /work/shared/videos/*
    python -m tools.bench_agents --device cuda --model base --batch 16 --repeats 20
"""

import runtime.fast_start  # noqa: F401, I001 - first, as in train_joint.py: before Tianshou loads numba
