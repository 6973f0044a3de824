"""One way to report a user's mistake: ``error: ...`` on one line, exit status 2.

Every entry point runs through :func:`run_cli` (inside its hydra task) and :func:`run_main`
(around hydra itself, for mistakes hydra finds while composing the config). A traceback is
printed only with the debug flag: ``TATS_DEBUG=1`` (or hydra's own ``HYDRA_FULL_ERROR=1``).
Anything else that goes wrong is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from typing import Any

EXIT_USER_ERROR = 2
DEBUG_VARIABLES = ("TATS_DEBUG", "HYDRA_FULL_ERROR")


class UserError(Exception):
    """A mistake the user can fix (a value, a file, a folder): reported in one line, exit status 2."""


class CheckpointError(UserError):
    """A checkpoint that cannot be used: missing, empty, truncated, corrupt or from something else."""


class RunStopped(UserError):
    """The run stopped itself (e.g. it diverged); the message says why and what was kept."""


class DiskFullError(CheckpointError):
    """A file could not be written because the disk is full; nothing partial was left."""


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the key and what is allowed."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's keys or shapes do not fit the model; the message lists them."""


NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
"""The errnos of a folder that cannot be written: permissions, a read-only file system."""


def not_writable(error: BaseException) -> bool:
    """``error`` is a write refused by permissions or a read-only file system."""
    return isinstance(error, OSError) and error.errno in NOT_WRITABLE


_debug_override: bool | None = None  # set by run_main, which sets HYDRA_FULL_ERROR for its own use


def debug_enabled() -> bool:
    if _debug_override is not None:
        return _debug_override
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes") for name in DEBUG_VARIABLES)


def one_line(message: object) -> str:
    """``message`` as one line: its lines joined with '; ', blank ones dropped. An error re-raised
    from a DataLoader worker (which carries the worker's traceback) is reduced to its last line."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if any(line.startswith("Original Traceback") for line in lines):
        last = lines[-1]
        name, sep, rest = last.partition(": ")
        lines = [rest if sep and " " not in name else last]
    return "; ".join(lines)


def report_error(message: object) -> None:
    """``error: <message>`` on stderr. Under torchrun, a mistake every rank makes alike (a config value,
    the command line) is printed by rank 0 only; any other error names its rank."""
    rank = int(os.environ.get("RANK", "0") or 0)
    if rank and isinstance(message, (ConfigError, *_hydra_error_types())):
        return
    prefix = f"rank {rank}: " if rank and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else ""
    print(f"error: {prefix}{one_line(message)}", file=sys.stderr, flush=True)


def warn(message: object) -> None:
    """A ``warning: ...`` line on stderr (things the user should know, that do not stop the run)."""
    print(f"warning: {one_line(message)}", file=sys.stderr, flush=True)


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions reported as user errors: ours, missing files and folders, permissions,
    and a checkpoint that does not fit the model."""
    return (UserError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
            CheckpointMismatchError)


def run_cli(function: Callable[[Any], Any], cfg: Any) -> Any:
    """Run an entry point's task; a user error prints ``error: ...`` and exits with status 2."""
    try:
        return function(cfg)
    except user_error_types() as error:
        if debug_enabled():
            raise
        report_error(error)
        sys.exit(EXIT_USER_ERROR)


def run_tool(main: Callable[[], Any]) -> Any:
    """A ``tools.*`` script's argparse ``main()``: a user error prints ``error: ...`` and exits with
    status 2 (argparse reports a bad command line itself, also with status 2)."""
    return run_cli(lambda _: main(), None)


def _hydra_error_types() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return (HydraException, OmegaConfBaseException)


def _hydra_message(error: BaseException) -> str:
    parts = [one_line(error)]
    cause = error.__cause__
    if cause is not None and one_line(cause) not in parts[0]:
        parts.append(one_line(cause))
    return "; ".join(part for part in parts if part)


def run_main(hydra_main: Callable[[], Any]) -> Any:
    """Call a ``@hydra.main`` function; a mistake in the command line or the config files
    (unknown key, wrong type, unknown option) is one ``error:`` line and exit status 2."""
    global _debug_override
    debug = debug_enabled()
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # hydra raises instead of printing its own report
    _debug_override = debug
    try:
        return hydra_main()
    except _hydra_error_types() as error:
        if debug:
            raise
        if not int(os.environ.get("RANK", "0") or 0):  # every rank parsed the same command line
            report_error(f"{_hydra_message(error)} (see docs/configuration.md for every key)")
        sys.exit(EXIT_USER_ERROR)
    except OSError as error:  # raised by hydra before the task runs: creating its run folder (output_dir)
        folder_is_a_file = isinstance(error, (FileExistsError, NotADirectoryError)) and error.filename
        if debug or not (not_writable(error) or folder_is_a_file or isinstance(error, user_error_types())):
            raise
        if folder_is_a_file:
            report_error(f"output_dir={error.filename} is a file, not a folder (or a file stands where one of its "
                         "parent folders would be); choose another output_dir")
        elif not_writable(error) and error.filename:
            report_error(f"cannot create the run folder {error.filename} (output_dir): {error.strerror}; "
                         "choose another output_dir")
        else:
            report_error(error)
        sys.exit(EXIT_USER_ERROR)
    except user_error_types() as error:
        if debug:
            raise
        report_error(error)
        sys.exit(EXIT_USER_ERROR)
    finally:
        _debug_override = None
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved
