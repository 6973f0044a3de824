"""Agents: each loss against hand-computed values, the registry, fixed maskers, one
Collector + update cycle per agent on the tiny MAE environment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tianshou.data import Batch, VectorReplayBuffer

from agents.algorithms import (
    GRPOConfig,
    PPOConfig,
    ReinforceConfig,
    group_advantages,
)
from agents import inspect as inspector
from agents.buffers import dump_hdf5, read_rollouts
from agents.registry import AGENTS, build_agent, group_size_of, make_config
from tests.helpers import collect_steps
from tests.test_env import make_env

N, K, B = 5, 2, 3
TINY_NETS = dict(num_heads=2)  # the tiny MAE's tokens are 32 wide


# ---- stand-ins whose outputs are set by hand through the observation ----------------------
class ObsLogits(torch.nn.Module):
    """logits = scale * obs[..., 0]: the test writes the logits into the observation."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, obs, state=None, info=None):
        return self.scale * torch.as_tensor(obs)[..., 0], state


class ObsValue(torch.nn.Module):
    """V = shift + mean_n obs[..., 1]: the test writes the value into the observation."""

    def __init__(self) -> None:
        super().__init__()
        self.shift = torch.nn.Parameter(torch.zeros(()))

    def forward(self, obs, state=None, info=None):
        return (self.shift + torch.as_tensor(obs)[..., 1].mean(1)).unsqueeze(-1)


class HandEnv:
    """Just the fields an agent reads off an environment (N=5, K=2)."""

    def __init__(self, group_size: int = 1) -> None:
        import gymnasium as gym

        self.num_tokens, self.num_visible, self.mask_ratio, self.group_size = N, K, 0.6, group_size
        self.grid = (1, 1, N)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (N, 2), np.float32)
        self.single_action_space = gym.spaces.MultiDiscrete([N] * K)


LOGITS = np.array([[1.0, 0.5, -0.5, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0], [-1.0, 3.0, 0.2, 0.7, -0.3]])
ACT = np.array([[4, 0], [2, 3], [1, 4]])
REW = np.array([0.9, 0.5, 0.7])  # +L_R from the environment
V_OLD = np.array([0.6, 0.8, 0.2])  # stored with the episode
V_NOW = np.array([0.65, 0.55, 0.4])  # what the critic says now
RATIO = np.array([1.5, 0.7, 1.1])  # new / old, set through the stored log-prob


def probs_of(logits):
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def pl_log_prob(p, act):
    """Plackett-Luce by hand: sum_j log p_aj - log(1 - sum_{i<j} p_ai)."""
    out = []
    for row, a in zip(p, act):
        drawn, total = 0.0, 0.0
        for j in a:
            total += math.log(row[j]) - math.log(1.0 - drawn)
            drawn += row[j]
        out.append(total)
    return np.array(out)


def masked_mean_log_prob(p, act):
    return np.array([np.mean([math.log(row[i]) for i in range(N) if i not in a]) for row, a in zip(p, act)])


def entropy_of(p):
    return -(p * np.log(p)).sum(1)


def hand_batch(logp_key: str, logp_now: np.ndarray, token_error=None, group=None) -> Batch:
    obs = np.stack([LOGITS, np.repeat(V_NOW[:, None], N, 1)], -1).astype(np.float32)
    stored = {"value": torch.tensor(V_OLD, dtype=torch.float32),
              logp_key: torch.tensor(logp_now - np.log(RATIO), dtype=torch.float32)}
    info = {}
    if token_error is not None:
        info["token_error"] = torch.tensor(token_error, dtype=torch.float32)
    if group is not None:
        info["group"] = np.asarray(group)
    return Batch(obs=torch.tensor(obs), act=ACT.copy(), rew=REW.copy(), policy=Batch(stored), info=Batch(info))


def build(name, env_group_size=None, **options):
    group_size = env_group_size if env_group_size is not None else options.get("group_size", 1)
    return build_agent(name, env=HandEnv(group_size), config=options, actor=ObsLogits(), critic=ObsValue())


# ---- PPO (Eq. 7-8) -----------------------------------------------------------------------------
@pytest.mark.parametrize("objective, normalize", [("paper", False), ("cooperative", False),
                                                  ("adversarial", False), ("paper", True)])
def test_ppo_loss_by_hand(objective, normalize):
    c1, c2, c3, eps = 0.5, 0.25, 0.1, 0.2
    agent = build("ppo", objective=objective, policy_coef=c1, value_coef=c2, entropy_coef=c3,
                  eps_clip=eps, advantage_normalization=normalize)
    p = probs_of(LOGITS)
    masked = objective == "paper"
    logp = masked_mean_log_prob(p, ACT) if masked else pl_log_prob(p, ACT)
    ret = REW if objective != "cooperative" else -REW
    batch = agent.algorithm.prepare(hand_batch("masked_log_prob" if masked else "log_prob", logp))
    loss, stats = agent.algorithm.compute_loss(batch)

    adv = ret - V_OLD  # A = R - V_old, one-step episodes
    np.testing.assert_allclose(batch.adv.numpy(), adv, rtol=1e-5)
    if normalize:
        adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)
    j_clip = np.minimum(RATIO * adv, np.clip(RATIO, 1 - eps, 1 + eps) * adv).mean()
    value_loss = ((V_NOW - ret) ** 2).mean()
    entropy = entropy_of(p).mean()
    expected = -(c1 * j_clip - c2 * value_loss + c3 * entropy)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["clip_objective"].item() == pytest.approx(j_clip, rel=1e-5)
    assert stats["value_loss"].item() == pytest.approx(value_loss, rel=1e-5)
    assert stats["entropy"].item() == pytest.approx(entropy, rel=1e-5)
    assert stats["ratio_mean"].item() == pytest.approx(RATIO.mean(), rel=1e-5)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 3)  # 1.5 and 0.7 are outside 1 +- 0.2
    assert stats["approx_kl"].item() == pytest.approx(((RATIO - 1) - np.log(RATIO)).mean(), rel=1e-4)


def test_ppo_dual_clip_and_value_clip_by_hand():
    c1, c2, eps, dual = 1.0, 1.0, 0.2, 1.2
    agent = build("ppo", objective="cooperative", policy_coef=c1, value_coef=c2, entropy_coef=0.0,
                  eps_clip=eps, dual_clip=dual, value_clip=True)
    logp = pl_log_prob(probs_of(LOGITS), ACT)
    batch = agent.algorithm.prepare(hand_batch("log_prob", logp))
    loss, stats = agent.algorithm.compute_loss(batch)
    ret = -REW
    adv = ret - V_OLD  # all negative here: [-1.5, -1.3, -0.9]
    surrogate = np.minimum(RATIO * adv, np.clip(RATIO, 1 - eps, 1 + eps) * adv)
    surrogate = np.where(adv < 0, np.maximum(surrogate, dual * adv), surrogate)
    assert surrogate[0] == pytest.approx(dual * adv[0])  # ratio 1.5 > c: the dual clip binds
    v_clipped = V_OLD + np.clip(V_NOW - V_OLD, -eps, eps)
    value_loss = np.maximum((V_NOW - ret) ** 2, (v_clipped - ret) ** 2).mean()
    assert stats["clip_objective"].item() == pytest.approx(surrogate.mean(), rel=1e-5)
    assert stats["value_loss"].item() == pytest.approx(value_loss, rel=1e-5)
    assert loss.item() == pytest.approx(-(c1 * surrogate.mean() - c2 * value_loss), rel=1e-5)
    with pytest.raises(ValueError, match="dual_clip"):
        build("ppo", dual_clip=0.5)


def test_ppo_recomputes_old_log_prob_and_value_when_the_buffer_lacks_them():
    agent = build("ppo")
    batch = hand_batch("masked_log_prob", np.zeros(B))
    batch.policy = Batch()
    batch = agent.algorithm.prepare(batch)
    np.testing.assert_allclose(batch.v_s.numpy(), V_NOW, rtol=1e-6)
    _, stats = agent.algorithm.compute_loss(batch)
    assert stats["ratio_mean"].item() == pytest.approx(1.0)


def test_ppo_resampled_ratio_follows_algorithm_1_line_18():
    agent = build("ppo", objective="cooperative", ratio_on="resampled")
    batch = hand_batch("log_prob", np.zeros(B))
    batch.obs[..., 0] = torch.tensor([30.0, 15.0, 0.0, 0.0, 0.0])  # I_v' = (0, 1) almost surely
    batch = agent.algorithm.prepare(batch)
    torch.manual_seed(0)
    _, stats = agent.algorithm.compute_loss(batch)
    # pi_theta(I_m') ~ 1 for the fresh draw, over pi_old(I_m) = exp(-log RATIO) of the stored one
    assert stats["ratio_mean"].item() == pytest.approx(RATIO.mean(), rel=1e-4)


# ---- REINFORCE (AdaMAE) ------------------------------------------------------------------------
def test_reinforce_token_loss_weights_masked_log_probs_by_their_error():
    error = np.array([[0.3, 0.1, 0.7, 0.2, 0.0], [1.0, 0.4, 0.0, 0.0, 0.2], [0.5, 0.0, 0.9, 0.1, 0.0]])
    agent = build("reinforce", entropy_coef=0.05)
    batch = agent.algorithm.prepare(hand_batch("log_prob", np.zeros(B), token_error=error))
    loss, stats = agent.algorithm.compute_loss(batch)
    log_p = np.log(probs_of(LOGITS))
    per_clip = [np.mean([log_p[b, i] * error[b, i] for i in range(N) if i not in ACT[b]]) for b in range(B)]
    expected_pg = -np.mean(per_clip)
    assert stats["pg_loss"].item() == pytest.approx(expected_pg, rel=1e-5)
    assert loss.item() == pytest.approx(expected_pg - 0.05 * entropy_of(probs_of(LOGITS)).mean(), rel=1e-5)


def test_reinforce_clip_estimator_with_batch_baseline():
    agent = build("reinforce", estimator="clip", objective="cooperative", baseline="batch", recipe="separate")
    batch = agent.algorithm.prepare(hand_batch("log_prob", np.zeros(B)))
    loss, _ = agent.algorithm.compute_loss(batch)
    ret = -REW
    logp = pl_log_prob(probs_of(LOGITS), ACT)
    assert loss.item() == pytest.approx(-((ret - ret.mean()) * logp).mean(), rel=1e-5)


def fill(buffer, rew, act=ACT, group=None):
    obs = torch.tensor(np.stack([LOGITS, np.zeros_like(LOGITS)], -1), dtype=torch.float32)
    info = Batch(group=np.asarray(group)) if group is not None else Batch(clip_index=np.arange(B))
    buffer.add(Batch(obs=obs, act=act, rew=np.asarray(rew, float), terminated=np.ones(B, bool),
                     truncated=np.zeros(B, bool), info=info,
                     policy=Batch(adv=torch.full((B,), float("nan")))), buffer_ids=np.arange(B))


def test_reinforce_ema_baseline_sequence():
    agent = build("reinforce", estimator="clip", objective="adversarial", baseline="ema", baseline_decay=0.9,
                  recipe="separate")
    used = []
    for rew in ([1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]):
        buffer = VectorReplayBuffer(B, B, ignore_obs_next=True)
        fill(buffer, rew)
        used.append(agent.update(buffer)["policy/baseline"])
    # the first update uses its own mean; afterwards the EMA of past means
    assert used == pytest.approx([2.0, 2.0, 0.9 * 2.0 + 0.1 * 5.0])
    assert agent.state_dict()["algorithm"]["baseline_ema"].item() == pytest.approx(0.9 * 2.3 + 0.1 * 0.0)


# ---- GRPO ---------------------------------------------------------------------------------------
def test_group_advantages_by_hand():
    returns = torch.tensor([10.0, 1.0, 10.0, 2.0, 13.0, 3.0, 4.0])
    group = torch.tensor([7, 5, 7, 5, 7, 5, 9])  # interleaved ids; 9 is a group of one
    centred = [-1.0, -1.0, -1.0, 0.0, 2.0, 1.0, 0.0]
    np.testing.assert_allclose(group_advantages(returns, group, normalize_std=False).numpy(), centred)
    std = {7: math.sqrt(3.0), 5: 1.0, 9: 0.0}  # sample std (n - 1)
    scaled = [c / (std[g] + 1e-6) for c, g in zip(centred, group.tolist())]
    np.testing.assert_allclose(group_advantages(returns, group, normalize_std=True).numpy(), scaled, rtol=1e-6)


@pytest.mark.parametrize("estimator", ["k3", "categorical"])
def test_grpo_loss_with_kl_to_reference_by_hand(estimator):
    eps, beta, c_ent = 0.2, 0.3, 0.05
    agent = build("grpo", group_size=3, eps_clip=eps, kl_coef=beta, kl_estimator=estimator,
                  entropy_coef=c_ent, normalize_std=True)
    with torch.no_grad():
        agent.policy.actor.scale.fill_(1.5)  # the policy moved away from the reference (scale 1)
    p_now, p_ref = probs_of(1.5 * LOGITS), probs_of(LOGITS)
    logp_now = pl_log_prob(p_now, ACT)
    group = [4, 4, 4]
    batch = agent.algorithm.prepare(hand_batch("log_prob", logp_now, group=group))
    loss, stats = agent.algorithm.compute_loss(batch)

    ret = -REW  # cooperative
    adv = (ret - ret.mean()) / (ret.std(ddof=1) + 1e-6)
    j_clip = np.minimum(RATIO * adv, np.clip(RATIO, 1 - eps, 1 + eps) * adv).mean()
    if estimator == "k3":
        x = pl_log_prob(p_ref, ACT) - logp_now
        kl = (np.exp(x) - x - 1).mean()
    else:
        kl = (p_now * (np.log(p_now) - np.log(p_ref))).sum(1).mean()
    expected = -j_clip + beta * kl - c_ent * entropy_of(p_now).mean()
    assert stats["kl_ref"].item() == pytest.approx(kl, rel=1e-4)
    assert loss.item() == pytest.approx(expected, rel=1e-4)


def test_grpo_refuses_k3_on_the_masked_objective_and_mismatched_groups():
    with pytest.raises(ValueError, match="categorical"):
        build("grpo", group_size=3, objective="paper", kl_coef=0.1, kl_estimator="k3")
    with pytest.raises(ValueError, match="group_size"):
        build("grpo", env_group_size=1, group_size=3)  # the env presents each clip once
    agent = build("grpo", group_size=3)
    with pytest.raises(ValueError, match="info.group"):
        agent.algorithm.prepare(hand_batch("log_prob", np.zeros(B)))


def test_update_writes_the_advantages_it_used_into_the_buffer():
    agent = build("grpo", group_size=3)
    buffer = VectorReplayBuffer(2 * B, B, ignore_obs_next=True)
    fill(buffer, [1.0, 2.0, 6.0], group=[0, 0, 0])
    stats = agent.update(buffer)
    np.testing.assert_allclose(buffer[:].policy.adv.numpy(), [2.0, 1.0, -3.0], rtol=1e-6)  # -(r - 3)
    assert stats["policy/adv_mean"] == pytest.approx(0.0, abs=1e-6) and stats["policy/gradient_steps"] == 1


# ---- registry ------------------------------------------------------------------------------------
def test_registry_configs_and_errors():
    assert set(AGENTS) == {"ppo", "reinforce", "grpo", "random", "tube", "custom"}
    assert make_config("ppo") == PPOConfig()
    assert PPOConfig().objective == "paper" and PPOConfig().lr == 1.5e-6
    assert PPOConfig().policy_coef == PPOConfig().value_coef == PPOConfig().entropy_coef == 1e-4
    assert ReinforceConfig().actor == "mha" and GRPOConfig().objective == "cooperative"
    assert group_size_of("grpo") == 4 and group_size_of("grpo", {"group_size": 6}) == 6
    assert group_size_of("ppo") == 1 and group_size_of("tube") == 1
    with pytest.raises(ValueError, match="unknown option"):
        make_config("ppo", {"eps": 0.1})
    with pytest.raises(ValueError, match="objective"):
        make_config("ppo", {"objective": "selfish"})
    with pytest.raises(ValueError, match="does not match"):
        make_config("tube", {"name": "random"})
    with pytest.raises(ValueError, match="unknown agent"):
        make_config("dqn")
    with pytest.raises(TypeError, match="PPOConfig"):
        make_config("ppo", GRPOConfig())


@pytest.mark.parametrize("name, actor_type", [("ppo", "TATSActor"), ("reinforce", "AdaMAEActor"),
                                              ("grpo", "TATSActor")])
def test_registry_builds_the_real_networks(name, actor_type):
    env = make_env(batch=2, group_size=group_size_of(name))
    agent = build_agent(name, env=env, config={**TINY_NETS, "critic_hidden": [16]} if name == "ppo" else TINY_NETS)
    assert type(agent.policy.actor).__name__ == actor_type
    assert agent.group_size == group_size_of(name) and agent.learns
    orthoformer = build_agent(name, env=env, config={**TINY_NETS, "actor": "orthoformer", "num_landmarks": 4})
    assert orthoformer.policy.actor.blocks[0].attn.attn_impl == "orthoformer"


@pytest.mark.parametrize("name", ["random", "tube"])
def test_fixed_agents_act_validly_and_resume(name):
    env = make_env(batch=4)
    env.reset(seed=0)
    agent = build_agent(name, env=env, config={"seed": 3})
    obs = Batch(obs=env.observation, info=Batch())
    state = agent.state_dict()
    act = agent.policy(obs).act
    assert act.shape == (4, env.num_visible)
    env.check_action(act)  # in range, distinct, K per clip
    if name == "tube":  # a token visible at frame t' stays visible at t' - 1 (one tube per position)
        visible = torch.zeros(4, env.num_tokens, dtype=torch.bool).scatter_(1, act, True)
        frames = visible.reshape(4, env.mae.grid[0], -1)
        assert bool((frames[:, 1:] <= frames[:, :-1]).all())
    assert agent.update(VectorReplayBuffer(4, 4)) == {}
    agent.load_state_dict(state)
    assert torch.equal(agent.policy(obs).act, act)


def test_fixed_maskers_are_an_algorithm_that_learns_nothing_and_read_older_checkpoints():
    from agents.algorithms import FixedMaskAlgorithm

    env = make_env(batch=4)
    env.reset(seed=0)
    agent = build_agent("random", env=env, config={"seed": 3})
    assert isinstance(agent.algorithm, FixedMaskAlgorithm) and not agent.learns
    obs = Batch(obs=env.observation, info=Batch())
    older = {"policy": agent.policy.state_dict()}  # the layout written before fixed maskers had an algorithm
    act = agent.policy(obs).act
    again = build_agent("random", env=env, config={"seed": 5})
    again.load_state_dict(older)
    assert torch.equal(again.policy(obs).act, act)


# ---- one Collector + update cycle per agent on the tiny MAE env ----------------------------------
@pytest.mark.parametrize("name, options", [
    ("ppo", {**TINY_NETS, "critic_hidden": [16], "batch_size": 4, "update_steps_policy": 2}),
    ("reinforce", {**TINY_NETS, "recipe": "separate"}),  # the default recipe trains in the env's step
    ("grpo", {**TINY_NETS, "group_size": 2, "kl_coef": 0.1}),
    ("random", {}),
    ("tube", {}),
])
def test_collect_and_update_smoke(name, options, tmp_path):
    torch.manual_seed(0)
    env = make_env(batch=4 // group_size_of(name, options), group_size=group_size_of(name, options))
    agent = build_agent(name, env=env, config=options)
    buffer = collect_steps(agent, env, capacity=16)
    data = buffer[:]
    assert len(data) == 8 and data.act.shape == (8, env.num_visible)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items() if torch.is_tensor(v)}
    stats = agent.update(buffer)
    summary = inspector.summarize(*read_rollouts(dump_hdf5(buffer, tmp_path / "b.h5", metadata=agent.metadata())))
    assert summary["episodes"] == 8 and summary["grid"] == list(env.mae.grid)
    assert ("advantage" in summary) == (name in ("ppo", "grpo"))
    if not agent.learns:
        assert stats == {}
        return
    # the buffer holds the episode as the paper's memory M_b (Algorithm 1 line 12)
    with torch.no_grad():
        dist = agent.policy.dist_fn(torch.log(data.policy.probs))
    torch.testing.assert_close(data.policy.log_prob, dist.log_prob(data.act), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(data.policy.masked_log_prob, dist.masked_log_prob(data.act), rtol=1e-4, atol=1e-4)
    assert data.info.token_error.shape == (8, env.num_tokens)
    if name == "ppo":
        expected_adv = torch.as_tensor(data.rew, dtype=torch.float32) - data.policy.value  # paper: R = +L_R
        torch.testing.assert_close(buffer[:].policy.adv, expected_adv)
        assert stats["policy/gradient_steps"] == 4  # 2 passes x 2 minibatches of 4
    assert all(math.isfinite(v) for v in stats.values()), stats
    after = agent.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the update changed nothing"
    restored = build_agent(name, env=env, config=options)
    restored.load_state_dict(agent.state_dict())
    assert all(torch.equal(v, restored.policy.state_dict()[k]) for k, v in after.items() if torch.is_tensor(v))
