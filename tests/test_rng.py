"""Every generator of a run, saved and restored per rank: the round trip on CPU (and CUDA when present)."""

import random

import numpy as np
import pytest
import torch

from runtime import rng


def draw(generators):
    out = [torch.rand(3), np.random.rand(3), random.random(), *[torch.rand(2, generator=g) for g in generators.values()]]
    if torch.cuda.is_available():
        out.append(torch.rand(3, device="cuda").cpu())
    return out


def same(a, b):
    return all(torch.equal(torch.as_tensor(x), torch.as_tensor(y)) for x, y in zip(a, b, strict=True))


def test_capture_and_restore_round_trip_every_generator():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    generators = {"mask": torch.Generator().manual_seed(4), "agent.generator": torch.Generator().manual_seed(5)}
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    saved = rng.gather(rng.capture(generators, device), world_size=1)
    first = draw(generators)
    assert not same(first, draw(generators))  # the generators moved on
    rng.restore(saved, 0, generators)
    assert same(first, draw(generators))  # ... and are back, every one of them
    if torch.cuda.is_available():
        assert list(saved["per_rank"][0]["cuda"]) == [torch.cuda.current_device()]


def test_each_rank_gets_its_own_state_back():
    generators = {"mask": torch.Generator()}
    states = []
    for rank in range(2):  # what two ranks seeded with seed + rank would save
        torch.manual_seed(rank), np.random.seed(rank), random.seed(rank)
        generators["mask"].manual_seed(rank)
        states.append(rng.capture(generators, "cpu"))
    saved = {"per_rank": states}
    expected = []
    for rank in range(2):
        torch.manual_seed(rank), np.random.seed(rank), random.seed(rank)
        generators["mask"].manual_seed(rank)
        expected.append(draw(generators))
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    rng.restore(saved, 1, generators)
    assert same(draw(generators), expected[1]) and not same(expected[0], expected[1])
    rng.restore(saved, 0, generators)
    assert same(draw(generators), expected[0])
    with pytest.raises(ValueError, match="2 process"):
        rng.restore(saved, 2, generators)
    with pytest.raises(ValueError, match="other"):
        rng.restore(saved, 0, {"other": torch.Generator()})


def test_an_older_checkpoints_single_state_is_read():
    torch.manual_seed(5), np.random.seed(5)
    mask = torch.Generator().manual_seed(6)
    old = dict(mask=mask.get_state(), torch=torch.get_rng_state(), numpy=np.random.get_state())
    expected = (torch.rand(2), np.random.rand(2), torch.rand(2, generator=mask))
    rng.restore(old, 0, {"mask": mask})
    got = (torch.rand(2), np.random.rand(2), torch.rand(2, generator=mask))
    assert all(torch.equal(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(expected, got))


def test_generators_of_a_policy_are_found_by_name():
    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(1, 1)
            self.inner.generator = torch.Generator()
            self.generator = torch.Generator()

    found = rng.find_generators(Holder(), "agent")
    assert sorted(found) == ["agent.generator", "agent.inner.generator"]
    assert rng.find_generators(None) == {}


def test_train_joint_checkpoint_holds_per_rank_states(tmp_path):
    """A single-process run writes the per-rank layout, with the random masker's own generator."""
    from hydra import compose, initialize_config_dir

    import train_joint
    from configs import CONFIG_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            "agent=random", "data.synthetic_clips=16", "data.num_workers=0", "train.batch_size=4",
            "train.max_steps=1", "train.eval_every=0", f"output_dir={tmp_path}"])
    train_joint.train(cfg)
    state = torch.load(tmp_path / "checkpoint-latest.pt", weights_only=False)
    (only,) = state["rng"]["per_rank"]
    assert {"torch", "cuda", "numpy", "python", "generators"} <= set(only)
    assert {"mask", "agent.generator"} <= set(only["generators"])
