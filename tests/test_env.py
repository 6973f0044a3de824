"""The MAE environment: Gymnasium API, rewards, modes, bad actions, Tianshou collection."""

import copy

import numpy as np
import pytest
import torch
from tianshou.data import Batch, VectorReplayBuffer

import mae
from envs import ClipSource, MAEOptimizer, MAEVectorEnv, TianshouVectorEnv
from tests.helpers import RandomClips, tiny_mae

RATIO = 0.75  # N = 8 tokens, K = 2


def make_env(model=None, mode="train", batch=4, group_size=1, group_update="all", seed=0):
    model = model if model is not None else tiny_mae()
    optimizer = MAEOptimizer(torch.optim.AdamW(model.parameters(), lr=1e-3))
    clips = ClipSource(RandomClips(16), batch, seed=seed)
    return MAEVectorEnv(model, clips, mask_ratio=RATIO, optimizer=optimizer, mode=mode,
                        group_size=group_size, group_update=group_update)


def random_actions(env, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(env.num_tokens, generator=g)[: env.num_visible] for _ in range(env.num_envs)])


def test_spaces_contain_what_reset_and_step_return():
    env = make_env()
    obs, info = env.reset(seed=1)
    assert env.num_envs == 4 and env.num_visible == 2
    assert env.observation_space.contains(obs) and env.observation_space.contains(obs.numpy())
    assert obs.dtype == torch.float32 and obs.requires_grad is False
    act = random_actions(env)
    assert env.action_space.contains(act.numpy()) and env.action_space.contains(act)
    obs2, rew, term, trunc, info = env.step(act)
    assert env.observation_space.contains(obs2)
    assert rew.shape == (4,) and rew.dtype == np.float32
    assert term.all() and not trunc.any()
    finished = info["final_info"]  # Gymnasium's same-step convention: the ended episodes' info
    assert finished["token_error"].shape == (4, 8) and finished["visible"].sum(1).tolist() == [2] * 4
    assert set(finished) == set(env.reset_info()) == set(info) - {"final_info", "_final_info", "final_obs", "_final_obs"}
    assert info["final_obs"].dtype == object and all(torch.equal(a, b) for a, b in zip(info["final_obs"], obs))
    assert info["_final_obs"].all() and info["_final_info"].all()
    assert not info["visible"].any() and info["clip_index"].tolist() == env.reset_info()["clip_index"].tolist()


def test_seeding_reproduces_observations_and_rewards():
    runs = []
    for _ in range(2):
        env = make_env(model=tiny_mae(seed=5))
        obs, _ = env.reset(seed=7)
        history = [obs.clone()]
        for step in range(3):
            obs, rew, *_ = env.step(random_actions(env, seed=step))
            history += [obs.clone(), torch.as_tensor(rew)]
        runs.append(history)
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = make_env(model=tiny_mae(seed=5))
    assert not torch.equal(other.reset(seed=8)[0], runs[0][0])


def test_reward_equals_direct_mae_loss():
    model = tiny_mae()
    env = make_env(model=model, mode="frozen")
    env.reset(seed=0)
    video = env._batch["video"].clone()
    act = random_actions(env)
    _, rew, _, _, info = env.step(act)
    info = info["final_info"]
    visible = mae.indices_to_mask(act, env.num_tokens)
    model.eval()
    with torch.no_grad():
        direct = model.loss(video, visible)
    np.testing.assert_allclose(rew, direct.per_clip.numpy(), rtol=1e-6)
    torch.testing.assert_close(torch.from_numpy(info["token_error"]), direct.per_token)
    assert np.array_equal(info["visible"], visible.numpy())


def test_trivial_losses_score_the_last_steps_clips_and_masks():
    from mae.baselines import trivial_losses

    env = make_env(mode="frozen")
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="no step taken yet"):
        env.trivial_losses()
    target = env._batch["target"].clone()
    act = random_actions(env)
    env.step(act)
    visible = mae.indices_to_mask(act, env.num_tokens)
    expected = trivial_losses(target, visible, env.mae.grid)
    scored = env.trivial_losses()
    assert set(scored) == {"zeros", "mean_visible", "copy"}
    for name in scored:
        assert scored[name] == pytest.approx(float(expected[name].mean()), rel=1e-6) and scored[name] > 0


def test_frozen_mode_is_bit_identical_and_train_mode_learns():
    env = make_env(mode="frozen")
    before = copy.deepcopy(env.mae.state_dict())
    env.reset(seed=0)
    env.step(random_actions(env))
    assert all(torch.equal(before[k], v) for k, v in env.mae.state_dict().items())
    env.set_mode("train")
    with torch.no_grad():  # as the Collector calls it: the env must still train
        env.step(random_actions(env))
    changed = [k for k, v in env.mae.state_dict().items() if not torch.equal(before[k], v)]
    assert "encoder.blocks.0.attn.qkv.weight" in changed and "mask_token" in changed
    assert env.optimizer.num_updates == 1


@pytest.mark.parametrize("action, message", [
    (np.zeros((4, 3), dtype=np.int64), "K = round"),
    (np.zeros((3, 2), dtype=np.int64), "shape"),
    (np.array([[0, 1]] * 3 + [[0, 8]]), "out of range"),
    (np.array([[0, 1]] * 3 + [[-1, 2]]), "out of range"),
    (np.array([[0, 1]] * 3 + [[5, 5]]), "duplicate index 5"),
    (np.zeros(8, dtype=np.int64), "shape"),
])
def test_bad_actions_are_named(action, message):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.step(action)


def test_group_mode_repeats_clips_and_updates_first_copies():
    env = make_env(batch=2, group_size=3, group_update="first")
    obs, info = env.reset(seed=0)
    assert env.num_envs == 6
    assert info["group"].tolist() == [0, 0, 0, 1, 1, 1]
    torch.testing.assert_close(obs[0], obs[2])
    assert not torch.equal(obs[0], obs[3])
    seen = {}
    original = env.optimizer.backward_and_step
    env.optimizer.backward_and_step = lambda loss, params: seen.setdefault("loss", loss.item()) and original(loss, params)
    _, rew, _, _, info = env.step(random_actions(env))
    assert seen["loss"] == pytest.approx(float(rew[::3].mean()), rel=1e-5)
    assert info["final_info"]["group"].tolist() == [0, 0, 0, 1, 1, 1]
    assert info["group"].tolist() == env.reset_info()["group"].tolist() == [2, 2, 2, 3, 3, 3]


def test_nonfinite_loss_skips_the_step():
    model = tiny_mae()
    opt = MAEOptimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    before = copy.deepcopy(model.state_dict())
    loss = model.loss(torch.randn(1, 3, 4, 32, 32), mae.random_mask(1, 8, RATIO)).loss * float("nan")
    assert opt.backward_and_step(loss, model.parameters()) == {"skipped": 1.0}
    assert opt.guard.total == 1 and opt.num_updates == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_clip_source_resumes_exactly():
    source = ClipSource(RandomClips(10), 3, seed=4)
    assert source.steps_per_epoch == 3
    seen = [source.next_batch()["index"].tolist() for _ in range(5)]
    resumed = ClipSource(RandomClips(10), 3, seed=4)
    probe = ClipSource(RandomClips(10), 3, seed=4)
    for _ in range(2):
        probe.next_batch()
    resumed.load_state_dict(probe.state_dict())
    assert [resumed.next_batch()["index"].tolist() for _ in range(3)] == seen[2:]
    assert source.epoch == 1
    flat = sum(seen[:3], [])
    assert len(set(flat)) == 9  # one epoch: distinct clips


def data_workers(start):
    """The worker processes that ``start()`` starts (multiprocessing's public view of this process's children)."""
    import multiprocessing

    before = set(multiprocessing.active_children())
    start()
    return [child for child in multiprocessing.active_children() if child not in before]


def test_clip_source_close_stops_its_workers_cleanly_and_the_next_batch_restarts_them():
    source = ClipSource(RandomClips(12), 2, seed=0, num_workers=2)
    workers = data_workers(source.next_batch)
    assert len(workers) == 2
    source.close()
    assert [worker.exitcode for worker in workers] == [0, 0]  # left their loop, not killed by a signal
    again = data_workers(source.next_batch)
    assert len(again) == 2 and not set(again) & set(workers)
    for _ in range(source.steps_per_epoch):  # across the epoch's end: the old epoch's workers stop there
        source.next_batch()
    assert all(worker.exitcode == 0 for worker in again)
    source.close()


def test_clip_source_workers_left_running_stop_cleanly_at_exit():
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = textwrap.dedent("""
        import atexit
        workers = []
        atexit.register(lambda: print("exit codes", [worker.exitcode for worker in workers], flush=True))  # runs last
        from envs import ClipSource
        from tests.helpers import RandomClips
        from tests.test_env import data_workers
        source = ClipSource(RandomClips(12), 2, seed=0, num_workers=2)
        workers += data_workers(source.next_batch)
        print("workers", len(workers), flush=True)
    """)  # exits with the workers running and the source never closed
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "workers 2" in result.stdout and "exit codes [0, 0]" in result.stdout, result.stdout + result.stderr[-2000:]


def test_clip_source_shards_ranks_disjointly():
    ranks = [ClipSource(RandomClips(12), 2, seed=0, rank=r, world_size=2) for r in range(2)]
    idx = [sum((ranks[r].next_batch()["index"].tolist() for _ in range(3)), []) for r in range(2)]
    assert not set(idx[0]) & set(idx[1]) and len(idx[0]) == 6


def test_tianshou_collector_fills_a_vector_buffer_with_torch_observations():
    from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
    from tianshou.data import Collector

    from agents.distributions import PlackettLuce

    env = make_env()
    adapter = TianshouVectorEnv(env)

    class Actor(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.score = torch.nn.Linear(32, 1)

        def forward(self, obs, state=None, info=None):
            return self.score(torch.as_tensor(obs)).squeeze(-1), state

    policy = ProbabilisticActorPolicy(
        actor=Actor(), dist_fn=lambda logits: PlackettLuce(logits, env.num_visible),
        action_space=env.single_action_space, action_scaling=False, action_bound_method=None)
    buffer = VectorReplayBuffer(16, len(adapter), ignore_obs_next=True)
    collector = Collector(policy, adapter, buffer)
    collector.reset()
    with torch.no_grad():
        stats = collector.collect(n_step=8)
    assert stats.n_collected_steps == 8 and stats.n_collected_episodes == 8
    assert len(buffer) == 8 and env.optimizer.num_updates == 2
    data = buffer[:]
    assert isinstance(data.obs, torch.Tensor) and data.obs.device == env.device
    assert data.obs.shape == (8, 8, 32)
    assert data.act.shape == (8, 2)
    assert isinstance(data.info, Batch) and data.info.token_error.shape == (8, 8)
    # the stored visible mask is the stored action, and the error is zero exactly there
    for row in range(8):
        assert set(np.flatnonzero(data.info.visible[row])) == set(data.act[row].tolist())
    assert np.all(np.asarray(data.info.token_error)[np.asarray(data.info.visible)] == 0)
    assert (data.rew > 0).all()
