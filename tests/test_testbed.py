"""The CPU testbed's parts: trivial predictors, target and loss options, 3-D positions, data options."""

import json
import math

import numpy as np
import pytest
import torch

import mae
from data.synthetic import SyntheticMotionVideos, synthetic_style
from envs.heldout import heldout_batch
from envs.mae_env import motion_enrichment
from mae.baselines import (copy_prediction, copy_split_losses, heldout_losses, mean_visible_prediction,
                          seen_at_some_time, trivial_losses)
from mae.pos_embed import factorised_sinusoid_table, position_table, sinusoid_table
from mae.target import patchify_target, reconstruction_loss


def test_copy_predictor_is_exact_on_static_clips_where_a_time_step_is_visible():
    grid = (4, 2, 3)
    places = 6
    per_place = torch.randn(2, 1, places, 5)
    target = per_place.expand(2, 4, places, 5).reshape(2, 24, 5)  # static: same target at every time step
    visible = torch.zeros(2, 4, places, dtype=torch.bool)
    visible[:, 2, :4] = True  # places 0-3 visible at t=2; places 4, 5 never
    visible = visible.reshape(2, 24)
    pred = copy_prediction(target, visible, grid).view(2, 4, places, 5)
    torch.testing.assert_close(pred[:, :, :4], target.view(2, 4, places, 5)[:, :, :4])
    mean = per_place[:, 0, :4].mean(dim=1)  # the clip's mean visible target
    torch.testing.assert_close(pred[:, :, 4], mean[:, None].expand(2, 4, 5))


def test_copy_predictor_takes_the_nearest_visible_time_step_earlier_on_ties():
    grid = (5, 1, 1)
    target = torch.arange(5.0).view(1, 5, 1)  # token t has target t
    visible = torch.tensor([[False, True, False, True, False]])
    pred = copy_prediction(target, visible, grid).view(5)
    # t=0 -> 1, t=2 -> 1 (tie between 1 and 3: the earlier), t=4 -> 3; visible tokens copy themselves
    assert pred.tolist() == [1.0, 1.0, 1.0, 3.0, 3.0]


class _OffByOne(torch.nn.Module):
    """A stand-in MAE whose target is its input ``(B, N, C)`` and which predicts every masked token 1 too high."""

    grid = (2, 2, 1)

    def target(self, video):
        return video

    def forward(self, video, visible):
        return (video[~visible] + 1.0).view(video.shape[0], -1, video.shape[-1])


def test_copy_split_losses_by_hand():
    # static: place 0 holds 1, place 1 holds 3, at both time steps; only (t=0, place 0) is visible
    target = torch.tensor([[[1.0], [3.0], [1.0], [3.0]]])
    visible = torch.tensor([[True, False, False, False]])
    assert seen_at_some_time(visible, (2, 2, 1)).tolist() == [[True, False, True, False]]
    split = copy_split_losses(_OffByOne(), target, visible)
    assert split["seen_fraction"] == pytest.approx(1 / 3)  # of the 3 masked tokens, only (t=1, place 0)
    assert split["copy_seen"] == 0.0  # copied exactly from t=0
    assert split["copy_unseen"] == pytest.approx(4.0)  # the clip mean 1 for a 3
    assert split["mae_seen"] == pytest.approx(1.0) and split["mae_unseen"] == pytest.approx(1.0)


def test_mean_visible_and_losses_by_hand():
    target = torch.tensor([[[1.0], [3.0], [10.0], [-2.0]]])
    visible = torch.tensor([[True, True, False, False]])
    assert mean_visible_prediction(target, visible)[0, :, 0].tolist() == [2.0] * 4
    losses = trivial_losses(target, visible, (4, 1, 1))
    assert losses["zeros"].item() == pytest.approx((100 + 4) / 2)
    assert losses["mean_visible"].item() == pytest.approx((64 + 16) / 2)
    assert losses["copy"].item() == pytest.approx((49 + 25) / 2)  # 10 <- 3 (t=1), -2 <- 3 (t=1)
    l1 = trivial_losses(target, visible, (4, 1, 1), loss="l1")
    assert l1["zeros"].item() == pytest.approx(6.0)


def test_unnormalised_target_is_the_pixels_and_l1_loss():
    video = torch.randn(1, 3, 4, 8, 8)
    raw = patchify_target(video, tubelet_size=2, patch_size=4, normalize=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1)
    pixels = video * std + mean
    # token 0 = frames 0-1, rows 0-3, cols 0-3; layout (t p p c)
    torch.testing.assert_close(raw[0, 0].view(2, 4, 4, 3), pixels[0, :, :2, :4, :4].permute(1, 2, 3, 0))
    visible = torch.tensor([[True] + [False] * 7])
    pred = torch.zeros(1, 7, raw.shape[-1])
    out = reconstruction_loss(pred, raw, visible, loss="l1")
    assert out.loss.item() == pytest.approx(raw[0, 1:].abs().mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="loss must be one of"):
        reconstruction_loss(pred, raw, visible, loss="huber")


def test_model_options_reach_the_loss():
    model = mae.create_model("micro", num_frames=4, norm_target=False, loss="l1")
    video = torch.randn(2, 3, 4, 32, 32)
    visible = mae.random_mask(2, model.num_tokens, 0.75, generator=torch.Generator().manual_seed(0))
    out = model.loss(video, visible)
    expected = reconstruction_loss(model(video, visible), patchify_target(video, tubelet_size=2, patch_size=8,
                                                                          normalize=False), visible, loss="l1")
    torch.testing.assert_close(out.loss, expected.loss)
    with pytest.raises(ValueError, match="loss must be one of"):
        mae.create_model("micro", loss="huber")


def test_factorised_table_codes_each_axis_separately():
    grid, dim = (2, 3, 4), 36
    table = factorised_sinusoid_table(grid, dim)[0]
    assert table.shape == (24, 36)
    part = (dim // 6) * 2
    t_code, h_code, w_code = table[:, :part], table[:, part:2 * part], table[:, 2 * part:]
    index = torch.arange(24).view(2, 3, 4)
    # tokens at the same (h, w) share the h and w codes whatever t; the t code depends on t only
    torch.testing.assert_close(h_code[index[0].flatten()], h_code[index[1].flatten()])
    torch.testing.assert_close(w_code[index[0].flatten()], w_code[index[1].flatten()])
    torch.testing.assert_close(t_code[index[1].flatten()], sinusoid_table(2, part)[0, 1].expand(12, part))
    torch.testing.assert_close(position_table("1d", grid, dim), sinusoid_table(24, dim))
    with pytest.raises(ValueError, match="pos_embed"):
        position_table("2d", grid, dim)


def test_micro_uses_the_3d_table_and_videomae_sizes_keep_the_1d_one():
    micro = mae.create_model("micro", num_frames=16)
    assert micro.num_tokens == 128 and micro.grid == (8, 4, 4)
    torch.testing.assert_close(micro.encoder.pos_embed, factorised_sinusoid_table((8, 4, 4), 96))
    tiny = mae.create_model("tiny")
    torch.testing.assert_close(tiny.encoder.pos_embed, sinusoid_table(128, 96))


def test_smooth_background_solid_objects_and_same_scene():
    striped = SyntheticMotionVideos(4, input_size=32, patch_size=8)
    solid = SyntheticMotionVideos(4, input_size=32, patch_size=8, background="smooth", objects="solid")
    for i in range(4):
        a, b = striped[i], solid[i]
        assert a["label"] == b["label"] and torch.equal(a["motion"], b["motion"])
        for obj in solid.scene(i)[1]:
            assert obj.colours[0] == obj.colours[1]
    frame = solid.frames(0)[0].astype(float)
    # smooth: neighbouring pixels of the background differ little
    assert np.abs(np.diff(solid.scene(0)[0].astype(float), axis=0)).max() < 40
    assert frame.shape == (32, 32, 3)
    with pytest.raises(ValueError, match="objects must be one of"):
        SyntheticMotionVideos(2, objects="dotted")


def test_fresh_clips_change_with_the_epoch_only_when_asked():
    fixed = SyntheticMotionVideos(2, input_size=32, patch_size=8)
    fresh = SyntheticMotionVideos(2, input_size=32, patch_size=8, fresh=True)
    first = fresh[0]["video"]
    fixed.set_epoch(1)
    fresh.set_epoch(1)
    assert torch.equal(fixed[0]["video"], SyntheticMotionVideos(2, input_size=32, patch_size=8)[0]["video"])
    assert not torch.equal(fresh[0]["video"], first)
    fresh.set_epoch(0)
    assert torch.equal(fresh[0]["video"], first)


def test_bright_contrast_keeps_the_scene_and_puts_every_object_above_the_background():
    kwargs = dict(input_size=32, patch_size=8, background="smooth", objects="solid")
    plain = SyntheticMotionVideos(6, **kwargs)
    bright = SyntheticMotionVideos(6, contrast="bright", **kwargs)
    for i in range(6):
        a, b = plain[i], bright[i]
        assert a["label"] == b["label"] and torch.equal(a["motion"], b["motion"])
        frames, moving, _ = bright.render(i)
        assert frames[~moving].max() <= 89 < 160 <= frames[moving].min()  # 0.35 * 255 = 89.25
        # the same colours, mapped monotonically: 160 + c * 95 // 255 and floor(0.35 * c)
        objects = [(o.colours, p.colours) for o, p in zip(bright.scene(i)[1], plain.scene(i)[1])]
        for lifted, original in objects:
            assert lifted == tuple(tuple(160 + c * 95 // 255 for c in colour) for colour in original)
        np.testing.assert_array_equal(bright.scene(i)[0], (plain.scene(i)[0] * 0.35).astype(np.uint8))
    with pytest.raises(ValueError, match="contrast must be one of"):
        SyntheticMotionVideos(2, contrast="dark")


def test_synthetic_style_reads_old_and_new_configs():
    assert synthetic_style({}) == {"background": "textured", "objects": "striped", "contrast": "random"}
    assert synthetic_style({"synthetic_background": "smooth", "synthetic_objects": "solid",
                            "synthetic_contrast": "bright"}) == {
        "background": "smooth", "objects": "solid", "contrast": "bright"}


def test_heldout_losses_score_a_perfect_and_a_zero_predictor():
    model = mae.create_model("micro", num_frames=4, norm_target=False)
    batch = heldout_batch(model, {"synthetic_background": "smooth"}, 0.75, num_clips=6, static=True)
    assert not batch["motion"].any()
    assert torch.equal(batch["video"][:, :, 0], batch["video"][:, :, 3])
    channels = model.target(batch["video"]).shape[-1]
    model.forward = lambda clip, vis: model.target(clip)[~vis].reshape(clip.shape[0], -1, channels)
    scores = heldout_losses(model, batch["video"], batch["visible"], chunk=4)
    assert scores["mae"] == 0.0
    assert scores["copy"] < scores["mean_visible"] < scores["zeros"]


def test_motion_enrichment_by_hand():
    motion = torch.tensor([[True, True, False, False], [True, False, False, False], [False] * 4])
    visible = torch.tensor([[True, False, False, False], [True, False, False, True], [True] * 2 + [False] * 2])
    enrich, prob = motion_enrichment(visible, motion, torch.full((3, 4), 0.25))
    # clip 0: (1/2) / (1/4) = 2; clip 1: (1/1) / (2/4) = 2; clip 2 has no moving token: left out
    assert enrich == pytest.approx(2.0) and prob == pytest.approx(1.0)
    assert math.isnan(motion_enrichment(visible[2:], motion[2:])[0])


def test_probe_standard_errors_by_hand():
    from tools.testbed import difference_in_se, standard_error

    assert standard_error(50.0, 100) == pytest.approx(5.0)  # sqrt(50 * 50 / 100) points
    assert difference_in_se(60.0, 50.0, 100) == pytest.approx(10 / math.hypot(math.sqrt(24.0), 5.0))


def test_static_command_smoke_writes_its_curve_and_the_copy_split(tmp_path, capsys):
    from tools.testbed import main

    main(["static", "--minutes", "0.01", "--eval-every", "1000", "--frames", "4", "--decoder-heads", "1",
          "--decoder-width", "48", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "static-seed0-f4-raw-3d-smooth-solid-bright-dh1-dw48.json").read_text())
    assert result["curve"][0]["step"] == 0 and result["curve"][-1]["step"] > 0
    assert 0 < result["split"]["seen_fraction"] < 1 and result["split"]["copy_seen"] == pytest.approx(0, abs=1e-12)
    assert [len(heads) for heads in result["own_position_attention"]] == [1, 1]  # --decoder-heads 1
    assert set(result["linear_code_error"]) == {"48"}  # one head: its width is the decoder's
    assert "visible at another time step" in capsys.readouterr().out


def test_own_position_attention_by_hand_with_uniform_attention():
    from tools.testbed import own_position_attention

    model = mae.create_model("micro", num_frames=6)  # 3 time steps of 16 places: 48 tokens
    for block in model.decoder.blocks:  # zero queries and keys: every attention row is uniform over 48 tokens
        torch.nn.init.zeros_(block.attn.qkv.weight)
    visible = torch.zeros(2, 3, 16, dtype=torch.bool)
    visible[:, 0:2, 0] = True  # place 0 at t = 0, 1: its masked token at t = 2 sees 2 of them
    visible[:, 0, 1] = True  # place 1 at t = 0: its masked tokens at t = 1, 2 see 1 each
    weights = own_position_attention(model, torch.randn(2, 3, 6, 32, 32), visible.view(2, 48))
    expected = (2 + 1 + 1) / 3 / 48  # mean over the three masked tokens whose place is visible elsewhere
    assert [len(heads) for heads in weights] == [2, 2]
    assert all(w == pytest.approx(expected) for heads in weights for w in heads)


def test_linear_code_error_by_hand():
    from tools.testbed import linear_code_error

    # points on a line through (1, 1, 1) plus one orthogonal offset of +-2 on the last axis
    direction = torch.tensor([1.0, 2.0, 0.0]) / math.sqrt(5)
    tokens = torch.stack([1 + t * direction + torch.tensor([0.0, 0.0, s]) for t in (-3.0, -1.0, 1.0, 3.0)
                          for s in (-2.0, 2.0)])
    assert linear_code_error(tokens, 2) == pytest.approx(0.0, abs=1e-12)
    assert linear_code_error(tokens, 1) == pytest.approx(8 * 4 / 24)  # the +-2 offsets: 8 squares of 2 over 24 values
    assert linear_code_error(tokens, 0) == pytest.approx((2 * (9 + 1 + 1 + 9) + 32) / 24)


def test_layers_over_seeds_pairs_each_run_with_its_untrained_encoder(tmp_path, capsys):
    from tools.testbed import main

    # two seeds' finished probes (metrics.json present, so nothing is run) of a 2-block encoder
    top1 = {0: {"untrained": 30.0, "pretrained": 40.0}, 1: {"untrained": 32.0, "pretrained": 38.0}}
    for seed, scores in top1.items():
        run_dir = tmp_path / f"moving-seed{seed}"
        run_dir.mkdir()
        torch.save({"mae": {"encoder.blocks.0.norm1.weight": torch.ones(1),
                            "encoder.blocks.1.norm1.weight": torch.ones(1)}}, run_dir / "checkpoint-latest.pt")
        for layer in (0, 1, 2, -1):
            for name, value in scores.items():
                metrics = run_dir / "layers" / f"{name}-layer{layer}"
                metrics.mkdir(parents=True)
                (metrics / "metrics.json").write_text(json.dumps({"eval/top1": value + layer}))
    main(["layers", "--seeds", "0", "1", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "layers-seed0-1.json").read_text())
    assert [row["layer"] for row in result["summary"]] == [0, 1, 2, -1]
    mean, half = result["summary"][1]["difference"]  # differences 10 and 6
    assert mean == pytest.approx(8.0) and half == pytest.approx(12.706 * math.sqrt(8) / math.sqrt(2), rel=1e-3)  # t, sd
    assert result["summary"][1]["untrained"][0] == pytest.approx(32.0)  # (30 + 1 + 32 + 1) / 2
    assert "| block 1 | 32.0 | 40.0 | +8.0 +- 25.4 |" in capsys.readouterr().out


def test_layers_refuses_a_checkpoint_without_an_encoder(tmp_path):
    from tools.testbed import main

    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"blocks.0.norm1.weight": torch.ones(1)}}, foreign)  # a fine-tuned classifier's
    with pytest.raises(SystemExit, match="^error: .*foreign.pt is not a train_joint.py checkpoint"):
        main(["layers", "--checkpoint", str(foreign), "--out", str(tmp_path)])
