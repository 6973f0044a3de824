import sys, torch
from _toy import *
common = dict(lr=0.05, update_steps_policy=4, policy_coef=1.0, value_coef=1.0, entropy_coef=0.0, advantage_normalization=True, critic_hidden=[16])
for obj in ["cooperative", "adversarial", "paper"]:
    (L, noise), dt, probs, env = train("ppo", dict(common, objective=obj), updates=int(sys.argv[1]))
    print(obj, "L", round(L,3), "noise share", round(noise,3), "time", round(dt,1))
    print("  p", [round(p,3) for p in probs.tolist()])
