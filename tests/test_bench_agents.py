"""tools.bench_agents: its rows are train_joint.py's build, and its plain loop is the same maths as the framework."""

import argparse

import pytest
import torch
from tianshou.utils.torch_utils import policy_within_training_step

from tools.bench_agents import cli
from tools.bench_agents.build import TATS, Cycle, build_mae, make_pool, make_rows, run_config
from tools.bench_agents.framing import PlainLoop

ARGS = dict(model="tiny", batch=2, mask_ratio=0.95, num_frames=4, device="cpu", amp=True, sampler_dim=None,
            group_size=2, rows=None)


def args(**changes):
    return argparse.Namespace(**{**ARGS, **changes})


def test_a_row_is_the_config_of_train_joint_with_the_papers_agent_values():
    cfg = run_config(args(), make_rows(args(), 96)[0][-1])  # the GRPO row
    assert cfg.agent.name == "grpo" and cfg.agent.group_size == 2 and cfg.agent.actor == "trajectory"
    assert cfg.train.batch_size == 2 and cfg.mask_ratio == 0.95 and cfg.data.num_frames == 4
    tats = run_config(args(), TATS).agent
    assert tats.objective == "paper" and tats.policy_coef == 1e-4  # no CPU-testbed preset


def test_the_plain_loop_takes_the_framework_cycles_steps():
    """Same start, same clips and draws: the plain loop's MAE step and sampler update give what the
    environment, Collector and agent.update give."""
    device = torch.device("cpu")
    pool = make_pool(args())
    framework_mae, framework_opt = build_mae(args(), pool, device)
    framework = Cycle(TATS, framework_mae, framework_opt, pool, args(), device)
    plain_mae, plain_opt = build_mae(args(), pool, device)
    plain = PlainLoop(plain_mae, plain_opt, pool, args(), device, framework.env)

    torch.manual_seed(1)
    with torch.no_grad(), policy_within_training_step(framework.agent.policy):
        framework.collector.collect(n_step=framework.env.num_envs)
    stats = framework.agent.update(framework.buffer)
    torch.manual_seed(1)
    plain()
    for key in ("loss", "clip_objective", "value_loss", "entropy", "ratio_mean", "adv_mean", "return_mean"):
        assert plain.stats[key] == pytest.approx(stats[f"policy/{key}"], rel=1e-5, abs=1e-9), key
    assert all(torch.allclose(a, b) for a, b in zip(framework_mae.parameters(), plain_mae.parameters()))
    for a, b in zip(framework.agent.algorithm.parameters(), plain.agent.algorithm.parameters()):
        assert torch.allclose(a, b, atol=1e-7)


def test_the_command_line_runs_one_round_of_the_framing_part(capsys):
    cli.main(["--parts", "framing", "--repeats", "1", "--warmup", "0", "--num-frames", "4", "--batch", "2",
              "--threads", "1"])
    out = capsys.readouterr().out
    assert "| plain loop (the reference) |" in out and "framing overhead (framework / plain loop)" in out
