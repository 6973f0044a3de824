"""The benchmark's evaluation, leaderboard and commands, on a tiny budget."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.leaderboard import ARMS, run_overrides, summarise, table
from configs import validate
from tests.test_train_joint import SMALL, compose_cfg, random_masking_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mae_checkpoint(tmp_path_factory) -> Path:
    return random_masking_checkpoint(tmp_path_factory.mktemp("mae") / "run", steps=2)


@pytest.mark.parametrize("arm", sorted(ARMS))
def test_every_arm_composes_into_a_valid_config(arm, mae_checkpoint, tmp_path):
    overrides = run_overrides(arm, 1, mae_checkpoint=mae_checkpoint, steps=100, eval_every=10, mask_ratio=0.9,
                              eval_clips=8, run_dir=tmp_path / "run")
    cfg = compose_cfg(*overrides)
    validate(cfg)
    assert cfg.train.mae == "frozen" and cfg.seed == 1 and cfg.train.max_steps == 100 and cfg.train.epochs == 2


def test_table_orders_agents_by_score_and_lists_references():
    def run(arm, seed, score):
        ratios = {f"{r:g}": {"score": score, "score_top_k": score + 1, "loss": 0.02, "loss_top_k": 0.02}
                  for r in (0.75, 0.9, 0.95)}
        return {"arm": arm, "seed": seed, "wall_s": 10.0, "episodes": 160, "eval": {"ratios": ratios}}

    runs = [run("grpo", s, 10.0 + s) for s in range(3)] + [run("tats-ppo", s, 50.0) for s in range(3)]
    summary = summarise(runs, 0.9)
    assert summary["grpo"]["score"][0] == pytest.approx(11.0)
    assert summary["grpo"]["score"][1] == pytest.approx(4.303 * 1.0 / 3 ** 0.5, rel=1e-3)
    assert summary["tats-ppo"]["score"] == (50.0, 0.0) and summary["grpo"]["episodes_per_s"][0] == 16.0
    refs = {"random": {f"{r:g}": {"loss": 0.03, "score": 0.0, "motion_enrichment": 1.0, "wall_s": 0.1,
                                  "forward_passes_per_clip": 1} for r in (0.75, 0.9, 0.95)}}
    text = table(summary, refs, 0.9)
    lines = text.splitlines()
    assert lines[2].startswith("| TATS PPO") and lines[3].startswith("| GRPO")
    assert "| random | 0.0 | 0.0300 |" in text


@pytest.mark.slow
def test_leaderboard_smoke_run(tmp_path, mae_checkpoint):
    """Two arms, one seed, four steps: the table, JSON and figure are written; a second call reuses the runs."""
    cmd = [sys.executable, "-m", "benchmark", "leaderboard", "--mae", str(mae_checkpoint), "--arms", "tats-ppo",
           "stock-ppo", "--seeds", "0", "--steps", "4", "--eval-every", "2", "--clips", "2", "--jobs", "1",
           "--ratios", "0.75", "0.9", "--out", str(tmp_path / "board")]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    board = tmp_path / "board"
    report = json.loads((board / "leaderboard.json").read_text())
    assert set(report["summary"]) == {"tats-ppo", "stock-ppo"}
    assert {"random", "tube", "motion", "best_of_m", "greedy"} <= set(report["references"])
    assert report["references"]["greedy"]["0.9"]["score"] == pytest.approx(100.0)
    assert [x for x, _ in report["runs"][0]["curve"]] == [32, 64]  # eval every 2 steps of 16 clips
    assert (board / "leaderboard.png").stat().st_size > 0 and "| reference |" in (board / "leaderboard.md").read_text()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and json.loads((board / "leaderboard.json").read_text())["runs"][0]["wall_s"] \
        == report["runs"][0]["wall_s"]  # the finished runs were reused, not trained again
    evaluate = subprocess.run([sys.executable, "-m", "benchmark", "evaluate", report["runs"][0]["run_dir"],
                               "--ratios", "0.9", "--clips", "2"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert "| 0.9 |" in evaluate.stdout


def test_evaluate_on_a_folder_of_videos(tmp_path, mae_checkpoint):
    """The same evaluation on the user's own videos (data=folder), not only the built-in clips."""
    import train_joint
    from benchmark.evaluate import evaluate_run
    from benchmark.__main__ import data_overrides
    from tests.test_data_video_io import write_video

    run = tmp_path / "run"
    train_joint.train(compose_cfg(*SMALL, "train.mae=frozen", f"model.init_checkpoint={mae_checkpoint}",
                                  "train.eval_every=0", "train.max_steps=2", f"output_dir={run}"))
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        write_video(videos / f"v{i}.mp4", 24, noise=i > 0)
    cfg = compose_cfg(*SMALL)
    data = data_overrides(["data=folder", f"data.root={videos}"], cfg.data)
    result = evaluate_run(run, ratios=[0.9], data_cfg=data, num_clips=3, cache_dir=tmp_path / "cache")
    row = result["ratios"]["0.9"]
    assert row["loss_oracle"] <= row["loss_random"] and "motion_enrichment" not in row
    assert torch.isfinite(torch.tensor(row["score"]))


def test_benchmark_runs_use_one_thread_whatever_the_machine(tmp_path, monkeypatch):
    """CPU float sums depend on the thread count: the MAE's and every arm's run get the fixed one."""
    import benchmark.__main__ as commands
    import benchmark.leaderboard as leaderboard

    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(kwargs["env"]["OMP_NUM_THREADS"])
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(leaderboard.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(leaderboard.subprocess, "run", fake_run)
    monkeypatch.setattr(commands.subprocess, "run", fake_run)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "grpo-seed0").mkdir(parents=True)
    leaderboard.train_arm("grpo", 0, tmp_path / "runs" / "grpo-seed0", [])  # as the leaderboard and budget call it
    commands.make_mae(seed=0)
    assert seen == ["1", "1"] and leaderboard.RUN_THREADS == 1
