"""The benchmark's references: masks that learn nothing, and search oracles, on a frozen MAE.

Each maker returns visible masks ``(B, N)`` bool with exactly K True per row (True = visible)
for clips ``video (B, 3, T, H, W)``; the model must be in eval mode (the caller's job: dropout
or drop-path would make the oracles' searches noisy). Cost, in MAE forward passes per clip
(:func:`forward_passes_per_clip`), besides the one that scores the chosen mask:

- ``random``: K tokens uniformly (VideoMAE's space-time masking); 0 to choose.
- ``tube``: ceil(K / T') spatial positions visible in every frame, the last tube cut short (VideoMAE).
- ``motion``: the K tokens whose pixels change most between consecutive frames, the cue MGMAE and
  MGM take from optical flow and codec motion vectors; it reads pixels, not the MAE: 0 to choose.
- ``best_of_m``: M random masks per clip, the one this MAE reconstructs best: M.
- ``greedy``: forward selection, K rounds, each adding the token whose visibility lowers this MAE's
  loss most: sum over r = 1..K of (N - r + 1), about K * N.

The normalised score puts an agent between the two ends that every study can reproduce:
``100 * (L_random - L_agent) / (L_random - L_greedy)``.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from mae import PretrainVideoMAE, indices_to_mask

REFERENCES = ("random", "tube", "motion", "best_of_m", "greedy")


# ---- scoring masks
@torch.no_grad()
def clip_losses(model: PretrainVideoMAE, video: torch.Tensor, visible: torch.Tensor, *,
                chunk: int = 256) -> torch.Tensor:
    """L_R (Eq. 6) of each clip under its mask, ``(B,)`` float32, in chunks of ``chunk`` clips."""
    out = []
    for start in range(0, video.shape[0], chunk):
        clip, mask = video[start:start + chunk], visible[start:start + chunk].to(video.device)
        out.append(model.loss(clip, mask).per_clip.float())
    return torch.cat(out)


@torch.no_grad()
def _token_losses(model: PretrainVideoMAE, tokens: torch.Tensor, target: torch.Tensor,
                  visible: torch.Tensor) -> torch.Tensor:
    """Per-clip L_R from already embedded tokens ``(M, N, D)``: the MAE's forward without its patch
    embedding, so a search scores many masks of one clip without embedding it again."""
    encoder = model.encoder
    latent = tokens[visible].reshape(tokens.shape[0], -1, tokens.shape[-1])
    for block in encoder.blocks:
        latent = block(latent)
    pred = model.forward_decoder(encoder.norm(latent), visible)
    return model.reconstruction_loss(pred.float(), target, visible).per_clip.float()


# ---- masks that learn nothing
def random_masks(model: PretrainVideoMAE, video: torch.Tensor, k: int, *,
                 generator: torch.Generator) -> torch.Tensor:
    """K tokens per clip uniformly at random (argsort of uniform noise, as VideoMAE's masking generator)."""
    noise = torch.rand(video.shape[0], model.num_tokens, generator=generator)
    return indices_to_mask(noise.argsort(dim=1)[:, :k], model.num_tokens).to(video.device)


def tube_masks(model: PretrainVideoMAE, video: torch.Tensor, k: int, *, generator: torch.Generator) -> torch.Tensor:
    """ceil(K / T') random spatial positions visible through time; the last tube's latest frames masked
    so that exactly K tokens are visible."""
    t, h, w = model.grid
    positions = h * w
    tubes = math.ceil(k / t)
    if tubes > positions:
        raise ValueError(f"K={k} does not fit in {positions} tubes of {t} tokens")
    visible = torch.zeros(video.shape[0], t, positions, dtype=torch.bool)
    surplus = tubes * t - k
    for row in range(video.shape[0]):
        chosen = torch.randperm(positions, generator=generator)[:tubes]
        visible[row, :, chosen] = True
        if surplus:
            visible[row, t - surplus:, chosen[-1]] = False
    return visible.reshape(video.shape[0], -1).to(video.device)


def motion_scores(model: PretrainVideoMAE, video: torch.Tensor) -> torch.Tensor:
    """Per token, the mean absolute difference between consecutive frames over its pixels, ``(B, N)``.

    A tubelet's first frame is compared with the previous tubelet's last; the clip's first frame has no
    predecessor, so the first tubelet uses only the differences inside it. Token order is the MAE's
    (t', h', w'), frame-major.
    """
    diff = (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=1)  # (B, T - 1, H, W): frame f vs f - 1
    b, _, height, width = diff.shape
    t, h, w = model.grid
    tubelet, patch = model.tubelet_size, model.patch_size
    # difference f (frames f+1 vs f) belongs to the tubelet of frame f+1; pad frame 0's (none) with nan
    diff = torch.cat([torch.full_like(diff[:, :1], float("nan")), diff], dim=1)  # (B, T, H, W)
    cells = diff.reshape(b, t, tubelet, h, patch, w, patch).permute(0, 1, 3, 5, 2, 4, 6)
    return cells.reshape(b, t * h * w, -1).nanmean(dim=-1)


def motion_masks(model: PretrainVideoMAE, video: torch.Tensor, k: int) -> torch.Tensor:
    """The K tokens with the largest temporal pixel difference (ties by position: ``topk`` is stable here)."""
    scores = motion_scores(model, video)
    return indices_to_mask(scores.topk(k, dim=1, sorted=True).indices, model.num_tokens)


# ---- search oracles
@torch.no_grad()
def best_of_m_masks(model: PretrainVideoMAE, video: torch.Tensor, k: int, *, m: int = 64,
                    generator: torch.Generator, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip, the lowest-loss of M random masks; returns ``(visible (B, N), losses (B,))``.

    The draws are M batches from ``generator`` in turn, so the first is what :func:`random_masks`
    returns from the same generator state: best-of-M is never worse than it.
    """
    draws = torch.stack([random_masks(model, video, k, generator=generator) for _ in range(m)], dim=1)  # (B, M, N)
    batch = video.shape[0]
    tokens, target = model.tokenize(video).float(), model.target(video)
    flat = draws.reshape(batch * m, -1)
    owner = torch.arange(batch, device=video.device).repeat_interleave(m)
    losses = torch.cat([_token_losses(model, tokens[owner[s:s + chunk]], target[owner[s:s + chunk]], flat[s:s + chunk])
                        for s in range(0, batch * m, chunk)]).reshape(batch, m)
    best = losses.argmin(dim=1)  # the first of equal losses: the earliest draw
    rows = torch.arange(batch, device=video.device)
    return draws[rows, best], losses[rows, best]


@torch.no_grad()
def greedy_oracle(model: PretrainVideoMAE, video: torch.Tensor, k: int, *, chunk: int = 256,
                  progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward selection: returns the selection order ``(B, K)`` int64 and the final losses ``(B,)``.

    Round r (1..K) scores every not-yet-chosen token of every clip as the r-th visible one (the masked
    set is all others) and keeps the one with the lowest L_R; all candidates of all clips are scored
    in batches of ``chunk`` masks. The order is a "gazing sequence": the most useful token first.
    """
    batch, n = video.shape[0], model.num_tokens
    tokens, target = model.tokenize(video).float(), model.target(video)
    chosen = torch.zeros(batch, n, dtype=torch.bool, device=video.device)
    order = torch.empty(batch, k, dtype=torch.long, device=video.device)
    eye = torch.eye(n, dtype=torch.bool, device=video.device)
    final = torch.empty(batch, device=video.device)
    for r in tqdm(range(k), desc="greedy oracle", disable=not progress, leave=False):
        free = n - r
        candidates = (~chosen).nonzero()[:, 1].reshape(batch, free)  # (B, C), ascending
        masks = (chosen[:, None, :] | eye[candidates]).reshape(batch * free, n)
        owner = torch.arange(batch, device=video.device).repeat_interleave(free)
        losses = torch.cat([_token_losses(model, tokens[owner[s:s + chunk]], target[owner[s:s + chunk]],
                                          masks[s:s + chunk]) for s in range(0, batch * free, chunk)])
        losses = losses.reshape(batch, free)
        best = losses.argmin(dim=1)  # ties: the lowest token index
        pick = candidates[torch.arange(batch), best]
        order[:, r] = pick
        chosen[torch.arange(batch), pick] = True
        final = losses[torch.arange(batch), best]
    return order, final


def forward_passes_per_clip(name: str, num_tokens: int, k: int, m: int = 64) -> int:
    """MAE forward passes a reference spends per clip to choose its mask, plus the one that scores it."""
    choose = {"random": 0, "tube": 0, "motion": 0, "best_of_m": m,
              "greedy": sum(num_tokens - r + 1 for r in range(1, k + 1))}
    if name not in choose:
        raise ValueError(f"unknown reference {name!r}; choose one of {REFERENCES}")
    return choose[name] + (0 if name in ("best_of_m", "greedy") else 1)  # the searches scored their pick already


# ---- the score and its intervals
def normalised_score(loss_agent: float, loss_random: float, loss_oracle: float) -> float:
    """``100 * (L_random - L_agent) / (L_random - L_oracle)``: 0 = random masking, 100 = the greedy oracle."""
    if not loss_random > loss_oracle:
        raise ValueError(f"the oracle's loss {loss_oracle:.6g} is not below random masking's {loss_random:.6g}: "
                         "no room between them to score an agent in")
    return 100.0 * (loss_random - loss_agent) / (loss_random - loss_oracle)
