"""AdaMAE's training recipe of ``agent=reinforce`` (``agent.recipe=adamae``, the default): the
sampler in the MAE's optimiser and schedule, its loss in the MAE's step (with gradient into the
patch embedding), from the first step; ``agent.recipe=separate`` keeps its own optimiser."""

from __future__ import annotations

import math

import pytest
import torch

from agents.registry import build_agent
from envs import MAEOptimizer
from runtime.lr_schedule import StepSchedule, cosine_values, learning_rates
from tests.helpers import collect_steps
from tests.test_env import make_env
from tests.test_train_joint import SMALL, compose_cfg

TINY_NETS = dict(num_heads=2)  # the tiny MAE's tokens are 32 wide
RUN = [o for o in SMALL if not o.startswith("agent.")] + ["agent=reinforce"]


def joined_agent(env, **options):
    """The reinforce agent in AdaMAE's recipe, wired into ``env`` as train_joint.py wires it."""
    agent = build_agent("reinforce", env=env, config={**TINY_NETS, **options})
    assert agent.trains_with_mae
    env.optimizer.add_param_groups(agent.algorithm.mae_param_groups(0.05))
    env.sampler_loss = agent.algorithm.mae_step_loss
    return agent


def run_capturing(monkeypatch, *overrides):
    """A train_joint.py run; returns its last scalars, the env and the agent it built."""
    import train_joint

    from envs import MAEVectorEnv, build

    built = {}
    monkeypatch.setattr(build, "MAEVectorEnv", lambda *a, **k: built.setdefault("env", MAEVectorEnv(*a, **k)))
    monkeypatch.setattr(train_joint, "build_agent", lambda *a, **k: built.setdefault("agent", build_agent(*a, **k)))
    last = train_joint.train(compose_cfg(*overrides))
    return last, built["env"], built["agent"]


def test_the_default_recipe_is_adamae_with_its_weight():
    from agents.registry import make_config

    config = make_config("reinforce")
    assert config.recipe == "adamae" and config.sampling_loss_weight == 1e-4  # AdaMAE's train_one_epoch
    assert compose_cfg("agent=reinforce").agent.recipe == "adamae"
    with pytest.raises(ValueError, match="recipe=separate"):
        make_config("reinforce", {"estimator": "clip"})
    with pytest.raises(ValueError, match="recipe"):
        make_config("reinforce", {"recipe": "joint"})


def test_sampler_params_are_in_the_mae_optimizer_decayed_like_the_mae(monkeypatch, tmp_path):
    last, env, agent = run_capturing(monkeypatch, *RUN, "train.max_steps=1", f"output_dir={tmp_path}")
    groups = env.optimizer.optimizer.param_groups
    actor = agent.policy.actor
    in_groups = {id(p): group for group in groups for p in group["params"]}
    named = dict(actor.named_parameters())
    assert all(id(p) in in_groups for p in named.values()), "every sampler parameter is in the MAE's optimiser"
    for name, param in named.items():  # AdaMAE's get_parameter_groups: 1-D and biases undecayed, the rest 0.05
        expected = 0.0 if param.ndim <= 1 or name.endswith(".bias") else 0.05
        assert in_groups[id(param)]["weight_decay"] == expected, name
    assert in_groups[id(named["pos_embed"])]["weight_decay"] == 0.05  # as AdaMAE's pos_embed_probs
    # one backward, one step: the sampler has no optimiser step of its own
    assert last["policy/gradient_steps"] == 0
    assert not agent.algorithm.optim._optim.state
    assert math.isfinite(last["mae/sampling_loss"]) and math.isfinite(last["policy/pg_loss"])


def actor_after(monkeypatch, out, *overrides):
    """The sampler's weights at the end of a train_joint.py run (``train.max_steps=0``: as built)."""
    _, _, agent = run_capturing(monkeypatch, *RUN, *overrides, f"output_dir={out}")
    return {name: p.detach().clone() for name, p in agent.policy.actor.named_parameters()}


def test_sampler_learns_from_the_first_step_despite_mae_only_epochs(monkeypatch, tmp_path):
    """train.mae_only_epochs=1 (SMALL, 4 steps an epoch): the separate recipe masks at random for that
    epoch, AdaMAE's samples and learns from the first step (its lr is the warm-up's start, 0, as the
    MAE's: the weights move from the second)."""
    initial = actor_after(monkeypatch, tmp_path / "init", "train.max_steps=0")
    adamae = actor_after(monkeypatch, tmp_path / "adamae", "train.max_steps=2")
    changed = [name for name in initial if not torch.equal(initial[name], adamae[name])]
    assert "head.linear.weight" in changed and "pos_embed" in changed and len(changed) > len(initial) // 2, changed
    separate = actor_after(monkeypatch, tmp_path / "separate", "agent.recipe=separate", "train.max_steps=2")
    assert all(torch.equal(initial[name], separate[name]) for name in initial)


def test_separate_recipe_is_the_old_one(monkeypatch, tmp_path):
    """recipe=separate: the MAE's optimiser holds the MAE only, the sampler steps in its own AdamW
    (agent.lr) after the random-masking epoch, the MAE's step has no sampling term."""
    last, env, agent = run_capturing(monkeypatch, *RUN, "agent.recipe=separate", "train.max_steps=6",
                                     f"output_dir={tmp_path}")
    assert not agent.trains_with_mae and env.sampler_loss is None
    mae_params = {id(p) for p in env.mae.parameters()}
    assert {id(p) for p in env.optimizer.parameters()} == mae_params
    own = agent.algorithm.optim._optim
    assert own.param_groups[0]["lr"] == agent.config.lr and own.state  # stepped with its own lr
    assert last["policy/gradient_steps"] == 1 and "mae/sampling_loss" not in last


def test_the_schedule_sets_the_sampler_groups_lr():
    env = make_env(batch=4)
    optimizer = env.optimizer.optimizer
    rates = learning_rates({"lr": 1e-3, "min_lr": 1e-5, "warmup_lr": 0.0}, total_batch=4)
    values = cosine_values(rates.peak, rates.floor, total_steps=6, warmup_steps=2)
    env.optimizer = MAEOptimizer(optimizer, StepSchedule(optimizer, values, rates, warmup_steps=2))
    joined_agent(env)
    assert len(optimizer.param_groups) == 3  # the MAE's one group, the sampler's decay and no-decay groups
    env.reset(seed=0)
    for step in range(4):
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([values[step]] * 3)
        env.step(_random_actions(env, step))
    assert env.optimizer.num_updates == 4


def _random_actions(env, seed):
    from tests.test_env import random_actions

    return random_actions(env, seed)


def test_sampling_loss_reaches_the_patch_embedding_on_the_policys_own_tokens():
    """In the env's step the sampling term is computed from the observation's tokens recomputed with
    gradient: its gradient reaches the MAE's patch embedding, and the actor's log-probs there are
    those the collecting policy drew its action with."""
    torch.manual_seed(0)
    env = make_env(batch=4)
    agent = joined_agent(env)
    patch = env.mae.encoder.patch_embed.proj.weight
    seen = {}

    def sampler_loss(tokens, visible, token_error):
        term = agent.algorithm.mae_step_loss(tokens, visible, token_error)
        seen["tokens"], seen["visible"] = tokens.detach().clone(), visible.clone()
        seen["grad"] = torch.autograd.grad(term, patch, retain_graph=True)[0]
        seen["error"] = token_error.clone()
        with torch.no_grad():  # the actor as it is in the step, before the optimiser moves it
            seen["logits"] = agent.policy.actor(tokens)[0]
        return term

    env.sampler_loss = sampler_loss
    buffer = collect_steps(agent, env, capacity=4, n_step=4)
    episode = buffer[:]
    assert seen["grad"].abs().sum() > 0, "no gradient of the sampling loss reached the patch embedding"
    torch.testing.assert_close(seen["tokens"], torch.as_tensor(episode.obs))  # the observation, with gradient
    logits = seen["logits"]
    torch.testing.assert_close(agent.policy.dist_fn(logits).probs, torch.as_tensor(episode.policy.probs))
    visible = torch.zeros_like(seen["visible"]).scatter_(1, torch.as_tensor(episode.act).long(), True)
    assert torch.equal(visible, seen["visible"])
    # the term is AdaMAE's: weight x token estimator (masked log p_i x own error, mean per clip, mean over clips)
    log_p = torch.log_softmax(logits, -1)
    masked = ~visible
    per_clip = (torch.where(masked, log_p * seen["error"], 0.0).sum(-1) / masked.sum(-1))
    assert env.last_stats["sampler_loss"] == pytest.approx(float(-1e-4 * per_clip.mean()), rel=1e-5)


def test_without_the_sampling_term_the_patch_embedding_gets_the_reconstruction_gradient_only():
    """The same step with and without the sampling term: the patch embedding's gradient differs by the
    term's (so the sum is one backward), and the sampler's gradient exists only with it."""
    grads = {}
    for with_term in (False, True):
        torch.manual_seed(0)
        env = make_env(batch=4)
        agent = joined_agent(env)
        if not with_term:
            env.sampler_loss = None
        env.reset(seed=0)
        captured = {}
        original = env.optimizer.optimizer.step

        def step(*args, _captured=captured, _env=env, _agent=agent, **kwargs):
            _captured["patch"] = _env.mae.encoder.patch_embed.proj.weight.grad.clone()
            _captured["head"] = _agent.policy.actor.head.linear.weight.grad
            return original(*args, **kwargs)

        env.optimizer.optimizer.step = step
        env.step(_random_actions(env, 0))
        grads[with_term] = captured
    assert grads[False]["head"] is None and grads[True]["head"] is not None
    assert not torch.equal(grads[False]["patch"], grads[True]["patch"])


def test_a_nonfinite_sampling_term_skips_the_one_step_once():
    torch.manual_seed(0)
    env = make_env(batch=4)
    agent = joined_agent(env)
    before = [p.detach().clone() for p in [*env.mae.parameters(), *agent.policy.actor.parameters()]]
    env.sampler_loss = lambda tokens, visible, error: agent.algorithm.mae_step_loss(tokens, visible, error) * float("nan")
    env.reset(seed=0)
    env.step(_random_actions(env, 0))
    after = [*env.mae.parameters(), *agent.policy.actor.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert env.optimizer.guard.total == 1 and agent.guard.total == 0  # counted once, by the MAE's step


def test_update_without_joining_is_refused_and_joined_update_moves_nothing():
    env = make_env(batch=4)
    lonely = build_agent("reinforce", env=env, config=TINY_NETS)
    buffer = collect_steps(lonely, env, capacity=8)
    with pytest.raises(RuntimeError, match="recipe='separate'"):
        lonely.update(buffer)
    env = make_env(batch=4)
    agent = joined_agent(env)
    buffer = collect_steps(agent, env, capacity=8)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    stats = agent.update(buffer)
    assert all(torch.equal(v, agent.policy.state_dict()[k]) for k, v in before.items())
    assert stats["policy/gradient_steps"] == 0 and math.isfinite(stats["policy/pg_loss"])
    assert stats["policy/skipped_nonfinite"] == 0


def test_resume_of_a_reinforce_run_from_before_the_recipe_key():
    from runtime.resume import config_changes

    stored = {"agent": {"name": "reinforce", "lr": 1e-3}}
    assert config_changes(stored, {"agent": {"name": "reinforce", "lr": 1e-3, "recipe": "adamae"}}) == [
        ("agent.recipe", "separate", "adamae")]
    assert config_changes(stored, {"agent": {"name": "reinforce", "lr": 1e-3, "recipe": "separate",
                                             "sampling_loss_weight": 1e-4}}) == []
