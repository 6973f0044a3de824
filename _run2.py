import sys, torch
torch.set_num_threads(1)
from _toy import *
for cfg in [dict(lr=0.05, update_steps_policy=4, critic_hidden=[16], objective="paper"),
            dict(lr=0.05, update_steps_policy=4, critic_hidden=[16], objective="paper", entropy_coef=0.0),
            dict(lr=0.05, update_steps_policy=4, critic_hidden=[16], objective="paper", advantage_normalization=True)]:
    (L, noise), dt, probs, env = train("ppo", cfg, updates=100)
    print(cfg, "L", round(L,3), "noise share", round(noise,3), "time", round(dt,1))
    print("  p", [round(p,3) for p in probs.tolist()])
