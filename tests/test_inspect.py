"""Rollout dumps and the inspector: HDF5 round trip, h5py layout, summary numbers, PNG."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch
from tianshou.data import Batch, ReplayBuffer, VectorReplayBuffer

from agents import inspect as inspector
from agents.buffers import dump_hdf5, read_rollouts

GRID = (2, 1, 3)  # T', H', W': N = 6
N, K = 6, 2
REW = np.array([0.5, 1.5, 1.0, 3.0])
ACT = np.array([[0, 3], [0, 5], [3, 1], [0, 2]])
PROBS = np.array([[0.5, 0.3, 0.1, 0.05, 0.05, 0.0],  # half the mass: 1 token
                  [1 / 6] * 6,  # uniform: 3 tokens
                  [0.2, 0.2, 0.2, 0.2, 0.1, 0.1],  # 3 tokens
                  [0.45, 0.04, 0.5, 0.01, 0.0, 0.0]])  # 1 token
ADV = np.array([0.1, -0.2, np.nan, 0.4])  # one episode the update never saw


MOTION = np.array([[1, 1, 0, 0, 0, 0]] * 4, dtype=bool)  # tokens 0 and 1 move in every clip


def filled_buffer(motion: bool = False) -> VectorReplayBuffer:
    buffer = VectorReplayBuffer(8, 2, ignore_obs_next=True)  # two sub-buffers: dumped flat
    for step in range(2):
        rows = slice(2 * step, 2 * step + 2)
        visible = torch.zeros(2, N, dtype=torch.bool).scatter_(1, torch.as_tensor(ACT[rows]), True)
        probs = torch.tensor(PROBS[rows], dtype=torch.float32)
        labels = {"motion": MOTION[rows]} if motion else {}
        buffer.add(Batch(
            obs=torch.randn(2, N, 4), act=ACT[rows], rew=REW[rows], terminated=np.ones(2, bool),
            truncated=np.zeros(2, bool),
            info=Batch(visible=visible, token_error=torch.rand(2, N) * ~visible, group=np.arange(2), **labels),
            policy=Batch(probs=probs, adv=torch.tensor(ADV[rows], dtype=torch.float32),
                         log_prob=torch.tensor([-3.0, -2.0]) - step,
                         entropy=-(probs * probs.clamp_min(1e-12).log()).sum(1)),
        ), buffer_ids=[0, 1])
    return buffer


@pytest.mark.filterwarnings("ignore:Creating a tensor from a list")  # inside Tianshou's loader
def test_dump_round_trips_through_tianshou_and_h5py(tmp_path):
    buffer = filled_buffer()
    path = dump_hdf5(buffer, tmp_path / "sub" / "roll.h5", metadata={"grid": GRID, "num_tokens": N,
                                                                      "agent": "ppo", "skip": None})
    loaded = ReplayBuffer.load_hdf5(str(path))
    assert type(loaded) is ReplayBuffer and len(loaded) == 4
    original, back = buffer[:], loaded[:]
    torch.testing.assert_close(back.obs, original.obs)
    np.testing.assert_array_equal(back.act, original.act)
    np.testing.assert_allclose(back.rew, original.rew)
    torch.testing.assert_close(back.policy.probs, original.policy.probs)
    assert torch.equal(back.info.visible, original.info.visible)
    assert loaded.metadata["agent"] == "ppo" and list(loaded.metadata["grid"]) == list(GRID)
    with h5py.File(path) as f:  # one flat copy, readable without Tianshou
        assert f["_meta/obs"].shape == (4, N, 4) and f["_meta/policy/probs"].shape == (4, N)
        assert f["_meta/info/visible"].dtype == bool and "skip" not in f["metadata"].attrs
    arrays, metadata = read_rollouts(path)
    np.testing.assert_allclose(np.sort(arrays["rew"]), np.sort(REW))
    assert metadata["grid"] == list(GRID)


@pytest.mark.filterwarnings("ignore:Creating a tensor from a list")  # inside Tianshou's loader
def test_dump_without_observations_loads(tmp_path):
    light = dump_hdf5(filled_buffer(), tmp_path / "light.h5", include_obs=False)
    with h5py.File(light) as f:
        assert f["_meta/obs"].shape == (4,) and not f["metadata"].attrs["include_obs"]
    assert len(ReplayBuffer.load_hdf5(str(light))) == 4
    with pytest.raises(ValueError, match="empty"):
        dump_hdf5(VectorReplayBuffer(4, 2), tmp_path / "empty.h5")


def test_tokens_for_half_mass_by_hand():
    np.testing.assert_array_equal(inspector.tokens_for_half_mass(PROBS), [1, 3, 3, 1])


def test_summary_numbers_by_hand(tmp_path):
    path = dump_hdf5(filled_buffer(), tmp_path / "roll.h5", metadata={"grid": GRID, "num_tokens": N,
                                                                      "num_visible": K, "objective": "paper"})
    summary = inspector.summarize(*read_rollouts(path))
    assert summary["episodes"] == 4 and summary["objective"] == "paper"
    assert summary["reward"] == pytest.approx({"mean": 1.5, "std": REW.std(), "min": 0.5, "max": 3.0})
    finite = ADV[np.isfinite(ADV)]
    assert summary["advantage"] == pytest.approx({"mean": finite.mean(), "std": finite.std(),
                                                  "min": -0.2, "max": 0.4}, rel=1e-6)
    assert summary["log_prob"]["min"] == -4.0 and summary["log_prob"]["max"] == -2.0
    uniform = summary["uniform_policy"]
    assert uniform["log_prob"] == pytest.approx(-math.log(6) - math.log(5))
    assert uniform["tokens_for_half_mass"] == 3 and uniform["visible_frequency"] == pytest.approx(K / N)
    half = summary["concentration"]["tokens_for_half_mass"]
    assert half["mean"] == 2.0 and half["min"] == 1 and half["max"] == 3
    assert summary["concentration"]["max_prob"]["max"] == pytest.approx(0.5)
    # token 0 is visible in 3 of 4 episodes, token 4 never
    frequency = inspector.visible_frequency(read_rollouts(path)[0], N)
    np.testing.assert_allclose(frequency, [0.75, 0.25, 0.25, 0.5, 0.0, 0.25])
    assert summary["visible_frequency"]["max"] == 0.75 and summary["visible_frequency"]["min"] == 0.0
    # frame t'=0 holds tokens 0-2: 5 of the 8 visible tokens
    assert summary["visible_share_per_frame"] == pytest.approx({"t'=0": 5 / 8, "t'=1": 3 / 8})


def test_cli_prints_summary_and_writes_png(tmp_path, capsys):
    path = dump_hdf5(filled_buffer(), tmp_path / "roll.h5", metadata={"grid": GRID, "num_tokens": N})
    png = tmp_path / "heat.png"
    assert inspector.main([str(path), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "reward:" in out and "tokens_for_half_mass" in out and "advantage:" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert inspector.main([str(path), "--json"]) == 0
    assert '"episodes": 4' in capsys.readouterr().out
    no_grid = dump_hdf5(filled_buffer(), tmp_path / "nogrid.h5")
    with pytest.raises(ValueError, match="grid"):
        inspector.main([str(no_grid), "--png", str(png)])


def test_motion_enrichment_and_the_buffer_step(tmp_path):
    path = dump_hdf5(filled_buffer(motion=True), tmp_path / "buffer-000016.h5",
                     metadata={"grid": GRID, "num_tokens": N, "num_visible": K, "agent": "ppo", "step": 80})
    summary = inspector.summarize(*read_rollouts(path))
    # visible moving tokens per clip (of 2 moving, K = 2 of N = 6 visible): 1, 1, 1, 1 -> (1/2) / (2/6) = 1.5
    assert summary["motion_enrichment"]["visible"] == pytest.approx(1.5)
    # p on tokens 0-1 over their share 2/6, per clip: 0.8, 1/3, 0.4, 0.49
    assert summary["motion_enrichment"]["p"] == pytest.approx(np.mean([0.8, 1 / 3, 0.4, 0.49]) * 3)
    assert "motion_enrichment" not in inspector.summarize(*read_rollouts(dump_hdf5(filled_buffer(), tmp_path / "x.h5")))
    _, metadata = read_rollouts(path)
    assert inspector.buffer_step(metadata, path) == "MAE step 80, policy update 16"
    assert inspector.buffer_step({}, tmp_path / "buffer-000032.h5") == "policy update 32"
    title = inspector._title(summary, metadata, path)
    assert "buffer-000016.h5 - ppo - MAE step 80, policy update 16" in title and "motion enrichment 1.50" in title


def test_several_buffers_show_how_the_policy_changed(tmp_path, capsys):
    paths = [dump_hdf5(filled_buffer(motion=True), tmp_path / f"buffer-{n:06d}.h5",
                       metadata={"grid": GRID, "num_tokens": N, "num_visible": K, "step": 4 * n, "policy_update": n})
             for n in (2, 4, 6)]
    png = tmp_path / "change.png"
    assert inspector.main([*map(str, paths), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert out.count("== ") == 3 and "(MAE step 8, policy update 2)" in out and "motion_enrichment" in out
    assert "the policy across 3 buffers" in out and png.stat().st_size > 1000
    assert inspector.main([*map(str, paths[:2]), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["at"] for entry in listed] == ["MAE step 8, policy update 2", "MAE step 16, policy update 4"]
    other = dump_hdf5(filled_buffer(), tmp_path / "other.h5", metadata={"grid": [1, 2, 3], "num_tokens": N})
    with pytest.raises(ValueError, match="compare buffers of one run"):
        inspector.main([str(paths[0]), str(other), "--png", str(png)])


def test_a_long_run_draws_eight_evenly_spaced_buffer_rows():
    assert inspector.heatmap_rows(3) == [0, 1, 2]
    assert inspector.heatmap_rows(8) == list(range(8))
    assert inspector.heatmap_rows(28) == [0, 4, 8, 12, 15, 19, 23, 27]  # round(i * 27 / 7)
    assert inspector.heatmap_rows(9) == [0, 1, 2, 3, 5, 6, 7, 8]
