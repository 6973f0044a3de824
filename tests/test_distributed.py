"""Two CPU processes on gloo (torchrun): the ranks' MAE and policy stay identical."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import free_port

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


# per agent: its options and the sampler cycles of the run
AGENT_RUNS = {
    # 1 MAE-only epoch, then 4 PPO cycles
    "ppo": (["agent=ppo", "agent.critic_hidden=[32,16]", "agent.lr=1e-3"], 4),
    # AdaMAE's recipe: the sampler trains in the MAE's step (its gradients averaged by the hooks
    # inside the MAE's backward, next to DDP's), from the first step: 8 cycles
    "reinforce": (["agent=reinforce", "agent.num_heads=3"], 8),
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
    options, cycles = AGENT_RUNS[agent]
    # 32 clips, 2 ranks x 4 per step: 4 steps an epoch
    args = ["data.synthetic_clips=32", "data.num_workers=0", "train.batch_size=4", "train.epochs=2",
            "train.mae_only_epochs=1", *options, f"output_dir={out}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([torchrun, "--nproc_per_node=2", f"--master_port={free_port()}", str(script), *args],
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

    def run(*extra):
        result = subprocess.run([torchrun, "--nproc_per_node=2", f"--master_port={free_port()}", str(script), *args,
                                 *extra],
                                cwd=ROOT, capture_output=True, text=True, timeout=400, env=env)
        assert result.returncode == 0, result.stderr[-4000:]

    run(f"output_dir={tmp_path / 'full'}")
    run(f"output_dir={tmp_path / 'cut'}", "train.max_steps=2")
    state = torch.load(tmp_path / "cut" / "checkpoint-latest.pt", weights_only=False)
    per_rank = state["rng"]["per_rank"]
    assert len(per_rank) == 2 and not torch.equal(per_rank[0]["torch"], per_rank[1]["torch"])
    assert not torch.equal(per_rank[0]["generators"]["mask"], per_rank[1]["generators"]["mask"])
    run(f"output_dir={tmp_path / 'cut'}", "resume=true")
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

    def launch(*extra, name):
        stdout, stderr = (open(tmp_path / f"{name}.{kind}", "w") for kind in ("stdout", "stderr"))
        process = subprocess.Popen([torchrun, "--nproc_per_node=2", f"--master_port={free_port()}", str(script), *args,
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

    process, *files = launch(name="cut")
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
    process, *files = launch("resume=true", name="resumed")
    assert finish(process, files, 150) == 0, read("stderr", "resumed")[-3000:]
    state = torch.load(out / "checkpoint-latest.pt", weights_only=False)
    assert state["step"] == 8 and state["policy_updates"] == 4
    assert all(log.read_text().splitlines()[-1] == "exit 0" for log in logs)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_gloo_ranks_train_a_policy_against_a_frozen_mae(tmp_path):
    """train.mae=frozen under torchrun: no DDP wrapper, the policy's gradients averaged, the MAE untouched."""
    import train_joint
    from tests.test_train_joint import compose_cfg

    warm = tmp_path / "warm"
    train_joint.train(compose_cfg("data.synthetic_clips=16", "data.num_workers=0", "train.batch_size=4",
                                  "train.max_steps=2", "agent=random", f"output_dir={warm}"))
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT.format(root=str(ROOT)))
    out = tmp_path / "run"
    args = ["data.synthetic_clips=32", "data.num_workers=0", "train.batch_size=4", "train.epochs=2",
            "train.mae=frozen", f"model.init_checkpoint={warm / 'checkpoint-latest.pt'}", "train.eval_every=0",
            "agent=ppo", "agent.critic_hidden=[32,16]", f"output_dir={out}"]
    result = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node=2",
                             f"--master_port={free_port()}", str(script), *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=400, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    initial = torch.load(warm / "checkpoint-latest.pt", weights_only=False)["mae"]
    for rank in ranks:
        for name, tensor in initial.items():
            assert torch.equal(tensor, rank["mae"][name]), f"the frozen MAE's {name} changed"
    policies = [rank["agent"]["algorithm"] for rank in ranks]
    floats = [name for name, tensor in policies[0].items() if torch.is_tensor(tensor) and tensor.is_floating_point()]
    assert floats
    for name in floats:
        torch.testing.assert_close(policies[0][name], policies[1][name], rtol=0, atol=1e-6, msg=f"policy {name}")
    assert torch.load(out / "checkpoint-latest.pt", weights_only=False)["policy_updates"] == 8  # every step a cycle


GUARD_SCRIPT = """
import os, sys, torch
import torch.distributed as dist
sys.path.insert(0, {root!r})
from envs.mae_optimizer import MAEOptimizer
from runtime.nonfinite import NonFiniteGuard

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
# the MAE's step: DDP all-reduces the gradients inside backward(); rank 1's loss is NaN at step 1
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))
mae_optimizer = MAEOptimizer(torch.optim.AdamW(model.parameters(), lr=1e-2))
# a step whose gradients are not all-reduced: only the guard's joint decision keeps the replicas equal
plain = torch.nn.Linear(4, 4)
guard = NonFiniteGuard()
plain_optimizer = guard.attach(torch.optim.AdamW(plain.parameters(), lr=1e-2))
skipped = []
for step in range(3):
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
    poison = float("nan") if (rank == 1 and step == 1) else 1.0
    out = mae_optimizer.backward_and_step(model(x).pow(2).mean() * poison)
    plain_optimizer.zero_grad()
    (plain(x).pow(2).mean() * poison).backward()
    plain_optimizer.step()
    skipped.append((out.get("skipped", 0.0), guard.last_skipped))
torch.save({{"mae": model.module.state_dict(), "plain": plain.state_dict(), "skipped": skipped,
            "counts": (mae_optimizer.guard.total, guard.total)}}, os.path.join({out!r}, f"rank{{rank}}.pt"))
dist.destroy_process_group()
"""


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_a_non_finite_loss_on_one_rank_skips_the_step_on_every_rank(tmp_path):
    """No rank returns early from a step the others take: no hang (the timeout), the step skipped on
    both ranks, the replicas equal afterwards."""
    script = tmp_path / "guard.py"
    script.write_text(GUARD_SCRIPT.format(root=str(ROOT), out=str(tmp_path)))
    result = subprocess.run([str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node=2",
                             f"--master_port={free_port()}", str(script)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for rank in ranks:
        assert rank["skipped"] == [(0.0, False), (1.0, True), (0.0, False)] and rank["counts"] == (1, 1)
    for part in ("mae", "plain"):
        for name, tensor in ranks[0][part].items():
            assert torch.equal(tensor, ranks[1][part][name]), f"{part} {name} differs across ranks"
