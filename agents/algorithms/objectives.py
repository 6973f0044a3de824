"""Which log-probability and which return an objective uses (docs/design.md section 3).

The environment's reward is always +L_R, the reconstruction error of the masked tokens
(paper Eq. 6). An objective says how a policy-gradient algorithm reads it:

| objective     | log pi(a | X) in the ratio / gradient               | return R |
| ------------- | ------------------------------------------------- | -------- |
| ``paper``       | mean (or sum) single-draw log p_i over the MASKED   | +L_R     |
|               | tokens, :meth:`PlackettLuce.masked_log_prob`      |          |
|               | (TATS Eq. 7-8, Algorithm 1 line 12; AdaMAE's code) |          |
| ``cooperative`` | exact Plackett-Luce log-prob of the ordered visible | -L_R     |
|               | draw, :meth:`PlackettLuce.log_prob`               |          |
| ``adversarial`` | exact Plackett-Luce log-prob, as above             | +L_R     |

``paper`` is not the probability of the action taken: it raises p_i of the tokens that
were masked in high-error episodes, i.e. makes the tokens whose masking hurt likelier to
be visible (the paper's intended effect). ``cooperative`` is a true policy gradient towards
visible sets that minimise the error of the rest (AutoGaze's reward); ``adversarial`` is a
true policy gradient towards visible sets that maximise it (keep uninformative tokens
visible, hard-patch mining).

The collecting policy stores both log-probabilities of every action
(:class:`agents.algorithms.policy.TokenSamplerPolicy`), under the keys named here, so an
algorithm finds its behaviour log-prob in the buffer whatever the objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.distributions import PlackettLuce


@dataclass(frozen=True)
class Objective:
    """How an objective turns a distribution, an action and the env reward into (log pi, R).

    :param name: ``"paper"``, ``"cooperative"`` or ``"adversarial"``.
    :param masked: use the paper's masked-token log-prob instead of the exact one.
    :param reward_sign: R = reward_sign * L_R.
    """

    name: str
    masked: bool
    reward_sign: float

    @property
    def buffer_key(self) -> str:
        """Key under ``batch.policy`` where the collecting policy stored this log-prob."""
        return "masked_log_prob" if self.masked else "log_prob"

    def log_prob(self, dist: PlackettLuce, act_BK: torch.Tensor) -> torch.Tensor:
        """log pi(a | X) as this objective defines it, ``(B,)`` fp32, differentiable."""
        return dist.masked_log_prob(act_BK) if self.masked else dist.log_prob(act_BK)

    def returns(self, rew_B: torch.Tensor) -> torch.Tensor:
        """R from the environment reward +L_R, ``(B,)``."""
        return self.reward_sign * rew_B.float()


OBJECTIVES: dict[str, Objective] = {
    "paper": Objective("paper", masked=True, reward_sign=1.0),
    "cooperative": Objective("cooperative", masked=False, reward_sign=-1.0),
    "adversarial": Objective("adversarial", masked=False, reward_sign=1.0),
}


def get_objective(name: str) -> Objective:
    """The objective called ``name``; a clear error for anything else."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {tuple(OBJECTIVES)}, got {name!r}")
    return OBJECTIVES[name]
