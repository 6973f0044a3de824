"""Configuration: composition, overrides, errors that name the key."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError

from configs import CONFIG_DIR, ConfigError, register_configs, validate

register_configs()


def make(*overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_defaults_and_groups():
    cfg = make()  # the CPU testbed (preset=cpu) and its PPO settings
    assert cfg.model.name == "micro" and cfg.data.name == "synthetic" and not cfg.model.norm_target
    assert (cfg.data.synthetic_background, cfg.data.synthetic_objects, cfg.data.synthetic_fresh) == ("smooth", "solid", True)
    assert cfg.data.synthetic_contrast == "bright"
    assert (cfg.agent.lr, cfg.agent.objective, cfg.agent.policy_coef, cfg.agent.advantage_normalization) == (
        1e-3, "cooperative", 1.0, True)
    validate(cfg)
    bare = make("preset=none")  # the schema's defaults, the paper's agent values
    assert bare.model.name == "tiny" and bare.model.norm_target and bare.agent.lr == 1.5e-6
    assert bare.agent.objective == "paper" and bare.agent.policy_coef == 1e-4
    validate(bare)
    random = make("agent=random")  # no preset_agent file for it: the preset's agent keys do not leak
    assert random.model.name == "micro" and "lr" not in random.agent
    assert make("agent=grpo").agent.normalize_std
    assert make("agent.lr=5e-3").agent.lr == 5e-3  # the command line wins over the preset's agent file
    cfg = make("model=base", "data=folder", "data.root=/tmp", "mask_ratio=0.95", "train.max_steps=3")
    assert cfg.model.name == "base" and cfg.data.root == "/tmp" and cfg.train.max_steps == 3
    validate(cfg)


def test_unknown_key_is_an_error():
    with pytest.raises((ConfigCompositionException, ConfigKeyError), match="nope"):
        make("train.nope=1")


@pytest.mark.parametrize("overrides, message", [
    (["mask_ratio=1.2"], "mask_ratio must be in"),
    (["mask_ratio=0"], "mask_ratio must be in"),
    (["data=list"], "data.train_list"),
    (["data=list", "data.train_list=/no/such/list.txt"], "no such file: /no/such/list.txt"),
    (["data=folder", "data.root=/no/such/dir"], "no such folder"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.reward=up"], "train.reward must be one of"),
    (["agent=ppo", "train.reward=negative_loss"], "agent=ppo reads the paper's"),
    (["data.reader=opencv"], "data.reader must be one of"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(make(*overrides))


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigCompositionException, match="mask_ratio"):
        make("mask_ratio=lots")


@pytest.mark.parametrize("dataset", ["ucf101", "hmdb51", "k400", "ssv2"])
@pytest.mark.parametrize("ratio", [85, 90, 95])
def test_paper_presets_need_only_a_list_file(tmp_path, dataset, ratio):
    with pytest.raises(ConfigError, match="data.train_list"):
        validate(make(f"preset={dataset}_mr{ratio}"))
    listing = tmp_path / "train.csv"
    listing.write_text("a.mp4\t0\n")
    cfg = make(f"preset={dataset}_mr{ratio}", f"data.train_list={listing}")
    validate(cfg)
    assert cfg.mask_ratio == pytest.approx(ratio / 100)
    assert (cfg.model.name, cfg.agent.name, cfg.data.num_frames, cfg.train.batch_size) == ("base", "ppo", 16, 32)
    assert cfg.data.sampling_rate == (4 if dataset == "k400" else 2)
    assert cfg.output_dir == f"runs/tats-{dataset}-mr0.{ratio}" and cfg.data.name == "list"
    assert (cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.mae_only_epochs) == (400, 40, 10)
    assert cfg.agent.lr == pytest.approx(1.5e-6) and cfg.agent.policy_coef == pytest.approx(1e-4)
