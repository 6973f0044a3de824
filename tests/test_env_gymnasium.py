"""The environment as Gymnasium sees it: the K-subset and token spaces, the vector info layout
(``DictInfoToList``, ``RecordEpisodeStatistics``), ``render()``, the registered id, seeding."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers.vector import DictInfoToList, RecordEpisodeStatistics

import envs
from envs.render import to_pixels
from envs import KSubset, TensorBox, TianshouVectorEnv


# ---- the spaces

def test_k_subset_samples_are_distinct_valid_and_seeded():
    space = KSubset(8, 3, seed=0)
    assert isinstance(space, gym.spaces.MultiDiscrete) and space.shape == (3,)
    draws = np.stack([space.sample() for _ in range(4000)])
    assert all(len(set(row)) == 3 and space.contains(row) for row in draws)
    counts = np.bincount(draws.ravel(), minlength=8)  # uniform: each index 1500 times on average
    assert counts.min() > 1350 and counts.max() < 1650
    first = np.bincount(draws[:, 0], minlength=8)  # and uniform in each draw position
    assert first.min() > 400 and first.max() < 600
    space.seed(5)
    again = [space.sample() for _ in range(3)]
    space.seed(5)
    assert all(np.array_equal(a, space.sample()) for a in again)


@pytest.mark.parametrize("value, ok", [
    (np.array([0, 7, 3]), True),
    ([1, 2, 3], True),
    (torch.tensor([4, 0, 6]), True),
    (np.array([1, 1, 2]), False),      # a duplicate
    (np.array([0, 8, 2]), False),      # out of range
    (np.array([-1, 2, 3]), False),
    (np.array([0, 1]), False),         # K = 2, not 3
    (np.array([0.0, 1.0, 2.0]), False),
    (torch.tensor([0.0, 1.0, 2.0]), False),
])
def test_k_subset_contains(value, ok):
    assert KSubset(8, 3).contains(value) is ok


def test_k_subset_batches_into_rows_of_distinct_indices():
    batched = batch_space(KSubset(16, 5, seed=1), 4)
    assert isinstance(batched, KSubset) and batched.shape == (4, 5)
    sample = batched.sample()
    assert batched.contains(sample) and all(len(set(row)) == 5 for row in sample)
    sample[2, 1] = sample[2, 0]
    assert not batched.contains(sample)
    with pytest.raises(ValueError, match="k <= n"):
        KSubset(3, 4)
    with pytest.raises(ValueError, match="no mask"):
        KSubset(8, 3).sample(mask=np.ones((3, 8), dtype=np.int8))
    assert KSubset(8, 3) == KSubset(8, 3) != gym.spaces.MultiDiscrete([8] * 3)


def test_tensor_box_holds_torch_tensors():
    space = TensorBox((4, 2))
    sample = space.sample()
    assert isinstance(sample, torch.Tensor) and sample.dtype == torch.float32 and space.contains(sample)
    assert space.contains(sample.numpy())
    assert not space.contains(sample.double()) and not space.contains(torch.zeros(4, 3))
    batched = batch_space(space, 3)
    assert isinstance(batched, TensorBox) and batched.shape == (3, 4, 2) and batched.device == space.device


# ---- the registered environment, through Gymnasium's own wrappers

def make_registered(**kwargs):
    return gym.make_vec(envs.ENV_ID, num_envs=8, vectorization_mode="vector_entry_point", num_frames=4,
                        synthetic_clips=32, **kwargs)


def test_make_vec_builds_the_env_and_gymnasium_wrappers_read_its_info():
    env = make_registered()
    assert isinstance(env.unwrapped, envs.MAEVectorEnv) and env.num_envs == 8
    assert env.unwrapped.mae.img_size == 32  # the micro model
    assert isinstance(env.single_action_space, KSubset) and isinstance(env.action_space, KSubset)
    assert env.action_space.shape == (8, env.unwrapped.num_visible)
    wrapped = DictInfoToList(RecordEpisodeStatistics(env))
    obs, infos = wrapped.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert len(infos) == 8 and set(infos[0]) == {"token_error", "visible", "clip_index", "label", "group"}
    wrapped.action_space.seed(0)
    total = np.zeros(8)
    for _ in range(2):
        action = wrapped.action_space.sample()
        assert wrapped.action_space.contains(action)
        obs, reward, terminated, truncated, infos = wrapped.step(action)
        total += reward
        assert terminated.all() and not truncated.any()
        for row, info in enumerate(infos):
            assert info["episode"]["l"] == 1 and info["episode"]["r"] == pytest.approx(float(reward[row]))
            assert info["token_error"].shape == (env.unwrapped.num_tokens,)
            assert set(np.flatnonzero(info["visible"])) == set(action[row].tolist())
    assert wrapped.env.episode_count == 16
    assert np.mean(wrapped.env.return_queue) == pytest.approx(total.mean() / 2)


def test_info_follows_gymnasiums_vector_layout():
    env = make_registered(mode="frozen")
    _, info = env.reset(seed=1)
    _, _, _, _, step_info = env.step(env.action_space.sample())
    for layout in (info, step_info):
        for key in ("token_error", "visible", "clip_index", "label", "group"):
            assert isinstance(layout[key], np.ndarray) and len(layout[key]) == 8
            assert layout[f"_{key}"].dtype == bool and layout[f"_{key}"].all()


def test_render_draws_each_clips_mask_over_its_frames():
    assert "rgb_array" in envs.MAEVectorEnv.metadata["render_modes"]
    env = make_registered(render_mode="rgb_array", mode="frozen").unwrapped
    env.reset(seed=0)
    (t, h, w), tubelet, patch = env.mae.grid, env.mae.tubelet_size, env.mae.patch_size
    before = env.render()
    assert len(before) == 8 and before[0].shape == (h * patch, t * w * patch, 3) and before[0].dtype == np.uint8
    video = env._batch["video"].clone()
    action = env.action_space.sample()
    env.step(action)
    frames = env.render()
    pixels = (to_pixels(video).clamp(0, 1) * 255).round().numpy()  # (B, 3, T, H, W)
    for clip in (0, 5):
        token = int(action[clip, 0])  # visible: drawn as it is
        tt, rest = divmod(token, h * w)
        hh, ww = divmod(rest, w)
        drawn = frames[clip][hh * patch, tt * w * patch + ww * patch]
        np.testing.assert_allclose(drawn, pixels[clip, :, tt * tubelet, hh * patch, ww * patch], atol=1)
        masked = next(i for i in range(env.num_tokens) if i not in action[clip])
        tt, rest = divmod(masked, h * w)
        hh, ww = divmod(rest, w)
        drawn = frames[clip][hh * patch, tt * w * patch + ww * patch].astype(float)
        original = pixels[clip, :, tt * tubelet, hh * patch, ww * patch]
        np.testing.assert_allclose(drawn, np.clip(0.25 * original + 0.35 * 255, 0, 255), atol=1.5)
    assert np.array_equal(before[0], env.render()[0]) is False
    with pytest.raises(ValueError, match="render_mode"):
        make_registered(render_mode="human")
    assert make_registered().render() is None


def test_tianshou_adapter_seed_seeds_the_clips_and_the_action_space():
    adapter = TianshouVectorEnv(make_registered(mode="frozen").unwrapped)
    assert adapter.seed(3) == [3] * 8
    obs_a, _ = adapter.reset()
    sample_a = adapter.action_space[0].sample()
    adapter.seed(4)
    obs_b, _ = adapter.reset()
    adapter.seed(3)
    obs_c, _ = adapter.reset()
    assert torch.equal(obs_a, obs_c) and not torch.equal(obs_a, obs_b)
    assert np.array_equal(sample_a, adapter.action_space[0].sample())
    assert len(set(adapter.seed(None))) == 1 and adapter.seed(None)[0] is not None


def test_registered_env_follows_the_testbed_preset():
    from envs.registration import make_mae_vector_env, testbed_settings

    settings = testbed_settings()
    assert settings["mask_ratio"] == 0.9 and settings["synthetic_contrast"] == "bright"
    env = make_mae_vector_env(2, num_frames=4, synthetic_clips=4, mode="frozen")
    dataset = env.clips.dataset
    assert (dataset.background, dataset.objects, dataset.contrast) == (
        settings["synthetic_background"], settings["synthetic_objects"], settings["synthetic_contrast"])
    assert env.mask_ratio == settings["mask_ratio"] and env.mae.norm_target == settings["norm_target"]
    with pytest.raises(TypeError, match="unknown setting"):
        make_mae_vector_env(2, mask_ration=0.5)


def test_tianshou_collects_random_actions_from_the_k_subset_space():
    from tianshou.data import Collector, VectorReplayBuffer

    from agents.registry import build_agent

    env = make_registered(mode="frozen").unwrapped
    agent = build_agent("random", env=env)
    buffer = VectorReplayBuffer(16, env.num_envs, ignore_obs_next=True)
    collector = Collector(agent.policy, TianshouVectorEnv(env), buffer)
    collector.reset()
    stats = collector.collect(n_step=16, random=True)  # actions from action_space.sample(): all valid
    assert stats.n_collected_episodes == 16
    assert all(len(set(row)) == env.num_visible for row in buffer[:].act.tolist())


def test_the_documented_example_runs():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "agents-and-environment.md").read_text()
    section = page[page.index("## The environment in Gymnasium terms"):]
    code = section[section.index("```python") + len("```python"):section.index("```\n", section.index("```python") + 9)]
    namespace: dict = {}
    exec(compile(code, "docs/agents-and-environment.md", "exec"), namespace)
    assert namespace["reward"].shape == (8,) and namespace["terminated"].all()
    assert isinstance(namespace["env"].unwrapped, envs.MAEVectorEnv)
