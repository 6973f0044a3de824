"""The testbed's MAE learns: a few hundred steps on static built-in clips beat the clip-mean predictor."""

import pytest
import torch
from timm.optim import create_optimizer_v2

import mae
from data.synthetic import SyntheticMotionVideos
from envs.heldout import heldout_batch
from mae.baselines import heldout_losses
from tools.testbed import static_batch


@pytest.mark.slow
def test_micro_mae_beats_the_clip_mean_on_static_clips():
    torch.manual_seed(0)
    model = mae.create_model("micro", num_frames=4, norm_target=False)
    style = {"synthetic_background": "smooth", "synthetic_objects": "solid"}
    held = heldout_batch(model, style, 0.75, num_clips=32, static=True)
    train = SyntheticMotionVideos(10**9, num_frames=4, input_size=32, patch_size=8, seed=1, background="smooth",
                                  objects="solid")
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(0)
    before = heldout_losses(model, held["video"], held["visible"])
    for step in range(300):
        visible = mae.random_mask(16, model.num_tokens, 0.75, generator=generator)
        loss = model.loss(static_batch(train, step * 16, 16), visible).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = heldout_losses(model, held["video"], held["visible"])
    assert before["mae"] > before["zeros"] / 2  # untrained: nowhere near the trivial predictors
    assert after["mae"] < 0.9 * after["mean_visible"], after  # learned to use the visible tokens (0.025 vs 0.029)
