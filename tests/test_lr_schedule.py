"""VideoMAE's learning-rate schedule: values by hand, scaling by total batch / 256, and the
rates each entry point (pretraining, fine-tuning, probing) actually applies at every step."""

import math

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from configs import CONFIG_DIR, ConfigError, register_configs
from configs.downstream_schema import register_downstream_configs
from runtime.lr_schedule import build_schedule, cosine_values, learning_rates


def cosine(i, n, peak=1e-4, floor=1e-6):
    """VideoMAE's utils.cosine_scheduler, cosine part, written out: step i of n after the warm-up."""
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * i / n))


# peak 1e-4, floor 1e-6, 12 steps, 4 of warm-up from 0 (np.linspace(0, peak, 4): both ends included)
HAND_12 = [0.0, 1e-4 / 3, 2e-4 / 3, 1e-4,
           1e-4,                                # cosine(0, 8)
           1e-6 + 49.5e-6 * (1 + 0.9238795325112867),   # cos(pi/8)
           1e-6 + 49.5e-6 * (1 + 0.7071067811865476),   # cos(pi/4)
           1e-6 + 49.5e-6 * (1 + 0.3826834323650898),   # cos(3pi/8)
           1e-6 + 49.5e-6,                              # cos(pi/2) = 0: the middle
           1e-6 + 49.5e-6 * (1 - 0.3826834323650898),
           1e-6 + 49.5e-6 * (1 - 0.7071067811865476),
           1e-6 + 49.5e-6 * (1 - 0.9238795325112867)]   # the last step: 4.768e-6


def compose_cfg(name, *overrides):
    (register_configs if name == "config" else register_downstream_configs)()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def test_cosine_values_are_videomaes_by_hand():
    values = cosine_values(1e-4, 1e-6, total_steps=12, warmup_steps=4)
    assert len(values) == 12
    assert values.tolist() == pytest.approx(HAND_12, rel=1e-12, abs=0)
    assert [cosine(i, 8) for i in range(8)] == pytest.approx(HAND_12[4:], rel=1e-12)
    # a long run ends at the floor: 1000 steps, the last within (peak - floor) pi^2 / (4 n^2) of it
    long = cosine_values(1e-3, 1e-5, total_steps=1000, warmup_steps=100)
    assert long[-1] == pytest.approx(1e-5 + 0.5 * 0.99e-3 * (1 - math.cos(math.pi / 900)), rel=1e-12)
    assert long[-1] - 1e-5 < 0.99e-3 * math.pi**2 / (4 * 900**2)
    assert long[99] == long[100] == 1e-3 and long[0] == 0.0
    # no warm-up: the cosine from step 0
    assert cosine_values(2.0, 0.0, 4).tolist() == pytest.approx([2.0, 1 + math.cos(math.pi / 4), 1.0,
                                                                 1 - math.cos(math.pi / 4)])


def test_base_values_are_scaled_by_total_batch_absolute_ones_are_not():
    train = OmegaConf.create(dict(blr=1.5e-4, lr=None, min_blr=1e-5, min_lr=None, warmup_blr=1e-6, warmup_lr=None))
    rates = learning_rates(train, total_batch=32)  # VideoMAE: lr, min_lr, warmup_lr all x 32 / 256
    assert (rates.peak, rates.floor, rates.warmup_start) == pytest.approx((1.875e-5, 1.25e-6, 1.25e-7), rel=1e-12)
    note = rates.describe(paper_total_batch=256)
    assert "the total batch is 32, not the paper's 256, so the peak lr is 1.875e-05 (the paper's: 0.00015)" in note
    assert "not the paper's" not in learning_rates(train, total_batch=256).describe(paper_total_batch=256)
    assert "blr 0.00015 x 32 / 256" in note
    train.min_lr, train.warmup_lr = 3e-6, 0.0  # absolute: as given, whatever the batch
    rates = learning_rates(train, total_batch=8)
    assert (rates.peak, rates.floor, rates.warmup_start) == pytest.approx((1.5e-4 * 8 / 256, 3e-6, 0.0), rel=1e-12)
    assert rates.sources["floor"] == "absolute"
    # the CPU testbed: absolute peak and floor, as before
    testbed = learning_rates(compose_cfg("config").train, total_batch=16)
    assert (testbed.peak, testbed.floor, testbed.warmup_start) == (1e-3, 1e-5, 0.0)
    # a paper preset on one GPU (batch 32): VideoMAE's base values, all three scaled
    listing = "train.lr=null"  # the presets leave lr unset: blr applies
    paper = learning_rates(compose_cfg("config", "preset=k400_mr90", listing).train, total_batch=32)
    assert (paper.peak, paper.floor) == pytest.approx((1.875e-5, 1.25e-6), rel=1e-12)
    # the schema's default run (batch 8): the floor is below the peak now
    bare = learning_rates(compose_cfg("config", "preset=none").train, total_batch=8)
    assert bare.floor < bare.peak and bare.floor == pytest.approx(1e-5 * 8 / 256)


@pytest.mark.parametrize("values", [dict(min_lr=1e-3), dict(min_blr=1e-3), dict(lr=1e-7)])
def test_a_floor_above_the_peak_is_an_error(values):
    train = OmegaConf.create({**dict(blr=1.5e-4, lr=None, min_blr=1e-5, min_lr=None, warmup_blr=0.0,
                                     warmup_lr=None), **values})
    with pytest.raises(ConfigError, match="floor .* is above the peak"):
        learning_rates(train, total_batch=8)


def test_schedule_applies_each_groups_lr_scale():
    layer = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD([{"params": [layer.weight], "lr_scale": 0.5}, {"params": [layer.bias]}], lr=1.0)
    train = OmegaConf.create(dict(lr=1e-4, min_lr=1e-6, warmup_lr=None, warmup_blr=0.0, warmup_epochs=1))
    schedule = build_schedule(optimizer, train, total_batch=4, total_steps=12, steps_per_epoch=4)
    assert [g["lr"] for g in optimizer.param_groups] == [0.0, 0.0]  # step 0 prepared at construction
    schedule.step_update(5)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([HAND_12[5] * 0.5, HAND_12[5]], rel=1e-12)
    schedule.step_update(99)  # past the end: the last value holds
    assert optimizer.param_groups[1]["lr"] == pytest.approx(HAND_12[-1], rel=1e-12)


@pytest.fixture
def applied_lrs():
    """The lr of the first parameter group at every optimiser step of any optimiser, in order."""
    seen = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append((optimizer, [g["lr"] for g in optimizer.param_groups])))
    yield seen
    handle.remove()


def test_pretraining_steps_at_videomaes_rates(tmp_path, applied_lrs, capsys):
    import train_joint

    # 16 clips, 4 per step: 4 steps an epoch, 3 epochs = 12 steps, 1 epoch of warm-up;
    # base values x 4 / 256: peak 6.4e-3 / 64 = 1e-4, floor 6.4e-5 / 64 = 1e-6
    train_joint.train(compose_cfg(
        "config", "agent=random", "data.synthetic_clips=16", "data.num_workers=0", "train.batch_size=4",
        "train.epochs=3", "train.warmup_epochs=1", "train.eval_every=0", "train.lr=null", "train.min_lr=null",
        "train.blr=6.4e-3", "train.min_blr=6.4e-5", f"output_dir={tmp_path}"))
    lrs = [groups[0] for _, groups in applied_lrs]
    assert lrs == pytest.approx(HAND_12, rel=1e-9, abs=1e-18)
    # the run said at start that its total batch is not the paper's, and the lr it scaled to
    assert "the total batch is 4, not the paper's 256, so the peak lr is 0.0001" in capsys.readouterr().out


def test_finetuning_steps_at_videomaes_rates(tmp_path, applied_lrs):
    from downstream import finetune

    # 16 clips, 2 per step: 8 steps an epoch, 2 epochs = 16 steps, half an epoch (4 steps) of warm-up;
    # base values x 2 / 256: peak 1.28e-2 -> 1e-4, floor 1.28e-4 -> 1e-6, warm-up start 1.28e-5 -> 1e-7
    finetune.train(compose_cfg(
        "finetune", "model.img_size=32", "data.num_frames=4", "data.num_workers=0", "data.synthetic_clips=16",
        "test.synthetic_clips=2", "train.batch_size=2", "train.epochs=2", "train.warmup_epochs=0.5",
        "train.eval_every=0", "train.blr=1.28e-2", "train.min_blr=1.28e-4", "train.warmup_blr=1.28e-5",
        f"output_dir={tmp_path}"))
    head = [max(groups) for _, groups in applied_lrs]  # the head's group has lr_scale 1
    hand = [1e-7 + k * (1e-4 - 1e-7) / 3 for k in range(4)] + [cosine(i, 12) for i in range(12)]
    assert len(head) == 16
    assert head == pytest.approx(hand, rel=1e-9)
    assert head[-1] == pytest.approx(1e-6 + 49.5e-6 * (1 - math.cos(math.pi / 12)), rel=1e-9)  # the last step


def test_linear_probe_steps_at_videomaes_rates(tmp_path, applied_lrs):
    from downstream import linear_probe

    # 16 clips, 4 per step: 4 steps an epoch, 3 epochs, 1 of warm-up; peak 6.4e-3 x 4 / 256 = 1e-4, floor absolute
    linear_probe.train(compose_cfg(
        "linear_probe", "model.img_size=32", "data.num_frames=4", "data.num_workers=0", "data.synthetic_clips=16",
        "test.synthetic_clips=2", "train.batch_size=4", "train.epochs=3", "train.warmup_epochs=1",
        "train.blr=6.4e-3", "train.min_lr=1e-6", f"output_dir={tmp_path}"))
    assert [groups[0] for _, groups in applied_lrs] == pytest.approx(HAND_12, rel=1e-9, abs=1e-18)


def test_pretraining_with_accumulation_scales_by_the_accumulated_batch(tmp_path, applied_lrs):
    import train_joint

    # 4 clips per step, 2 steps per optimiser step: total batch 8, 2 optimiser steps an epoch, 3 epochs = 6,
    # 1 epoch (2 steps) of warm-up; peak 3.2e-3 x 8 / 256 = 1e-4, floor 3.2e-5 x 8 / 256 = 1e-6
    train_joint.train(compose_cfg(
        "config", "agent=random", "data.synthetic_clips=16", "data.num_workers=0", "train.batch_size=4",
        "train.accum_steps=2", "train.epochs=3", "train.warmup_epochs=1", "train.eval_every=0", "train.lr=null",
        "train.min_lr=null", "train.blr=3.2e-3", "train.min_blr=3.2e-5", f"output_dir={tmp_path}"))
    hand = [0.0, 1e-4, cosine(0, 4), cosine(1, 4), cosine(2, 4), cosine(3, 4)]
    assert [groups[0] for _, groups in applied_lrs] == pytest.approx(hand, rel=1e-9, abs=1e-18)
