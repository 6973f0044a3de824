"""The K-of-N action distribution of the token sampler (docs/design.md section 3).

An action is the ordered list of the K visible token indices, drawn one after the other
without replacement from p = softmax(logits / temperature) (paper Section 3.2: "visible
token indices are sampled without replacement", Eq. 4). Ordered draws without replacement
from a categorical are the Plackett-Luce distribution:

    log P(a_1..a_K) = sum_j [ log p_{a_j} - log(1 - sum_{i<j} p_{a_i}) ]

Two log-probabilities are offered, because the paper's objective does not use the first:

- :meth:`PlackettLuce.log_prob` - the exact log-probability of the ordered action above
  (what Tianshou's PPO puts in its ratio);
- :meth:`PlackettLuce.masked_log_prob` - the paper's log pi(I_m | X) (Eq. 8, Algorithm 1):
  the single-draw log p_i of the masked tokens (the complement of the action), averaged as
  in AdaMAE's code, or summed.

Everything is computed in fp32 with autocast disabled, so the old and the new policy of a
PPO update see the same numbers whatever precision the actor ran in. Mask convention:
bool ``(B, N)``, True = visible; K = number of visible tokens.

A budget per row (``counts``, when the environment draws the mask ratio per batch): the
distribution draws K = ``k`` tokens (the action space's length) and row b keeps the first
``counts[b]`` of them. A prefix of a Plackett-Luce draw is a Plackett-Luce draw of that
length, so the log-probability of the kept prefix is the sum of the first ``counts[b]``
terms above (the remaining mass before draw j does not depend on later draws), and the
masked tokens are the complement of the prefix.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import Literal

import torch
from torch.distributions import Distribution

from mae.masking import indices_to_mask

MaskedLogProbReduction = Literal["mean", "sum"]


def _fp32(device: torch.device) -> AbstractContextManager:
    """Autocast off: the log-probabilities must not be computed in bf16/fp16."""
    return torch.autocast(device_type=device.type, enabled=False)


class PlackettLuce(Distribution):
    """Ordered sampling of K of N tokens without replacement from softmax(logits / temperature).

    A :class:`torch.distributions.Distribution` (``batch_shape = (B,)``,
    ``event_shape = (K,)``) so that Tianshou's ``Batch`` can hold it and take its length.
    Sampling is Gumbel-top-K in log space: the K largest of ``log p_i + Gumbel_i``, sorted
    by perturbed score, are the K draws in order. It is the same distribution as
    ``torch.multinomial(p, K, replacement=False)`` (which PyTorch implements the same
    way), but it never needs p itself, so a peaked policy whose p_i underflow to 0 in fp32
    still samples (multinomial refuses rows with fewer than K non-zero entries).

    Shapes:
        logits ``(B, N)`` (any float dtype) -> probs, logits ``(B, N)`` fp32;
        sample() and mode ``(B, K)`` int64 in draw order (mode: descending probability);
        log_prob(act ``(B, K)``), masked_log_prob(act), entropy() ``(B,)`` fp32;
        visible_mask(act) ``(B, N)`` bool, True = visible; stddev ``(B, 1)``.
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(
        self,
        logits: torch.Tensor,
        k: int,
        temperature: float = 1.0,
        *,
        masked_logprob: MaskedLogProbReduction = "mean",
        normalize_entropy: bool = False,
        validate_actions: bool = True,
        counts: torch.Tensor | None = None,
    ) -> None:
        """
        :param logits: raw per-token scores ``(B, N)`` from the actor (no temperature applied).
        :param k: number of visible tokens K drawn per clip, 1 <= K <= N.
        :param temperature: softmax temperature tau > 0 (paper: 1); this is the only place it
            is applied, so old and new policy use the same one.
        :param masked_logprob: how :meth:`masked_log_prob` reduces over the N - K masked
            tokens: ``"mean"`` (AdaMAE's code, the paper's default) or ``"sum"``.
        :param normalize_entropy: divide :meth:`entropy` by log N so it lies in [0, 1].
        :param validate_actions: check in :meth:`log_prob` and the mask helpers that indices
            are in range and not repeated (costs one host-device sync per call).
        :param counts: ``(B,)`` visible tokens per row, each in [1, k]: row b keeps the first
            ``counts[b]`` of its k draws (a budget drawn per batch); None = every row keeps all k.
        """
        if logits.dim() != 2:
            raise ValueError(f"logits must have shape (B, N), got {tuple(logits.shape)}")
        num_tokens = logits.shape[-1]
        if not 1 <= k <= num_tokens:
            raise ValueError(f"k (visible tokens) must be in [1, N={num_tokens}], got {k}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if masked_logprob not in ("mean", "sum"):
            raise ValueError(f"masked_logprob must be 'mean' or 'sum', got {masked_logprob!r}")
        with _fp32(logits.device):
            self._log_p = torch.log_softmax(logits.float() / temperature, dim=-1)
        self.k = k
        self.num_tokens = num_tokens
        self.temperature = temperature
        self.masked_logprob = masked_logprob
        self.normalize_entropy = normalize_entropy
        self.validate_actions = validate_actions
        self.counts = None
        if counts is not None:
            counts = torch.as_tensor(counts, device=logits.device).long().reshape(-1)
            if counts.shape[0] != logits.shape[0]:
                raise ValueError(f"counts must have one entry per row ({logits.shape[0]}), got {counts.shape[0]}")
            if counts.numel() and (counts.min() < 1 or counts.max() > k):
                raise ValueError(f"counts must lie in [1, k={k}], got values in [{int(counts.min())}, "
                                 f"{int(counts.max())}]")
            self.counts = counts
        super().__init__(
            batch_shape=logits.shape[:1], event_shape=torch.Size([k]), validate_args=False
        )

    # -- parameters ------------------------------------------------------------------------

    @property
    def logits(self) -> torch.Tensor:
        """Normalised log-probabilities log p ``(B, N)``, fp32, temperature applied."""
        return self._log_p

    @property
    def probs(self) -> torch.Tensor:
        """Single-draw probabilities p ``(B, N)``: the probability that token i is drawn first."""
        return self._log_p.exp()

    # -- actions ---------------------------------------------------------------------------

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """K indices per row in draw order (Gumbel-top-K), ``sample_shape + (B, K)`` int64."""
        with torch.no_grad():
            log_p = self._log_p.expand(torch.Size(sample_shape) + self._log_p.shape)
            # -log(Exp(1)) is a standard Gumbel; the tiny floor keeps log finite.
            gumbel = -torch.empty_like(log_p).exponential_().clamp_min_(1e-30).log_()
            return torch.topk(log_p + gumbel, self.k, dim=-1, sorted=True).indices

    @property
    def mode(self) -> torch.Tensor:
        """The K most probable tokens, in descending probability ``(B, K)`` (deterministic eval)."""
        return torch.topk(self._log_p, self.k, dim=-1, sorted=True).indices

    def visible_mask(self, action: torch.Tensor) -> torch.Tensor:
        """Action ``(B, K)`` -> bool mask ``(B, N)``, True = visible (draw order is dropped; with
        ``counts``, the first ``counts[b]`` draws of row b)."""
        return self._kept_mask(self._as_indices(action))

    # -- log-probabilities -----------------------------------------------------------------

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        """Exact Plackett-Luce log-probability of the ordered action, ``(B,)`` fp32.

        The remaining mass before draw j, ``1 - sum_{i<j} p_{a_i}``, is never formed by
        subtraction (it cancels to 0 or below for peaked policies). It is the mass of the
        tokens not drawn yet: the later draws ``a_j..a_K`` (a reversed log-cumsum-exp) plus
        the tokens never drawn (a log-sum-exp over the complement). O(N + K) per row.
        """
        index = self._as_indices(action)
        drawn = self._as_mask(index)
        with _fp32(self._log_p.device):
            log_p_drawn = self._log_p.gather(-1, index)  # (B, K)
            log_mass_later = torch.logcumsumexp(log_p_drawn.flip(-1), dim=-1).flip(-1)
            if self.k < self.num_tokens:
                never_drawn = self._log_p.masked_fill(drawn, float("-inf"))
                log_mass_never = torch.logsumexp(never_drawn, dim=-1, keepdim=True)
                log_mass_left = torch.logaddexp(log_mass_later, log_mass_never)
            else:  # nothing is left undrawn; skip the all -inf logsumexp (NaN gradient)
                log_mass_left = log_mass_later
            terms = log_p_drawn - log_mass_left
            if self.counts is not None:  # a prefix's log-probability: its own terms only
                terms = torch.where(self._kept(terms.shape[-1]), terms, 0.0)
            return terms.sum(-1)

    def masked_log_prob(self, action: torch.Tensor) -> torch.Tensor:
        """The paper's log pi(I_m | X): single-draw log p_i over the masked tokens, ``(B,)``.

        Masked = the N - K tokens not in the action. Reduced by mean (AdaMAE) or sum,
        as chosen at construction; with K = N there is nothing masked and it returns 0.
        """
        masked = ~self._kept_mask(self._as_indices(action))
        with _fp32(self._log_p.device):
            total = torch.where(masked, self._log_p, 0.0).sum(-1)
            if self.masked_logprob == "sum":
                return total
            if self.counts is not None:
                return total / (self.num_tokens - self.counts).clamp_min(1)
            return total / max(self.num_tokens - self.k, 1)

    def entropy(self) -> torch.Tensor:
        """Entropy of the single-draw categorical over N tokens (the paper's H), ``(B,)``.

        Divided by log N when ``normalize_entropy`` was set.
        """
        with _fp32(self._log_p.device):
            probs = self._log_p.exp()
            # where(): a token with p = 0 (logit -inf) contributes 0, not 0 * -inf = NaN
            entropy = -torch.where(probs > 0, probs * self._log_p, 0.0).sum(-1)
            if self.normalize_entropy and self.num_tokens > 1:
                entropy = entropy / math.log(self.num_tokens)
            return entropy

    @property
    def stddev(self) -> torch.Tensor:
        """Standard deviation of the single-draw token index, ``(B, 1)`` fp32.

        Tianshou's Collector logs ``dist.stddev`` of every step (collector.py:103) and
        computes one for its own ``Categorical`` the same way (collector.py:91-101), so this
        matches what it reports for a single-token policy: a spread measure of p over the
        frame-major token index (mostly its temporal spread). One column, not K: the
        Collector keeps per-column statistics.
        """
        with torch.no_grad(), _fp32(self._log_p.device):
            probs = self._log_p.exp()
            index = torch.arange(self.num_tokens, device=probs.device, dtype=probs.dtype)
            mean = (probs * index).sum(-1, keepdim=True)
            return ((probs * (index - mean) ** 2).sum(-1, keepdim=True)).sqrt()

    # -- helpers ---------------------------------------------------------------------------

    def _as_indices(self, action: torch.Tensor) -> torch.Tensor:
        """Check an action's shape (and, if enabled, its values); return it as int64 indices.

        Tianshou's PPO stores actions as float32 (to_torch_as(act, v_s)): cast back here.
        """
        action = torch.as_tensor(action, device=self._log_p.device)
        expected = (*self.batch_shape, self.k)
        if tuple(action.shape) != expected:
            raise ValueError(
                f"action must have shape (B, K) = {expected} (K visible token indices in "
                f"draw order), got {tuple(action.shape)}"
            )
        index = action.long()
        if self.validate_actions:
            if action.is_floating_point() and not torch.equal(index.to(action.dtype), action):
                raise ValueError("action holds non-integer token indices")
            if index.numel() and (index.min() < 0 or index.max() >= self.num_tokens):
                raise ValueError(
                    f"action indices must lie in [0, N={self.num_tokens}), got values in "
                    f"[{int(index.min())}, {int(index.max())}]"
                )
        return index

    def _kept(self, length: int) -> torch.Tensor:
        """``(B, length)`` bool: which draws each row keeps (the first ``counts[b]``)."""
        return torch.arange(length, device=self.counts.device) < self.counts[:, None]

    def _kept_mask(self, index: torch.Tensor) -> torch.Tensor:
        """Bool ``(B, N)`` of the kept draws (all K without ``counts``); checks that all K are distinct."""
        mask = self._as_mask(index)
        if self.counts is None:
            return mask
        return torch.zeros_like(mask).scatter_(1, index, self._kept(index.shape[-1]))

    def _as_mask(self, index: torch.Tensor) -> torch.Tensor:
        mask = indices_to_mask(index, self.num_tokens)
        if self.validate_actions:
            counts = mask.sum(-1)
            if bool((counts != self.k).any()):
                row = int((counts != self.k).nonzero()[0, 0])
                raise ValueError(
                    f"action row {row} repeats a token index: {self.k} draws without "
                    f"replacement must be {self.k} distinct indices"
                )
        return mask

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch={tuple(self.batch_shape)}, N={self.num_tokens}, "
            f"K={self.k}, temperature={self.temperature})"
        )
