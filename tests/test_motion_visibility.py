"""The motion-visibility metric: hand values, and chance level for random masking."""

import pytest
import torch

from tools.motion_visibility import evaluate_checkpoint, motion_enrichment


def test_enrichment_by_hand():
    # N = 4, K = 2: moving tokens {0, 1}; clip 0 keeps both visible, clip 1 keeps one
    visible = torch.tensor([[True, True, False, False], [True, False, True, False]])
    motion = torch.tensor([[True, True, False, False], [True, True, False, False]])
    probs = torch.tensor([[0.4, 0.4, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    vis, prob = motion_enrichment(visible, motion, probs)
    # clip 0: (2/2) / (2/4) = 2; clip 1: (1/2) / (2/4) = 1
    assert vis == pytest.approx(1.5)
    # clip 0: 0.8 / 0.5 = 1.6; clip 1: 0.5 / 0.5 = 1
    assert prob == pytest.approx(1.3)
    # clips with no moving (or only moving) tokens are left out
    all_still = torch.zeros(1, 4, dtype=torch.bool)
    vis2, _ = motion_enrichment(torch.cat([visible, visible[:1]]), torch.cat([motion, all_still]),
                                torch.cat([probs, probs[:1]]))
    assert vis2 == pytest.approx(1.5)


def test_random_masking_is_at_chance(tmp_path):
    import train_joint
    from tests.test_train_joint import SMALL, compose_cfg

    overrides = [o for o in SMALL if not o.startswith("agent.")]
    train_joint.train(compose_cfg(*overrides, "agent=random", "train.max_steps=2", f"output_dir={tmp_path}"))
    row = evaluate_checkpoint(str(tmp_path / "checkpoint-latest.pt"), num_clips=96)
    assert row["prob_enrichment"] == pytest.approx(1.0)
    assert 0.8 < row["visible_enrichment"] < 1.2
