"""One writer per study directory: an OS file lock held while a study trains.

``smoothflip run`` (and ``demo``) take :func:`study_lock` on ``DIR/smoothflip.lock`` before they open
the store for writing. It is an ``fcntl.flock`` lock on an open file: the operating system releases
it when the process ends, however it ends (``kill -9`` included), so a lock is never stale. The file
holds who took it (process id, host, start time); a second run on the same directory reads that and
is refused with a one-line :class:`~smoothflip.errors.StoreError` instead of training the same grid
twice. Readers (``verdict``, ``report``, ``export``) take no lock: they open the store read-only and
work while a study trains.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, study_lock(d) as path:
    ...     path.name
    'smoothflip.lock'
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from smoothflip.errors import StoreError

try:  # POSIX; elsewhere the lock is not taken (the store's transactions still keep results whole)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "smoothflip.lock"

__all__ = ["LOCK_NAME", "lock_holder", "study_lock"]


def lock_holder(directory: str | Path) -> str:
    """Who holds (or last held) the lock of ``directory``: ``"pid 123 on host, since ..."`` or ``""``."""
    try:
        info = json.loads((Path(directory) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    if not isinstance(info, dict):
        return ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}, since {info.get('started', '?')}"


@contextmanager
def study_lock(directory: str | Path) -> Iterator[Path]:
    """Hold the study directory's write lock for the duration of the block.

    Creates the directory if needed.

    Raises:
        StoreError: another process holds the lock (the message names it), or the path is not a
            directory.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise StoreError(f"output path {directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = lock_holder(directory) or "another process"
                raise StoreError(
                    f"{directory} is in use: a study is training into it ({holder}); wait for it to "
                    "finish or stop it, or choose another --out directory (verdict, report and export "
                    "work meanwhile)"
                ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        yield path
    finally:
        os.close(fd)  # closing the file releases the lock (and so does the process's death)
