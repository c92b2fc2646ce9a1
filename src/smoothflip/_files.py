"""Writing a file whole: through a temporary file in the same folder, then ``os.replace``.

A reader (or a crash) sees the old file or the new one, never half of one. Used by the report, the
meta-analysis tables and ``smoothflip verdict --out``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: str | Path, content: bytes) -> None:
    """Write ``content`` to ``path`` all or nothing (the temporary file is removed on any failure)."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
