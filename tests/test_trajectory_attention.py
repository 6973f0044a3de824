"""Trajectory attention against a loop over Eq. 1-2; Orthoformer landmarks and error."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from agents.networks.orthoformer import orthoformer_trajectory_tokens, orthogonal_landmark_indices
from agents.networks.trajectory_attention import (
    TrajectoryAttention,
    TrajectoryAttentionBlock,
    full_trajectory_tokens,
)


def eq_1_2_by_loops(module: TrajectoryAttention, x: torch.Tensor) -> torch.Tensor:
    """Eq. 1-2 evaluated literally: loops over batch, head, query and frame."""
    batch, num_tokens, dim = x.shape
    heads, frames, positions = module.num_heads, module.num_frames, module.num_positions
    width = dim // heads
    q, k, v = module.qkv(x).split(dim, dim=-1)
    out = torch.zeros_like(x)
    for b in range(batch):
        trajectory = torch.zeros(num_tokens, frames, dim, dtype=x.dtype)  # y~_{st,t'}, heads concatenated
        for h in range(heads):
            c = slice(h * width, (h + 1) * width)
            for n in range(num_tokens):
                for t in range(frames):
                    frame = slice(t * positions, (t + 1) * positions)
                    weights = torch.softmax(k[b, frame, c] @ q[b, n, c] / math.sqrt(width), 0)  # Eq. 1
                    trajectory[n, t, c] = weights @ v[b, frame, c]
        for n in range(num_tokens):
            query = module.traj_q(trajectory[n, n // positions])  # own frame
            keys = module.traj_k(trajectory[n])  # (T', D)
            values = trajectory[n] if module.traj_v is None else module.traj_v(trajectory[n])
            for h in range(heads):
                c = slice(h * width, (h + 1) * width)
                weights = torch.softmax(keys[:, c] @ query[c] / math.sqrt(width), 0)  # Eq. 2
                out[b, n, c] = weights @ values[:, c]
    return module.proj(out)


@pytest.mark.parametrize("temporal_values", ["projected", "trajectory"])
def test_matches_loop_over_equations(temporal_values: str) -> None:
    torch.manual_seed(0)
    module = TrajectoryAttention(dim=8, num_heads=2, grid=(3, 4), temporal_values=temporal_values).double()
    for parameter in module.parameters():  # large weights: attention far from uniform
        torch.nn.init.normal_(parameter, std=0.5)
    x = torch.randn(2, 12, 8, dtype=torch.float64)
    torch.testing.assert_close(module(x), eq_1_2_by_loops(module, x), rtol=1e-10, atol=1e-10)


def test_temporal_value_modes_differ_and_own_parameters() -> None:
    projected = TrajectoryAttention(dim=8, num_heads=2, grid=(3, 4))
    reference = TrajectoryAttention(dim=8, num_heads=2, grid=(3, 4), temporal_values="trajectory")
    assert projected.traj_v is not None and reference.traj_v is None
    reference.load_state_dict(projected.state_dict(), strict=False)
    x = torch.randn(1, 12, 8)
    assert not torch.allclose(projected(x), reference(x))


def greedy_landmarks_by_loops(queries: torch.Tensor, num_landmarks: int) -> list[int]:
    """Motionformer's rule on one (batch, head): smallest max |cos| to those chosen."""
    unit = F.normalize(queries, dim=-1)
    chosen = [int(queries.norm(dim=-1).argmax())]
    while len(chosen) < num_landmarks:
        scores = {n: max(abs(float(unit[n] @ unit[m])) for m in chosen)
                  for n in range(len(queries)) if n not in chosen}
        chosen.append(min(scores, key=scores.get))
    return chosen


def test_landmarks_follow_greedy_orthogonal_rule() -> None:
    torch.manual_seed(0)
    queries = torch.randn(2, 3, 20, 6, dtype=torch.float64)
    index = orthogonal_landmark_indices(queries, 7)
    assert index.shape == (2, 3, 7)
    for b in range(2):
        for h in range(3):
            assert index[b, h].tolist() == greedy_landmarks_by_loops(queries[b, h], 7)
    assert torch.equal(index, orthogonal_landmark_indices(queries, 7)), "must be deterministic"
    assert orthogonal_landmark_indices(queries, 50).shape == (2, 3, 20), "clamped to N"


def test_orthoformer_error_falls_with_landmarks() -> None:
    torch.manual_seed(0)
    frames, positions, width = 8, 16, 64
    num_tokens = frames * positions
    # peaked attention and near-orthogonal queries: with all N queries as landmarks the
    # query -> landmark softmax is ~one-hot on the query itself, so the approximation is exact
    q, k = (2.0 * torch.randn(1, 2, num_tokens, width) for _ in range(2))
    v = torch.randn(1, 2, num_tokens, width)
    full = full_trajectory_tokens(q, k, v, num_frames=frames)
    errors = []
    for landmarks in (8, 32, 64, num_tokens):
        approx = orthoformer_trajectory_tokens(q, k, v, num_frames=frames, num_landmarks=landmarks)
        errors.append(((approx - full).norm() / full.norm()).item())
    assert errors[0] > errors[1] > errors[2] > errors[3], errors
    assert errors[0] > 0.5 and errors[3] < 1e-3, errors


def test_full_tokens_are_per_frame_softmax() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 12, 4) for _ in range(3))
    tokens = full_trajectory_tokens(q, k, v, num_frames=3)
    logits = torch.einsum("bhnc,bhmc->bhnm", q, k).reshape(1, 2, 12, 3, 4) / 2.0
    expected = torch.einsum("bhntp,bhtpc->bhntc", logits.softmax(-1), v.reshape(1, 2, 3, 4, 4))
    torch.testing.assert_close(tokens, expected)


@pytest.mark.parametrize("attn_impl", ["full", "orthoformer"])
# the paper's token grid (T' = 8, 14 x 14) at width 192 (head width 64 as ViT-B) to stay fast
@pytest.mark.parametrize(("grid", "dim", "heads"), [((8, 16), 32, 4), ((8, 14, 14), 192, 3)])
def test_block_runs_on_tiny_and_paper_grid(attn_impl: str, grid: tuple, dim: int, heads: int) -> None:
    torch.manual_seed(0)
    block = TrajectoryAttentionBlock(dim=dim, num_heads=heads, grid=grid, attn_impl=attn_impl,
                                     num_landmarks=32)
    num_tokens = 8 * 16 if len(grid) == 2 else 1568
    x = torch.randn(1, num_tokens, dim, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in block.parameters()), "unused parameter (breaks DDP)"


def test_bad_configuration_raises() -> None:
    with pytest.raises(ValueError, match="multiple"):
        TrajectoryAttention(dim=10, num_heads=4, grid=(2, 4))
    with pytest.raises(ValueError, match="temporal_values"):
        TrajectoryAttention(dim=8, num_heads=2, grid=(2, 4), temporal_values="v2")
    with pytest.raises(ValueError, match="tokens"):
        TrajectoryAttention(dim=8, num_heads=2, grid=(2, 4))(torch.randn(1, 9, 8))
