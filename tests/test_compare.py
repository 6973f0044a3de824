"""tools.compare on two tiny finished runs: the figure, the table of end values, the errors."""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from tests.test_train_joint import SMALL, compose_cfg
from tools import compare


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    import train_joint

    root = tmp_path_factory.mktemp("runs")
    plain = [o for o in SMALL if not o.startswith("agent.")]
    last = {}
    for name, options in (("ppo", SMALL), ("random", [*plain, "agent=random"])):
        last[name] = train_joint.train(compose_cfg(*options, "train.max_steps=6", "train.eval_every=3",
                                                   "train.log_figures=false", f"output_dir={root / name}"))
    return root, last


def test_figure_and_table_of_two_runs(two_runs, tmp_path, capsys):
    root, last = two_runs
    out, table = tmp_path / "fig.png", tmp_path / "end.csv"
    assert compare.main([str(root / "ppo"), str(root / "random"), "--out", str(out), "--table", str(table),
                         "--title", "PPO against random masking"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| run | step | policy/motion_enrichment | mae/heldout_loss |")
    assert "| ppo | 6 |" in printed and "| random | 6 |" in printed
    rows = list(csv.DictReader(table.open()))
    assert [row["run"] for row in rows] == ["ppo", "random"]
    for row in rows:  # the end value is the last logged one: what the run returned
        for tag in ("policy/motion_enrichment", "mae/heldout_loss"):
            assert float(row[tag]) == pytest.approx(last[row["run"]][tag], rel=1e-6), (row["run"], tag)
    assert Image.open(out).size[0] > 800


def test_chosen_scalars_labels_and_errors(two_runs, tmp_path, capsys):
    root, _ = two_runs
    md = tmp_path / "end.md"
    assert compare.main([str(root / "ppo"), str(root / "random"), "--scalars", "mae/loss", "env/reward_mean",
                         "--labels", "A", "B", "--last", "3", "--smooth", "0.5", "--table", str(md),
                         "--out", str(tmp_path / "f.png")]) == 0
    text = md.read_text()
    assert text.splitlines()[0] == "| run | step | mae/loss | env/reward_mean |" and "| A | 6 |" in text
    capsys.readouterr()
    assert compare.main([str(root / "ppo"), "--scalars", "nope/tag"]) == 2
    assert "no run logged nope/tag" in capsys.readouterr().err
    assert compare.main([str(tmp_path)]) == 2
    assert "has no tb/ folder" in capsys.readouterr().err
    assert compare.main([str(root / "ppo"), str(root / "random"), "--labels", "same", "same"]) == 2


def test_end_values_and_smoothing_by_hand():
    runs = {"a": {"x": [(1, 1.0), (2, 3.0), (3, 5.0)]}, "b": {"x": [(1, 2.0)], "y": [(4, 7.0)]}}
    assert compare.end_values(runs, ["x", "y"], last=2) == [{"run": "a", "step": 3, "x": 4.0, "y": None},
                                                           {"run": "b", "step": 4, "x": 2.0, "y": 7.0}]
    assert compare.smooth([1.0, 1.0, 1.0], 0.9) == pytest.approx([1.0, 1.0, 1.0])  # debiased: no pull to 0
    assert compare.smooth([0.0, 2.0], 0.5) == pytest.approx([0.0, 1.0 / 0.75])
