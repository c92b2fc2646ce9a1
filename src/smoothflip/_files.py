"""Writing a file whole: through a temporary file in the same folder, then ``os.replace``.

A reader (or a crash) sees the old file or the new one, never half of one. Used by the report, the
meta-analysis tables, ``smoothflip verdict --out`` and the store's study files. The file gets the
permissions an ordinary ``open`` would give it (the user's umask), not ``mkstemp``'s owner-only ones.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: str | Path, content: bytes) -> None:
    """Write ``content`` to ``path`` all or nothing (the temporary file is removed on any failure)."""
    path = Path(path)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
