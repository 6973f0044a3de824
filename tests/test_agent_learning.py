"""Do the agents learn what their objective says? A toy with informative and noise tokens.

The toy (docs/design.md section 3) has N = 16 tokens per clip, K = 4 visible. Eight fixed
positions are *informative*: their contents are a rank-4 linear function of a per-clip
latent plus a little noise, so 4 visible informative tokens predict the other informative
ones almost exactly. The other eight are *pure noise*: unpredictable from anything. All
tokens have unit variance. "Reconstruction" is the exact Gaussian conditional mean of every
token given the visible ones, so the reward L_R (mean squared error over the masked tokens)
needs no training and is deterministic given the clip and the mask.

What each objective should do, against the uniform policy (the initial one):

- ``cooperative`` (exact log-prob, R = -L_R): lower L_R, by keeping informative tokens visible;
- ``adversarial`` (exact log-prob, R = +L_R): higher L_R, the visible set fills with noise;
- ``paper`` (masked-token log-prob, R = +L_R): raise p of the tokens whose masking goes with
  high-error episodes (here the informative ones);
- AdaMAE's token-level REINFORCE: raise p of the tokens with a high error of their own when
  masked (here the noise tokens: on this toy the two "make hard tokens visible" rules disagree).

The actor is a Linear per token (observations carry a one-hot position), so what is learnt
is a per-position preference; the algorithms, the Collector and the buffers are the real ones.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from tianshou.data import Batch, Collector, VectorReplayBuffer

from agents.registry import build_agent
from envs import TianshouVectorEnv

pytestmark = pytest.mark.slow

N, K, NUM_INFORMATIVE, RANK, CONTENT, NOISE = 16, 4, 8, 4, 8, 0.05


class ToyTokenEnv(VectorEnv):
    """The toy as a batched environment with :class:`envs.MAEVectorEnv`'s interface (same-step autoreset)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, *, clips: int = 32, group_size: int = 1, seed: int = 0, noise_var: float = 1.0) -> None:
        structure = torch.Generator().manual_seed(1234)  # the same toy for every test
        self.num_tokens, self.num_visible, self.group_size = N, K, group_size
        self.num_envs, self.clips = clips * group_size, clips
        self.mask_ratio, self.grid = 1 - K / N, (2, 2, 4)
        self.informative = torch.zeros(N, dtype=torch.bool)
        self.informative[torch.randperm(N, generator=structure)[:NUM_INFORMATIVE]] = True
        loadings = torch.randn(NUM_INFORMATIVE, RANK, generator=structure)
        self.loadings = torch.zeros(N, RANK)
        self.loadings[self.informative] = loadings / loadings.norm(dim=1, keepdim=True) * math.sqrt(1 - NOISE)
        self.own_std = torch.where(self.informative, math.sqrt(NOISE), math.sqrt(noise_var))
        self.cov = self.loadings @ self.loadings.T + torch.diag(self.own_std**2)  # diagonal 1 | noise_var
        dim = CONTENT + N
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (N, dim), np.float32)
        self.single_action_space = spaces.MultiDiscrete([N] * K)
        self.rng = torch.Generator().manual_seed(seed)
        self.groups_emitted, self.content, self.observation = 0, None, None
        self.batches_loaded = 0

    @property
    def has_batch(self) -> bool:
        return self.observation is not None

    def _next_clips(self) -> None:
        latent = torch.randn(self.clips, RANK, CONTENT, generator=self.rng)
        own = torch.randn(self.clips, N, CONTENT, generator=self.rng) * self.own_std[:, None]
        self.content = (self.loadings @ latent + own).repeat_interleave(self.group_size, 0)  # (B, N, C)
        self.group = np.repeat(self.groups_emitted + np.arange(self.clips), self.group_size)
        self.groups_emitted += self.clips
        self.batches_loaded += 1
        position = torch.eye(N).expand(self.num_envs, N, N)
        self.observation = torch.cat([self.content, position], -1)

    def token_error(self, visible: torch.Tensor) -> torch.Tensor:
        """Squared error of E[x | visible tokens] per token, 0 at visible ones, ``(B, N)``."""
        index = visible.float().argsort(dim=1, descending=True, stable=True)[:, :K]  # (B, K)
        cov_vv = self.cov[index[:, :, None], index[:, None, :]]
        cov_nv = self.cov[:, index].permute(1, 0, 2)
        x_v = self.content.gather(1, index[:, :, None].expand(-1, -1, CONTENT))
        error = ((self.content - cov_nv @ torch.linalg.solve(cov_vv, x_v)) ** 2).mean(-1)
        return torch.where(visible, 0.0, error)

    def _info(self, error: torch.Tensor, visible: torch.Tensor) -> dict:
        return {"token_error": error, "visible": visible, "group": self.group,
                "clip_index": self.group, "label": np.zeros(self.num_envs, np.int64)}

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.rng.manual_seed(seed)
        self._next_clips()
        return self.observation, self.reset_info()

    def reset_info(self) -> dict:
        zeros = torch.zeros(self.num_envs, N)
        return self._info(zeros, zeros.bool())

    def step(self, act):
        index = torch.as_tensor(np.asarray(act)).long()
        visible = torch.zeros(self.num_envs, N, dtype=torch.bool).scatter_(1, index, True)
        error = self.token_error(visible)
        reward = (error.sum(1) / (N - K)).numpy().astype(np.float32)
        finished = self._info(error, visible)
        self._next_clips()
        info = {**self.reset_info(), "final_info": finished}
        return self.observation, reward, np.ones(self.num_envs, bool), np.zeros(self.num_envs, bool), info

    def close(self) -> None:
        pass


class TokenLinear(torch.nn.Module):
    """A score per token from its own features; zero init = the uniform policy."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = torch.nn.Linear(dim, 1)
        torch.nn.init.zeros_(self.score.weight)
        torch.nn.init.zeros_(self.score.bias)

    def forward(self, obs, state=None, info=None):
        return self.score(torch.as_tensor(obs)).squeeze(-1), state


class MeanTokenCritic(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def forward(self, obs, state=None, info=None):
        return self.mlp(torch.as_tensor(obs).mean(1))


def train(name: str, config: dict, *, updates: int, clips: int = 32, group_size: int = 1, noise_var: float = 1.0):
    """Algorithm 1's loop with k = 1: collect one step of every env, update, clear the buffer."""
    torch.manual_seed(0)
    np.random.seed(0)  # Tianshou shuffles minibatches with numpy's global RNG
    env = ToyTokenEnv(clips=clips, group_size=group_size, seed=0, noise_var=noise_var)
    dim = env.single_observation_space.shape[-1]
    agent = build_agent(name, env=env, config=config, actor=TokenLinear(dim), critic=MeanTokenCritic(dim))
    buffer = VectorReplayBuffer(env.num_envs, env.num_envs, ignore_obs_next=True)
    collector = Collector(agent.policy, TianshouVectorEnv(env), buffer)
    collector.reset()
    for _ in range(updates):
        with torch.no_grad():
            collector.collect(n_step=env.num_envs)
        agent.update(buffer)
        buffer.reset()
    return agent


def rollout(act_fn, batches: int = 10, seed: int = 99) -> dict[str, torch.Tensor]:
    """Fresh clips: mean L_R, share of noise tokens among the visible, visible/masked stats."""
    env = ToyTokenEnv(clips=256, seed=seed)
    env.reset()
    rewards, visibles = [], []
    for _ in range(batches):
        act = act_fn(env.observation)
        _, reward, *_, info = env.step(act)
        rewards.append(torch.as_tensor(reward))
        visibles.append(info["final_info"]["visible"])
    reward, visible = torch.cat(rewards), torch.cat(visibles)
    return {"loss": reward.mean(), "noise_share": visible[:, ~env.informative].float().sum(1).mean() / K,
            "reward": reward, "visible": visible, "informative": env.informative}


def uniform_actions(obs):
    return torch.rand(len(obs), N).argsort(dim=1)[:, :K]


def policy_actions(agent):
    def act(obs):
        with torch.no_grad():
            return agent.policy.distribution(Batch(obs=obs)).sample()
    return act


def policy_probs(agent) -> torch.Tensor:
    env = ToyTokenEnv(clips=64, seed=7)
    env.reset()
    with torch.no_grad():
        return agent.policy.distribution(Batch(obs=env.observation)).probs.mean(0)


PPO = dict(lr=0.05, update_steps_policy=4, policy_coef=1.0, value_coef=1.0, entropy_coef=0.0,
           advantage_normalization=True, critic_hidden=[16])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: threads only add overhead (and contention on a shared 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uniform():
    torch.manual_seed(1)
    return rollout(uniform_actions)


def test_ppo_cooperative_lowers_the_reconstruction_error(uniform):
    learned = rollout(policy_actions(train("ppo", {**PPO, "objective": "cooperative"}, updates=120)))
    print(f"cooperative: L_R uniform {uniform['loss']:.3f} -> learned {learned['loss']:.3f}; "
          f"noise share {uniform['noise_share']:.2f} -> {learned['noise_share']:.2f}")
    assert learned["loss"] < uniform["loss"] - 0.06
    assert learned["noise_share"] < 0.4


def test_ppo_adversarial_fills_the_visible_set_with_noise(uniform):
    learned = rollout(policy_actions(train("ppo", {**PPO, "objective": "adversarial"}, updates=120)))
    print(f"adversarial: L_R uniform {uniform['loss']:.3f} -> learned {learned['loss']:.3f}; "
          f"noise share {uniform['noise_share']:.2f} -> {learned['noise_share']:.2f}")
    assert learned["loss"] > uniform["loss"] + 0.12
    assert learned["noise_share"] > 0.9


def test_ppo_paper_raises_tokens_masked_in_high_error_episodes(uniform):
    # per token: mean L_R of uniform episodes where it was masked minus where it was visible
    reward, visible = uniform["reward"], uniform["visible"]
    delta = torch.stack([reward[~visible[:, i]].mean() - reward[visible[:, i]].mean() for i in range(N)])
    # the paper's coefficients c1 = c2 = 1e-4 (Adam makes their scale moot); c3 = 0 here:
    # with c3 = c1 the entropy bonus holds this toy's policy at uniform
    agent = train("ppo", {**PPO, "objective": "paper", "policy_coef": 1e-4, "value_coef": 1e-4,
                          "advantage_normalization": False}, updates=120)
    probs = policy_probs(agent)
    hurt = delta > 0
    print(f"paper: p mass on the {int(hurt.sum())} tokens whose masking raised L_R: "
          f"uniform {hurt.float().mean():.2f} -> learned {probs[hurt].sum():.2f}; "
          f"L_R {uniform['loss']:.3f} -> {rollout(policy_actions(agent))['loss']:.3f}")
    assert probs[hurt].sum() > 0.7


def test_grpo_cooperative_lowers_the_reconstruction_error(uniform):
    config = dict(lr=0.05, update_steps_policy=4, group_size=4)
    learned = rollout(policy_actions(train("grpo", config, updates=120, clips=8, group_size=4)))
    print(f"grpo cooperative: L_R uniform {uniform['loss']:.3f} -> learned {learned['loss']:.3f}; "
          f"noise share {uniform['noise_share']:.2f} -> {learned['noise_share']:.2f}")
    assert learned["loss"] < uniform["loss"] - 0.06


def test_reinforce_token_level_raises_tokens_with_high_own_error(uniform):
    # AdaMAE: each masked token's log p weighted by its own error. This rule has no corner
    # optimum: its fixed point is p_j ~ P(j masked) * E[e_j | masked], so p stays spread.
    # With unit-variance noise it is also self-limiting (once noise is visible, the masked
    # informative tokens are as unpredictable as noise, all errors ~1, and p stalls at ~0.57
    # on noise); here the noise tokens are "hard" (variance 2), so their own error stays the
    # largest and every one of them must end above every informative token.
    agent = train("reinforce", dict(lr=0.05, update_steps_policy=4, recipe="separate"), updates=120,
                  noise_var=2.0)
    probs = policy_probs(agent)
    noise = ~uniform["informative"]
    print(f"reinforce (AdaMAE): p mass on the (variance-2) noise tokens uniform 0.50 -> learned "
          f"{probs[noise].sum():.2f}; min p noise {probs[noise].min():.3f}, max p informative "
          f"{probs[~noise].max():.3f}")
    assert probs[noise].sum() > 0.62
    assert probs[noise].min() > probs[~noise].max()
