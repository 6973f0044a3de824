"""train.mae=frozen: the sampler learns against a fixed MAE; the MAE is never touched."""

from pathlib import Path

import pytest
import torch

from configs import ConfigError
from tests.test_train_joint import SMALL, compose_cfg, random_masking_checkpoint

# the held-out score is off here (the greedy oracle is tested in test_benchmark_*); one test turns it on
FROZEN = [*SMALL, "train.mae=frozen", "train.eval_every=0"]
NO_AGENT = [o for o in FROZEN if not o.startswith("agent.")]  # SMALL's agent option is PPO's


@pytest.fixture(scope="module")
def mae_checkpoint(tmp_path_factory) -> Path:
    return random_masking_checkpoint(tmp_path_factory.mktemp("mae") / "run", steps=4)


def _frozen(mae_checkpoint, *overrides):
    return compose_cfg(*FROZEN, f"model.init_checkpoint={mae_checkpoint}", *overrides)


@pytest.mark.parametrize("agent", [
    ["agent=ppo", "agent.critic_hidden=[32,16]"], ["agent=grpo", "agent.group_size=2"],
    ["agent=reinforce", "agent.recipe=separate", "agent.estimator=clip"],
    ["agent=custom", "agent._target_=benchmark.stock.build_ppo", "+agent.options.critic_hidden=[32,16]"],
    ["agent=random", "train.eval_every=2"]])  # a fixed masker: no policy to score, the run goes on
def test_frozen_training_leaves_the_mae_bit_identical(tmp_path, mae_checkpoint, agent, monkeypatch):
    import train_joint
    from envs import build

    built = []
    real = build.build_mae_optimizer
    monkeypatch.setattr(build, "build_mae_optimizer", lambda *a, **k: built.append(1) or real(*a, **k))
    before = torch.load(mae_checkpoint, weights_only=False)["mae"]
    last = train_joint.train(compose_cfg(*NO_AGENT, f"model.init_checkpoint={mae_checkpoint}", *agent,
                                         "train.max_steps=6", f"output_dir={tmp_path}"))
    state = torch.load(tmp_path / "checkpoint-latest.pt", weights_only=False)
    assert not built, "a frozen MAE has no optimiser"
    assert "mae_optimizer" not in state and "mae/lr" not in last
    assert state["step"] == 6 and state["policy_updates"] == 6  # no random-masking epoch: every step a rollout
    assert state["mae"].keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, state["mae"][name]), name


def test_the_policy_learns_only_in_its_own_weights(tmp_path, mae_checkpoint):
    import train_joint

    train_joint.train(_frozen(mae_checkpoint, "train.max_steps=0", f"output_dir={tmp_path / 'start'}"))
    train_joint.train(_frozen(mae_checkpoint, "train.max_steps=6", f"output_dir={tmp_path / 'end'}"))
    start = torch.load(tmp_path / "start" / "checkpoint-latest.pt", weights_only=False)["agent"]["algorithm"]
    end = torch.load(tmp_path / "end" / "checkpoint-latest.pt", weights_only=False)["agent"]["algorithm"]
    moved = [name for name, tensor in start.items() if torch.is_tensor(tensor) and tensor.is_floating_point()
             and not torch.equal(tensor, end[name])]
    assert moved, "six PPO updates should move the sampler"


def test_frozen_resume_matches_uninterrupted(tmp_path, mae_checkpoint):
    import train_joint

    full = train_joint.train(_frozen(mae_checkpoint, "train.max_steps=8", f"output_dir={tmp_path / 'full'}"))
    train_joint.train(_frozen(mae_checkpoint, "train.max_steps=5", f"output_dir={tmp_path / 'cut'}"))
    resumed = train_joint.train(_frozen(mae_checkpoint, "train.max_steps=8", "resume=true",
                                        f"output_dir={tmp_path / 'cut'}"))
    for key in ("mae/loss", "env/reward_mean", "policy/loss"):
        assert resumed[key] == full[key], key
    a = torch.load(tmp_path / "full" / "checkpoint-latest.pt", weights_only=False)["agent"]["algorithm"]
    b = torch.load(tmp_path / "cut" / "checkpoint-latest.pt", weights_only=False)["agent"]["algorithm"]
    for name, tensor in a.items():
        if torch.is_tensor(tensor):
            assert torch.equal(tensor, b[name]), name


def test_frozen_needs_an_init_checkpoint(tmp_path):
    import train_joint

    with pytest.raises(ConfigError, match="model.init_checkpoint"):
        train_joint.train(compose_cfg(*FROZEN, f"output_dir={tmp_path}"))
    assert not (tmp_path / "config.yaml").exists()


def test_frozen_refuses_adamae_recipe(tmp_path, mae_checkpoint):
    import train_joint

    with pytest.raises(ConfigError, match="recipe=separate"):
        train_joint.train(compose_cfg(*NO_AGENT, "agent=reinforce", f"model.init_checkpoint={mae_checkpoint}",
                                      f"output_dir={tmp_path}"))


def test_frozen_eval_logs_the_benchmark_score(tmp_path, mae_checkpoint):
    import train_joint
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    last = train_joint.train(_frozen(mae_checkpoint, "train.max_steps=4", "train.eval_every=2", "train.eval_clips=2",
                                     f"output_dir={tmp_path / 'run'}"))
    events = EventAccumulator(str(tmp_path / "run" / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag in ("eval/score", "eval/loss", "eval/loss_random", "eval/score_top_k"):
        assert tag in tags and [e.step for e in events.Scalars(tag)] == [2, 4], tag
    assert last["eval/loss_oracle"] <= last["eval/loss_random"]
    cache = list((mae_checkpoint.parent / "benchmark-references").glob("*.json"))
    assert cache, "the references are cached beside the MAE"
