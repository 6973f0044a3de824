"""Orthoformer: the landmark approximation of the per-frame attention of Eq. 1.

Motionformer (Patrick et al., 2021, Section 3.3; the paper's Section 3.2 "in practice, we
employ an approximation of TA (Orthoformer)") approximates each query's per-frame
softmax attention through L landmarks chosen among the queries:

    softmax_p(q_n . k_tp / sqrt(c))  ~=  sum_l softmax_l(q_n . m_l / sqrt(c)) softmax_p(m_l . k_tp / sqrt(c))

so the trajectory tokens cost O(N * L * T' * c) per head instead of O(N^2 * c): linear in N
for a fixed number of frames T' (more pixels per frame). When N grows through T' (more
frames, N = T' * P) both are quadratic in N, the approximation by a factor ~L / (2P) - and
the N * T' trajectory tokens themselves, which Eq. 2 needs, are O(N * T') in memory either
way. Both factors are softmaxes, so every approximate row still sums to 1 within each
frame. The landmarks are picked greedily to be as orthogonal as possible to
those already picked (smallest maximum |cosine|), which spreads them over the queries.

Differences from Motionformer's ``orthoformer`` (``shared_landmarks=True`` path), on
purpose:

- the first landmark is the query of largest norm, not a random one: the policy must be a
  deterministic function of its input, or a PPO ratio of two evaluations of the same
  parameters would not be 1;
- only the landmark *indices* are chosen without gradient; the landmark vectors are
  gathered from the queries with their gradient (Motionformer detaches them);
- ``num_landmarks >= N`` is clamped to N (every query is a landmark). This is still the
  approximation: it equals full attention only when each query attends mostly to itself
  among the queries (softmax_l(q_n . q_l) close to one-hot), not in general.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


@torch.no_grad()
def orthogonal_landmark_indices(queries: torch.Tensor, num_landmarks: int) -> torch.Tensor:
    """Greedy near-orthogonal landmark selection among the queries (Motionformer).

    Start from the query of largest norm; then repeatedly add the query whose largest
    absolute cosine similarity to the landmarks chosen so far is smallest. O(L * N * c).

    Shapes:
        queries ``(B, H, N, c)`` -> indices ``(B, H, L)`` int64, L = min(num_landmarks, N).
    """
    num_tokens, width = queries.shape[-2:]
    num_landmarks = min(num_landmarks, num_tokens)
    unit = F.normalize(queries.float(), dim=-1)
    unit_t = unit.transpose(-1, -2).contiguous()  # (B, H, c, N): row-vector products run faster
    current = queries.float().norm(dim=-1).argmax(dim=-1)  # (B, H)
    # max |cos| to the landmarks so far; +inf marks a chosen landmark, never picked again
    max_abs_cos = torch.zeros(unit.shape[:-1], dtype=unit.dtype, device=unit.device)  # (B, H, N)
    max_abs_cos.scatter_(-1, current.unsqueeze(-1), float("inf"))
    chosen = [current]
    for _ in range(num_landmarks - 1):
        landmark = unit.gather(-2, current[..., None, None].expand(*current.shape, 1, width))
        abs_cos = (landmark @ unit_t).squeeze(-2).abs_()  # (B, H, N)
        torch.maximum(max_abs_cos, abs_cos, out=max_abs_cos)
        current = max_abs_cos.argmin(dim=-1)
        max_abs_cos.scatter_(-1, current.unsqueeze(-1), float("inf"))
        chosen.append(current)
    return torch.stack(chosen, dim=-1)


def orthoformer_trajectory_tokens(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, num_frames: int, num_landmarks: int
) -> torch.Tensor:
    """Approximate trajectory tokens (Eq. 1) through shared orthogonal landmarks.

    Shapes:
        q, k, v ``(B, H, N, c)`` with N = T' * P frame-major -> ``(B, H, N, T', c)``:
        for every query n and frame t, the landmark approximation of
        ``sum_p softmax_p(q_n . k_tp / sqrt(c)) v_tp``.
    """
    scale = q.shape[-1] ** -0.5
    index = orthogonal_landmark_indices(q, num_landmarks)  # (B, H, L)
    landmarks = q.gather(-2, index.unsqueeze(-1).expand(*index.shape, q.shape[-1]))  # (B, H, L, c)
    # query -> landmark weights, one softmax over the L landmarks
    query_to_landmark = torch.softmax(
        torch.einsum("bhnc,bhlc->bhnl", q, landmarks) * scale, dim=-1
    )
    # landmark -> key weights, one softmax over the P positions of each frame
    landmark_to_key = torch.softmax(
        rearrange(torch.einsum("bhlc,bhmc->bhlm", landmarks, k) * scale,
                  "b h l (t p) -> b h l t p", t=num_frames),
        dim=-1,
    )
    frames_v = rearrange(v, "b h (t p) c -> b h t p c", t=num_frames)
    landmark_tokens = torch.einsum("bhltp,bhtpc->bhltc", landmark_to_key, frames_v)
    return torch.einsum("bhnl,bhltc->bhntc", query_to_landmark, landmark_tokens)
