"""Reading a study store in a directory this process may not write (``smoothflip verdict`` on a
read-only copy someone sent you): SQLite there can make neither its journal nor its shared memory.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

DB_NAME = "smoothflip.sqlite"


def writable(directory: Path, path: Path) -> bool:
    """Whether SQLite may create and write the store's journal files (``-wal``, ``-shm``) here."""
    if not os.access(directory, os.W_OK) or not os.access(path, os.W_OK):
        return False
    journals = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    return all(os.access(j, os.W_OK) for j in journals if j.exists())


def open_unwritable(path: Path) -> sqlite3.Connection:
    """Read a store in a directory this process may not write (no writer can be at work there).

    SQLite cannot make the shared-memory file a WAL reader needs, so the file is read as immutable;
    when its ``-wal`` journal still holds transactions (the writer was killed before a checkpoint),
    the store and its journal are read from a private copy instead, so that no stored run is missed.
    """
    wal = path.with_name(path.name + "-wal")
    if not (wal.is_file() and wal.stat().st_size > 0):
        return sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
    import shutil
    import tempfile

    copy = Path(tempfile.mkdtemp(prefix="smoothflip-store-")) / DB_NAME
    shutil.copyfile(path, copy)
    shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
    db = sqlite3.connect(copy, isolation_level=None)
    db.execute("PRAGMA query_only=ON")
    _COPIES[id(db)] = copy.parent
    return db


_COPIES: dict[int, Path] = {}
"""Private copies of unwritable stores (connection id -> folder), removed when the store closes."""


def close_store(db: sqlite3.Connection) -> None:
    db.close()
    folder = _COPIES.pop(id(db), None)
    if folder is not None:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
