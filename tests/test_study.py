"""tools/study.py: intervals, paired differences, the table, the figure, argument checks (no runs)."""

import pytest

from runtime.stats import interval
from tools.study import BASELINE, main, paired_differences, plot, table

ROWS = [
    {"arm": BASELINE, "mask_ratio": 0.0, "seed": 0, "probe_top1": 12.0},
    {"arm": BASELINE, "mask_ratio": 0.0, "seed": 1, "probe_top1": 14.0},
    {"arm": "random", "mask_ratio": 0.9, "seed": 0, "probe_top1": 20.0, "mae_loss": 0.5, "prob_enrichment": 1.0,
     "trivial_copy": 0.7, "trivial_mean_visible": 0.8, "trivial_zeros": 1.0},
    {"arm": "random", "mask_ratio": 0.9, "seed": 1, "probe_top1": 30.0, "mae_loss": 0.7, "prob_enrichment": 1.0,
     "trivial_copy": 0.7, "trivial_mean_visible": 0.8, "trivial_zeros": 1.0},
    {"arm": "tube", "mask_ratio": 0.9, "seed": 0, "probe_top1": 21.0, "mae_loss": 0.4},
    {"arm": "tube", "mask_ratio": 0.9, "seed": 1, "probe_top1": 35.0, "mae_loss": 0.5},
    {"arm": "tube", "mask_ratio": 0.95, "seed": 0, "probe_top1": 99.0},
]


def test_interval_is_the_student_t_half_width():
    mean, half = interval([12.0, 14.0])
    assert mean == 13.0
    assert half == pytest.approx(12.7062 * 2 ** 0.5 / 2 ** 0.5, rel=1e-5)  # t(0.975, 1) * sd / sqrt(n), sd = sqrt(2)
    mean, half = interval([1.0, 2.0, 3.0])
    assert half == pytest.approx(4.30265 * 1.0 / 3 ** 0.5, rel=1e-5)  # t(0.975, 2), printed tables' 4.303
    assert interval([5.0]) == (5.0, 0.0)


def test_differences_are_paired_by_seed_and_ratio():
    assert paired_differences(ROWS, "tube", "probe_top1", 0.9) == [1.0, 5.0]
    assert paired_differences(ROWS, "tube", "probe_top1", 0.95) == []  # no random run at 0.95


def test_table_gives_mean_interval_and_difference_to_random():
    lines = table(ROWS, ["probe_top1", "mae_loss"], 0.9).splitlines()
    assert lines[2] == f"| {BASELINE} | 2 | 13 +- 13 | - | - | - |"
    assert lines[3] == "| random | 2 | 25 +- 64 | 0.6 +- 1.3 | - | - |"
    assert lines[4].startswith("| tube | 2 | 28 +- 89 | 0.45 +- 0.64 | +3 +- 25 | -0.15 +- 0.64 |")
    assert len(lines) == 5  # arms without results are left out; the 0.95 run is not in the 0.9 table


def test_plot_writes_a_png(tmp_path):
    plot(ROWS, ["probe_top1", "mae_loss"], [0.9, 0.95], tmp_path / "study.png")
    assert (tmp_path / "study.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_arm_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--arms", "nonsense"])
    assert "unknown arms" in capsys.readouterr().err


def test_every_arm_composes_into_a_valid_config():
    """A typo in an arm's overrides would otherwise surface only when its run starts."""
    from hydra import compose, initialize_config_dir

    from configs import CONFIG_DIR, register_configs, validate
    from tools.study import ARMS

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for name, overrides in ARMS:
            cfg = compose(config_name="config", overrides=[*overrides, "mask_ratio=0.95"])
            validate(cfg)
            assert cfg.model.name == "micro", name  # every arm on the testbed
    ppo_overrides = {x for _, overrides in ARMS if "agent=ppo" in overrides for x in overrides}
    assert {f"agent.objective={o}" for o in ("paper", "cooperative", "adversarial")} <= ppo_overrides


def test_report_reads_the_results_and_records_only_what_chose_them(tmp_path):
    import json

    for row in ROWS:
        folder = tmp_path / f"mr{row['mask_ratio']}" / row["arm"] / f"seed{row['seed']}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps(row))
    main(["--out", str(tmp_path), "--mask-ratios", "0.9", "--report"])
    written = json.loads((tmp_path / "study.json").read_text())
    assert sorted(written["args"]) == ["mask_ratios", "out", "report"]  # no --steps default posing as the runs'
    assert len(written["results"]) == 6  # the baseline and the 0.9 runs; the 0.95 one left out
    assert (tmp_path / "study.png").is_file()
