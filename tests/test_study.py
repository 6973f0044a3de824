"""tools/study.py: the table's means and spreads, the figure, and argument checks (no runs)."""

import pytest

from tools.study import BASELINE, main, plot, table

ROWS = [
    {"arm": BASELINE, "seed": 0, "probe_top1": 12.0},
    {"arm": BASELINE, "seed": 1, "probe_top1": 14.0},
    {"arm": "tube", "seed": 0, "probe_top1": 20.0, "prob_enrichment": 1.0},
    {"arm": "tube", "seed": 1, "probe_top1": 30.0, "prob_enrichment": 1.0},
]


def test_table_gives_mean_and_sample_std_per_arm():
    lines = table(ROWS, ["probe_top1", "prob_enrichment"]).splitlines()
    assert lines[2] == f"| {BASELINE} | 13 +- 1.4 | - |"  # std of (12, 14) = sqrt(2)
    assert lines[3] == "| tube | 25 +- 7.1 | 1 +- 0 |"
    assert len(lines) == 4  # arms without results are left out


def test_plot_writes_a_png(tmp_path):
    plot(ROWS, ["probe_top1", "prob_enrichment"], tmp_path / "study.png")
    assert (tmp_path / "study.png").read_bytes()[:4] == b"\x89PNG"


def test_unknown_arm_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--arms", "nonsense"])
    assert "unknown arms" in capsys.readouterr().err
