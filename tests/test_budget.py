"""A budget drawn per batch (``mask_ratio=(low, high)``): the per-row K of the Plackett-Luce distribution
against the fixed-K one row by row, the environment's K through ``step``, Gymnasium's wrappers and checker,
Tianshou's Collector (the stored K is the applied prefix), PPO's ratio of exactly 1 with mixed K, resume,
and the config's errors."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers.vector import DictInfoToList, FlattenObservation, RecordEpisodeStatistics
from tianshou.data import Batch, Collector, VectorReplayBuffer

import envs
from agents.distributions import PlackettLuce
from agents.registry import build_agent
from envs import TianshouVectorEnv
from mae import indices_to_mask

SMALL = dict(num_frames=4, synthetic_clips=32, num_workers=0, mode="frozen")  # N = 32: K(0.75) = 8, K(0.95) = 2
RANGE = (0.75, 0.95)


def make_env(num_envs=4, **kwargs):
    return gym.make_vec(envs.ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **{**SMALL, "mask_ratio": RANGE, **kwargs})


# ---- the distribution: a prefix of every row

@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_per_row_counts_give_the_fixed_k_distribution_of_each_prefix(reduction):
    torch.manual_seed(0)
    logits = torch.randn(6, 10) * 2
    counts = torch.tensor([1, 3, 5, 5, 2, 4])
    dist = PlackettLuce(logits, k=5, counts=counts, masked_logprob=reduction)
    action = dist.sample()
    for row in range(6):
        k = int(counts[row])
        alone = PlackettLuce(logits[row:row + 1], k=k, masked_logprob=reduction)
        prefix = action[row:row + 1, :k]
        torch.testing.assert_close(dist.log_prob(action)[row], alone.log_prob(prefix)[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(dist.masked_log_prob(action)[row], alone.masked_log_prob(prefix)[0],
                                   rtol=0, atol=1e-6)
        assert torch.equal(dist.visible_mask(action)[row], indices_to_mask(prefix, 10)[0])
    torch.testing.assert_close(dist.entropy(), PlackettLuce(logits, k=5).entropy())  # a property of p alone


def test_counts_of_k_everywhere_change_nothing():
    torch.manual_seed(1)
    logits = torch.randn(4, 12)
    plain, counted = PlackettLuce(logits, k=4), PlackettLuce(logits, k=4, counts=torch.full((4,), 4))
    action = plain.sample()
    assert torch.equal(plain.log_prob(action), counted.log_prob(action))
    assert torch.equal(plain.masked_log_prob(action), counted.masked_log_prob(action))


def test_the_first_draw_of_a_hand_computed_case():
    p = torch.tensor([[0.5, 0.3, 0.2]])
    dist = PlackettLuce(p.log(), k=2, counts=torch.tensor([1]))
    action = torch.tensor([[1, 0]])  # keeps token 1 only: log P = log 0.3, whatever the second draw
    torch.testing.assert_close(dist.log_prob(action), torch.tensor([0.3]).log())
    torch.testing.assert_close(dist.masked_log_prob(action), (p[0, 0].log() + p[0, 2].log()).reshape(1) / 2)


def test_bad_counts_are_refused():
    logits = torch.zeros(2, 6)
    with pytest.raises(ValueError, match=r"counts must lie in \[1, k=3\]"):
        PlackettLuce(logits, k=3, counts=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="one entry per row"):
        PlackettLuce(logits, k=3, counts=torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="repeats a token index"):  # all k draws distinct, kept or not
        PlackettLuce(logits, k=3, counts=torch.tensor([1, 1])).log_prob(torch.tensor([[0, 1, 1], [0, 1, 2]]))


# ---- the environment

def test_each_batch_draws_one_k_and_step_keeps_each_actions_first_k():
    env = make_env().unwrapped
    assert (env.num_visible, env.min_visible, env.draws_budget) == (8, 2, True)
    assert env.single_action_space.shape == (8,) and env.action_space.shape == (4, 8)
    _, info = env.reset(seed=0)
    seen = set()
    for _ in range(30):
        k = int(info["num_visible"][0])
        assert (info["num_visible"] == k).all() and 2 <= k <= 8 and env.batch_num_visible == k
        action = env.action_space.sample()
        assert env.action_space.contains(action)  # K_max distinct indices
        _, reward, _, _, info = env.step(action)
        finished = info["final_info"]
        assert (finished["num_visible"] == k).all() and env.last_stats["num_visible"] == k
        np.testing.assert_array_equal(finished["visible"], indices_to_mask(torch.as_tensor(action[:, :k]), 32).numpy())
        seen.add(k)
    assert len(seen) >= 5  # uniform over 7 values: every K is drawn, not one
    with pytest.raises(ValueError, match="K_max = K\\(lowest mask_ratio 0.75\\) = 8"):
        env.step(env.action_space.sample()[:, :3])


def test_the_reward_is_the_loss_of_the_kept_prefix():
    env = make_env(reward="loss").unwrapped
    env.reset(seed=3)
    video, target, k = env._batch["video"], env._batch["target"], env.batch_num_visible
    action = env.action_space.sample()
    _, reward, _, _, _ = env.step(action)
    visible = indices_to_mask(torch.as_tensor(action[:, :k]), env.num_tokens)
    with torch.no_grad():
        expected = env.mae.reconstruction_loss(env.mae(video, visible).float(), target, visible).per_clip
    np.testing.assert_allclose(reward, expected.numpy(), rtol=1e-6)


def test_the_same_seed_draws_the_same_ks_and_a_resumed_env_the_waiting_batchs():
    def ks(env, steps):
        out = []
        for _ in range(steps):
            out.append(env.unwrapped.batch_num_visible)
            env.step(env.action_space.sample())
        return out

    first, second = make_env(), make_env()
    first.reset(seed=5), second.reset(seed=5)
    assert ks(first, 6) == ks(second, 6)
    state = first.unwrapped.state_dict()
    later = ks(first, 5)
    resumed = make_env()
    resumed.unwrapped.load_state_dict(state)
    resumed.reset()  # reloads the batch that was waiting, with its K
    assert ks(resumed, 5) == later


def test_fixed_ratio_announces_its_k_and_keeps_its_state_dict():
    env = make_env(mask_ratio=0.9).unwrapped
    _, info = env.reset(seed=0)
    assert not env.draws_budget and env.mask_ratio_range is None
    assert (info["num_visible"] == env.num_visible).all() and env.state_dict()["budget"] is None


def test_gymnasiums_wrappers_and_checker_take_the_varying_k():
    env = make_env()
    wrapped = DictInfoToList(RecordEpisodeStatistics(env))
    _, infos = wrapped.reset(seed=0)
    k = infos[0]["num_visible"]
    _, _, _, _, infos = wrapped.step(wrapped.action_space.sample())
    assert all(info["final_info"]["num_visible"] == k and info["final_info"]["visible"].sum() == k for info in infos)
    flat = FlattenObservation(make_env(autoreset_mode=AutoresetMode.DISABLED))
    flat.reset(seed=0)
    _, reward, terminated, _, info = flat.step(flat.action_space.sample())
    assert terminated.all() and (reward < 0).all() and (info["visible"].sum(1) == info["num_visible"]).all()
    single = gym.make(envs.ENV_ID, **{**SMALL, "mask_ratio": RANGE})
    with pytest.warns(UserWarning, match="Box observation space"):  # unbounded tokens, as meant
        check_env(single.unwrapped)
    _, info = single.reset(seed=0)
    _, _, _, _, after = single.step(single.action_space.sample())
    assert after["visible"].sum() == info["num_visible"] == after["num_visible"]


def test_bad_ranges_are_refused():
    with pytest.raises(ValueError, match="low <= high"):
        make_env(mask_ratio=(0.95, 0.75))
    with pytest.raises(ValueError, match="a number or a pair"):
        make_env(mask_ratio=(0.5, 0.7, 0.9))


# ---- Tianshou: the stored K, PPO's ratio, the fixed maskers

def test_the_collector_stores_each_episodes_k_and_ppos_ratio_is_exactly_one():
    env = make_env(reward="loss").unwrapped
    torch.manual_seed(0)
    agent = build_agent("ppo", env=env)
    buffer = VectorReplayBuffer(32, env.num_envs, ignore_obs_next=True)
    collector = Collector(agent.policy, TianshouVectorEnv(env), buffer)
    collector.reset()
    with torch.no_grad():
        collector.collect(n_step=32)
    batch = buffer[:]
    counts = batch.info.num_visible
    assert len(set(counts.tolist())) > 1  # mixed K in one buffer
    np.testing.assert_array_equal(batch.info.visible.sum(1), counts)  # the stored K is the applied prefix
    act = torch.as_tensor(batch.act).long()
    np.testing.assert_array_equal(batch.info.visible, _prefix_masks(act, counts, 32))
    dist = agent.policy.distribution(Batch(obs=batch.obs, info=batch.info))
    assert torch.equal(dist.log_prob(act), torch.as_tensor(batch.policy.log_prob))  # ratio exactly 1
    assert torch.equal(dist.masked_log_prob(act), torch.as_tensor(batch.policy.masked_log_prob))
    for row in (0, 1, 2, 3):  # and what it stored is the log-probability of the prefix the env applied
        k = int(counts[row])
        alone = PlackettLuce(dist.logits[row:row + 1], k=k)
        torch.testing.assert_close(torch.as_tensor(batch.policy.log_prob[row]), alone.log_prob(act[row:row + 1, :k])[0])
    summary = _inspected(buffer, agent)
    assert summary["uniform_policy"]["visible_frequency"] == pytest.approx(counts.mean() / 32)
    assert summary["num_visible_per_episode"]["mean"] == pytest.approx(counts.mean())
    stats = agent.update(buffer)
    assert stats["policy/ratio_mean"] == 1.0 and stats["policy/approx_kl"] == 0.0


def _inspected(buffer, agent):
    """What ``python -m agents.inspect`` reads of the buffer, dumped as train_joint.py dumps it."""
    import tempfile
    from pathlib import Path

    from agents.buffers import dump_hdf5, read_rollouts
    from agents.inspect import summarize

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "buffer.h5"
        dump_hdf5(buffer, path, metadata=agent.metadata())
        arrays, metadata = read_rollouts(path)
    return summarize(arrays, metadata)


def _prefix_masks(act: torch.Tensor, counts: np.ndarray, num_tokens: int) -> np.ndarray:
    return np.stack([indices_to_mask(act[i:i + 1, :k], num_tokens)[0].numpy() for i, k in enumerate(counts)])


def test_random_masking_acts_with_a_budget_and_tube_masking_is_refused():
    env = make_env().unwrapped
    agent = build_agent("random", env=env)
    buffer = VectorReplayBuffer(8, env.num_envs, ignore_obs_next=True)
    collector = Collector(agent.policy, TianshouVectorEnv(env), buffer)
    collector.reset()
    collector.collect(n_step=8)
    batch = buffer[:]
    assert batch.act.shape == (8, 8) and (batch.info.visible.sum(1) == batch.info.num_visible).all()
    with pytest.raises(ValueError, match="prefix of a tube mask is not a tube mask"):
        build_agent("tube", env=env)


# ---- train_joint.py and the study's report

def _num_visible_log(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, int(e.value)) for e in events.Scalars("env/num_visible")]


def test_train_joint_draws_a_k_per_step_in_both_phases_and_resumes_the_draws(tmp_path):
    import train_joint
    from tests.test_train_joint import SMALL, compose_cfg

    run = ["mask_ratio_range=[0.75,0.95]", "train.max_steps=6"]  # 4 random-masking steps, then 2 PPO cycles
    train_joint.train(compose_cfg(*SMALL, *run, f"output_dir={tmp_path / 'whole'}"))
    whole = _num_visible_log(tmp_path / "whole")
    assert [step for step, _ in whole] == [1, 2, 3, 4, 5, 6]
    assert all(6 <= k <= 32 for _, k in whole) and len({k for _, k in whole}) > 1  # N = 128: K(0.95) = 6, K(0.75) = 32
    train_joint.train(compose_cfg(*SMALL, "mask_ratio_range=[0.75,0.95]", "train.max_steps=3",
                                  f"output_dir={tmp_path / 'split'}"))
    train_joint.train(compose_cfg(*SMALL, *run, "resume=true", f"output_dir={tmp_path / 'split'}"))
    assert _num_visible_log(tmp_path / "split") == whole


def test_a_bad_range_is_one_config_error():
    from configs import ConfigError
    from configs.schema import validate
    from tests.test_train_joint import SMALL, compose_cfg

    with pytest.raises(ConfigError, match=r"mask_ratio_range must be \[low, high\]"):
        validate(compose_cfg(*SMALL, "mask_ratio_range=[0.9,0.8]"))


def test_the_budget_report_pairs_the_range_with_the_policy_trained_at_each_ratio():
    from benchmark.budget import report

    scores = {"fixed-0.75": [50, 52, 54], "fixed-0.9": [60, 61, 62], "fixed-0.95": [40, 44, 42], "range": [53, 58, 49]}
    runs = [{"arm": arm, "seed": seed, "wall_s": 10.0,
             "eval": {"ratios": {key: {"score": value + (1 if key == "0.75" else 0)} for key in ("0.75", "0.9", "0.95")}}}
            for arm, values in scores.items() for seed, value in enumerate(values)]
    text, summary = report(runs, [0.75, 0.9, 0.95])
    diff, half = summary["range"]["vs_fixed_at_ratio"]["0.9"]
    assert diff == pytest.approx(np.mean([53 - 60, 58 - 61, 49 - 62]))
    spread = np.std([-7, -3, -13], ddof=1) / np.sqrt(3) * 4.302652729911275  # t(0.975, 2 degrees of freedom)
    assert half == pytest.approx(spread)
    assert summary["fixed-0.9"]["0.9"][0] == pytest.approx(61.0)
    assert "| range minus the policy trained at the ratio |" in text
