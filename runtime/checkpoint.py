"""Checkpoints that survive crashes: atomic writes, one fallback, bad files named as such.

A save writes ``.checkpoint-latest.pt.tmp-PID`` in the run folder, fsyncs it, moves the
current ``checkpoint-latest.pt`` to ``checkpoint-previous.pt`` and renames the new file into
place. A crash at any point leaves at least one complete checkpoint: the latest, or the
previous one if the crash fell between the two renames. A full disk is one error naming the
folder and the space needed; the last good checkpoint stays as it was.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import zipfile
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

from runtime.errors import CheckpointError, DiskFullError

LATEST = "checkpoint-latest.pt"
PREVIOUS = "checkpoint-previous.pt"
_TMP_PATTERN = re.compile(r"^\..*\.tmp-(\d+)$")  # write_atomic's, in the run folder or buffers/


def save_atomic(state: dict[str, Any], path: str | Path, *, keep_previous: bool = True) -> Path:
    """``torch.save`` through :func:`write_atomic`.

    With ``keep_previous`` the file being replaced becomes ``checkpoint-previous.pt`` (for
    ``checkpoint-latest.pt``; ``<name>.previous`` otherwise).

    Raises:
        DiskFullError: the disk is full (naming the folder, the space needed and free); the
            temporary file is removed and the existing checkpoints are left as they were.
    """
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())

    return write_atomic(path, write, what="a checkpoint", keep_previous=keep_previous)


def write_atomic(path: str | Path, write: Callable[[Path], None], *, what: str, keep_previous: bool = False) -> Path:
    """``write(tmp)`` into a temporary file in the same folder, then rename it over ``path``: readers
    see the old file or the new one, never half of one, and a failed write leaves nothing behind.

    Raises:
        DiskFullError: the disk filled up, however the writer reported it (``torch.save`` raises a
            RuntimeError with the ENOSPC only in its context; h5py an OSError without an errno).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
    except BaseException as error:
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        if not _disk_full(error):
            raise
        needed = max(written, path.stat().st_size if path.exists() else 0)
        free = shutil.disk_usage(path.parent).free
        kept = f"; the last good file {path} is intact" if path.exists() else ""
        raise DiskFullError(
            f"no space left on the device of {path.parent} to write {what}: it needs about {_size(needed)} "
            f"(more than {_size(written)} written before the disk filled), {_size(free)} free{kept}; free some "
            "space and resume with resume=true") from error
    if keep_previous and path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
    _fsync_dir(path.parent)
    return path


def _disk_full(error: BaseException | None) -> bool:
    """ENOSPC or EDQUOT anywhere in the exception's chain (its cause and context)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(error) or "errno = 28" in str(error):  # h5py: errno only in the text
            return True
        error = error.__cause__ or error.__context__
    return False


def previous_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(PREVIOUS) if path.name == LATEST else path.with_name(f"{path.name}.previous")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _size(num_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} GB"


def load(path: str | Path, map_location: str | torch.device = "cpu", *, mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint (``mmap``: map the tensors' bytes instead of reading them, for a quick check).

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError: the file is empty, truncated, corrupt or not a dict of states.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    problem = _unreadable_reason(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint {path} is {problem}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False,
                           mmap=mmap and _unreadable_reason(path) is None and _is_zip(path))
    except Exception as error:  # noqa: BLE001 - any failure to unpickle means a damaged file
        raise CheckpointError(f"checkpoint {path} is corrupt ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of this project "
                              f"(it holds a {type(state).__name__}, not a dict of states)")
    return state


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"PK"


def _unreadable_reason(path: Path) -> str | None:
    """'empty', 'truncated (...)' or None, from the file's size and zip structure alone."""
    size = path.stat().st_size
    if size == 0:
        return "empty (0 bytes)"
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:2] == b"PK":  # torch's zip format: the central directory is at the end
        try:
            with zipfile.ZipFile(path) as archive:
                archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            return f"truncated or corrupt ({size} bytes, its end is missing or damaged)"
    return None


def verify(path: str | Path, required_keys: tuple[str, ...]) -> dict[str, Any]:
    """Load ``path`` on the CPU (tensors memory-mapped) and check it holds ``required_keys``; return the state.

    Raises:
        CheckpointError: empty, truncated, corrupt, or a file of another kind ("foreign":
            e.g. an official VideoMAE file or a fine-tuning checkpoint where a pretraining
            run's is expected).
    """
    state = load(path, map_location="cpu", mmap=True)
    missing = [key for key in required_keys if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is not a checkpoint of this kind of run (foreign file: it "
                              f"lacks {', '.join(missing)}; it holds {', '.join(sorted(map(str, state))[:8])})")
    return state


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    path = Path(output_dir) / LATEST
    return path if path.is_file() else None


def stale_temp_files(output_dir: str | Path) -> list[Path]:
    """Temporary files of writes whose process is gone (``.<name>.tmp-PID``, in the run folder and
    its ``buffers/``)."""
    stale = []
    for folder in (Path(output_dir), Path(output_dir) / "buffers"):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = _TMP_PATTERN.match(entry.name)
            if match and entry.is_file() and not _process_alive(int(match.group(1))):
                stale.append(entry)
    return sorted(stale)


def remove_stale_temp_files(output_dir: str | Path) -> list[Path]:
    """Delete what :func:`stale_temp_files` finds; return the paths removed."""
    removed = []
    for path in stale_temp_files(output_dir):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of an earlier process that had our pid: we are not saving now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
