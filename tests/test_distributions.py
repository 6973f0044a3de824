"""PlackettLuce: exact probabilities by enumeration, sampling by a chi-square test, the
masked-token log-probability, entropy, precision and input checks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from agents.distributions import PlackettLuce

LOGITS_5 = [0.1, 2.0, -1.0, 1.5, 0.3]


def softmax64(logits: list[float], temperature: float = 1.0) -> list[float]:
    scaled = [z / temperature for z in logits]
    top = max(scaled)
    weights = [math.exp(z - top) for z in scaled]
    return [w / sum(weights) for w in weights]


def ordered_probability(p: list[float], action: tuple[int, ...]) -> float:
    """Successive draws without replacement, straight from the definition."""
    prob, left = 1.0, 1.0
    for token in action:
        prob *= p[token] / left
        left -= p[token]
    return prob


@pytest.mark.parametrize(("num_tokens", "k", "temperature"), [(5, 3, 0.7), (4, 4, 1.0), (5, 1, 2.0)])
def test_log_prob_matches_enumeration(num_tokens: int, k: int, temperature: float) -> None:
    logits = LOGITS_5[:num_tokens]
    p = softmax64(logits, temperature)
    actions = list(itertools.permutations(range(num_tokens), k))
    exact = torch.tensor([ordered_probability(p, a) for a in actions], dtype=torch.float64)
    assert exact.sum().item() == pytest.approx(1.0, abs=1e-12)

    dist = PlackettLuce(torch.tensor([logits]).expand(len(actions), -1), k, temperature)
    log_prob = dist.log_prob(torch.tensor(actions))
    assert log_prob.shape == (len(actions),) and log_prob.dtype == torch.float32
    torch.testing.assert_close(log_prob.double().exp(), exact, rtol=1e-5, atol=1e-7)


def test_sample_frequencies_match_exact_probabilities() -> None:
    num_tokens, k, num_samples = 5, 3, 20_000
    p = softmax64(LOGITS_5, 0.7)
    actions = list(itertools.permutations(range(num_tokens), k))
    expected = [ordered_probability(p, a) * num_samples for a in actions]

    torch.manual_seed(0)
    dist = PlackettLuce(torch.tensor([LOGITS_5]), k, 0.7)
    samples = dist.sample(torch.Size([num_samples])).squeeze(1)  # (S, K)
    assert samples.dtype == torch.int64
    assert all(len(set(row)) == k for row in samples.tolist()), "drawn with replacement"
    position = {a: i for i, a in enumerate(actions)}
    observed = torch.bincount(torch.tensor([position[tuple(row)] for row in samples.tolist()]),
                              minlength=len(actions))
    # Draw order matters: sorted or shuffled indices would fail this test.
    assert chisquare(observed.numpy(), expected).pvalue > 1e-3


def test_mode_is_top_k_in_descending_probability() -> None:
    dist = PlackettLuce(torch.tensor([LOGITS_5, LOGITS_5[::-1]]), 3)
    assert dist.mode.tolist() == [[1, 3, 4], [3, 1, 0]]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_masked_log_prob_by_hand(reduction: str) -> None:
    p = softmax64(LOGITS_5)
    dist = PlackettLuce(torch.tensor([LOGITS_5]), 3, masked_logprob=reduction)
    action = torch.tensor([[4, 1, 3]])  # masked tokens: 0 and 2
    total = math.log(p[0]) + math.log(p[2])
    expected = total / 2 if reduction == "mean" else total
    assert dist.masked_log_prob(action).item() == pytest.approx(expected, rel=1e-6)
    assert dist.visible_mask(action).tolist() == [[False, True, False, True, True]]


def test_entropy_by_hand() -> None:
    p = softmax64(LOGITS_5)
    expected = -sum(x * math.log(x) for x in p)
    logits = torch.tensor([LOGITS_5, [0.0] * 5])
    assert PlackettLuce(logits, 2).entropy().tolist() == pytest.approx([expected, math.log(5)], rel=1e-6)
    normalised = PlackettLuce(logits, 2, normalize_entropy=True).entropy()
    assert normalised.tolist() == pytest.approx([expected / math.log(5), 1.0], rel=1e-6)


def test_stays_fp32_under_autocast() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 64).bfloat16()
    action = PlackettLuce(logits, 8).sample()
    reference = PlackettLuce(logits.float(), 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dist = PlackettLuce(logits, 8)
        outputs = (dist.probs, dist.log_prob(action), dist.masked_log_prob(action), dist.entropy())
    assert all(x.dtype == torch.float32 for x in outputs)
    torch.testing.assert_close(outputs[1], reference.log_prob(action))
    torch.testing.assert_close(outputs[3], reference.entropy())


def test_float_actions_as_stored_by_ppo() -> None:
    dist = PlackettLuce(torch.randn(3, 10), 4)
    action = dist.sample()
    assert torch.equal(dist.log_prob(action.float()), dist.log_prob(action))


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (torch.zeros(2, 4, dtype=torch.long), "shape"),  # K + 1 indices
        (torch.zeros(3, dtype=torch.long), "shape"),  # no batch axis
        (torch.tensor([[0, 1, 1], [0, 1, 2]]), "repeats"),
        (torch.tensor([[0, 1, 10], [0, 1, 2]]), "lie in"),
        (torch.tensor([[0.0, 1.5, 2.0], [0.0, 1.0, 2.0]]), "non-integer"),
    ],
)
def test_bad_actions_raise(action: torch.Tensor, message: str) -> None:
    dist = PlackettLuce(torch.randn(2, 10), 3)
    with pytest.raises(ValueError, match=message):
        dist.log_prob(action)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="k"):
        PlackettLuce(torch.randn(2, 10), 11)
    with pytest.raises(ValueError, match="temperature"):
        PlackettLuce(torch.randn(2, 10), 3, temperature=0.0)
    with pytest.raises(ValueError, match="logits"):
        PlackettLuce(torch.randn(10), 3)


def test_peaked_logits_stay_finite_and_exact() -> None:
    num_tokens, k = 1568, 78
    torch.manual_seed(0)
    logits = (torch.randn(2, num_tokens) * 3).requires_grad_()
    dist = PlackettLuce(logits, k, temperature=0.02)  # p of the top tokens rounds to 1 in fp32
    actions = torch.stack([dist.mode[0], dist.sample()[1]])
    naive_mass_left = 1 - torch.cumsum(dist.probs.gather(-1, actions), -1)[:, :-1]
    assert (naive_mass_left <= 0).any(), "test input not peaked enough to break 1 - cumsum"

    log_prob = dist.log_prob(actions)
    log_prob.sum().backward()
    assert torch.isfinite(log_prob).all() and torch.isfinite(logits.grad).all()
    assert torch.isfinite(dist.masked_log_prob(actions)).all() and torch.isfinite(dist.entropy()).all()

    # fp64 reference: log p_{a_j} - logsumexp(log p of the tokens not drawn yet)
    log_p = torch.log_softmax(logits.detach().double() / 0.02, -1)
    for row in range(2):
        left = torch.ones(num_tokens, dtype=torch.bool)
        expected = 0.0
        for token in actions[row].tolist():
            expected += (log_p[row, token] - torch.logsumexp(log_p[row, left], 0)).item()
            left[token] = False
        assert log_prob[row].item() == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_all_tokens_drawn_has_finite_gradient() -> None:
    logits = torch.randn(2, 6, requires_grad=True)
    dist = PlackettLuce(logits, 6)
    dist.log_prob(dist.sample()).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_batch_shape_and_stddev_for_tianshou() -> None:
    dist = PlackettLuce(torch.zeros(3, 5), 2)
    assert dist.batch_shape == (3,) and dist.event_shape == (2,)
    # uniform over indices 0..4: std = sqrt(2)
    torch.testing.assert_close(dist.stddev, torch.full((3, 1), math.sqrt(2.0)))
