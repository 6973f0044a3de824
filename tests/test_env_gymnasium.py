"""The environment as Gymnasium sees it: the K-subset and token spaces, the vector info layout
(``DictInfoToList``, ``RecordEpisodeStatistics``), ``render()``, the registered id (vector and
single env, ``check_env``), the reward's sign, the autoreset modes and the observation wrappers,
the testbed preset, checkpoints, seeding."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers.vector import (DictInfoToList, DtypeObservation, FlattenObservation, NormalizeObservation,
                                       RecordEpisodeStatistics, TransformObservation)

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
    assert space == TensorBox((4, 2)) != gym.spaces.Box(-np.inf, np.inf, (4, 2), np.float32)  # its elements differ


# ---- the registered environment, through Gymnasium's own wrappers

SMALL = dict(num_frames=4, synthetic_clips=32, num_workers=0)  # N = 32 tokens, K = 3; no data worker processes


def make_registered(num_envs=8, **kwargs):
    return gym.make_vec(envs.ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", **{**SMALL, **kwargs})


def test_make_vec_builds_the_env_and_gymnasium_wrappers_read_its_info():
    env = make_registered()
    assert isinstance(env.unwrapped, envs.MAEVectorEnv) and env.num_envs == 8
    assert env.unwrapped.mae.img_size == 32  # the micro model
    assert isinstance(env.single_action_space, KSubset) and isinstance(env.action_space, KSubset)
    assert env.action_space.shape == (8, env.unwrapped.num_visible)
    wrapped = DictInfoToList(RecordEpisodeStatistics(env))
    obs, infos = wrapped.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert len(infos) == 8 and set(infos[0]) == {"token_error", "visible", "clip_index", "label", "group", "motion",
                                               "num_visible"}
    wrapped.action_space.seed(0)
    total = np.zeros(8)
    for _ in range(2):
        action = wrapped.action_space.sample()
        assert wrapped.action_space.contains(action)
        acted_on = obs
        obs, reward, terminated, truncated, infos = wrapped.step(action)
        total += reward
        assert terminated.all() and not truncated.any()
        for row, info in enumerate(infos):
            assert info["episode"]["l"] == 1 and info["episode"]["r"] == pytest.approx(float(reward[row]))
            finished = info["final_info"]  # same-step autoreset: the ended episode's info
            assert finished["token_error"].shape == (env.unwrapped.num_tokens,)
            assert set(np.flatnonzero(finished["visible"])) == set(action[row].tolist())
            assert not info["visible"].any()  # the top level describes the clips now waiting
            assert torch.equal(info["final_obs"], acted_on[row])
    assert wrapped.env.episode_count == 16
    assert np.mean(wrapped.env.return_queue) == pytest.approx(total.mean() / 2)


def test_info_follows_gymnasiums_vector_layout():
    env = make_registered(mode="frozen")
    _, info = env.reset(seed=1)
    _, _, _, _, step_info = env.step(env.action_space.sample())
    assert step_info["_final_info"].all() and step_info["_final_obs"].all() and step_info["final_obs"].shape == (8,)
    for layout in (info, step_info, step_info["final_info"]):
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


def test_registered_env_is_the_testbed_preset_with_every_data_key(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from envs import registration

    preset = OmegaConf.load(registration.TESTBED_PRESET)
    settings = registration.testbed_settings()
    assert set(preset.data) | set(preset.model) | {"mask_ratio", "lr"} == set(settings)
    assert settings["synthetic_fresh"] is True and settings["num_workers"] == preset.data.num_workers
    env = registration.make_mae_vector_env(2, mode="train")  # the preset as it is (the data loader is not started)
    dataset, mae = env.clips.dataset, env.mae
    where = {"num_frames": mae.num_frames, "synthetic_clips": len(dataset), "synthetic_background": dataset.background,
             "synthetic_objects": dataset.objects, "synthetic_contrast": dataset.contrast,
             "synthetic_fresh": dataset.fresh, "num_workers": env.clips.num_workers}
    assert set(where) == set(preset.data)  # a data key added to the preset needs a line here
    assert where == {key: preset.data[key] for key in where}
    assert env.mask_ratio == preset.mask_ratio and mae.norm_target == preset.model.norm_target
    assert env.optimizer.optimizer.param_groups[0]["lr"] == preset.train.lr and mae.img_size == 32  # the micro model
    # a key added to the preset reaches the dataset without a code change, or is refused loudly
    edited = tmp_path / "cpu.yaml"
    edited.write_text(registration.TESTBED_PRESET.read_text().replace("synthetic_clips: 1024", "synthetic_clips: 24"))
    monkeypatch.setattr(registration, "TESTBED_PRESET", edited)
    assert len(registration.make_mae_vector_env(2, mode="frozen").clips.dataset) == 24
    edited.write_text(registration.TESTBED_PRESET.read_text().replace("data:\n", "data:\n  synthetic_speed: 2\n"))
    with pytest.raises(TypeError, match="synthetic_speed"):
        registration.make_mae_vector_env(2, mode="frozen")
    with pytest.raises(TypeError, match="unknown setting"):
        registration.make_mae_vector_env(2, mask_ration=0.5)


# ---- the reward's sign, the single environment, the autoreset modes

def test_reward_is_minus_the_loss_unless_asked_for_the_loss():
    actions = KSubset(32, 3, batch_shape=(8,), seed=0).sample()
    rewards, losses = {}, {}
    for reward in ("negative_loss", "loss"):
        env = make_registered(mode="frozen", **({} if reward == "negative_loss" else {"reward": reward}))
        env.reset(seed=0)
        rewards[reward] = env.step(actions)[1]
        losses[reward] = env.unwrapped.last_stats["loss"]
    assert (rewards["loss"] > 0).all()
    np.testing.assert_array_equal(rewards["negative_loss"], -rewards["loss"])
    assert losses["loss"] == losses["negative_loss"] == pytest.approx(float(rewards["loss"].mean()))
    with pytest.raises(ValueError, match="reward must be one of"):
        make_registered(reward="-loss")


@pytest.mark.filterwarnings("ignore:.*Box observation space (minimum|maximum) value is:UserWarning")  # unbounded tokens, as meant
def test_the_single_env_passes_gymnasiums_checker_and_vectorises():
    env = gym.make(envs.ENV_ID, mode="frozen", **SMALL)
    assert isinstance(env.unwrapped, envs.MAEEnv)
    check_env(env.unwrapped)
    obs, info = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.shape == env.observation_space.shape == (32, 96)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert terminated and not truncated and reward < 0 and set(info) == {"token_error", "visible", "clip_index",
                                                                                 "label", "motion", "num_visible"}
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(env.action_space.sample())
    synced = gym.make_vec(envs.ENV_ID, num_envs=3, vectorization_mode="sync", mode="frozen", **SMALL)
    obs, _ = synced.reset(seed=0)
    assert obs.shape == (3, 32, 96) and not np.array_equal(obs[0], obs[1])  # sub-env i has seed i
    _, reward, terminated, _, info = synced.step(synced.action_space.sample())
    assert terminated.all() and (reward < 0).all() and info["visible"].sum(1).tolist() == [3] * 3


@pytest.mark.parametrize("wrap", [
    lambda env: TransformObservation(env, lambda obs: 2 * obs, env.observation_space),
    lambda env: FlattenObservation(env),
    lambda env: DtypeObservation(env, np.float64),
], ids=["TransformObservation", "FlattenObservation", "DtypeObservation"])
def test_observation_wrappers_run_in_disabled_mode(wrap):
    env = make_registered(num_envs=2, mode="frozen")
    with pytest.raises(ValueError, match="NEXT_STEP or DISABLED"):
        wrap(env)  # same-step autoreset, the default: Gymnasium's observation wrappers refuse it
    env = wrap(make_registered(num_envs=2, mode="frozen", autoreset_mode=AutoresetMode.DISABLED))
    obs, _ = env.reset(seed=0)
    for _ in range(2):
        final, reward, terminated, _, info = env.step(env.action_space.sample())
        assert terminated.all() and (reward < 0).all() and info["visible"].sum(1).tolist() == [3, 3]
        np.testing.assert_allclose(np.asarray(final), np.asarray(obs))  # the observation the episode ended on
        with pytest.raises(RuntimeError, match="call reset"):
            env.step(env.action_space.sample())
        obs, _ = env.reset()  # the next clips
        assert not np.allclose(np.asarray(obs), np.asarray(final))
    with pytest.raises(ValueError, match="reset together"):
        env.reset(options={"reset_mask": np.array([True, False])})


def test_normalize_observation_runs_in_next_step_mode():
    env = make_registered(num_envs=2, mode="frozen", autoreset_mode="NextStep")
    with pytest.raises(ValueError, match="NEXT_STEP"):
        NormalizeObservation(make_registered(num_envs=2, mode="frozen", autoreset_mode=AutoresetMode.DISABLED))
    env = NormalizeObservation(DtypeObservation(env, np.float32))  # it keeps its statistics in numpy
    obs, _ = env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(env.action_space.sample())
    assert terminated.all() and (reward < 0).all()
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())  # only resets: action ignored
    assert not terminated.any() and not truncated.any() and (reward == 0).all() and not info["visible"].any()
    assert isinstance(obs, np.ndarray) and obs.shape == (2, 32, 96) and env.obs_rms.count > 2
    with pytest.raises(ValueError, match="autoreset_mode must be"):
        make_registered(autoreset_mode="sometimes")


# ---- weights: seeded without touching the global generator, or loaded from a checkpoint

def test_make_vec_leaves_the_global_torch_generator_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    env = make_registered(mode="frozen", seed=5)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert torch.equal(torch.random.get_rng_state(), before)
    same, other = make_registered(mode="frozen", seed=5).unwrapped.mae, make_registered(mode="frozen", seed=6).unwrapped.mae
    weights = env.unwrapped.mae.state_dict()
    assert all(torch.equal(weights[key], value) for key, value in same.state_dict().items())  # still from `seed`
    assert not torch.equal(weights["encoder.blocks.0.attn.qkv.weight"], other.state_dict()["encoder.blocks.0.attn.qkv.weight"])


@pytest.mark.parametrize("layout", ["videomae", "train_joint"])
def test_checkpoint_loads_the_mae_bit_for_bit(tmp_path, layout):
    trained = make_registered(mode="frozen", seed=9).unwrapped.mae
    for parameter in trained.parameters():  # weights no seed gives
        parameter.data.add_(0.01)
    state = trained.state_dict()
    path = tmp_path / "mae.pt"
    torch.save({"model": state} if layout == "videomae" else {"mae": state, "agent": {}, "config": {}, "step": 2}, path)
    for env in (make_registered(mode="frozen", checkpoint=str(path)), gym.make(envs.ENV_ID, checkpoint=path, **SMALL)):
        loaded = (env.unwrapped.vector_env if isinstance(env.unwrapped, envs.MAEEnv) else env.unwrapped).mae.state_dict()
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[key], state[key]) for key in state)
    with pytest.raises(RuntimeError, match="size mismatch|missing|Missing|shape"):
        make_registered(mode="frozen", checkpoint=str(path), model="tiny")


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


# ---- the docs' examples, as written, on a smaller preset

def docs_example(heading: str) -> str:
    """The first python block under ``heading`` in docs/agents-and-environment.md."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "agents-and-environment.md").read_text()
    after = page.split(f"{heading}\n", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def small_testbed(tmp_path, monkeypatch):
    """The registered env on 4-frame clips (N = 32, K = 3), loaded in this process: the examples run in seconds."""
    from envs import registration

    preset = registration.TESTBED_PRESET.read_text()
    small = tmp_path / "cpu.yaml"
    small.write_text(preset.replace("num_frames: 16", "num_frames: 4").replace("num_workers: 1", "num_workers: 0")
                     .replace("synthetic_clips: 1024", "synthetic_clips: 64"))
    monkeypatch.setattr(registration, "TESTBED_PRESET", small)


def run_example(heading: str) -> dict:
    namespace: dict = {}
    exec(compile(docs_example(heading), "docs/agents-and-environment.md", "exec"), namespace)
    return namespace


def test_the_documented_examples_run(small_testbed):
    first = run_example("## The environment in Gymnasium terms")
    assert (first["reward"] < 0).all() and first["reward"].shape == (8,) and first["terminated"].all()
    assert isinstance(first["env"].unwrapped, envs.MAEVectorEnv)
    wrapped = run_example("### Autoreset modes")
    assert wrapped["final_obs"].shape == wrapped["obs"].shape == (8, 32 * 96) and wrapped["terminated"].all()


def test_the_documented_cleanrl_loop_lowers_the_loss(small_testbed):
    losses = np.array(run_example("### A CleanRL-style loop on `make_vec`")["losses"])
    assert len(losses) == 200 and losses[-50:].mean() < losses[:20].mean() - 0.01


def test_tianshous_trainer_lowers_the_loss_and_calls_the_lowest_loss_epoch_best(small_testbed, capsys):
    """Stock Reinforce, Tianshou's own trainer (docs example): each epoch's test reward is -L_R of the same
    16 clips; the trainer's best_reward is the highest reward, so the lowest loss, and lower than the start."""
    import re

    result = run_example("### Tianshou's trainer on the adapter")["result"]
    log = capsys.readouterr().out
    tests = [float(r) for r in re.findall(r"test_reward: (-?[0-9.]+)", log)]
    assert len(tests) == 6 and all(r < 0 for r in tests)  # the initial test step and 5 epochs; -L_R
    assert result.best_reward == pytest.approx(max(tests), abs=1e-6)  # the best epoch is the lowest-loss one
    assert -result.best_reward < -tests[0] - 0.01  # training lowered the test loss
