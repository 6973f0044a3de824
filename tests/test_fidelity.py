"""The paper's runs as the paper ran them: Orthoformer in the presets, the critic's two readings,
the fine-tuning presets (Table 7)."""

import pytest
import torch
from hydra import compose, initialize_config_dir

from agents.networks.tats import TATSCritic
from configs import CONFIG_DIR, register_configs, validate
from configs.downstream_schema import register_downstream_configs, validate_downstream

DATASETS = ["ucf101", "hmdb51", "k400", "ssv2"]


def make(name, *overrides):
    (register_configs if name == "config" else register_downstream_configs)()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("ratio", [85, 90, 95])
def test_paper_presets_use_orthoformer(tmp_path, dataset, ratio):
    listing = tmp_path / "train.csv"
    listing.write_text("a.mp4\t0\n")
    cfg = make("config", f"preset={dataset}_mr{ratio}", f"data.train_list={listing}")
    validate(cfg)
    assert (cfg.agent.name, cfg.agent.actor) == ("ppo", "orthoformer")
    assert cfg.agent.critic_input == "mean_token"
    exact = make("config", f"preset={dataset}_mr{ratio}", f"data.train_list={listing}", "agent.actor=trajectory")
    assert exact.agent.actor == "trajectory"  # exact trajectory attention stays an option
    assert make("config", f"preset={dataset}_mr{ratio}", "agent=reinforce").agent.actor == "mha"  # AdaMAE's own
    assert make("config").agent.actor == "trajectory"  # the CPU testbed keeps the exact one


def test_critic_readings_by_hand():
    tokens = torch.arange(24, dtype=torch.float32).reshape(1, 6, 4)  # N = 6 tokens of D = 4
    literal = TATSCritic(embed_dim=4, input="token_means", num_tokens=6)
    assert [m.weight.shape for m in literal.mlp if isinstance(m, torch.nn.Linear)] == [(3, 6), (1, 3)]
    with torch.no_grad():
        for module in literal.mlp:
            if isinstance(module, torch.nn.Linear):
                module.weight.fill_(0.0), module.bias.fill_(0.0)
        literal.mlp[0].weight[0, 0] = 1.0   # hidden 0 = mean of token 0 = 1.5
        literal.mlp[0].weight[1, 5] = -1.0  # hidden 1 = -(mean of token 5) = -21.5 -> ReLU -> 0
        literal.mlp[0].weight[2, 1] = 2.0   # hidden 2 = 2 x mean of token 1 = 11
        literal.mlp[2].weight[0] = torch.tensor([1.0, 1.0, 0.5])
        literal.mlp[2].bias.fill_(0.25)
    assert literal(tokens).item() == pytest.approx(1.5 + 0.0 + 5.5 + 0.25)
    default = TATSCritic(embed_dim=4, hidden_dims=(5, 3))
    assert [m.weight.shape for m in default.mlp if isinstance(m, torch.nn.Linear)] == [(5, 4), (3, 5), (1, 3)]
    # at the paper's scale the literal reading is Linear(1568) -> ReLU(Linear(784)) -> 1
    paper = TATSCritic(embed_dim=768, input="token_means", num_tokens=1568)
    assert [m.weight.shape for m in paper.mlp if isinstance(m, torch.nn.Linear)] == [(784, 1568), (1, 784)]
    with pytest.raises(ValueError, match="critic input"):
        TATSCritic(embed_dim=4, input="nope")


def test_ppo_builds_the_literal_critic():
    from agents.registry import build_agent
    from downstream.visualise import agent_environment
    import mae

    model = mae.create_model("tiny", img_size=32, num_frames=4)
    env = agent_environment(model, 0.75)
    agent = build_agent("ppo", env=env, config={"critic_input": "token_means", "num_heads": 2})
    critic = agent.algorithm.critic
    assert critic.input == "token_means" and critic.mlp[0].in_features == model.num_tokens
    with pytest.raises(ValueError, match="critic_input"):
        build_agent("ppo", env=env, config={"critic_input": "nope"})


@pytest.mark.parametrize("dataset", DATASETS)
def test_finetuning_presets_carry_table_7(tmp_path, dataset):
    listing = tmp_path / "list.csv"
    listing.write_text("a.mp4\t0\n")
    cfg = make("finetune", f"finetune_preset={dataset}", f"data.train_list={listing}", f"test.list={listing}")
    validate_downstream(cfg)
    t = cfg.train
    assert (cfg.model.name, cfg.data.name, cfg.data.num_frames) == ("base", "list", 16)
    assert cfg.data.sampling_rate == (4 if dataset == "k400" else 2)
    assert t.epochs >= 100 and t.batch_size == 8 and t.blr == 1e-3 and t.lr is None
    assert (t.warmup_epochs, t.layer_decay, t.weight_decay, t.drop_path) == (5, 0.75, 0.05, 0.1)
    assert (t.mixup, t.label_smoothing, t.randaug) == (0.8, 0.1, "rand-m9-mstd0.5-inc1")
    assert list(t.opt_betas) == [0.9, 0.999]
    assert (cfg.test.num_clips, cfg.test.num_crops) == (5 if dataset == "k400" else 2, 3)
    assert (t.flip_prob == 0.0) == (dataset == "ssv2")
    assert make("finetune").model.name == "tiny"  # no preset: the schema's defaults
