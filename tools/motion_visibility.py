"""How much more often than chance a pretrained sampler keeps moving-object tokens visible.

The built-in data knows, per token, whether a moving object covers it
(``SyntheticMotionVideos`` item ``motion``). For a ``train_joint.py`` checkpoint this draws
the agent's visible sets on held-out built-in clips and reports:

    visible_enrichment  P(visible | moving) / P(visible) = mean_clips[(|V & M| / |M|) / (K / N)]
    prob_enrichment     mean_clips[p(M) / (|M| / N)]: single-draw probability mass on moving tokens
                        over their share of tokens (1 for a uniform policy)

1.0 is chance (random masking); above 1 the policy favours motion tokens, as the paper
intends; below 1 it avoids them.

    python -m tools.motion_visibility runs/cpu-ppo/checkpoint-latest.pt [more.pt ...] --clips 128
"""

from __future__ import annotations

import argparse

import torch

from data import SyntheticMotionVideos
from data.synthetic import synthetic_style
from downstream.visualise import load_pretrained, policy_mask
from envs.mae_env import motion_enrichment


@torch.no_grad()
def evaluate_checkpoint(path: str, *, num_clips: int = 128, seed: int = 0) -> dict[str, float]:
    """Enrichment of one checkpoint's masks; ``seed`` fixes the sampled visible sets (global RNG restored)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _evaluate(path, num_clips)


def _evaluate(path: str, num_clips: int) -> dict[str, float]:
    pretrained = load_pretrained(path)
    model, cfg = pretrained.model, pretrained.config
    clips = SyntheticMotionVideos(num_clips, num_frames=model.num_frames, input_size=model.img_size,
                                  patch_size=model.patch_size, tubelet_size=model.tubelet_size,
                                  seed=cfg["seed"], split="val",
                                  **synthetic_style(cfg["data"]))
    visible, motion, probs = [], [], []
    for index in range(num_clips):
        item = clips[index]
        p, v = policy_mask(pretrained, item["video"][None])
        visible.append(v[0].cpu())
        probs.append(p[0].float().cpu())
        motion.append(item["motion"])
    enrich_visible, enrich_prob = motion_enrichment(torch.stack(visible), torch.stack(motion), torch.stack(probs))
    return {"agent": cfg["agent"]["name"], "objective": cfg["agent"].get("objective", "-"),
            "visible_enrichment": enrich_visible, "prob_enrichment": enrich_prob, "clips": num_clips}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="train_joint.py checkpoints (built-in data)")
    parser.add_argument("--clips", type=int, default=128, help="held-out built-in clips per checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled visible sets")
    args = parser.parse_args(argv)
    print("| checkpoint | agent | objective | visible enrichment | prob enrichment |")
    print("| --- | --- | --- | --- | --- |")
    for path in args.checkpoints:
        row = evaluate_checkpoint(path, num_clips=args.clips, seed=args.seed)
        print(f"| {path} | {row['agent']} | {row['objective']} | {row['visible_enrichment']:.3f} | "
              f"{row['prob_enrichment']:.3f} |")


if __name__ == "__main__":
    from runtime.errors import run_tool

    run_tool(main)
