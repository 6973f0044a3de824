"""Scratch: toy env for learning tests."""
import math, time
import numpy as np, torch
from gymnasium import spaces
from tianshou.data import Collector, VectorReplayBuffer
from envs import TianshouVectorEnv
from agents.registry import build_agent

class ToyTokenEnv:
    def __init__(self, *, batch=32, group_size=1, num_tokens=16, num_informative=8, num_visible=4, content_dim=8, rank=4, noise=0.05, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.num_tokens, self.num_visible, self.group_size = num_tokens, num_visible, group_size
        self.num_envs = batch * group_size; self.batch = batch
        self.mask_ratio = 1 - num_visible / num_tokens
        self.grid = (2, 2, num_tokens // 4)
        perm = torch.randperm(num_tokens, generator=g)
        self.informative = torch.zeros(num_tokens, dtype=torch.bool); self.informative[perm[:num_informative]] = True
        A = torch.randn(num_informative, rank, generator=g); A = A / A.norm(dim=1, keepdim=True) * math.sqrt(1 - noise)
        self.loadings = torch.zeros(num_tokens, rank); self.loadings[self.informative] = A
        self.cov = self.loadings @ self.loadings.T + torch.diag(torch.where(self.informative, noise, 1.0))
        self.content_dim, self.rank, self.noise = content_dim, rank, noise
        self.dim = content_dim + num_tokens
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (num_tokens, self.dim), np.float32)
        self.single_action_space = spaces.MultiDiscrete([num_tokens] * num_visible)
        self.rng = torch.Generator().manual_seed(seed + 1)
        self._groups = 0
    def _sample(self):
        B = self.batch
        z = torch.randn(B, self.rank, self.content_dim, generator=self.rng)
        eps = torch.randn(B, self.num_tokens, self.content_dim, generator=self.rng)
        scale = torch.where(self.informative, math.sqrt(self.noise), 1.0)[None, :, None]
        x = self.loadings @ z + scale * eps  # (B,N,C)
        x = x.repeat_interleave(self.group_size, 0)
        self.x = x
        self.group = np.repeat(self._groups + np.arange(B), self.group_size); self._groups += B
        pos = torch.eye(self.num_tokens).expand(len(x), -1, -1)
        self.obs = torch.cat([x, pos], -1)
    @property
    def has_batch(self): return hasattr(self, "obs")
    @property
    def observation(self): return self.obs
    def reset(self, *, seed=None, options=None):
        if seed is not None: self.rng.manual_seed(seed)
        self._sample(); return self.obs, self.reset_info()
    def reset_info(self):
        z = torch.zeros(self.num_envs, self.num_tokens)
        return {"token_error": z, "visible": z.bool(), "group": self.group, "clip_index": self.group, "label": np.zeros(self.num_envs, np.int64)}
    def errors(self, visible):
        """Per-token squared error of the Gaussian conditional mean given the visible tokens."""
        B = visible.shape[0]; K = self.num_visible
        vis_idx = visible.float().argsort(dim=1, descending=True, stable=True)[:, :K]
        S_vv = self.cov[vis_idx[:, :, None], vis_idx[:, None, :]]  # (B,K,K)
        S_nv = self.cov[:, vis_idx].permute(1, 0, 2)  # (B,N,K)
        xv = torch.gather(self.x, 1, vis_idx[:, :, None].expand(-1, -1, self.content_dim))
        pred = S_nv @ torch.linalg.solve(S_vv, xv)
        err = ((self.x - pred) ** 2).mean(-1)
        return torch.where(visible, 0.0, err)
    def step(self, act):
        act = torch.as_tensor(np.asarray(act)).long()
        visible = torch.zeros(self.num_envs, self.num_tokens, dtype=torch.bool).scatter_(1, act, True)
        err = self.errors(visible)
        rew = (err.sum(1) / (self.num_tokens - self.num_visible)).numpy().astype(np.float32)
        info = {"token_error": err, "visible": visible, "group": self.group, "clip_index": self.group, "label": np.zeros(self.num_envs, np.int64)}
        self._sample()
        return self.obs, rew, np.ones(self.num_envs, bool), np.zeros(self.num_envs, bool), info
    def close(self): pass

class TokenLinear(torch.nn.Module):
    def __init__(self, dim):
        super().__init__(); self.score = torch.nn.Linear(dim, 1)
        torch.nn.init.zeros_(self.score.weight); torch.nn.init.zeros_(self.score.bias)
    def forward(self, obs, state=None, info=None):
        return self.score(torch.as_tensor(obs)).squeeze(-1), state

class MeanCritic(torch.nn.Module):
    def __init__(self, dim):
        super().__init__(); self.v = torch.nn.Sequential(torch.nn.Linear(dim, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    def forward(self, obs, state=None, info=None):
        return self.v(torch.as_tensor(obs).mean(1))

def evaluate(env, policy_fn, batches=20):
    L, noise = [], []
    for _ in range(batches):
        env._sample()
        act = policy_fn(env.obs)
        _, rew, *_ , info = env.step(act)
        L.append(rew.mean()); noise.append((~env.informative[torch.as_tensor(np.asarray(act))]).float().mean().item())
    return float(np.mean(L)), float(np.mean(noise))

def uniform_act(obs):
    B = obs.shape[0]; return torch.rand(B, 16).argsort(1)[:, :4]

def train(name, cfg, updates=150, group_size=1, batch=32, seed=0):
    torch.manual_seed(seed)
    env = ToyTokenEnv(batch=batch, group_size=group_size, seed=seed)
    actor, critic = TokenLinear(env.dim), MeanCritic(env.dim)
    agent = build_agent(name, env=env, config=cfg, actor=actor, critic=critic)
    adapter = TianshouVectorEnv(env)
    buf = VectorReplayBuffer(env.num_envs, env.num_envs, ignore_obs_next=True)
    col = Collector(agent.policy, adapter, buf); col.reset()
    t = time.time()
    for u in range(updates):
        with torch.no_grad(): col.collect(n_step=env.num_envs)
        stats = agent.update(buf); buf.reset()
    dt = time.time() - t
    def pol(obs):
        with torch.no_grad(): return agent.policy.distribution(type("B", (), {"obs": obs, "get": lambda s, k, d=None: d})()).sample()
    ev = evaluate(ToyTokenEnv(batch=256, seed=seed), pol)
    with torch.no_grad():
        probs = agent.policy.distribution(type("B", (), {"obs": env.obs[:1], "get": lambda s, k, d=None: d})()).probs[0]
    return ev, dt, probs, env

if __name__ == "__main__":
    import sys
    torch.manual_seed(0)
    env = ToyTokenEnv(batch=256)
    print("uniform", evaluate(env, uniform_act))
    inf = env.informative
    print("best coop", evaluate(env, lambda o: torch.nonzero(inf)[:4, 0].expand(o.shape[0], -1)))
    print("best adv", evaluate(env, lambda o: torch.nonzero(~inf)[:4, 0].expand(o.shape[0], -1)))
    # Delta_i under uniform
    Ls, masks = [], []
    for _ in range(40):
        env._sample(); a = uniform_act(env.obs); _, r, *_ = env.step(a)
        m = torch.zeros(256, 16, dtype=torch.bool).scatter_(1, a, True); Ls.append(torch.as_tensor(r)); masks.append(m)
    L = torch.cat(Ls); M = torch.cat(masks)
    delta = torch.stack([L[~M[:, i]].mean() - L[M[:, i]].mean() for i in range(16)])
    print("informative", inf.int().tolist()); print("delta", [round(d, 3) for d in delta.tolist()])
