"""Runs that survive crashes and refuse silent damage: checkpoints, resume checks, the
non-finite guard, preemption (SIGTERM / Ctrl-C) and periodic saves."""

import errno
import hashlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tianshou.data import Collector, VectorReplayBuffer

from agents.registry import build_agent
from envs import TianshouVectorEnv
from runtime import checkpoint
from runtime.errors import CheckpointError, RunStopped, UserError
from runtime.resume import ResumeConfigError, commit_run_dir, config_changes, prepare_run_dir
from tests.helpers import collect_steps
from tests.test_env import make_env
from tests.test_train_joint import ROOT, SMALL, compose_cfg

RANDOM = [o for o in SMALL if not o.startswith("agent.")] + ["agent=random"]


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (but TensorBoard's) and a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "tb" not in p.parts}


def fake_state(step=3, **config):
    return {"step": step, "mae": {}, "agent": {}, "config": {"mask_ratio": 0.9, "output_dir": "x", **config}}


# ---- checkpoint files -------------------------------------------------------------------------


def test_save_keeps_the_previous_checkpoint_and_no_temporary_file(tmp_path):
    path = tmp_path / checkpoint.LATEST
    checkpoint.save_atomic({"step": 1}, path)
    checkpoint.save_atomic({"step": 2}, path)
    assert checkpoint.load(path)["step"] == 2
    assert checkpoint.load(tmp_path / checkpoint.PREVIOUS)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.LATEST, checkpoint.PREVIOUS]


@pytest.mark.parametrize("kind", ["empty", "truncated", "corrupt", "foreign", "not a dict"])
def test_a_bad_checkpoint_is_named_as_such(tmp_path, kind):
    path = tmp_path / checkpoint.LATEST
    good = tmp_path / "good.pt"
    checkpoint.save_atomic({"step": 1, "mae": {"w": torch.zeros(1000)}}, good)
    data = good.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "corrupt": b"\x80\x02garbage" * 10,
                      "foreign": b"", "not a dict": b""}[kind])
    if kind == "foreign":
        torch.save({"model": {}, "epoch": 3}, path)  # e.g. an official VideoMAE file
    if kind == "not a dict":
        torch.save([1, 2], path)
    expected = {"empty": "empty", "truncated": "truncated", "corrupt": "corrupt", "foreign": "foreign",
                "not a dict": "not a checkpoint"}[kind]
    with pytest.raises(CheckpointError, match=expected) as caught:
        checkpoint.verify(path, ("mae", "step"))
    assert str(path) in str(caught.value)


def _enospc_directly():
    raise OSError(errno.ENOSPC, "No space left on device")


def _enospc_as_context_chained():
    try:
        _enospc_directly()
    except OSError:
        raise RuntimeError("unexpected pos")  # noqa: B904 - the context is the point


@pytest.mark.parametrize("failure", [_enospc_directly, _enospc_as_context_chained])
def test_a_full_disk_is_one_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, failure):
    path = tmp_path / checkpoint.LATEST
    checkpoint.save_atomic({"step": 1}, path)
    before = path.read_bytes()

    def full_disk(state, handle):
        handle.write(b"x" * 1000)
        handle.flush()
        failure()

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="no space left") as caught:
        checkpoint.save_atomic({"step": 2}, path)
    message = str(caught.value)
    assert str(tmp_path) in message and "intact" in message and "free" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.LATEST]  # no temporary file left


def test_a_full_disk_while_dumping_a_buffer_is_one_error_naming_the_last_checkpoint(tmp_path, monkeypatch):
    import train_joint
    from tianshou.data import ReplayBuffer

    def full_disk(self, path, compression=None):  # h5py's way: an OSError with the errno only in its text
        with open(path, "wb") as handle:
            handle.write(b"\x89HDF half a file")
        raise OSError("Unable to synchronously create file (file write failed: errno = 28, error message = "
                      "'No space left on device')")

    out = tmp_path / "run"
    monkeypatch.setattr(ReplayBuffer, "save_hdf5", full_disk)
    with pytest.raises(UserError, match="no space left .* rollout dump.*last good checkpoint") as caught:
        train_joint.train(compose_cfg(*SMALL, "train.mae_only_epochs=0", "train.save_every_steps=1",
                                      "train.dump_buffer_every=2", f"output_dir={out}"))
    assert str(out / "buffers") in str(caught.value)
    assert list((out / "buffers").iterdir()) == []  # no truncated dump, no temporary file


def test_stale_temporary_files_are_removed_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".checkpoint-latest.pt.tmp-{dead.pid}"
    live = tmp_path / f".checkpoint-latest.pt.tmp-{os.getppid()}"  # a process that is running
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    assert checkpoint.remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


# ---- what a resume may change -----------------------------------------------------------------


def test_config_changes_names_each_key_a_resume_may_not_change():
    stored = {"mask_ratio": 0.9, "seed": 0, "train": {"batch_size": 4, "max_steps": 10, "log_every": 1},
              "data": {"num_workers": 2}, "agent": {"name": "ppo", "lr": 1e-3}}
    new = {"mask_ratio": 0.5, "seed": 0, "train": {"batch_size": 8, "max_steps": 20, "log_every": 5,
                                                   "save_every_steps": 3},
           "data": {"num_workers": 0}, "agent": {"name": "ppo", "lr": 1e-3}}
    assert config_changes(stored, new) == [("mask_ratio", 0.9, 0.5), ("train.batch_size", 4, 8)]
    assert config_changes(stored, stored) == []


def test_prepare_run_dir_refuses_before_writing(tmp_path):
    out = tmp_path / "run"
    config = {"mask_ratio": 0.9, "output_dir": str(out)}
    plan, state = prepare_run_dir(config, resume=True)  # nothing there: a notice, a new run
    assert plan.resume_from is None and state is None and "holds no checkpoint" in plan.notices[0]
    assert not out.exists()
    checkpoint.save_atomic(fake_state(output_dir=str(out)), out / checkpoint.LATEST)
    (out / "config.yaml").write_text("mask_ratio: 0.9\n")
    before = digest(out)
    with pytest.raises(UserError, match="resume=true"):
        prepare_run_dir(config, resume=False)
    with pytest.raises(ResumeConfigError, match=r"mask_ratio 0\.9 -> 0\.5"):
        prepare_run_dir({**config, "mask_ratio": 0.5}, resume=True)
    assert digest(out) == before
    plan, state = prepare_run_dir(config, resume=True)
    assert plan.resume_from == out / checkpoint.LATEST and state["step"] == 3 and not plan.notices


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    out = tmp_path / "run"
    config = {"mask_ratio": 0.9, "output_dir": str(out)}
    checkpoint.save_atomic(fake_state(2, output_dir=str(out)), out / checkpoint.LATEST)
    checkpoint.save_atomic(fake_state(4, output_dir=str(out)), out / checkpoint.LATEST)
    data = (out / checkpoint.LATEST).read_bytes()
    (out / checkpoint.LATEST).write_bytes(data[:100])  # killed mid-copy, say
    plan, state = prepare_run_dir(config, resume=True)
    assert plan.resume_from == out / checkpoint.PREVIOUS and state["step"] == 2
    assert "truncated" in plan.notices[0] and "fallback" in plan.notices[0]
    commit_run_dir(plan)
    assert (out / (checkpoint.LATEST + ".bad")).is_file() and not (out / checkpoint.LATEST).exists()
    # both bad: one error naming both files
    (out / checkpoint.LATEST).write_bytes(b"")
    (out / checkpoint.PREVIOUS).write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty") as caught:
        prepare_run_dir(config, resume=True)
    assert checkpoint.LATEST in str(caught.value) and checkpoint.PREVIOUS in str(caught.value)


def test_resume_with_a_changed_config_leaves_the_run_as_it_was(tmp_path):
    import train_joint

    out = tmp_path / "run"
    train_joint.train(compose_cfg(*RANDOM, "train.max_steps=2", f"output_dir={out}"))
    before = digest(out)
    for change in (["mask_ratio=0.5"], ["train.batch_size=8"], ["seed=1"], ["data.synthetic_clips=32"]):
        with pytest.raises(ResumeConfigError, match=change[0].split("=")[0]):
            train_joint.train(compose_cfg(*RANDOM, "train.max_steps=4", "resume=true", *change, f"output_dir={out}"))
        assert digest(out) == before, change
    # allowed: a later end, other logging and workers
    train_joint.train(compose_cfg(*RANDOM, "train.max_steps=3", "resume=true", "train.log_every=2",
                                  "train.save_every_steps=1", f"output_dir={out}"))
    assert torch.load(out / checkpoint.LATEST, weights_only=False)["step"] == 3
    assert "max_steps: 3" in (out / "config.yaml").read_text()


# ---- the non-finite guard ---------------------------------------------------------------------


def _ppo_with_a_buffer():
    torch.manual_seed(0)
    env = make_env()
    agent = build_agent("ppo", env=env, config={"num_heads": 2, "critic_hidden": [16]})
    return agent, collect_steps(agent, env, capacity=8)


def _weights(agent):
    return {k: v.clone() for k, v in agent.algorithm.state_dict().items() if torch.is_tensor(v)}


def test_a_non_finite_sampler_update_is_skipped_and_counted():
    agent, buffer = _ppo_with_a_buffer()
    first = agent.update(buffer)  # a finite one goes through
    assert first["policy/skipped_nonfinite"] == 0 and agent.guard.consecutive == 0
    # a NaN loss (here: a NaN weight of the critic) leaves every weight and the optimiser as they were
    with torch.no_grad():
        next(agent.algorithm.critic.parameters())[0].fill_(float("nan"))
    before = _weights(agent)
    optim_before = {k: v.clone() for k, v in agent.algorithm.optim._optim.state_dict()["state"][0].items()}
    stats = agent.update(buffer)
    assert stats["policy/skipped_nonfinite"] == 1 and agent.guard.consecutive == 1
    after = _weights(agent)
    assert all(torch.equal(before[k], after[k]) or torch.isnan(before[k]).any() for k in before)
    for key, value in agent.algorithm.optim._optim.state_dict()["state"][0].items():
        assert torch.equal(value, optim_before[key]), key
    # the count is part of the checkpoint
    restored, _ = _ppo_with_a_buffer()
    restored.load_state_dict(agent.state_dict())
    assert restored.guard.total == 1 and restored.guard.consecutive == 1


def test_a_step_that_makes_a_weight_non_finite_is_undone():
    agent, buffer = _ppo_with_a_buffer()
    agent.update(buffer)  # a first step: the optimiser has state to put back
    optimizer = agent.algorithm.optim._optim
    weight = optimizer.param_groups[0]["params"][0]
    # finite loss and gradients, but the step leaves a weight non-finite (a hook after the guard's snapshot)
    optimizer.register_step_pre_hook(lambda *_: weight.data.view(-1).__setitem__(0, float("inf")))
    before = _weights(agent)
    state_before = _optimizer_state(optimizer)
    stats = agent.update(buffer)
    assert stats["policy/skipped_nonfinite"] == stats["policy/gradient_steps"] >= 1
    after = _weights(agent)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _same_state(state_before, _optimizer_state(optimizer))


def _mae_optimizer(lr=1e-3):
    from envs import MAEOptimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 8))
    return model, MAEOptimizer(torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05))


def _mae_loss(model):
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    return (model(x) - x).pow(2).mean()


def _optimizer_state(optimizer):
    return {id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()}
            for p, state in optimizer.state.items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(
        a[p].keys() == b[p].keys() and all(torch.equal(a[p][k], b[p][k]) if torch.is_tensor(a[p][k])
                                           else a[p][k] == b[p][k] for k in a[p]) for p in a)


@pytest.mark.parametrize("first_step", [True, False])
def test_an_mae_step_that_makes_a_weight_non_finite_is_undone(first_step):
    model, mae_optimizer = _mae_optimizer()
    if not first_step:
        mae_optimizer.backward_and_step(_mae_loss(model), model.parameters())
    optimizer = mae_optimizer.optimizer
    # finite loss and gradients, but the step leaves a weight non-finite (a hook after the guard's snapshot)
    overflow = optimizer.register_step_pre_hook(lambda *_: model[2].weight.data.view(-1).__setitem__(0, float("inf")))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = _optimizer_state(optimizer)
    updates = mae_optimizer.num_updates
    for skipped in (1, 2):
        assert mae_optimizer.backward_and_step(_mae_loss(model), model.parameters()) == {"skipped": 1.0}
        assert mae_optimizer.guard.total == mae_optimizer.guard.consecutive == skipped
        assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
        assert _same_state(state, _optimizer_state(optimizer)) and mae_optimizer.num_updates == updates
        assert all(p.grad is None for p in model.parameters())
    overflow.remove()
    assert "grad_norm" in mae_optimizer.backward_and_step(_mae_loss(model), model.parameters())
    assert mae_optimizer.guard.consecutive == 0 and mae_optimizer.guard.total == 2


def test_a_huge_mae_learning_rate_never_leaves_non_finite_weights():
    model, mae_optimizer = _mae_optimizer(lr=3e37)  # AdamW's weight decay multiplies the weights by -1.5e36

    def bounded_loss():  # finite whatever the weights, with finite gradients
        return sum(torch.tanh(p).sum() for p in model.parameters())

    assert "grad_norm" in mae_optimizer.backward_and_step(bounded_loss(), model.parameters())  # huge, finite
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert max(v.abs().max() for v in weights.values()) > 1e36
    state = _optimizer_state(mae_optimizer.optimizer)
    for skipped in (1, 2, 3):  # each further step overflows: undone and counted
        loss = bounded_loss()
        assert math.isfinite(loss.item())
        assert mae_optimizer.backward_and_step(loss, model.parameters()) == {"skipped": 1.0}
        assert mae_optimizer.guard.total == mae_optimizer.guard.consecutive == skipped
        assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
        assert _same_state(state, _optimizer_state(mae_optimizer.optimizer))


def test_a_non_finite_mae_gradient_with_a_finite_loss_is_skipped():
    model, mae_optimizer = _mae_optimizer()
    model[0].weight.register_hook(lambda grad: grad * float("inf"))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    loss = _mae_loss(model)
    assert math.isfinite(loss.item())
    assert mae_optimizer.backward_and_step(loss, model.parameters()) == {"skipped": 1.0}
    assert mae_optimizer.guard.total == 1 and not mae_optimizer.optimizer.state
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def stock_a2c(spec, config, device):
    """A user's builder: Tianshou's own A2C on the token policy and critic."""
    from tianshou.algorithm import A2C
    from tianshou.algorithm.optim import AdamOptimizerFactory

    from agents.algorithms import SamplerConfig, build_critic_network, guarded, token_sampler_policy

    critic = build_critic_network(spec, [16])
    policy = token_sampler_policy(spec, SamplerConfig(actor="mha", num_heads=2), device, critic=critic)
    return A2C(policy=policy, critic=critic, optim=guarded(AdamOptimizerFactory(lr=1e-3)), gamma=1.0, gae_lambda=1.0)


def test_a_stock_algorithm_gets_the_same_guard():
    torch.manual_seed(0)
    env = make_env()
    agent = build_agent("custom", env=env, config={"_target_": "tests.test_runs.stock_a2c"})
    buffer = VectorReplayBuffer(8, env.num_envs, ignore_obs_next=True)
    collector = Collector(agent.policy, TianshouVectorEnv(env), buffer)
    collector.reset()
    with torch.no_grad():
        collector.collect(n_step=8)
    first = agent.update(buffer)
    assert first["policy/skipped_nonfinite"] == 0 and first["policy/gradient_steps"] == 1 and "policy/vf_loss" in first
    with torch.no_grad():
        next(agent.algorithm.critic.parameters())[0].fill_(float("nan"))
    before = _weights(agent)
    stats = agent.update(buffer)
    assert stats["policy/skipped_nonfinite"] == 1 and agent.guard.consecutive == 1
    after = _weights(agent)
    assert all(torch.equal(before[k], after[k]) or torch.isnan(before[k]).any() for k in before)


def unguarded_a2c(spec, config, device):
    """A user's builder whose optimiser factory is not wrapped in agents.algorithms.guarded."""
    from tianshou.algorithm import A2C
    from tianshou.algorithm.optim import AdamOptimizerFactory

    from agents.algorithms import SamplerConfig, build_critic_network, token_sampler_policy

    critic = build_critic_network(spec, [16])
    policy = token_sampler_policy(spec, SamplerConfig(actor="mha", num_heads=2), device, critic=critic)
    return A2C(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=1e-3), gamma=1.0, gae_lambda=1.0)


def test_an_unguarded_custom_algorithm_is_named_at_build():
    with pytest.warns(UserWarning, match="guarded"):
        agent = build_agent("custom", env=make_env(), config={"_target_": "tests.test_runs.unguarded_a2c"})
    assert agent.guard.total == 0


@pytest.mark.parametrize("override", ["agent.lr=1e6", "train.lr=1e30"])
def test_a_diverged_run_stops_and_never_saves_non_finite_weights(tmp_path, override):
    import train_joint

    out = tmp_path / "run"
    with pytest.raises(RunStopped, match="diverged"):
        train_joint.train(compose_cfg(*SMALL, override, "train.max_consecutive_skips=3", "train.save_every_steps=1",
                                      f"output_dir={out}"))
    if (out / checkpoint.LATEST).exists():
        state = torch.load(out / checkpoint.LATEST, weights_only=False)
        assert all(torch.isfinite(v).all() for v in state["mae"].values() if v.is_floating_point())


# ---- preemption -------------------------------------------------------------------------------


def test_a_repeated_sigterm_is_the_same_request_a_repeated_ctrl_c_stops_at_once(tmp_path, monkeypatch):
    """A SIGTERM soon after a first one (the scheduler's to every process, and torchrun's copy to its
    ranks) does not cancel the save; one later, or any second signal after Ctrl-C, stops at once."""
    from omegaconf import OmegaConf

    from runtime import control as control_module

    clock = [100.0]
    monkeypatch.setattr(control_module.time, "monotonic", lambda: clock[0])
    forced = []
    previous = {s: signal.signal(s, lambda signum, frame: forced.append(signum)) for s in control_module.STOP_SIGNALS}
    try:
        for first, second, delay, stops in [(signal.SIGTERM, signal.SIGTERM, 1.0, False),
                                            (signal.SIGTERM, signal.SIGTERM, control_module.REPEAT_GRACE_S, True),
                                            (signal.SIGINT, signal.SIGINT, 0.0, True),
                                            (signal.SIGINT, signal.SIGTERM, 0.0, True),  # torchrun's 2nd Ctrl-C
                                            (signal.SIGTERM, signal.SIGINT, 0.0, True)]:
            forced.clear()
            control = control_module.RunControl(OmegaConf.create({}), tmp_path)
            control._handle(first, None)
            assert control.signal_received == first and not forced
            clock[0] += delay
            control._handle(second, None)
            assert forced == ([second] if stops else []), (first, second, delay)
            assert control.signal_received == first
            control.close()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_sigterm_saves_at_the_step_boundary_and_the_resume_matches(tmp_path, monkeypatch):
    import train_joint
    from runtime.control import exit_status_after_stop

    args = [*SMALL, "train.max_steps=6"]
    full = train_joint.train(compose_cfg(*args, f"output_dir={tmp_path / 'full'}"))
    calls = []
    random_actions = train_joint.random_actions

    def signal_at_the_third_step(env, generator):
        calls.append(1)
        if len(calls) == 3:  # mid-epoch: 4 steps an epoch
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # delivered twice (scheduler and torchrun): still one request
        return random_actions(env, generator)

    monkeypatch.setattr(train_joint, "random_actions", signal_at_the_third_step)
    cut = train_joint.train(compose_cfg(*args, f"output_dir={tmp_path / 'cut'}"))
    monkeypatch.setattr(train_joint, "random_actions", random_actions)
    assert exit_status_after_stop() == 128 + signal.SIGTERM
    assert torch.load(tmp_path / "cut" / checkpoint.LATEST, weights_only=False)["step"] == 3
    assert cut["env/epoch"] == 0
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler was put back
    resumed = train_joint.train(compose_cfg(*args, "resume=true", f"output_dir={tmp_path / 'cut'}"))
    assert exit_status_after_stop() is None
    for key in ("mae/loss", "env/reward_mean"):
        assert resumed[key] == full[key], key
    a = torch.load(tmp_path / "full" / checkpoint.LATEST, weights_only=False)
    b = torch.load(tmp_path / "cut" / checkpoint.LATEST, weights_only=False)
    for name, tensor in a["mae"].items():
        assert torch.equal(tensor, b["mae"][name]), name


def test_save_every_steps_writes_between_epochs(tmp_path):
    import train_joint

    out = tmp_path / "run"
    train_joint.train(compose_cfg(*RANDOM, "train.max_steps=3", "train.save_every_steps=2",
                                  "train.save_ckpt_freq=100", f"output_dir={out}"))
    # step 2 (periodic) became the previous checkpoint when step 3 (the end) was written
    assert torch.load(out / checkpoint.PREVIOUS, weights_only=False)["step"] == 2
    assert torch.load(out / checkpoint.LATEST, weights_only=False)["step"] == 3
    summary = (out / "train_joint.log").read_text()  # one paragraph per session
    assert "Run summary: 3 of 3 MAE steps" in summary and str(out / checkpoint.LATEST) in summary


@pytest.mark.slow
def test_ctrl_c_to_a_running_process_group_then_resume(tmp_path):
    import train_joint

    # a DataLoader worker, and SIGINT to the whole process group, as Ctrl-C in a terminal sends it
    args = [*RANDOM, "train.epochs=6", "train.max_steps=24", "train.save_every_steps=1", "data.num_workers=1"]
    out = tmp_path / "cut"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "train_joint.py", *args, f"output_dir={out}"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (out / checkpoint.LATEST).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGINT, stderr[-2000:]
    assert "received SIGINT" in stderr and "Stopped by SIGINT" in stdout and "Traceback" not in stderr
    stopped_at = torch.load(out / checkpoint.LATEST, weights_only=False)["step"]
    assert 0 < stopped_at < 24
    torch.set_num_threads(1)
    resumed = train_joint.train(compose_cfg(*args, "resume=true", f"output_dir={out}"))
    full = train_joint.train(compose_cfg(*args, f"output_dir={tmp_path / 'full'}"))
    assert resumed["mae/loss"] == full["mae/loss"] and math.isfinite(full["mae/loss"])
    a = torch.load(tmp_path / "full" / checkpoint.LATEST, weights_only=False)
    b = torch.load(out / checkpoint.LATEST, weights_only=False)
    assert all(torch.equal(tensor, b["mae"][name]) for name, tensor in a["mae"].items())


def test_a_data_worker_absorbs_the_first_sigterm_only():
    from envs.clip_source import _leave_stop_signals_to_the_main_process

    child = os.fork()
    if child == 0:  # a stand-in for a DataLoader worker
        try:
            _leave_stop_signals_to_the_main_process(0)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C to the group: ignored
            os.kill(os.getpid(), signal.SIGTERM)  # the scheduler's, to the group: absorbed
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGTERM)  # the DataLoader's terminate(): stops it
            time.sleep(5)
        finally:
            os._exit(3)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM


@pytest.mark.slow
def test_sigterm_to_a_running_process_group_with_data_workers_then_resume(tmp_path):
    # what a scheduler does before it stops a job: SIGTERM to every process, DataLoader workers included
    args = [*RANDOM, "train.epochs=6", "train.max_steps=24", "train.save_every_steps=1", "data.num_workers=2"]
    out = tmp_path / "cut"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "train_joint.py", *args, f"output_dir={out}"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 240
    while not (out / checkpoint.LATEST).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "received SIGTERM" in stderr and "Traceback" not in stderr
    stopped_at = torch.load(out / checkpoint.LATEST, weights_only=False)["step"]
    assert 0 < stopped_at < 24 and f"Stopped by SIGTERM at step {stopped_at} of 24" in stdout
    # the resume runs to the end and exits (its workers stopped, no hang at exit)
    resumed = subprocess.run([*command, "resume=true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(out / checkpoint.LATEST, weights_only=False)["step"] == 24


# ---- one run per folder, and the processes that wrote it ----------------------------------------


def test_a_second_run_on_a_held_folder_is_one_line_naming_the_holder(tmp_path):
    from runtime.run_lock import RunLock

    out = tmp_path / "run"
    import train_joint

    train_joint.train(compose_cfg(*RANDOM, "train.max_steps=1", f"output_dir={out}"))
    holder = RunLock(out).acquire()  # this process stands for a run in progress
    holder.announce("a run in progress")
    before = digest(out)
    try:
        result = subprocess.run([sys.executable, "train_joint.py", *RANDOM, "resume=true", "train.max_steps=2",
                                 f"output_dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    finally:
        holder.release()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "in use by a run in progress" in lines[0] and f"pid {os.getpid()}" in lines[0]
    assert digest(out) == before
    # released (as the kernel does when a holder dies): the folder is free again, in this process too
    train_joint.train(compose_cfg(*RANDOM, "resume=true", "train.max_steps=2", f"output_dir={out}"))
    assert torch.load(out / checkpoint.LATEST, weights_only=False)["step"] == 2


def test_a_lock_dies_with_its_process(tmp_path):
    from runtime.run_lock import RunLock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                               "from runtime.run_lock import RunLock; lock = RunLock(sys.argv[2]).acquire(); lock.announce('x'); "
                               "print('held', flush=True); time.sleep(60)", str(ROOT), str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match="in use by x"):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    RunLock(tmp_path).acquire().release()  # kill -9 left nothing to clean up


def test_a_resume_with_another_number_of_processes_is_refused_before_writing(tmp_path):
    out = tmp_path / "run"
    state = fake_state(output_dir=str(out))
    state["rng"] = {"per_rank": [{}, {}]}  # written by 2 processes
    out.mkdir()
    checkpoint.save_atomic(state, out / checkpoint.LATEST)
    before = digest(out)
    with pytest.raises(UserError, match="written by 2 process"):
        prepare_run_dir({"output_dir": str(out), "mask_ratio": 0.9}, resume=True, world_size=1)
    prepare_run_dir({"output_dir": str(out), "mask_ratio": 0.9}, resume=True, world_size=2)
    assert digest(out) == before


def test_resume_is_exact_with_a_video_that_fails_to_decode(tmp_path):
    """The memo of unreadable videos travels with the checkpoint: the resumed run skips the corrupt
    video without reading it (no random numbers drawn for it), as the uninterrupted run does."""
    import train_joint
    from tests.test_data_video_io import write_corrupt_mid_stream, write_video

    listing = tmp_path / "videos.txt"
    paths = [write_video(tmp_path / f"v{k}.mp4", 20, noise=True) for k in range(4)]
    paths.insert(1, write_corrupt_mid_stream(tmp_path / "corrupt.mp4"))
    listing.write_text("".join(f"{path} 0\n" for path in paths))
    args = [*RANDOM, "data=list", f"data.train_list={listing}", "data.num_frames=4", "data.sampling_rate=1",
            "train.batch_size=2", "train.epochs=4", "train.log_every=1"]
    with pytest.warns(UserWarning, match="corrupt.mp4"):
        full = train_joint.train(compose_cfg(*args, f"output_dir={tmp_path / 'full'}"))
        train_joint.train(compose_cfg(*args, "train.max_steps=3", f"output_dir={tmp_path / 'cut'}"))
    resumed = train_joint.train(compose_cfg(*args, "resume=true", f"output_dir={tmp_path / 'cut'}"))
    assert resumed["mae/loss"] == full["mae/loss"]
    a = torch.load(tmp_path / "full" / checkpoint.LATEST, weights_only=False)
    b = torch.load(tmp_path / "cut" / checkpoint.LATEST, weights_only=False)
    assert a["step"] == b["step"] == 8 and str(tmp_path / "corrupt.mp4") in b["env"]["clips"]["unreadable"]
    for name, tensor in a["mae"].items():
        assert torch.equal(tensor, b["mae"][name]), name


def test_a_resume_that_runs_no_step_writes_no_checkpoint(tmp_path):
    import train_joint

    out = tmp_path / "run"
    train_joint.train(compose_cfg(*RANDOM, "train.max_steps=3", "train.save_every_steps=1", f"output_dir={out}"))
    checkpoints = {name: (out / name).read_bytes() for name in (checkpoint.LATEST, checkpoint.PREVIOUS)}
    train_joint.train(compose_cfg(*RANDOM, "train.max_steps=2", "resume=true", f"output_dir={out}"))
    assert {name: (out / name).read_bytes() for name in checkpoints} == checkpoints


def test_the_last_cycle_ends_at_max_steps(tmp_path):
    import train_joint

    train_joint.train(compose_cfg(*SMALL, "train.update_steps_mae=3", "train.mae_only_epochs=0", "train.max_steps=4",
                                  f"output_dir={tmp_path}"))
    state = torch.load(tmp_path / checkpoint.LATEST, weights_only=False)
    assert state["step"] == 4 and state["policy_updates"] == 2  # cycles of 3 and 1 steps
