"""A fixed held-out batch of built-in clips with fixed random masks: what every MAE is scored on.

The same clips (the ``test`` split) and the same masks for every run of a given seed and mask
ratio, so held-out losses of different runs and agents compare directly, and against the
trivial predictors of :mod:`mae.baselines` on the very same masked tokens.
"""

from __future__ import annotations

import torch

from data.synthetic import SyntheticMotionVideos, repeat_first_frame, synthetic_style
from mae import PretrainVideoMAE, random_mask


def heldout_batch(model: PretrainVideoMAE, data_config, mask_ratio: float, *, num_clips: int = 64,
                  seed: int = 0, static: bool = False) -> dict[str, torch.Tensor]:
    """Built-in ``test`` clips shaped for ``model``, in the run's style (``data_config``).

    ``static=True`` repeats each clip's first frame (nothing moves: the copy predictor is exact
    wherever a position is visible at some time step). Returns ``video (B, 3, T, H, W)``,
    ``visible (B, N)`` (random masks from ``seed``), ``motion (B, N)`` and ``label (B,)``.
    """
    clips = SyntheticMotionVideos(num_clips, num_frames=model.num_frames, input_size=model.img_size,
                                  patch_size=model.patch_size, tubelet_size=model.tubelet_size, seed=seed,
                                  split="test", **synthetic_style(data_config))
    items = [clips[i] for i in range(num_clips)]
    video = torch.stack([item["video"] for item in items])
    motion = torch.stack([item["motion"] for item in items])
    if static:
        video = repeat_first_frame(video)
        motion = torch.zeros_like(motion)
    visible = random_mask(num_clips, model.num_tokens, mask_ratio, generator=torch.Generator().manual_seed(seed))
    return {"video": video, "visible": visible, "motion": motion,
            "label": torch.tensor([item["label"] for item in items])}
