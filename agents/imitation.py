"""Imitation pre-training of a sampler's actor: the exact Plackett-Luce likelihood of teacher selections.

AutoGaze's first stage trains its selector by next-token prediction of given gazing sequences
before RL. With the K-of-N Plackett-Luce policy (:mod:`agents.distributions`) the same loss is
closed-form: a teacher's selection is an ordered K-subset ``a_1..a_K`` (the most useful token
first), and

    L_imit = -log P(a_1..a_K | X) = -sum_j [ log p_{a_j} - log(1 - sum_{i<j} p_{a_i}) ]

averaged over clips, with p = softmax(actor(X) / tau). Each term is a next-token cross-entropy
over the tokens not drawn yet, so this is exactly AutoGaze's loss with the "vocabulary" shrinking
as tokens are taken. The actor trained here is handed to RL unchanged (``train.init_actor``).

A teacher's order for K tokens also serves a smaller K' (its first K' tokens): the greedy oracle's
forward selection at K' is the prefix of its selection at K, and so is the motion ranking.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from agents.distributions import PlackettLuce


def imitation_loss(logits_BN: torch.Tensor, order_BK: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over clips of -log P(order | logits), the exact Plackett-Luce log-likelihood, scalar fp32."""
    dist = PlackettLuce(logits_BN, k=order_BK.shape[-1], temperature=temperature)
    return -dist.log_prob(order_BK).mean()


@dataclass
class ImitationResult:
    """What an imitation run did: its loss before and after, the steps and the wall seconds."""

    steps: int
    loss_first: float
    loss_last: float
    wall_s: float
    clips: int
    k: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def imitate(actor: nn.Module, tokens_BND: torch.Tensor, order_BK: torch.Tensor, *, steps: int, lr: float = 1e-3,
            batch_size: int = 32, temperature: float = 1.0, generator: torch.Generator | None = None,
            progress: bool = True) -> ImitationResult:
    """Train ``actor`` (``actor(obs, state=None, info=None) -> (logits (B, N), state)``) to maximise the
    Plackett-Luce likelihood of the teacher's ``order_BK`` on the observations ``tokens_BND``.

    Adam at ``lr``, ``steps`` minibatches of ``batch_size`` clips drawn without replacement within each
    pass (from ``generator``: the same seed, the same actor). The actor is left in the mode it was in.
    """
    if tokens_BND.shape[0] != order_BK.shape[0]:
        raise ValueError(f"{tokens_BND.shape[0]} clips of observations but {order_BK.shape[0]} teacher orders")
    device = next(actor.parameters()).device
    tokens_BND, order_BK = tokens_BND.to(device), order_BK.to(device).long()
    clips = tokens_BND.shape[0]
    batch_size = min(batch_size, clips)
    optimizer = torch.optim.Adam([p for p in actor.parameters() if p.requires_grad], lr=lr)
    was_training = actor.training
    actor.train()
    losses: list[float] = []
    perm, cursor = torch.randperm(clips, generator=generator), 0
    tic = time.perf_counter()
    for _ in tqdm(range(steps), desc="imitation", disable=not progress, dynamic_ncols=True):
        if cursor + batch_size > clips:
            perm, cursor = torch.randperm(clips, generator=generator), 0
        rows = perm[cursor:cursor + batch_size].to(device)
        cursor += batch_size
        logits, _ = actor(tokens_BND[rows], state=None, info=None)
        loss = imitation_loss(logits, order_BK[rows], temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    actor.train(was_training)
    return ImitationResult(steps=steps, loss_first=losses[0] if losses else float("nan"),
                           loss_last=losses[-1] if losses else float("nan"), wall_s=time.perf_counter() - tic,
                           clips=clips, k=int(order_BK.shape[-1]))
