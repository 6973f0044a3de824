"""Smoke runs of train_joint.py, and resume equals an uninterrupted run."""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from configs import CONFIG_DIR, register_configs
from tianshou.data import ReplayBuffer

ROOT = Path(__file__).resolve().parents[1]
# 16 clips, 4 per step: 4 steps an epoch; one MAE-only epoch, then PPO cycles
SMALL = ["data.synthetic_clips=16", "data.num_workers=0", "train.batch_size=4", "train.epochs=3",
         "train.mae_only_epochs=1", "train.dump_buffer_every=2", "train.log_every=1",
         "agent.critic_hidden=[32,16]"]


def compose_cfg(*overrides):
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def random_masking_checkpoint(out, steps: int):
    """A train_joint.py checkpoint of SMALL's MAE after ``steps`` random-masking steps (an init checkpoint
    for ``train.mae=frozen``)."""
    import train_joint

    extra = [o for o in SMALL if not o.startswith("agent.")]
    train_joint.train(compose_cfg(*extra, "agent=random", f"train.max_steps={steps}", f"output_dir={out}"))
    return out / "checkpoint-latest.pt"


def test_script_smoke_run(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "train_joint.py", *SMALL, "train.max_steps=8", f"output_dir={out}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "config.yaml").is_file() and (out / "checkpoint-latest.pt").is_file()
    assert list((out / "tb").iterdir())
    dumps = sorted((out / "buffers").glob("*.h5"))
    assert dumps, "PPO cycles should have dumped a buffer"
    buffer = ReplayBuffer.load_hdf5(str(dumps[0]))
    assert len(buffer) == 4
    png = tmp_path / "heat.png"
    inspect = subprocess.run([sys.executable, "-m", "agents.inspect", str(dumps[-1]), "--png", str(png)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert inspect.returncode == 0, inspect.stderr[-2000:]
    assert "reward" in inspect.stdout and png.stat().st_size > 0
    state = torch.load(out / "checkpoint-latest.pt", weights_only=False)
    assert state["step"] == 8 and state["policy_updates"] == 4
    # the same output_dir again without resume=true is refused, naming the way out
    again = subprocess.run([sys.executable, "train_joint.py", *SMALL, f"output_dir={out}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "resume=true" in again.stderr


def test_bad_config_exits_with_a_message(tmp_path):
    result = subprocess.run([sys.executable, "train_joint.py", "mask_ratio=1.5", f"output_dir={tmp_path}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "mask_ratio must be in (0, 1)" in result.stderr


@pytest.mark.parametrize("agent, options, cut", [("ppo", [], 6), ("random", [], 6), ("reinforce", [], 6),
                                                 ("random", ["train.accum_steps=2"], 5)],
                         ids=["ppo", "random", "reinforce", "mid-accumulation"])
def test_resumed_run_matches_uninterrupted(tmp_path, agent, options, cut):
    """reinforce: AdaMAE's recipe, the sampler in the MAE's optimiser (its state in mae_optimizer);
    accum_steps=2 stopped at step 5: inside an accumulation window (its summed gradients saved)."""
    import train_joint

    extra = [*(SMALL if agent == "ppo" else [o for o in SMALL if not o.startswith("agent.")]), *options]
    full = train_joint.train(compose_cfg(*extra, f"agent={agent}", "train.max_steps=10",
                                         f"output_dir={tmp_path / 'full'}"))
    train_joint.train(compose_cfg(*extra, f"agent={agent}", f"train.max_steps={cut}", f"output_dir={tmp_path / 'cut'}"))
    resumed = train_joint.train(compose_cfg(*extra, f"agent={agent}", "train.max_steps=10", "resume=true",
                                            f"output_dir={tmp_path / 'cut'}"))
    for key in ("mae/loss", "env/reward_mean", "mae/copy_loss", "mae/mean_visible_loss"):
        assert resumed[key] == full[key], key
    a = torch.load(tmp_path / "full" / "checkpoint-latest.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "checkpoint-latest.pt", weights_only=False)
    for name, tensor in a["mae"].items():
        assert torch.equal(tensor, b["mae"][name]), name
    for name, tensor in a["agent"].get("algorithm", {}).items():
        if torch.is_tensor(tensor):
            assert torch.equal(tensor, b["agent"]["algorithm"][name]), name
    optim_a, optim_b = a["mae_optimizer"]["optimizer"], b["mae_optimizer"]["optimizer"]
    assert len(optim_a["param_groups"]) == len(optim_b["param_groups"]) == (4 if agent == "reinforce" else 2)
    for index, state in optim_a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, optim_b["state"][index][key]), (index, key)


def test_init_checkpoint_starts_the_mae_from_a_run(tmp_path):
    import train_joint

    extra = [o for o in SMALL if not o.startswith("agent.")]
    train_joint.train(compose_cfg(*extra, "agent=random", "train.max_steps=4", f"output_dir={tmp_path / 'warm'}"))
    warm = torch.load(tmp_path / "warm" / "checkpoint-latest.pt", weights_only=False)
    # a fresh run (another agent, fresh optimiser) from those weights, stopped before its first step
    train_joint.train(compose_cfg(*SMALL, "agent=ppo", "train.max_steps=0", f"output_dir={tmp_path / 'next'}",
                                  f"model.init_checkpoint={tmp_path / 'warm' / 'checkpoint-latest.pt'}"))
    start = torch.load(tmp_path / "next" / "checkpoint-latest.pt", weights_only=False)
    assert start["step"] == 0
    for name, tensor in warm["mae"].items():
        assert torch.equal(tensor, start["mae"][name]), name
    scratch = train_joint.build_model(compose_cfg(*SMALL))
    assert not torch.equal(scratch.state_dict()["mask_token"], start["mae"]["mask_token"])


def example_module(section: str) -> str:
    """The first python block under the docs heading ``section`` (the docs' worked example, as written)."""
    text = (ROOT / "docs" / "agents-and-environment.md").read_text(encoding="utf-8")
    after = text.split(f"## {section}\n", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_a_stock_tianshou_ppo_trains_through_train_joint(tmp_path, monkeypatch):
    import train_joint
    from tianshou.algorithm import PPO

    (tmp_path / "my_agents.py").write_text(example_module("Your own algorithm"))
    monkeypatch.syspath_prepend(str(tmp_path))
    built = {}
    build_agent = train_joint.build_agent
    monkeypatch.setattr(train_joint, "build_agent", lambda *a, **k: built.setdefault("agent", build_agent(*a, **k)))
    extra = [o for o in SMALL if not o.startswith("agent.")]
    custom = ["agent=custom", "agent._target_=my_agents.build_ppo", "+agent.options.critic_hidden=[32,16]",
              "+agent.options.lr=1e-3", "agent.batch_size=2"]
    out = tmp_path / "run"
    last = train_joint.train(compose_cfg(*extra, *custom, "train.max_steps=8", f"output_dir={out}"))
    agent = built["agent"]
    assert type(agent.algorithm) is PPO and agent.learns
    first = {k: v.clone() for k, v in agent.algorithm.state_dict().items() if torch.is_tensor(v)}
    state = torch.load(out / "checkpoint-latest.pt", weights_only=False)
    assert state["step"] == 8 and state["policy_updates"] == 4  # one MAE-only epoch, then 4 cycles
    # Tianshou's own stats, as logged
    assert {"policy/loss", "policy/actor_loss", "policy/vf_loss", "policy/ent_loss"} <= set(last)
    assert last["policy/gradient_steps"] == 2 and last["policy/skipped_nonfinite"] == 0  # 4 clips, minibatch 2
    assert all(math.isfinite(v) for v in last.values())
    assert sorted((out / "buffers").glob("*.h5")), "the buffer dumps work for any agent"
    # resume continues it: two more cycles from the stored algorithm and optimiser
    built.clear()
    resumed = train_joint.train(compose_cfg(*extra, *custom, "train.max_steps=10", "resume=true",
                                            f"output_dir={out}"))
    assert torch.load(out / "checkpoint-latest.pt", weights_only=False)["policy_updates"] == 6
    assert math.isfinite(resumed["policy/loss"])
    now = built["agent"].algorithm.state_dict()
    assert any(not torch.equal(first[k], now[k]) for k in first), "the resumed cycles learned nothing"


def test_custom_agent_needs_an_importable_builder(tmp_path):
    from configs import ConfigError, validate

    with pytest.raises(ConfigError, match=r"agent._target_="):
        validate(compose_cfg("agent=custom", f"output_dir={tmp_path}"))
    with pytest.raises(ConfigError, match="cannot import no_such_package"):
        validate(compose_cfg("agent=custom", "agent._target_=no_such_package.build", f"output_dir={tmp_path}"))


@pytest.mark.parametrize("overrides, expected", [
    ([], []),
    (["mask_ratio=0.999"], ["keeps K=1 of N=128"]),
    (["train.warmup_epochs=40"], ["warm-up (train.warmup_epochs=40.0) lasts the whole schedule"]),
])
def test_start_notes_fire_where_a_setting_does_less_than_it_seems(tmp_path, overrides, expected):
    import train_joint

    run = train_joint.build_run(compose_cfg(*SMALL, *overrides, f"output_dir={tmp_path}"))
    try:
        notes = train_joint.start_messages(run).notes
    finally:
        run.clips.close()
        run.writer.close()
        run.lock.release()
    assert len(notes) == len(expected) and all(e in n for e, n in zip(expected, notes)), notes


def start_warnings(tmp_path, *overrides) -> tuple[list[str], list[str]]:
    """train_joint.start_messages's lines and warnings of a run built with ``overrides`` (closed again, no step taken)."""
    import train_joint

    run = train_joint.build_run(compose_cfg(*overrides, f"output_dir={tmp_path / 'notes'}"))
    try:
        messages = train_joint.start_messages(run)
        return messages.lines, messages.warnings
    finally:
        run.clips.close()
        run.writer.close()
        run.lock.release()
        import shutil

        shutil.rmtree(tmp_path / "notes")


@pytest.mark.parametrize("overrides, no_cycle, clip", [
    # the testbed's: GRPO's groups of 4 make an epoch 256 steps, all of them random masking; PPO's is 64
    (["agent=grpo", "train.max_steps=64"], True, True),
    (["train.max_steps=64"], True, True),
    (["train.max_steps=65"], False, True),
    ([], False, True),  # the default run: 512 steps, the sampler from step 65
    # SMALL: 4 steps an epoch (PPO), 16 (GRPO: one clip a step)
    ([*SMALL, "train.max_steps=4"], True, True),
    ([*SMALL, "train.max_steps=5"], False, True),
    ([*SMALL[:-1], "agent=grpo", "train.max_steps=16"], True, True),
    ([*SMALL[:-1], "agent=grpo", "train.max_steps=17"], False, True),
    ([*SMALL, "train.max_steps=8", "agent.update_steps_policy=2"], False, False),
    ([*SMALL, "train.max_steps=8", "agent.batch_size=2"], False, False),  # 2 minibatches of the 4 episodes
    ([*SMALL, "train.max_steps=8", "agent.batch_size=3"], False, True),  # Tianshou merges the short last one
    ([*SMALL, "train.max_steps=8", "train.update_steps_mae=2", "agent.batch_size=4"], False, False),
    ([*SMALL[:-1], "agent=random", "train.max_steps=2"], False, False),  # a fixed masker masks from step 1
    ([*SMALL[:-1], "agent=reinforce", "train.max_steps=2"], False, False),  # AdaMAE's recipe: from step 1, no clip
], ids=["grpo-64", "ppo-64", "ppo-65", "default", "small-4", "small-5", "grpo-16", "grpo-17", "passes", "minibatches",
        "merged-minibatch", "cycle-of-2", "random", "adamae"])
def test_start_warnings_fire_where_the_run_tests_less_than_it_seems(tmp_path, overrides, no_cycle, clip):
    lines, warnings = start_warnings(tmp_path, "data.num_workers=0", *overrides)
    assert len(lines) == 1 and "per epoch" in lines[0]
    assert any("before the sampler's first cycle" in w for w in warnings) == no_cycle
    assert any("the clip never acts" in w for w in warnings) == clip
    assert len(warnings) == no_cycle + clip
    if no_cycle:
        phase_end = 256 if overrides[:1] == ["agent=grpo"] else 64 if "data.synthetic_clips=16" not in overrides \
            else 16 if "agent=grpo" in overrides else 4
        assert f"to step {phase_end}" in warnings[0] and f"of {phase_end} steps" in warnings[0]
        assert f"random masking until step {phase_end}" in lines[0]


def test_the_warnings_are_printed_at_start(tmp_path, capsys):
    import train_joint

    train_joint.train(compose_cfg(*SMALL, "train.max_steps=4", "train.eval_every=0", f"output_dir={tmp_path}"))
    captured = capsys.readouterr()
    assert "4 MAE steps, 4 per epoch; random masking until step 4" in captured.out
    assert "warning: the run ends at step 4, before the sampler's first cycle" in captured.err
    assert "warning: agent=ppo updates in one gradient step" in captured.err
    assert "The MAE's learning rate rises from 0 to" in captured.out


def tensorboard_tags(folder: Path) -> dict[str, list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tb"), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    events.Reload()
    return events


def test_tensorboard_figures_and_the_histogram_of_p(tmp_path):
    """At every held-out score: the visualiser's figure of 2 held-out clips and the histogram of p."""
    import train_joint

    train_joint.train(compose_cfg(*SMALL, "train.max_steps=4", "train.eval_every=2", f"output_dir={tmp_path}"))
    events = tensorboard_tags(tmp_path)
    assert events.Tags()["images"] == ["figures/clip_0", "figures/clip_1"]
    assert [image.step for image in events.Images("figures/clip_0")] == [2, 4]
    assert events.Tags()["histograms"] == ["policy/p"]
    assert [e.step for e in events.Scalars("perf/figures_time_s")] == [2, 4]


@pytest.mark.parametrize("agent", ["ppo", "random"])
def test_drawing_the_figures_leaves_the_run_as_it_was(tmp_path, agent):
    """Drawing samples masks: every random state the run draws from is put back, and the modes of the
    MAE and the agent; a fixed masker gets the figure without p and no histogram; the switch turns it off."""
    import train_joint
    from runtime import rng

    extra = SMALL if agent == "ppo" else [o for o in SMALL if not o.startswith("agent.")]
    run = train_joint.build_run(compose_cfg(*extra, f"agent={agent}", "data.num_workers=0",
                                            f"output_dir={tmp_path / 'run'}"))
    try:
        before = rng.capture(run.generators, run.device)
        modes = run.model.training, run.agent.algorithm.training
        assert run.pictures(run.writer, 7) > 0
        after = rng.capture(run.generators, run.device)
        assert torch.equal(before["torch"], after["torch"]) and before["python"] == after["python"]
        assert all(torch.equal(before["generators"][k], after["generators"][k]) for k in before["generators"])
        assert (run.model.training, run.agent.algorithm.training) == modes
        run.writer.flush()
        events = tensorboard_tags(tmp_path / "run")
        assert events.Tags()["images"] == ["figures/clip_0", "figures/clip_1"]
        assert events.Tags()["histograms"] == (["policy/p"] if agent == "ppo" else [])
    finally:
        run.clips.close()
        run.writer.close()
        run.lock.release()
    off = train_joint.build_run(compose_cfg(*extra, f"agent={agent}", "data.num_workers=0", "train.log_figures=false",
                                            f"output_dir={tmp_path / 'off'}"))
    off.clips.close()
    off.writer.close()
    off.lock.release()
    assert off.pictures is None


def test_progress_bar_fields():
    import train_joint

    assert train_joint.progress_fields({"mae/loss": 0.04123, "env/reward_mean": 1.0}) == {"mae": "0.0412"}
    assert train_joint.progress_fields({"mae/loss": 0.04, "policy/entropy": 4.8123, "policy/motion_enrichment": 2.5,
                                        "eval/score": 61.27}) == {"mae": "0.0400", "H": "4.81", "enrich": "2.50",
                                                                   "score": "61.3"}
