"""The benchmark's references against brute force and by hand, on a tiny MAE (N = 8 tokens)."""

import itertools
import math

import pytest
import torch

from benchmark.references import (REFERENCES, _token_losses, best_of_m_masks, clip_losses, forward_passes_per_clip,
                                  greedy_oracle, motion_masks, motion_scores, normalised_score,
                                  random_masks, tube_masks)
from mae import PretrainVideoMAE, indices_to_mask
from runtime.stats import interval


@pytest.fixture(scope="module")
def model() -> PretrainVideoMAE:
    torch.manual_seed(0)
    net = PretrainVideoMAE(img_size=8, patch_size=4, num_frames=4, tubelet_size=2, embed_dim=16, depth=1,
                           num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2,
                           pos_embed="3d", norm_target=False)
    return net.eval()


@pytest.fixture(scope="module")
def video() -> torch.Tensor:
    return torch.randn(3, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def _loss(model, video, visible):
    with torch.no_grad():
        return float(model.loss(video, visible).per_clip)


def test_every_maker_gives_k_visible_tokens(model, video):
    g = torch.Generator().manual_seed(0)
    for k in (1, 3, 5):
        for visible in (random_masks(model, video, k, generator=g), tube_masks(model, video, k, generator=g),
                        motion_masks(model, video, k), best_of_m_masks(model, video, k, m=4, generator=g)[0],
                        indices_to_mask(greedy_oracle(model, video, k)[0], model.num_tokens)):
            assert visible.shape == (3, 8) and visible.dtype == torch.bool
            assert (visible.sum(dim=1) == k).all()


def test_tube_masks_keep_positions_through_time(model, video):
    visible = tube_masks(model, video, 4, generator=torch.Generator().manual_seed(0)).reshape(3, 2, 4)
    assert torch.equal(visible[:, 0], visible[:, 1])  # K = 4 = 2 tubes of 2 time steps


def test_clip_losses_are_the_models_and_do_not_depend_on_the_chunk(model, video):
    visible = random_masks(model, video, 3, generator=torch.Generator().manual_seed(2))
    expected = model.loss(video, visible).per_clip
    assert torch.allclose(clip_losses(model, video, visible, chunk=1), expected, atol=1e-6)
    assert torch.allclose(clip_losses(model, video, visible), expected, atol=1e-6)
    tokens = model.tokenize(video).float()
    assert torch.allclose(_token_losses(model, tokens, model.target(video), visible), expected, atol=1e-6)


def test_greedy_equals_brute_force(model, video):
    n = model.num_tokens
    # K = 1: greedy is exhaustive search over the 8 singletons
    order, losses = greedy_oracle(model, video, 1)
    for clip in range(3):
        singles = [_loss(model, video[clip:clip + 1], indices_to_mask(torch.tensor([[i]]), n)) for i in range(n)]
        assert int(order[clip, 0]) == min(range(n), key=singles.__getitem__)
        assert float(losses[clip]) == pytest.approx(min(singles), abs=1e-6)
    # K = 2: the same two rounds written as plain loops; never better than the best of all 28 pairs
    order, losses = greedy_oracle(model, video, 2, chunk=5)
    for clip in range(3):
        v = video[clip:clip + 1]
        first = min(range(n), key=lambda i: _loss(model, v, indices_to_mask(torch.tensor([[i]]), n)))
        second = min((j for j in range(n) if j != first),
                     key=lambda j: _loss(model, v, indices_to_mask(torch.tensor([[first, j]]), n)))
        assert order[clip].tolist() == [first, second]
        own = _loss(model, v, indices_to_mask(order[clip:clip + 1], n))
        assert float(losses[clip]) == pytest.approx(own, abs=1e-6)
        best_pair = min(_loss(model, v, indices_to_mask(torch.tensor([pair]), n))
                        for pair in itertools.combinations(range(n), 2))
        assert own >= best_pair - 1e-6


def test_best_of_m_is_never_worse_than_its_first_draw(model, video):
    first = random_masks(model, video, 2, generator=torch.Generator().manual_seed(5))
    first_losses = clip_losses(model, video, first)
    one, one_losses = best_of_m_masks(model, video, 2, m=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(one, first) and torch.allclose(one_losses, first_losses, atol=1e-6)
    best, best_losses = best_of_m_masks(model, video, 2, m=16, generator=torch.Generator().manual_seed(5))
    assert (best_losses <= first_losses + 1e-6).all()
    assert torch.allclose(clip_losses(model, video, best), best_losses, atol=1e-6)


def test_motion_scores_find_the_moving_token(model):
    static = torch.rand(1, 3, 1, 8, 8).repeat(1, 1, 4, 1, 1)
    assert torch.equal(motion_scores(model, static), torch.zeros(1, 8))
    moving = static.clone()
    # token (t'=1, h'=0, w'=1) = index 1 * 4 + 0 * 2 + 1 = 5: frames 2-3, rows 0-3, columns 4-7
    moving[:, :, 3, 0:4, 4:8] += 1.0
    scores = motion_scores(model, moving)
    assert int(scores.argmax()) == 5 and (scores[0, torch.arange(8) != 5] == 0).all()
    assert motion_masks(model, moving, 1)[0].nonzero().flatten().tolist() == [5]


def test_costs_by_hand():
    assert forward_passes_per_clip("greedy", 8, 2) == 8 + 7
    assert forward_passes_per_clip("best_of_m", 8, 2, m=64) == 64
    assert [forward_passes_per_clip(name, 8, 2) for name in ("random", "tube", "motion")] == [1, 1, 1]
    assert set(REFERENCES) == {"random", "tube", "motion", "best_of_m", "greedy"}
    with pytest.raises(ValueError, match="unknown reference"):
        forward_passes_per_clip("oracle", 8, 2)


def test_score_by_hand():
    assert normalised_score(0.03, 0.04, 0.02) == pytest.approx(50.0)
    assert normalised_score(0.04, 0.04, 0.02) == pytest.approx(0.0)
    assert normalised_score(0.01, 0.04, 0.02) == pytest.approx(150.0)
    assert normalised_score(0.05, 0.04, 0.02) == pytest.approx(-50.0)
    with pytest.raises(ValueError, match="no room"):
        normalised_score(0.03, 0.02, 0.02)


def test_interval_by_hand():
    mean, half = interval([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 / math.sqrt(3), rel=1e-3)
    assert interval([5.0]) == (5.0, 0.0)
