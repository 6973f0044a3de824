"""The environment as Tianshou code uses it: through Gymnasium wrappers, seeded between collects,
collect sizes checked before any step, the env stepped outside the adapter (``train_joint.py``'s
random-masking steps), and the project's agents kept on the paper's reward."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import TransformReward
from tianshou.data import Collector, VectorReplayBuffer

import envs
import mae
from agents.registry import build_agent
from envs import BatchCollector, TianshouVectorEnv

SMALL = dict(num_frames=4, synthetic_clips=32, num_workers=0)  # N = 32 tokens, K = 3


def make(num_envs=8, **kwargs):
    return gym.make_vec(envs.ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **{"mode": "frozen", **SMALL, **kwargs})


def random_collector(adapter, size=16):
    agent = build_agent("random", env=adapter.env.unwrapped)
    buffer = VectorReplayBuffer(size, len(adapter), ignore_obs_next=True)
    return Collector(agent.policy, adapter, buffer), buffer


def steps(values, num_envs):
    """A VectorReplayBuffer's ``buffer[:]`` holds env 0's entries, then env 1's, ...: one row per step instead."""
    return np.asarray(values).reshape(num_envs, -1).T


def scored_by_the_mae(env, buffer):
    """What the env's MAE scores, recomputed from the buffer's clip indices and visible masks: (tokens, L_R)."""
    dataset, model = env.clips.dataset, env.mae
    data = buffer[:]
    video = torch.stack([dataset[int(i)]["video"] for i in data.info.clip_index])
    with torch.no_grad():
        loss = model.loss(video, torch.as_tensor(np.asarray(data.info.visible))).per_clip
    return model.tokenize(video).detach(), loss


def test_a_wrapped_env_steps_through_its_wrapper():
    env = make()
    adapter = TianshouVectorEnv(TransformReward(env, lambda reward: 10 * reward))
    collector, buffer = random_collector(adapter)
    collector.reset()
    collector.collect(n_step=16, random=True)
    _, loss = scored_by_the_mae(env.unwrapped, buffer)
    np.testing.assert_allclose(buffer[:].rew, -10 * loss.numpy(), rtol=1e-5)  # the wrapper's reward, of -L_R
    with pytest.raises(ValueError, match="SAME_STEP or DISABLED"):
        TianshouVectorEnv(make(autoreset_mode=AutoresetMode.NEXT_STEP))


def test_disabled_mode_is_reset_by_the_collector():
    env = make(autoreset_mode=AutoresetMode.DISABLED)
    collector, buffer = random_collector(TianshouVectorEnv(env), size=24)
    collector.reset()
    collector.collect(n_step=24, random=True)
    tokens, loss = scored_by_the_mae(env.unwrapped, buffer)
    assert env.unwrapped.batches_loaded == 4 and len(set(buffer[:].info.clip_index.tolist())) == 24
    torch.testing.assert_close(buffer[:].obs, tokens)
    np.testing.assert_allclose(buffer[:].rew, -loss.numpy(), rtol=1e-5)


def test_seed_acts_at_the_next_reset_so_observations_and_rewards_stay_together():
    env = make(reward="loss")
    adapter = TianshouVectorEnv(env)
    collector, buffer = random_collector(adapter, size=24)
    collector.reset()
    loaded = env.unwrapped.batches_loaded
    adapter.seed(3)  # as a trainer's test_fn does, after the collector's reset
    assert env.unwrapped.batches_loaded == loaded  # nothing reloaded yet
    collector.collect(n_step=16, random=True)
    collector.reset(reset_buffer=False)
    adapter.seed(3)
    collector.reset(reset_buffer=False)  # a seed given before a reset acts at once
    collector.collect(n_step=8, random=True)
    tokens, loss = scored_by_the_mae(env.unwrapped, buffer)
    torch.testing.assert_close(buffer[:].obs, tokens)  # every stored observation is of the clip that was scored
    np.testing.assert_allclose(buffer[:].rew, loss.numpy(), rtol=1e-5)
    first_of_seed_3 = make(reward="loss").reset(seed=3)[1]["clip_index"].tolist()
    by_step = steps(buffer[:].info.clip_index, 8).tolist()
    assert by_step[1] == by_step[2] == first_of_seed_3 != by_step[0]


def test_actions_for_clips_no_longer_loaded_are_refused():
    env = make()
    collector, _ = random_collector(TianshouVectorEnv(env))
    collector.reset()
    env.reset(seed=1)  # behind the adapter's back
    with pytest.raises(RuntimeError, match="reset the collector"):
        collector.collect(n_step=8, random=True)


def test_clips_loaded_outside_the_adapter_are_handed_out_without_loading_more():
    """``train_joint.py`` steps the env itself in its random-masking epochs, then resets the collector."""
    env = make(mode="train", reward="loss").unwrapped
    collector, buffer = random_collector(TianshouVectorEnv(env))
    env.reset(seed=0)
    env.step(env.action_space.sample())
    waiting, loaded = env.reset_info()["clip_index"].tolist(), env.batches_loaded
    collector.reset()
    assert env.batches_loaded == loaded
    collector.collect(n_step=8, random=True)
    assert steps(buffer[:].info.clip_index, 8)[0].tolist() == waiting


def test_collect_sizes_are_checked_before_the_first_step():
    env = make(mode="train")
    policy = build_agent("random", env=env.unwrapped).policy
    collector = BatchCollector(policy, TianshouVectorEnv(env), VectorReplayBuffer(16, 8))
    collector.reset()
    with pytest.raises(ValueError, match=r"collect\(n_episode=12\).*multiple of 8 \(8 or 16\)"):
        collector.collect(n_episode=12, random=True)
    assert env.unwrapped.optimizer.num_updates == 0  # no step was taken
    assert collector.collect(n_episode=16, random=True).n_collected_episodes == 16
    stock = Collector(policy, TianshouVectorEnv(make()), VectorReplayBuffer(16, 8))
    stock.reset()
    with pytest.raises(ValueError, match="n_episode"):  # the stock Collector: at its second step
        stock.collect(n_episode=12, random=True)


def test_the_project_agents_refuse_the_higher_is_better_sign():
    with pytest.raises(ValueError, match="reward='loss'"):
        build_agent("ppo", env=make().unwrapped)
    assert build_agent("ppo", env=make(reward="loss").unwrapped).learns
    assert not build_agent("random", env=make().unwrapped).learns  # no objective: either sign


def test_mask_losses_of_a_collected_buffer_match_a_direct_forward():
    """The buffer's info and reward describe the clip and the mask acted on (final_info, not the reset info)."""
    env = make(reward="loss")
    collector, buffer = random_collector(TianshouVectorEnv(env), size=8)
    collector.reset()
    collector.collect(n_step=8, random=True)
    data = buffer[:]
    assert [set(np.flatnonzero(v)) for v in data.info.visible] == [set(a.tolist()) for a in data.act]
    assert (mae.indices_to_mask(torch.as_tensor(data.act), env.unwrapped.num_tokens).numpy() == data.info.visible).all()
