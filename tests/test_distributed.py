"""Two CPU processes on gloo (torchrun): the ranks' MAE and policy stay identical."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

RANK_SCRIPT = """
import os, sys, torch
sys.path.insert(0, {root!r})
import train_joint
from hydra import compose, initialize_config_dir
from configs import CONFIG_DIR

built = {{}}
build_model, build_agent = train_joint.build_model, train_joint.build_agent
train_joint.build_model = lambda cfg: built.setdefault("mae", build_model(cfg))
train_joint.build_agent = lambda *a, **k: built.setdefault("agent", build_agent(*a, **k))
with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
    cfg = compose(config_name="config", overrides=sys.argv[1:])
train_joint.train(cfg)
rank = int(os.environ["RANK"])
torch.save({{"mae": built["mae"].state_dict(), "agent": built["agent"].state_dict()}},
           os.path.join(cfg.output_dir, f"rank{{rank}}.pt"))
"""


# per agent: its options, the port, and the sampler cycles of the run
AGENT_RUNS = {
    # 1 MAE-only epoch, then 4 PPO cycles
    "ppo": (["agent=ppo", "agent.critic_hidden=[32,16]", "agent.lr=1e-3"], 29533, 4),
    # AdaMAE's recipe: the sampler trains in the MAE's step (its gradients averaged by the hooks
    # inside the MAE's backward, next to DDP's), from the first step: 8 cycles
    "reinforce": (["agent=reinforce", "agent.num_heads=3"], 29534, 8),
}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
@pytest.mark.parametrize("agent", sorted(AGENT_RUNS))
def test_two_gloo_ranks_keep_identical_parameters(tmp_path, agent):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT.format(root=str(ROOT)))
    out = tmp_path / "run"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    options, port, cycles = AGENT_RUNS[agent]
    # 32 clips, 2 ranks x 4 per step: 4 steps an epoch
    args = ["data.synthetic_clips=32", "data.num_workers=0", "train.batch_size=4", "train.epochs=2",
            "train.mae_only_epochs=1", *options, f"output_dir={out}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([torchrun, "--nproc_per_node=2", f"--master_port={port}", str(script), *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for name, tensor in ranks[0]["mae"].items():
        assert torch.equal(tensor, ranks[1]["mae"][name]), f"MAE {name} differs across ranks"
    actor0 = ranks[0]["agent"]["algorithm"] if "algorithm" in ranks[0]["agent"] else ranks[0]["agent"]
    actor1 = ranks[1]["agent"]["algorithm"] if "algorithm" in ranks[1]["agent"] else ranks[1]["agent"]
    compared = 0
    for name, tensor in actor0.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point():
            torch.testing.assert_close(tensor, actor1[name], rtol=0, atol=1e-6, msg=f"policy {name} differs")
            compared += 1
    assert compared > 0
    # and training did move them: the ranks agree because they averaged, not because nothing changed
    state = torch.load(out / "checkpoint-latest.pt", weights_only=False)
    assert state["policy_updates"] == cycles
    if agent == "reinforce":  # the MAE's optimiser stepped the sampler's groups (with gradients) on both ranks
        optim = state["mae_optimizer"]["optimizer"]
        sampler = [i for group in optim["param_groups"][2:] for i in group["params"]]
        assert len(optim["param_groups"]) == 4 and sampler
        assert all(i in optim["state"] for i in sampler)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_gloo_ranks_resume_exactly(tmp_path):
    """Stopped after 2 steps and resumed, a 2-rank run ends where an uninterrupted one does: each rank
    gets its own generators back (the random masks of the first epoch, the policy's samples after)."""
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT.format(root=str(ROOT)))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    # 32 clips, 2 ranks x 4 per step: 4 steps an epoch; 1 random-masking epoch, then 4 PPO cycles
    args = ["data.synthetic_clips=32", "data.num_workers=0", "train.batch_size=4", "train.epochs=2",
            "train.mae_only_epochs=1", "agent.critic_hidden=[32,16]", "agent.lr=1e-3", "train.eval_every=0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run(port, *extra):
        result = subprocess.run([torchrun, "--nproc_per_node=2", f"--master_port={port}", str(script), *args, *extra],
                                cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
        assert result.returncode == 0, result.stderr[-4000:]

    run(29536, f"output_dir={tmp_path / 'full'}")
    run(29537, f"output_dir={tmp_path / 'cut'}", "train.max_steps=2")
    state = torch.load(tmp_path / "cut" / "checkpoint-latest.pt", weights_only=False)
    per_rank = state["rng"]["per_rank"]
    assert len(per_rank) == 2 and not torch.equal(per_rank[0]["torch"], per_rank[1]["torch"])
    assert not torch.equal(per_rank[0]["generators"]["mask"], per_rank[1]["generators"]["mask"])
    run(29538, f"output_dir={tmp_path / 'cut'}", "resume=true")
    for rank in range(2):
        full = torch.load(tmp_path / "full" / f"rank{rank}.pt", weights_only=False)
        resumed = torch.load(tmp_path / "cut" / f"rank{rank}.pt", weights_only=False)
        for name, tensor in full["mae"].items():
            assert torch.equal(tensor, resumed["mae"][name]), f"rank {rank}: MAE {name} differs from the uninterrupted run"
        for name, tensor in full["agent"]["algorithm"].items():
            if torch.is_tensor(tensor):
                assert torch.equal(tensor, resumed["agent"]["algorithm"][name]), f"rank {rank}: policy {name} differs"


# the ranks of test_a_group_sigterm_under_torchrun_saves_once_and_resumes: each logs its steps and the stop
# signals it gets, slows the random-masking steps (so that the signal lands mid-run, mid-step), and
# writes its exit status before it exits with it
SIGNAL_RANK_SCRIPT = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
import train_joint
from hydra import compose, initialize_config_dir
from configs import CONFIG_DIR
from runtime import control

with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
    cfg = compose(config_name="config", overrides=sys.argv[1:])
os.makedirs(cfg.output_dir, exist_ok=True)
log = open(os.path.join(cfg.output_dir, "rank{{}}.log".format(os.environ["RANK"])), "a", buffering=1)
handle, after_step, random_actions = control.RunControl._handle, control.RunControl.after_step, train_joint.random_actions

def logged_handle(self, signum, frame):
    log.write("signal " + signal.Signals(signum).name + "\\n")
    handle(self, signum, frame)

def logged_after_step(self, step, *args):
    log.write("step %d\\n" % step)
    after_step(self, step, *args)

def slow_random_actions(*args):
    time.sleep(0.5)
    return random_actions(*args)

control.RunControl._handle, control.RunControl.after_step = logged_handle, logged_after_step
train_joint.random_actions = slow_random_actions
train_joint.train(cfg)
status = control.exit_status_after_stop() or 0
log.write("exit %d\\n" % status)
sys.exit(status)
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_a_group_sigterm_under_torchrun_saves_once_and_resumes(tmp_path):
    """What a scheduler does to a torchrun job: SIGTERM to torchrun's process group, here also to each rank
    (as SLURM signals every process of the job), so that a rank gets it twice: once directly, once passed
    on by torchrun. Both ranks stop at the same step boundary, one checkpoint at that step is written,
    every rank exits 143 after it; torchrun itself exits 1 (its own traceback); resume=true finishes."""
    import re
    import signal
    import time

    script = tmp_path / "rank.py"
    script.write_text(SIGNAL_RANK_SCRIPT.format(root=str(ROOT)))
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "run"
    # 32 clips, 2 ranks x 4 per step: 4 random-masking steps of 0.5 s or more, then 4 PPO cycles
    args = ["data.synthetic_clips=32", "data.num_workers=0", "train.batch_size=4", "train.epochs=2",
            "train.mae_only_epochs=1", "agent.critic_hidden=[32,16]", "agent.lr=1e-3", "train.eval_every=0",
            f"output_dir={out}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    logs = [out / f"rank{rank}.log" for rank in range(2)]

    def launch(port, *extra, name):
        stdout, stderr = (open(tmp_path / f"{name}.{kind}", "w") for kind in ("stdout", "stderr"))
        process = subprocess.Popen([torchrun, "--nproc_per_node=2", f"--master_port={port}", str(script), *args,
                                    *extra], cwd=ROOT, stdout=stdout, stderr=stderr, env=env, start_new_session=True)
        return process, stdout, stderr

    def finish(process, files, timeout):
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            subprocess.run(["pkill", "-KILL", "-P", str(process.pid)], check=False)  # the ranks, in their own sessions
            process.wait()
            pytest.fail(f"torchrun did not finish within {timeout} s: {read('stderr')[-3000:]}")
        finally:
            for handle in files:
                handle.close()
        return process.returncode

    def read(kind, name="cut"):
        return (tmp_path / f"{name}.{kind}").read_text(errors="replace")

    process, *files = launch(29539, name="cut")
    deadline = time.monotonic() + 120
    while not all(log.exists() and "step 1\n" in log.read_text() for log in logs):
        if process.poll() is not None or time.monotonic() > deadline:
            finish(process, files, 1)
            pytest.fail(f"no first step: {read('stderr')[-3000:]}")
        time.sleep(0.1)
    # a scheduler: SIGTERM to torchrun's process group and to every process of the job (torchrun starts
    # its ranks in sessions of their own, so the group's signal reaches them only through torchrun)
    ranks = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    os.killpg(process.pid, signal.SIGTERM)
    for pid in ranks:
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass
    returncode = finish(process, files, 60)
    stdout, stderr = read("stdout"), read("stderr")
    assert returncode in (1, 128 + signal.SIGTERM), stderr[-3000:]  # torchrun: 1 and a SignalException traceback
    stopped = re.findall(r"Stopped by SIGTERM at step (\d+) of 8", stdout)
    assert len(stopped) == 1, stdout[-3000:]
    stopped_at = int(stopped[0])
    assert 1 <= stopped_at < 4  # in the random-masking epoch
    for log in logs:  # each rank stopped at that step, after the save, and none was forced
        lines = log.read_text().splitlines()
        assert "signal SIGTERM" in lines and lines[-1] == "exit 143", (log.name, lines)
        assert [line for line in lines if line.startswith("step")][-1] == f"step {stopped_at}", (log.name, lines)
    state = torch.load(out / "checkpoint-latest.pt", weights_only=False)
    assert state["step"] == stopped_at and len(state["rng"]["per_rank"]) == 2

    for log in logs:
        log.unlink()
    process, *files = launch(29540, "resume=true", name="resumed")
    assert finish(process, files, 150) == 0, read("stderr", "resumed")[-3000:]
    state = torch.load(out / "checkpoint-latest.pt", weights_only=False)
    assert state["step"] == 8 and state["policy_updates"] == 4
    assert all(log.read_text().splitlines()[-1] == "exit 0" for log in logs)
