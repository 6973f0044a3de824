import sys, torch
torch.set_num_threads(1)
from _toy import *
for name, cfg, g, b in [("grpo", dict(lr=0.05, update_steps_policy=4, group_size=4), 4, 8),
            ("grpo", dict(lr=0.05, update_steps_policy=4, group_size=4, normalize_std=True, kl_coef=0.01, kl_estimator="k3"), 4, 8),
            ("reinforce", dict(lr=0.05, update_steps_policy=1), 1, 32),
            ("reinforce", dict(lr=0.05, update_steps_policy=1, estimator="clip", objective="cooperative", baseline="ema"), 1, 32)]:
    (L, noise), dt, probs, env = train(name, cfg, updates=100, group_size=g, batch=b)
    print(name, cfg, "L", round(L,3), "noise share", round(noise,3), "time", round(dt,1))
    print("  p", [round(p,3) for p in probs.tolist()])
