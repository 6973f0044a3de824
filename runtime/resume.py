"""What a run checks before it resumes, and before it writes anything into its folder.

:func:`prepare_run_dir` decides, reading only: whether ``output_dir`` holds a run, which
checkpoint to continue from (the latest, else the previous one, naming what is wrong with
a bad file), and whether the new config differs from the one the checkpoint was trained
with in a key that may not change (:data:`RESUMABLE_KEYS`). Any refusal is one error and
leaves the folder as it was. Only then does :func:`commit_run_dir` write: it removes stale
temporary files of killed saves and sets a damaged latest checkpoint aside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime import checkpoint
from runtime.errors import CheckpointError, ConfigError, UserError, warn

RESUMABLE_KEYS: tuple[str, ...] = (
    "resume", "output_dir", "device", "data.num_workers",
    "train.epochs", "train.max_steps",
    "train.log_every", "train.eval_every", "train.log_figures", "train.dump_buffer_every",
    "train.save_ckpt_freq", "train.save_every_steps", "train.max_consecutive_skips",
)
"""Keys that may differ between a run and its resume: where it stops, how it logs and saves,
where it runs. Every other key is part of what the checkpoint means (the model, the data and
its order, the masking, the agent, the optimiser, the seed) and must stay as stored."""


IMPLICIT_VALUES: dict[str, object] = {
    "agent.recipe": "separate",
}
"""Keys added to the code after runs were stored, with the value such a run had without them (a
checkpoint of ``agent=reinforce`` written before ``agent.recipe`` existed trained its sampler
with its own optimiser: ``separate``). A resume compares the new value against this one."""


class ResumeConfigError(ConfigError):
    """``resume=true`` with a config that changes keys a resume cannot change."""


@dataclass
class RunDirPlan:
    """What :func:`prepare_run_dir` decided; nothing has been written yet."""

    path: Path
    resume_from: Path | None = None
    notices: list[str] = field(default_factory=list)
    set_aside: list[Path] = field(default_factory=list)
    """Damaged checkpoints to rename to ``<name>.bad`` (so the next save keeps the good fallback)."""


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b": value}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    out[prefix[:-1]] = config
    return out


def config_changes(stored: dict[str, Any], new: dict[str, Any],
                   allowed: tuple[str, ...] = RESUMABLE_KEYS) -> list[tuple[str, Any, Any]]:
    """``(key, stored value, new value)`` for each key that differs and may not.

    A key the stored config lacks (added to the code after the run started) is not a change,
    unless :data:`IMPLICIT_VALUES` names the value the run had without it.
    """
    old_flat, new_flat = flatten(stored), flatten(new)
    for key, value in IMPLICIT_VALUES.items():
        if key in new_flat and key not in old_flat:
            old_flat[key] = value
    changes = []
    for key in sorted(set(old_flat) & set(new_flat)):
        if key in allowed or any(key.startswith(f"{name}.") for name in allowed):
            continue
        if old_flat[key] != new_flat[key]:
            changes.append((key, old_flat[key], new_flat[key]))
    return changes


def format_changes(changes: list[tuple[str, Any, Any]]) -> str:
    listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changes)
    return (f"resume=true with a config that differs from the checkpoint's in {listed}; a resume may change "
            f"only {', '.join(RESUMABLE_KEYS[2:])} (see docs/runs-and-resume.md): resume with the stored "
            "values, or start a new run in another output_dir")


def prepare_run_dir(cfg_container: dict[str, Any], *, resume: bool,
                    required_keys: tuple[str, ...] = ("step", "config"),
                    allowed: tuple[str, ...] = RESUMABLE_KEYS,
                    world_size: int = 1) -> tuple[RunDirPlan, dict[str, Any] | None]:
    """Check the run folder against the config, reading only.

    :param cfg_container: the new config, resolved, as plain dicts.
    :param world_size: processes of this run; a checkpoint written by another number is refused
        (the total batch, each rank's data shard and generators, and the schedule depend on it).
    :return: the plan, and the loaded state of the checkpoint to resume from (CPU) or None.
    :raises UserError: a run exists and ``resume`` is false; no usable checkpoint while one
        exists; a changed key that may not change; an output_dir that cannot be written.
    """
    path = Path(cfg_container["output_dir"])
    plan = RunDirPlan(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output_dir={path} is a file, not a folder")
    _check_writable(path)
    latest, previous = path / checkpoint.LATEST, path / checkpoint.PREVIOUS
    candidates = [p for p in (latest, previous) if p.is_file()]
    if candidates and not resume:
        raise UserError(f"output_dir={path} already holds a run ({candidates[0].name}); pass resume=true "
                        "to continue it, or choose another output_dir")
    if not resume:
        return plan, None
    if not candidates:
        plan.notices.append(f"resume=true but output_dir={path} holds no checkpoint: starting a new run there")
        return plan, None
    problems = []
    for candidate in candidates:
        try:
            state = checkpoint.verify(candidate, required_keys)
        except CheckpointError as error:
            problems.append(str(error))
            if candidate == latest:
                plan.set_aside.append(candidate)
            continue
        if problems:
            plan.notices.append(f"{'; '.join(problems)}; resuming from the fallback {candidate} (step "
                                f"{state.get('step')}) instead; the damaged file is kept as "
                                f"{candidate.with_name(checkpoint.LATEST + '.bad')}")
        written_by = len(state.get("rng", {}).get("per_rank", [])) if isinstance(state.get("rng"), dict) else 0
        if written_by and written_by != world_size:
            raise UserError(f"{candidate} was written by {written_by} process(es); this run has {world_size}: "
                            f"resume with {written_by} (torchrun --nproc_per_node={written_by}, or a plain run for 1), "
                            "or start a new run in another output_dir")
        stored = state.get("config")
        if isinstance(stored, dict):
            changes = config_changes(stored, cfg_container, allowed)
            if changes:
                raise ResumeConfigError(format_changes(changes))
        plan.resume_from = candidate
        return plan, state
    fallback = "" if previous.is_file() else f" and there is no fallback {checkpoint.PREVIOUS}"
    raise CheckpointError(f"cannot resume: {'; '.join(problems)}{fallback}; start a new run in another "
                          "output_dir (or move the damaged files away)")


def _check_writable(path: Path) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "output_dir" if probe == path else f"output_dir={path}: its parent folder"
        raise UserError(f"{what} {probe} is not writable; choose another output_dir")


def commit_run_dir(plan: RunDirPlan) -> None:
    """The writes that follow a successful check: print notices, set damaged checkpoints
    aside, remove stale temporary files (main process only)."""
    for notice in plan.notices:
        warn(notice)
    for bad in plan.set_aside:
        os.replace(bad, bad.with_name(bad.name + ".bad"))
    for stale in checkpoint.remove_stale_temp_files(plan.path):
        warn(f"removed {stale}, left by a save that was killed")
