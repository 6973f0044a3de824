"""Teacher selections for imitation pre-training: the benchmark's greedy oracle and motion heuristic.

    python -m benchmark teacher --teacher greedy --clips 128 --out runs/benchmark/teachers/greedy.pt
    python -m benchmark teacher --teacher motion --clips 128 data=list data.train_list=videos.csv

A teacher's selection of a clip is an ordered K-subset, the most useful token first: the greedy
oracle's forward-selection order on the frozen MAE (its "gazing sequence"), or the motion heuristic's
tokens by decreasing temporal pixel difference. They are computed on *training* clips (the data's
``train`` split, never the benchmark's held-out ``test`` clips), and stored with the clips themselves:

    {"video": (B, 3, T, H, W) float32, "order": (B, K) int64, "teacher", "mask_ratio", "k",
     "mae_checkpoint", "mae_fingerprint", "wall_s", "data": the data config}

``train_joint.py train.imitate=FILE`` trains a sampler's actor on them (agents/imitation.py) before
its RL steps; a smaller K than the file's uses each order's first K tokens.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from benchmark.evaluate import fingerprint
from benchmark.references import greedy_oracle, motion_scores
from mae import PretrainVideoMAE, num_visible

TEACHERS = ("greedy", "motion")


@torch.no_grad()
def teacher_order(model: PretrainVideoMAE, video: torch.Tensor, k: int, teacher: str) -> torch.Tensor:
    """The teacher's ordered K tokens per clip, ``(B, K)`` int64, the most useful first."""
    if teacher == "greedy":
        order, _ = greedy_oracle(model, video, k)
        return order
    if teacher == "motion":
        return motion_scores(model, video).topk(k, dim=1, sorted=True).indices
    raise ValueError(f"unknown teacher {teacher!r}; choose one of {TEACHERS}")


def training_clips(model: PretrainVideoMAE, data_cfg: Any, num_clips: int, seed: int) -> torch.Tensor:
    """The first ``num_clips`` clips of the data's training split, ``(B, 3, T, H, W)`` on the CPU."""
    from data import build_dataset

    extra = {key: value for key, value in data_cfg.items() if key.startswith("synthetic_")}
    if data_cfg.name == "synthetic":
        extra["synthetic_clips"] = max(int(extra.get("synthetic_clips", num_clips)), num_clips)
    dataset = build_dataset(data_cfg.name, train_list=data_cfg.get("train_list"), root=data_cfg.get("root"),
                            num_frames=model.num_frames, sampling_rate=data_cfg.sampling_rate,
                            input_size=model.img_size, patch_size=model.patch_size, tubelet_size=model.tubelet_size,
                            train=True, seed=seed, reader=data_cfg.get("reader", "auto"), **extra)
    videos = [dataset[index]["video"] for index in range(min(num_clips, len(dataset)))]
    if not videos:
        raise ValueError(f"no training clip in data={data_cfg.name}")
    return torch.stack(videos)


def make_selections(mae_checkpoint: Path, out: Path, *, teacher: str, num_clips: int, mask_ratio: float,
                    seed: int = 0, data_cfg: Any = None, chunk: int = 16) -> dict[str, Any]:
    """Compute a teacher's selections on training clips with the MAE of ``mae_checkpoint``; write ``out``."""
    from mae.checkpoint import load_mae_weights
    from mae.registry import create_model_from_config
    from runtime import checkpoint

    cfg = OmegaConf.create(checkpoint.load(mae_checkpoint, mmap=True)["config"])
    model = create_model_from_config(cfg.model, num_frames=cfg.data.num_frames)
    load_mae_weights(model, str(mae_checkpoint))
    model.eval()
    data_cfg = data_cfg if data_cfg is not None else cfg.data
    video = training_clips(model, data_cfg, num_clips, seed)
    k = num_visible(model.num_tokens, mask_ratio)
    tic = time.perf_counter()
    orders = []
    with tqdm(total=video.shape[0], desc=f"{teacher} teacher, K={k}", unit="clip", dynamic_ncols=True) as bar:
        for start in range(0, video.shape[0], chunk):
            orders.append(teacher_order(model, video[start:start + chunk], k, teacher))
            bar.update(min(chunk, video.shape[0] - start))
    result = {"video": video, "order": torch.cat(orders), "teacher": teacher, "mask_ratio": float(mask_ratio),
              "k": k, "mae_checkpoint": str(mae_checkpoint), "mae_fingerprint": fingerprint(model.state_dict().values()),
              "wall_s": time.perf_counter() - tic, "seed": seed,
              "data": OmegaConf.to_container(data_cfg, resolve=True)}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result, out)
    return result


def load_selections(path: str | Path, k: int) -> dict[str, Any]:
    """A selections file with each order cut to its first ``k`` tokens (an error if it has fewer)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    if k > state["order"].shape[1]:
        raise ValueError(f"{path}: the teacher chose {state['order'].shape[1]} tokens per clip; this run needs "
                         f"K={k} (compute the selections at a lower mask ratio)")
    state["order"] = state["order"][:, :k]
    return state
