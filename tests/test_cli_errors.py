"""Every user mistake through the real entry point: one ``error:`` line, exit status 2, no
traceback, and an existing run's checkpoint and config.yaml untouched.

The table runs in one subprocess that calls ``train_joint.py``'s hydra entry point once per
row (sys.argv set, stderr captured): a fresh interpreter per row would cost ~10 s of imports
each. One row also runs as its own process, to check the real exit status.
"""

import json
import subprocess
import sys

import pytest
import torch

from tests.test_runs import RANDOM, digest
from tests.test_train_joint import ROOT, SMALL, compose_cfg

DRIVER = r"""
import contextlib, io, json, sys
import torch
torch.set_num_threads(1)
from hydra.core.global_hydra import GlobalHydra
import train_joint
from runtime.errors import run_main
results = []
for argv in json.loads(sys.argv[1]):
    GlobalHydra.instance().clear()
    sys.argv = ["train_joint.py", *argv]
    err, out, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            run_main(train_joint.main)
        except SystemExit as stop:
            code = stop.code
        except BaseException:
            import traceback
            traceback.print_exc(file=err)
            code = "exception"
    results.append({"code": code, "stderr": err.getvalue()})
print("RESULTS" + json.dumps(results))
"""


def _cases(tmp_path, existing):
    bad_video = tmp_path / "videos"
    bad_video.mkdir()
    for name in "abcd":
        (bad_video / f"{name}.mp4").write_bytes(b"not a video")
    lists = {
        "empty": "# nothing\n",
        "two": "".join(f"{bad_video / n}.mp4 0\n" for n in "ab"),
        "unreadable": "".join(f"{bad_video / n}.mp4 0\n" for n in "abcd"),
    }
    for name, text in lists.items():
        (tmp_path / f"{name}.txt").write_text(text)
    (tmp_path / "latin1.txt").write_bytes("vid\xe9o.mp4 0\n".encode("latin-1"))
    (tmp_path / "no-videos").mkdir()
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage" * 50)
    resume = [f"output_dir={existing}", "resume=true"]
    new = lambda name: [f"output_dir={tmp_path / 'new' / name}"]  # noqa: E731
    data_list = lambda name: ["data=list", f"data.train_list={tmp_path / name}", "data.num_workers=0"]  # noqa: E731
    cases = [  # (overrides, what the error line must name)
        (["train.save_ckpt_freq=0", *resume], "train.save_ckpt_freq"),
        (["train.log_every=0", *resume], "train.log_every"),
        (["train.max_steps=-5", *resume], "train.max_steps"),
        (["agent.num_heads=0", *resume], "num_heads"),
        (["agent.sampler_dim=30", "agent.num_heads=4", *resume], "sampler_dim"),
        (["model.img_size=0", *resume], "model.img_size"),
        (["data.num_frames=15", *resume], "data.num_frames"),
        (["train.opt=foo", *resume], "train.opt"),
        (["train.lr=-1", *resume], "train.lr"),
        (["mask_ratio=1.5", *resume], "mask_ratio"),
        (["train.foo=1", *resume], "train.foo"),
        (["+train.foo=1", *resume], "train.foo"),
        (["agent=nope", *resume], "nope"),
        (["mask_ratio=0.5", *resume], "mask_ratio 0.9 -> 0.5"),
        (["train.batch_size=8", *resume], "train.batch_size 4 -> 8"),
        ([f"output_dir={existing}"], "resume=true"),
        ([*data_list("absent.txt"), *new("absent")], "data.train_list"),
        ([*data_list("empty.txt"), *new("empty")], "lists no videos"),
        ([*data_list("latin1.txt"), *new("latin1")], "not UTF-8"),
        ([*data_list("two.txt"), *new("two")], "train.batch_size"),
        ([*data_list("unreadable.txt"), *new("unreadable")], "unreadable"),
        (["data=folder", f"data.root={tmp_path / 'no-videos'}", *new("folder")], "no videos"),
        ([f"model.init_checkpoint={tmp_path / 'garbage.pt'}", *new("init")], "garbage.pt"),
        (["seed=-1", *new("seed-negative")], "seed must be an integer"),
        (["seed=18446744073709551617", *new("seed-huge")], "seed must be an integer"),
        ([f"output_dir={tmp_path / 'garbage.pt'}"], "is a file, not a folder"),
        (["output_dir="], "output_dir is empty"),
        (["device=mps", *new("mps")], "device=mps"),
    ]
    if not torch.cuda.is_available():
        cases.append((["device=cuda", *resume], "device=cuda"))
    return cases


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
    import train_joint

    out = tmp_path_factory.mktemp("existing") / "run"
    train_joint.train(compose_cfg(*RANDOM, "train.max_steps=2", f"output_dir={out}"))
    return out


def test_every_mistake_is_one_error_line_and_leaves_the_run_alone(tmp_path, existing_run):
    cases = _cases(tmp_path, existing_run)
    before = digest(existing_run)
    argvs = [[*RANDOM, *overrides] for overrides, _ in cases]
    result = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.split("RESULTS", 1)[1])
    failures = []
    for (overrides, expected), outcome in zip(cases, results):
        errors = [line for line in outcome["stderr"].splitlines() if line.startswith("error:")]
        ok = (outcome["code"] == 2 and len(errors) == 1 and expected in errors[0]
              and "Traceback" not in outcome["stderr"])
        if not ok:
            failures.append(f"{overrides}: exit {outcome['code']}, expected {expected!r}: {outcome['stderr'][-800:]}")
    assert not failures, "\n".join(failures)
    assert digest(existing_run) == before
    state = torch.load(existing_run / "checkpoint-latest.pt", weights_only=False)
    assert state["step"] == 2 and state["config"]["mask_ratio"] == 0.9


@pytest.mark.slow
def test_a_real_process_exits_2_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "train_joint.py", *SMALL, "train.foo=1", f"output_dir={tmp_path}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "train.foo" in lines[0]
    debug = subprocess.run([sys.executable, "train_joint.py", *SMALL, "train.foo=1", f"output_dir={tmp_path}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, env={**_env(), "TATS_DEBUG": "1"})
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def _env():
    import os

    return dict(os.environ)


def test_inspect_names_a_file_that_is_not_a_rollout_dump(tmp_path, capsys):
    from agents import inspect as inspector

    garbage = tmp_path / "buffer.h5"
    garbage.write_bytes(b"not hdf5 at all")
    assert inspector.main([str(garbage)]) == 2
    assert inspector.main([str(tmp_path / "absent.h5")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("error:") for line in lines)
    assert "not a rollout dump" in lines[0] and "absent.h5" in lines[1]


@pytest.mark.parametrize("tool, args", [("tools.motion_visibility", ["{missing}"]),
                                        ("tools.subset_list", ["{missing}", "{out}"]),
                                        ("tools.testbed", ["layers", "--checkpoint", "{missing}", "--out", "{out}"])])
def test_tools_report_a_missing_file_in_one_line(tmp_path, tool, args):
    missing, out = tmp_path / "absent.file", tmp_path / "subset.txt"
    argv = [arg.format(missing=missing, out=out) for arg in args]
    result = subprocess.run([sys.executable, "-m", tool, *argv], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "absent.file" in lines[0] and "Traceback" not in result.stderr


def _drop_file_permission_override() -> None:
    """In the child, before exec: root loses the capabilities that let it write into any folder
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a folder's mode applies to it as to any user."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _read_only_folder(tmp_path):
    """A 0o555 folder and how to run a process that cannot write into it (skip if there is none)."""
    import os

    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    preexec = _drop_file_permission_override if os.geteuid() == 0 else None
    probe = subprocess.run([sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"], capture_output=True,
                           preexec_fn=preexec, timeout=60)
    if probe.returncode == 0:
        folder.chmod(0o755)
        pytest.skip("no way to make a folder read-only for a child process here")
    return folder, preexec


@pytest.mark.slow
@pytest.mark.parametrize("entry, args", [(["train_joint.py"], RANDOM),
                                         (["-m", "downstream.linear_probe"],
                                          ["model.img_size=32", "data.num_frames=4", "data.num_workers=0"])])
def test_a_read_only_output_dir_is_one_error_line(tmp_path, entry, args):
    folder, preexec = _read_only_folder(tmp_path)
    env = {**_env(), "OMP_NUM_THREADS": "1"}
    try:
        # the folder itself, and a new folder inside it (which hydra creates first)
        for out, named in ((folder, folder), (folder / "run", folder / "run")):
            result = subprocess.run([sys.executable, *entry, *args, f"output_dir={out}"], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=300, preexec_fn=preexec)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr[-3000:]
            assert str(named) in lines[0] and "output_dir" in lines[0] and "Traceback" not in result.stderr
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_a_read_only_file_system_is_a_user_error(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    from runtime.errors import UserError
    from runtime.setup import save_resolved_config

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "write_text", read_only)
    with pytest.raises(UserError, match="is not writable") as caught:
        save_resolved_config(compose_cfg(*RANDOM), tmp_path / "run")
    assert str(tmp_path / "run") in str(caught.value) and "Read-only" in str(caught.value)


def test_under_torchrun_a_config_mistake_is_printed_by_rank_0_only(monkeypatch, capsys):
    from runtime.errors import ConfigError, UserError, report_error

    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        report_error(ConfigError("mask_ratio must be in (0, 1)"))
        report_error(UserError("this rank's video list is empty"))
    assert capsys.readouterr().err.splitlines() == [
        "error: mask_ratio must be in (0, 1)", "error: this rank's video list is empty",
        "error: rank 1: this rank's video list is empty"]


def test_bench_startup_refuses_zero_repeats(capsys):
    from tools import bench_startup

    with pytest.raises(SystemExit) as stop:
        bench_startup.main(["--repeats", "0"])
    assert stop.value.code == 2 and "--repeats must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("entry, args", [
    (["-m", "downstream.linear_probe"], ["checkpoint={h5}", "output_dir={out}"]),
    (["-m", "downstream.finetune"], ["checkpoint={h5}", "output_dir={out}"]),
    (["-m", "downstream.visualise"], ["--checkpoint", "{h5}", "--synthetic", "1", "--out", "{out}/v.png"]),
    (["-m", "downstream.linear_probe"], ["checkpoint={ckpt}", "checkpoint_format=videomae", "output_dir={out}"]),
])
def test_downstream_commands_name_a_file_that_is_not_their_checkpoint(tmp_path, existing_run, entry, args):
    h5 = tmp_path / "buffer.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)  # an HDF5 signature: not a pickle
    argv = [arg.format(h5=h5, out=tmp_path / "out", ckpt=existing_run / "checkpoint-latest.pt") for arg in args]
    result = subprocess.run([sys.executable, *entry, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "cannot be read as a checkpoint" in lines[0] or "is corrupt" in lines[0]
