"""Sampler actors and critic: shapes, narrower sampler, gradients, and the Tianshou contract."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.distributions import PlackettLuce
from agents.networks import AdaMAEActor, TATSActor, TATSCritic, build_actor, build_critic

GRID = (4, 2, 4)  # T', H', W': N = 32 tokens
NUM_TOKENS, EMBED_DIM, K = 32, 16, 5


def tiny_actor(kind: str, **options) -> torch.nn.Module:
    return build_actor(kind, embed_dim=EMBED_DIM, grid=GRID, num_heads=2, **options)


@pytest.mark.parametrize("kind", ["trajectory", "orthoformer", "mha"])
def test_actor_returns_logits_and_state(kind: str) -> None:
    actor = tiny_actor(kind)
    state = {"kept": True}
    logits, returned_state = actor(torch.randn(3, NUM_TOKENS, EMBED_DIM), state=state)
    assert logits.shape == (3, NUM_TOKENS) and returned_state is state
    # small head init: the first policy is close to uniform (close to random masking)
    assert PlackettLuce(logits, K, normalize_entropy=True).entropy().min() > 0.999


@pytest.mark.parametrize("kind", ["trajectory", "orthoformer", "mha"])
def test_actor_is_deterministic(kind: str) -> None:
    # PPO's first ratio pi_new / pi_old must be exactly 1 at unchanged parameters
    actor = tiny_actor(kind).train()
    obs = torch.randn(2, NUM_TOKENS, EMBED_DIM)
    assert torch.equal(actor(obs)[0], actor(obs)[0])


def test_kinds_build_the_right_networks() -> None:
    assert isinstance(tiny_actor("trajectory"), TATSActor)
    assert tiny_actor("orthoformer").blocks[0].attn.attn_impl == "orthoformer"
    mha = tiny_actor("mha")
    assert isinstance(mha, AdaMAEActor) and mha.pos_embed.shape == (1, NUM_TOKENS, EMBED_DIM)
    assert mha.block.attn.fused_attn, "AdaMAE block should run scaled_dot_product_attention"
    with pytest.raises(ValueError, match="unknown actor kind"):
        tiny_actor("gru")
    with pytest.raises(ValueError, match="attn_impl"):
        tiny_actor("trajectory", attn_impl="orthoformer")
    with pytest.raises(TypeError):
        tiny_actor("mha", temporal_values="projected")


@pytest.mark.parametrize("kind", ["trajectory", "mha"])
def test_narrower_sampler(kind: str) -> None:
    wide = tiny_actor(kind)
    narrow = tiny_actor(kind, sampler_dim=8)
    assert isinstance(narrow.input_proj, torch.nn.Linear) and narrow.input_proj.out_features == 8
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters())
    assert narrow(torch.randn(2, NUM_TOKENS, EMBED_DIM))[0].shape == (2, NUM_TOKENS)


@pytest.mark.parametrize("kind", ["trajectory", "orthoformer", "mha"])
def test_policy_losses_reach_every_parameter(kind: str) -> None:
    torch.manual_seed(0)
    actor = tiny_actor(kind, num_blocks=2) if kind != "mha" else tiny_actor(kind)
    with torch.no_grad():  # a trained-looking head, so the trunk's gradient is not ~0
        actor.head.linear.weight.normal_(std=0.1)
    dist = PlackettLuce(actor(torch.randn(3, NUM_TOKENS, EMBED_DIM))[0], K)
    action = dist.sample()
    (-(dist.log_prob(action) + dist.masked_log_prob(action) + dist.entropy()).sum()).backward()
    for name, parameter in actor.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ["trajectory", "orthoformer"])
def test_checkpointed_blocks_give_the_same_logits_and_gradients(kind: str) -> None:
    torch.manual_seed(0)
    plain = tiny_actor(kind, num_blocks=2)
    with torch.no_grad():
        plain.head.linear.weight.normal_(std=0.1)
    saved = tiny_actor(kind, num_blocks=2, checkpoint_blocks=True)
    saved.load_state_dict(plain.state_dict())
    obs = torch.randn(3, NUM_TOKENS, EMBED_DIM)
    grads = []
    for actor in (plain, saved):
        logits = actor(obs)[0]
        (logits.square().sum() + logits[:, 0].sum()).backward()
        grads.append({name: p.grad for name, p in actor.named_parameters()})
    torch.testing.assert_close(saved(obs)[0], plain(obs)[0])
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)


def test_critic_is_an_mlp_on_the_mean_token() -> None:
    critic = build_critic(embed_dim=EMBED_DIM, hidden_dims=(12, 6))
    assert isinstance(critic, TATSCritic)
    assert [m.out_features for m in critic.mlp if isinstance(m, torch.nn.Linear)] == [12, 6, 1]
    obs = torch.randn(4, NUM_TOKENS, EMBED_DIM, requires_grad=True)
    value = critic(obs)
    assert value.shape == (4, 1)
    shuffled = obs[:, torch.randperm(NUM_TOKENS)]
    torch.testing.assert_close(critic(shuffled), value)  # depends on the mean token only
    value.sum().backward()
    assert all(p.grad is not None for p in critic.parameters())
    assert TATSCritic(embed_dim=768).mlp[0].out_features == 1568  # the paper's widths


def test_observation_checks() -> None:
    actor = tiny_actor("trajectory")
    assert actor(np.zeros((2, NUM_TOKENS, EMBED_DIM), dtype=np.float32))[0].shape == (2, NUM_TOKENS)
    with pytest.raises(ValueError, match="obs must be"):
        actor(torch.randn(2, NUM_TOKENS, EMBED_DIM + 1))
    with pytest.raises(ValueError, match="obs must be"):
        actor(torch.randn(2, NUM_TOKENS - 1, EMBED_DIM))


def test_tianshou_policy_and_ppo_update_accept_the_distribution() -> None:
    from tianshou.algorithm import PPO
    from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import Batch, ReplayBuffer
    from tianshou.data.collector import get_stddev_from_dist
    from tianshou.utils.torch_utils import policy_within_training_step

    torch.manual_seed(0)
    batch_size = 6
    policy = ProbabilisticActorPolicy(
        actor=tiny_actor("trajectory"),
        dist_fn=lambda logits: PlackettLuce(logits, K),  # Tianshou 2.0.1 calls dist_fn(actor_output)
        action_space=gym.spaces.MultiDiscrete([NUM_TOKENS] * K),
        action_scaling=False,
        action_bound_method=None,
        deterministic_eval=True,
    )
    obs = torch.randn(batch_size, NUM_TOKENS, EMBED_DIM)
    with policy_within_training_step(policy):
        sampled = policy(Batch(obs=obs, info=Batch()))
    evaluated = policy(Batch(obs=obs, info=Batch()))  # outside training: deterministic mode
    assert sampled.act.shape == (batch_size, K) and len(sampled) == batch_size
    assert torch.equal(evaluated.act, evaluated.dist.mode)
    assert get_stddev_from_dist(sampled.dist).shape == (batch_size, 1)

    buffer = ReplayBuffer(size=batch_size, ignore_obs_next=True)
    for i in range(batch_size):
        buffer.add(Batch(obs=obs[i], act=sampled.act[i].numpy(), rew=np.float32(i),
                         terminated=True, truncated=False, info={}))
    algorithm = PPO(policy=policy, critic=build_critic(embed_dim=EMBED_DIM, hidden_dims=(8,)),
                    optim=AdamOptimizerFactory(lr=1e-3), gamma=0.0, gae_lambda=1.0)
    with policy_within_training_step(policy):
        stats = algorithm.update(buffer=buffer, batch_size=3, repeat=1)
    # PPO stores float actions and needs (B,) log-probs; the entropy is the single-draw one
    assert np.isfinite(stats.loss.mean) and stats.gradient_steps == 2
    assert stats.ent_loss.mean == pytest.approx(np.log(NUM_TOKENS), rel=1e-3)
