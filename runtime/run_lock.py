"""One run per folder: an OS lock on ``output_dir`` that dies with the process.

A run holds ``<output_dir>/.run.lock`` (``flock``, exclusive) from before its start-up checks
to its end. The kernel drops the lock when the process ends, a crash or ``kill -9`` included,
so nothing stale is ever left to clean up; the file itself stays, naming its last holder.
A second run on the folder is refused in one line that names the holder. Systems without
``fcntl`` (Windows) run without the lock.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from runtime.errors import UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = ".run.lock"


class RunDirInUse(UserError):
    """Another process holds the run folder."""


class RunLock:
    """The lock of one run folder; :meth:`acquire` once, :meth:`release` at the end (idempotent)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self._file = None

    def acquire(self) -> RunLock:
        """Hold the folder (created if need be); the lock file is left as it was until :meth:`announce`.

        :raises RunDirInUse: another live process holds it.
        """
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunDirInUse(f"output_dir={self.path.parent} is in use by {holder}; wait for that run to end, "
                              "or choose another output_dir") from None
        self._file = handle
        return self

    def announce(self, what: str) -> None:
        """Name the holder in the lock file, for the error of a second run (once the run's checks passed,
        so that a refused run leaves the folder as it was)."""
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            self._file.write(f"{what} (pid {os.getpid()} on {socket.gethostname()}, since "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
            self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
