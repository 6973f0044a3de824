"""Imitation pre-training (the exact Plackett-Luce likelihood of teacher orders) and the temperature schedule."""

import json
import math

import pytest
import torch

from agents.algorithms.config import scheduled_temperature
from agents.imitation import imitate, imitation_loss
from agents.registry import build_agent
from tests.helpers import collect_steps
from tests.test_env import make_env


# ---- the temperature schedule ------------------------------------------------------------------
def test_schedule_endpoints_and_midpoints():
    assert scheduled_temperature(3.0, 0.3, "exp", 0, 11) == pytest.approx(3.0)
    assert scheduled_temperature(3.0, 0.3, "exp", 10, 11) == pytest.approx(0.3)
    assert scheduled_temperature(3.0, 0.3, "exp", 5, 11) == pytest.approx(math.sqrt(3.0 * 0.3))  # geometric
    assert scheduled_temperature(3.0, 0.3, "linear", 5, 11) == pytest.approx(1.65)
    assert scheduled_temperature(3.0, 0.3, "exp", 99, 11) == pytest.approx(0.3)  # clamped past the end
    assert scheduled_temperature(2.0, None, "exp", 5, 11) == 2.0  # no end: constant


def test_config_refuses_a_bad_schedule():
    env = make_env()
    with pytest.raises(ValueError, match="softmax_temp_decay"):
        build_agent("ppo", env=env, config={"num_heads": 2, "softmax_temp_end": 0.3, "softmax_temp_decay": "cosine"})
    with pytest.raises(ValueError, match="softmax_temp_end"):
        build_agent("ppo", env=env, config={"num_heads": 2, "softmax_temp_end": 0.0})


@pytest.mark.parametrize("step", [0, 3, 7])
def test_ppo_ratio_is_exactly_one_before_the_first_step_at_any_temperature(step):
    torch.manual_seed(0)
    env = make_env(batch=4)
    agent = build_agent("ppo", env=env, config={"num_heads": 2, "critic_hidden": [8], "objective": "cooperative",
                                                "softmax_temp": 3.0, "softmax_temp_end": 0.3})
    scalars = agent.set_step(step, 8)
    tau = scheduled_temperature(3.0, 0.3, "exp", step, 8)
    assert scalars == {"policy/temperature": pytest.approx(tau)} and agent.policy.temperature == pytest.approx(tau)
    buffer = collect_steps(agent, env, capacity=4, n_step=4)  # one forward of 4 clips, as the update's one minibatch
    algorithm = agent.algorithm
    batch = algorithm.prepare(buffer[:])
    dist = agent.policy.distribution(batch)
    assert dist.temperature == pytest.approx(tau)
    ratio = (algorithm.objective.log_prob(dist, batch.act) - batch.logp_old).exp()
    assert torch.equal(ratio, torch.ones_like(ratio)), ratio
    _, stats = algorithm.compute_loss(batch)
    assert float(stats["ratio_mean"]) == 1.0
    # the temperature enters the stored (old) log-prob: at another temperature the ratio moves
    agent.policy.temperature = tau * 2
    moved = (algorithm.objective.log_prob(agent.policy.distribution(batch), batch.act) - batch.logp_old).exp()
    assert not torch.allclose(moved, torch.ones_like(moved))


def test_constant_temperature_is_reported_and_left_alone():
    agent = build_agent("ppo", env=make_env(), config={"num_heads": 2, "softmax_temp": 1.5})
    assert agent.set_step(5, 10) == {"policy/temperature": 1.5}
    assert build_agent("random", env=make_env(), config={}).set_step(0, 10) == {}


# ---- the imitation loss ------------------------------------------------------------------------
def test_imitation_loss_is_the_negative_plackett_luce_log_probability_by_hand():
    # p = (1/6, 2/6, 3/6); order (2, 0): log P = log(3/6) + log((1/6) / (1 - 3/6)) = log(1/2) + log(1/3)
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0]]))
    assert float(imitation_loss(logits, torch.tensor([[2, 0]]))) == pytest.approx(math.log(6.0))
    # order (0, 1): log(1/6) + log((2/6) / (5/6)) = log(1/6) + log(2/5); mean over the two clips
    both = imitation_loss(logits.repeat(2, 1), torch.tensor([[2, 0], [0, 1]]))
    assert float(both) == pytest.approx((math.log(6.0) - math.log(1 / 6) - math.log(2 / 5)) / 2)
    # temperature 2: p proportional to sqrt(1, 2, 3)
    q = torch.tensor([1.0, 2.0, 3.0]).sqrt()
    q = q / q.sum()
    expected = -(math.log(q[2]) + math.log(q[0] / (1 - q[2])))
    assert float(imitation_loss(logits, torch.tensor([[2, 0]]), temperature=2.0)) == pytest.approx(expected)


class FreeLogits(torch.nn.Module):
    """An actor with free per-token logits plus a linear read of the tokens."""

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(num_tokens))
        self.read = torch.nn.Linear(dim, 1)

    def forward(self, obs, state=None, info=None):
        return self.bias + self.read(obs).squeeze(-1), state


def test_imitation_of_one_fixed_subset_drives_its_probability_to_one():
    torch.manual_seed(0)
    n, k, d, clips = 10, 3, 4, 16
    tokens = torch.randn(clips, n, d)
    order = torch.tensor([7, 2, 5]).repeat(clips, 1)
    actor = FreeLogits(n, d)
    with torch.no_grad():
        before = float((-imitation_loss(actor(tokens)[0], order)).exp())
    result = imitate(actor, tokens, order, steps=1000, lr=0.1, batch_size=8,
                     generator=torch.Generator().manual_seed(0), progress=False)
    with torch.no_grad():
        prob = (-imitation_loss(actor(tokens)[0], order)).exp()
    assert before < 0.01  # P(order) starts near 1 / (10 * 9 * 8)
    assert result.loss_last < result.loss_first and float(prob) > 0.98, (result, float(prob))


# ---- the commands: a teacher's selections, a run that imitates them, a run that starts from it ---
def test_teacher_selections_imitation_run_and_init_actor(tmp_path):
    import train_joint
    from benchmark.references import greedy_oracle, motion_scores
    from benchmark.teacher import load_selections, make_selections, teacher_order
    from tests.test_frozen_training import FROZEN
    from tests.test_train_joint import compose_cfg, random_masking_checkpoint

    mae_ckpt = random_masking_checkpoint(tmp_path / "mae", steps=2)
    selections = make_selections(mae_ckpt, tmp_path / "motion.pt", teacher="motion", num_clips=8, mask_ratio=0.9)
    k = selections["k"]
    assert selections["order"].shape == (8, k) and selections["video"].shape[0] == 8
    # the stored order is the motion ranking, the largest difference first
    from mae.registry import create_model_from_config
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(torch.load(mae_ckpt, weights_only=False)["config"])
    model = create_model_from_config(cfg.model, num_frames=cfg.data.num_frames)
    model.load_state_dict(torch.load(mae_ckpt, weights_only=False)["mae"])
    model.eval()
    scores = motion_scores(model, selections["video"])
    picked = scores.gather(1, selections["order"])
    assert (picked[:, :-1] >= picked[:, 1:]).all()
    # the greedy teacher is the oracle's selection order; a smaller K takes the prefix
    greedy, _ = greedy_oracle(model, selections["video"][:2], 3)
    assert torch.equal(teacher_order(model, selections["video"][:2], 3, "greedy"), greedy)
    assert load_selections(tmp_path / "motion.pt", 4)["order"].shape == (8, 4)
    with pytest.raises(ValueError, match="lower mask ratio"):
        load_selections(tmp_path / "motion.pt", k + 1)

    common = [*FROZEN, f"model.init_checkpoint={mae_ckpt}", "agent.num_heads=2"]
    imitated = tmp_path / "imitated"
    train_joint.train(compose_cfg(*common, f"train.imitate={tmp_path / 'motion.pt'}", "train.imitate_steps=20",
                                  "train.imitate_batch_size=4", "train.max_steps=0", f"output_dir={imitated}"))
    report = json.loads((imitated / "imitation.json").read_text())
    assert report["steps"] == 20 and report["teacher"] == "motion" and report["loss_last"] < report["loss_first"]
    actor = torch.load(imitated / "imitated-actor.pt", weights_only=False)["actor"]
    # imitation alone (train.max_steps=0): the checkpoint's actor is the imitated one
    algorithm = torch.load(imitated / "checkpoint-latest.pt", weights_only=False)["agent"]["algorithm"]
    for name, tensor in actor.items():
        assert torch.equal(algorithm[f"policy.actor.{name}"], tensor), name
    # one config value starts an RL run from it, from either file
    for source in (imitated / "imitated-actor.pt", imitated / "checkpoint-latest.pt"):
        out = tmp_path / f"rl-{source.stem}"
        train_joint.train(compose_cfg(*common, f"train.init_actor={source}", "train.max_steps=0",
                                      f"output_dir={out}"))
        started = torch.load(out / "checkpoint-latest.pt", weights_only=False)["agent"]["algorithm"]
        for name, tensor in actor.items():
            assert torch.equal(started[f"policy.actor.{name}"], tensor), name
    # GRPO's KL reference is the actor RL starts from, not the fresh one
    out = tmp_path / "grpo"
    train_joint.train(compose_cfg(*[o for o in common if not o.startswith("agent.")], "agent=grpo", "agent.num_heads=2",
                                  "agent.group_size=2", "agent.kl_coef=0.1", f"train.init_actor={imitated / 'imitated-actor.pt'}",
                                  "train.max_steps=0", f"output_dir={out}"))
    started = torch.load(out / "checkpoint-latest.pt", weights_only=False)["agent"]["algorithm"]
    for name, tensor in actor.items():
        assert torch.equal(started[f"policy.actor.{name}"], tensor), name
        assert torch.equal(started[f"reference.{name}"], tensor), name


def test_schedule_position_survives_a_resume(tmp_path):
    import train_joint
    from tests.test_frozen_training import FROZEN
    from tests.test_train_joint import compose_cfg, random_masking_checkpoint

    mae_ckpt = random_masking_checkpoint(tmp_path / "mae", steps=2)
    common = [*FROZEN, f"model.init_checkpoint={mae_ckpt}", "agent.softmax_temp=3.0", "agent.softmax_temp_end=0.3",
              "train.epochs=2"]
    full = train_joint.train(compose_cfg(*common, "train.max_steps=6", f"output_dir={tmp_path / 'full'}"))
    cut = train_joint.train(compose_cfg(*common, "train.max_steps=3", f"output_dir={tmp_path / 'cut'}"))
    resumed = train_joint.train(compose_cfg(*common, "train.max_steps=6", "resume=true",
                                            f"output_dir={tmp_path / 'cut'}"))
    # the schedule runs over the epochs' 8 steps (as the MAE's lr): max_steps stops a run, it does not shorten it
    assert cut["policy/temperature"] == pytest.approx(scheduled_temperature(3.0, 0.3, "exp", 2, 8))
    assert resumed["policy/temperature"] == full["policy/temperature"]
    assert full["policy/temperature"] == pytest.approx(scheduled_temperature(3.0, 0.3, "exp", 5, 8))
    for key in ("policy/loss", "env/reward_mean"):
        assert resumed[key] == full[key], key
    # the checkpoint keeps the temperature the schedule reached: a loaded policy samples at it
    from benchmark.evaluate import load_policy

    policy, _, _ = load_policy(tmp_path / "full")
    assert policy.temperature == pytest.approx(full["policy/temperature"])
