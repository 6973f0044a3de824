"""A policy's score on a frozen MAE: the loss under its masks, between random masks and the greedy oracle.

    score = 100 * (L_random - L_policy) / (L_random - L_greedy)          (0 = random masking, 100 = the oracle)

All losses are the frozen MAE's mean L_R (Eq. 6) over the same held-out clips: the built-in
``test`` split (disjoint from every training clip) for ``data=synthetic``, the first clips of a
list or folder (decoded deterministically, as for evaluation) otherwise. The references are
computed once per MAE, clip set and K and cached as JSON under :data:`CACHE_DIR` (the greedy
oracle costs about K * N forward passes per clip).

A policy is scored twice: its masks *sampled* (the K-of-N Plackett-Luce draw it trains with,
from a fixed seed, so the score does not move the training run's random streams) and *top-K*
(the K most probable tokens of p, deterministic). The same policy is scored at other budgets by
drawing another K from the same logits.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from agents.distributions import PlackettLuce
from benchmark.references import (best_of_m_masks, clip_losses, greedy_oracle, motion_masks, normalised_score,
                                  random_masks, tube_masks)
from envs.mae_env import motion_enrichment
from mae import PretrainVideoMAE, indices_to_mask, num_visible

BENCHMARK_CLIPS = 64
"""Held-out clips every score is measured on."""
CLIP_SEED = 0
"""Seed of the held-out clips (the built-in data's ``test`` split) and of the random references."""
EVAL_RATIOS = (0.75, 0.9, 0.95)
"""Mask ratios a trained policy is also scored at."""
BEST_OF_M = 64
CACHE_DIR = Path("runs/benchmark/references")
"""Where references are cached when no MAE checkpoint names a place (see :func:`reference_cache`)."""


def reference_cache(mae_checkpoint: str | Path) -> Path:
    """Where the references of an MAE checkpoint are cached: in a folder beside it."""
    return Path(mae_checkpoint).parent / "benchmark-references"


# ---- the held-out clips
def heldout_clips(model: PretrainVideoMAE, data_cfg: Any, *, num_clips: int = BENCHMARK_CLIPS,
                  seed: int = CLIP_SEED) -> dict[str, torch.Tensor | None]:
    """``video (B, 3, T, H, W)`` and, for the built-in data, ``motion (B, N)`` (else None), on the CPU."""
    if data_cfg.name == "synthetic":
        from envs.heldout import heldout_batch

        batch = heldout_batch(model, data_cfg, 0.5, num_clips=num_clips, seed=seed)  # its masks are not used
        return {"video": batch["video"], "motion": batch["motion"]}
    from data import build_dataset

    dataset = build_dataset(data_cfg.name, train_list=data_cfg.train_list, root=data_cfg.root,
                            num_frames=model.num_frames, sampling_rate=data_cfg.sampling_rate,
                            input_size=model.img_size, patch_size=model.patch_size,
                            tubelet_size=model.tubelet_size, train=False, seed=seed, reader=data_cfg.reader)
    videos, seen = [], set()
    for index in range(len(dataset)):
        if len(videos) == num_clips:
            break
        item = dataset[index]
        if item["index"] in seen:  # an unreadable video was replaced by one already taken
            continue
        seen.add(item["index"])
        videos.append(item["video"])
    if not videos:
        raise ValueError(f"no readable video in data={data_cfg.name}")
    return {"video": torch.stack(videos), "motion": None}


# ---- the references, cached
def fingerprint(*tensors: Iterable[torch.Tensor] | torch.Tensor) -> str:
    """A short hash of tensors' values: the same MAE and clips give the same cache entry."""
    digest = hashlib.sha1()
    for group in tensors:
        for tensor in ([group] if torch.is_tensor(group) else group):
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def reference_losses(model: PretrainVideoMAE, video: torch.Tensor, k: int, *,
                     names: tuple[str, ...] = ("random", "greedy"), motion: torch.Tensor | None = None,
                     seed: int = CLIP_SEED, m: int = BEST_OF_M, cache_dir: Path | None = CACHE_DIR,
                     progress: bool = True) -> dict[str, dict[str, Any]]:
    """Per reference: its per-clip losses, its wall seconds and, on the built-in data, its motion enrichment.

    ``names`` from :data:`benchmark.references.REFERENCES`; a reference already in the cache is read, not
    computed. The model is put in eval mode and back.
    """
    was_training = model.training
    model.eval()
    cache = None
    if cache_dir is not None:
        key = f"{fingerprint(model.state_dict().values())}-{fingerprint(video)}-k{k}-m{m}-seed{seed}"
        cache = Path(cache_dir) / f"{key}.json"
    stored = json.loads(cache.read_text()) if cache is not None and cache.is_file() else {}
    computed = False
    for name in names:
        if name in stored:
            continue
        generator = torch.Generator().manual_seed(seed)
        tic = time.perf_counter()
        if name == "random":
            visible = random_masks(model, video, k, generator=generator)
        elif name == "tube":
            visible = tube_masks(model, video, k, generator=generator)
        elif name == "motion":
            visible = motion_masks(model, video, k)
        elif name == "best_of_m":
            visible, _ = best_of_m_masks(model, video, k, m=m, generator=generator)
        elif name == "greedy":
            order, _ = greedy_oracle(model, video, k, progress=progress)
            visible = indices_to_mask(order, model.num_tokens)
        else:
            raise ValueError(f"unknown reference {name!r}")
        losses = clip_losses(model, video, visible)
        stored[name] = {"losses": losses.tolist(), "wall_s": time.perf_counter() - tic}
        if motion is not None:
            stored[name]["motion_enrichment"] = motion_enrichment(visible.cpu(), motion.cpu())[0]
        computed = True
    if cache is not None and computed:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            temporary = cache.with_suffix(".tmp")
            temporary.write_text(json.dumps(stored))
            temporary.replace(cache)
        except OSError as error:  # a read-only folder: computed again next time, nothing lost
            print(f"warning: could not cache the references in {cache.parent} ({error})", file=sys.stderr)
    model.train(was_training)
    return {name: stored[name] for name in names}


# ---- a policy's masks
@torch.no_grad()
def policy_masks(policy: Any, model: PretrainVideoMAE, video: torch.Tensor, k: int, *, sample: bool,
                 seed: int = CLIP_SEED, chunk: int = 64) -> torch.Tensor:
    """The policy's K visible tokens per clip, ``(B, N)`` bool: drawn from pi (``sample``, from ``seed``,
    without touching the caller's random streams) or the top K of p."""
    masks = []
    with torch.random.fork_rng(devices=[video.device] if video.device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, video.shape[0], chunk):
            tokens = model.tokenize(video[start:start + chunk]).float()
            logits, _ = policy.actor(tokens, state=None, info=None)
            dist = PlackettLuce(logits.float(), k=k, temperature=float(getattr(policy, "temperature", 1.0)))
            masks.append(indices_to_mask(dist.sample() if sample else dist.mode, model.num_tokens))
    return torch.cat(masks)


class PolicyEvaluator:
    """A policy's scores on fixed held-out clips of a frozen MAE at one K.

    :param model: the frozen MAE (on the device the policy runs on).
    :param clips: :func:`heldout_clips`' output.
    :param mask_ratio: rho; K = round(N * (1 - rho)).
    """

    def __init__(self, model: PretrainVideoMAE, clips: dict[str, torch.Tensor | None], mask_ratio: float, *,
                 cache_dir: Path | None = CACHE_DIR, progress: bool = True) -> None:
        device = next(model.parameters()).device
        self.model, self.mask_ratio = model, mask_ratio
        self.video = clips["video"].to(device)
        self.motion = clips["motion"]
        self.k = num_visible(model.num_tokens, mask_ratio)
        refs = reference_losses(model, self.video, self.k, names=("random", "greedy"), motion=self.motion,
                                cache_dir=cache_dir, progress=progress)
        self.loss_random = _mean(refs["random"]["losses"])
        self.loss_oracle = _mean(refs["greedy"]["losses"])

    def evaluate(self, policy: Any) -> dict[str, float]:
        """``loss``/``score`` (sampled masks), ``loss_top_k``/``score_top_k``, the references, and on the
        built-in data ``motion_enrichment`` of the sampled masks."""
        was_training = self.model.training
        self.model.eval()
        out: dict[str, float] = {"loss_random": self.loss_random, "loss_oracle": self.loss_oracle}
        for suffix, sample in (("", True), ("_top_k", False)):
            visible = policy_masks(policy, self.model, self.video, self.k, sample=sample)
            loss = _mean(clip_losses(self.model, self.video, visible).tolist())
            out[f"loss{suffix}"] = loss
            out[f"score{suffix}"] = normalised_score(loss, self.loss_random, self.loss_oracle)
            if self.motion is not None and sample:
                out["motion_enrichment"] = motion_enrichment(visible.cpu(), self.motion.cpu())[0]
        self.model.train(was_training)
        return out

    def scalars(self, policy: Any) -> dict[str, float]:
        """:meth:`evaluate` keyed ``eval/...`` for TensorBoard."""
        return {f"eval/{key}": value for key, value in self.evaluate(policy).items()}


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


# ---- a finished run
def load_policy(run_dir: str | Path, *, device: torch.device | str = "cpu") -> tuple[Any, PretrainVideoMAE, Any]:
    """The trained policy of a ``train_joint.py`` run, its MAE and its config, from ``checkpoint-latest.pt``."""
    from types import SimpleNamespace

    from agents.registry import build_agent
    from envs.spaces import token_spaces
    from mae.registry import create_model_from_config
    from runtime import checkpoint

    path = Path(run_dir) / checkpoint.LATEST
    if not path.is_file():
        raise FileNotFoundError(f"no {checkpoint.LATEST} in {run_dir}: not a finished train_joint.py run")
    state = checkpoint.load(path, map_location=device)
    cfg = OmegaConf.create(state["config"])
    model = create_model_from_config(cfg.model, num_frames=cfg.data.num_frames)
    model.load_state_dict(state["mae"])
    model.to(device).eval()
    k = num_visible(model.num_tokens, cfg.mask_ratio)
    observation_space, action_space = token_spaces(model.num_tokens, k, model.embed_dim, torch.device(device))
    env_like = SimpleNamespace(num_tokens=model.num_tokens, num_visible=k, single_observation_space=observation_space,
                               grid=model.grid, single_action_space=action_space,
                               group_size=int(cfg.agent.get("group_size", 1)), mask_ratio=cfg.mask_ratio)
    agent = build_agent(cfg.agent.name, env=env_like, config=OmegaConf.to_container(cfg.agent, resolve=True),
                        device=device)
    agent.load_state_dict(state["agent"])
    return agent.policy, model, cfg


def evaluate_run(run_dir: str | Path, *, ratios: Iterable[float] = EVAL_RATIOS, data_cfg: Any = None,
                 num_clips: int = BENCHMARK_CLIPS, cache_dir: Path | None = CACHE_DIR,
                 progress: bool = True) -> dict[str, Any]:
    """A finished run's policy at its own mask ratio and at ``ratios``, on the run's data or ``data_cfg``."""
    policy, model, cfg = load_policy(run_dir)
    clips = heldout_clips(model, data_cfg if data_cfg is not None else cfg.data, num_clips=num_clips)
    rows = {}
    for ratio in sorted({float(cfg.mask_ratio), *map(float, ratios)}):
        evaluator = PolicyEvaluator(model, clips, ratio, cache_dir=cache_dir, progress=progress)
        rows[f"{ratio:g}"] = evaluator.evaluate(policy)
    return {"run": str(run_dir), "agent": cfg.agent.name, "trained_mask_ratio": float(cfg.mask_ratio),
            "seed": int(cfg.seed), "ratios": rows}
