"""The study store: one SQLite file per output directory, safe against ``kill -9``.

Layout of a study directory::

    DIR/
      smoothflip.sqlite    runs (one row each), study identity
      study.toml           the resolved study file (every default filled in); rerun it as is
      study.json           the same, as JSON

Every finished pack is written in one transaction (WAL journal, ``synchronous=FULL``), so a process
killed at any moment leaves either the whole pack or none of it. Rows are keyed by run id
(``INSERT OR IGNORE``): a rerun never duplicates a run. A directory that holds a *different* study
is refused rather than mixed.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DB_NAME = "smoothflip.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    arm         TEXT NOT NULL,
    condition   TEXT NOT NULL,
    noise       TEXT NOT NULL,
    rate        REAL NOT NULL,
    seed        INTEGER NOT NULL,
    config      TEXT NOT NULL,
    metrics     TEXT NOT NULL,
    curves      TEXT NOT NULL,
    extras      TEXT NOT NULL,
    timings     TEXT NOT NULL,
    versions    TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL,
    name   TEXT NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""


class StoreError(ValueError):
    """The output directory cannot hold this study (another study lives there, or it is damaged)."""


@dataclass(frozen=True)
class RunResult:
    """Everything a finished run stores.

    Attributes:
        run_id: hash of ``config``.
        arm, condition, noise, rate, seed: the grid coordinates (``condition`` is the display label).
        config: the resolved run configuration.
        metrics: final metrics (``selected`` and ``last`` epoch, divergence, realized noise).
        curves: per-epoch lists, one key per metric.
        extras: larger artifacts (reliability bins, representation data) as JSON-able values.
        timings: seconds and pack size.
        versions: package versions the run was trained with.
        artifacts: binary artifacts by name (e.g. ``"state"``: a teacher's weights as ``.npz`` bytes),
            stored beside the run in the same transaction and read back with :meth:`Store.artifact`.
    """

    run_id: str
    arm: str
    condition: str
    noise: str
    rate: float
    seed: int
    config: dict[str, Any]
    metrics: dict[str, Any]
    curves: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, bytes] = field(default_factory=dict, repr=False)


def _dumps(value: Any) -> str:
    return json.dumps(_finite(value), sort_keys=True, separators=(",", ":"))


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null (read back as NaN by :func:`_nan`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class Store:
    """A study directory's SQLite store. Open it with :meth:`open`; use as a context manager."""

    def __init__(self, directory: Path, connection: sqlite3.Connection) -> None:
        self.directory = directory
        self._db = connection

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, directory: str | Path, *, create: bool = True) -> Store:
        """Open (and with ``create``, make) the store in ``directory``.

        Raises:
            FileNotFoundError: ``create=False`` and no store exists there.
            StoreError: the file is not a smoothflip store.
        """
        directory = Path(directory)
        path = directory / DB_NAME
        if not create and not path.is_file():
            raise FileNotFoundError(f"no smoothflip study in {directory} ({DB_NAME} not found)")
        if directory.exists() and not directory.is_dir():
            raise StoreError(f"output path {directory} exists and is not a directory")
        directory.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{path} is not a usable smoothflip store: {err}") from None
        store = cls(directory, db)
        version = store.get_meta("schema_version")
        if version is None:
            store.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise StoreError(
                f"{path} has store schema {version}; this smoothflip reads schema {SCHEMA_VERSION}"
            )
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ study identity

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def claim(self, *, name: str, identity: str, study_json: str, study_toml: str) -> None:
        """Bind this directory to a study, or check that it already holds the same one.

        ``identity`` is a hash of the resolved study (data content included). A directory bound to
        another identity is refused; nothing in it is changed.

        Raises:
            StoreError: the directory holds a different study.
        """
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            if row is not None and row[0] != identity:
                other = db.execute("SELECT value FROM meta WHERE key = 'name'").fetchone()
                other_name = other[0] if other else "?"
                raise StoreError(
                    f"{self.directory} holds a different study ({other_name!r}, or the same name with other "
                    "settings or data); choose another --out directory, results are never mixed"
                )
            if row is None:
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("identity", identity), ("name", name), ("study", study_json), ("created_at", _now())],
                )
        _atomic_write(self.directory / "study.toml", study_toml)
        _atomic_write(self.directory / "study.json", study_json)

    # ------------------------------------------------------------------ runs

    def finished_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT run_id FROM runs")}

    def write_pack(self, results: Iterable[RunResult]) -> int:
        """Store a finished pack in one transaction; runs already stored are left as they are.

        Returns:
            The number of new rows.
        """
        results = list(results)
        rows = [
            (
                r.run_id,
                r.arm,
                r.condition,
                r.noise,
                float(r.rate),
                int(r.seed),
                _dumps(r.config),
                _dumps(r.metrics),
                _dumps(r.curves),
                _dumps(r.extras),
                _dumps(r.timings),
                _dumps(r.versions),
                _now(),
            )
            for r in results
        ]
        blobs = [(r.run_id, name, data) for r in results for name, data in r.artifacts.items()]
        with self._transaction() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            added = db.total_changes - before
            db.executemany("INSERT OR IGNORE INTO artifacts VALUES (?, ?, ?)", blobs)
            return added

    def results(self) -> list[RunResult]:
        """Every stored run, in insertion order."""
        out = []
        for row in self._db.execute(
            "SELECT run_id, arm, condition, noise, rate, seed, config, metrics, curves, extras, timings, "
            "versions FROM runs ORDER BY rowid"
        ):
            run_id, arm, condition, noise, rate, seed, *blobs = row
            config, metrics, curves, extras, timings, versions = (json.loads(b) for b in blobs)
            # Numbers that were NaN/inf were stored as null; configs keep their nulls (None options).
            metrics, curves, extras = _nan(metrics), _nan(curves), _nan(extras)
            out.append(
                RunResult(
                    run_id,
                    arm,
                    condition,
                    noise,
                    rate,
                    seed,
                    config,
                    metrics,
                    curves,
                    extras,
                    timings,
                    versions,
                )
            )
        return out

    def run_config(self, run_id: str) -> dict[str, Any] | None:
        """The stored config of one run, or None."""
        row = self._db.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else json.loads(row[0])

    def artifact(self, run_id: str, name: str) -> bytes | None:
        """A stored binary artifact of a run, or None."""
        query = "SELECT data FROM artifacts WHERE run_id = ? AND name = ?"
        row = self._db.execute(query, (run_id, name)).fetchone()
        return None if row is None else bytes(row[0])

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def integrity_check(self) -> str:
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])


def _nan(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, dict):
        return {k: _nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan(v) for v in value]
    return value


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
