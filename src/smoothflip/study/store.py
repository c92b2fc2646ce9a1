"""The study store: one SQLite file per output directory, safe against ``kill -9``.

Layout of a study directory::

    DIR/
      smoothflip.sqlite    runs (one row each), study identity
      smoothflip.lock      who trains into it now (see smoothflip.study.lock; released by the OS)
      study.toml           the resolved study file (every default filled in); rerun it as is
      study.json           the same, as JSON

A new store is made whole (tables and schema version) under a private name and then linked into
place, so a reader never finds a ``smoothflip.sqlite`` without its tables. Every finished pack is
written in one transaction (WAL journal, ``synchronous=FULL``), so a process killed at any moment
leaves either the whole pack or none of it. Rows are keyed by run id
(``INSERT OR IGNORE``): a rerun never duplicates a run. A directory that holds a *different* study
is refused rather than mixed.

**Schema.** Version 2 stores each run's condition id (a hash of the condition's resolved
definition, :func:`smoothflip.study.ids.condition_id`) beside its display label; results are grouped
by that id, never by the label. A version-1 store (smoothflip 0.1) is migrated in place when it is
opened for writing (the ids are computed from each run's stored config; nothing else changes) and
read as it is, ids computed on the fly, when it is opened read-only.

**Read-only opening** (``Store.open(dir, readonly=True)``, what ``verdict``, ``report`` and
``export`` use) never creates, migrates or writes anything: it works while another process trains
into the store, on a read-only directory (the file read as immutable, or from a private copy when its
journal still holds transactions), and it refuses a file that is not a smoothflip store
(some other SQLite database, an empty file) without touching it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoothflip._files import atomic_write
from smoothflip.errors import StoreError
from smoothflip.study._readonly import DB_NAME, open_unwritable, writable
from smoothflip.study._readonly import close_store as _close
from smoothflip.study.ids import condition_id

SCHEMA_VERSION = 2
TABLES = frozenset({"meta", "runs", "artifacts", "failures"})
READABLE_SCHEMAS = (1, 2)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    arm          TEXT NOT NULL,
    condition    TEXT NOT NULL,
    noise        TEXT NOT NULL,
    rate         REAL NOT NULL,
    seed         INTEGER NOT NULL,
    config       TEXT NOT NULL,
    metrics      TEXT NOT NULL,
    curves       TEXT NOT NULL,
    extras       TEXT NOT NULL,
    timings      TEXT NOT NULL,
    versions     TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    condition_id TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL,
    name   TEXT NOT NULL,
    data   BLOB NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS failures (
    run_id       TEXT PRIMARY KEY,
    arm          TEXT NOT NULL,
    condition    TEXT NOT NULL,
    condition_id TEXT NOT NULL,
    seed         INTEGER NOT NULL,
    message      TEXT NOT NULL,
    traceback    TEXT NOT NULL,
    attempts     INTEGER NOT NULL,
    failed_at    TEXT NOT NULL
);
"""

_COLUMNS = (
    "run_id, arm, condition, noise, rate, seed, config, metrics, curves, extras, timings, versions, "
    "finished_at, condition_id"
)


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
        condition_id: the condition's id (what results are grouped by); when empty it is computed
            from ``config["condition"]`` (see :func:`run_condition_id`).
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
    condition_id: str = ""

    def __post_init__(self) -> None:
        if not self.condition_id:
            object.__setattr__(self, "condition_id", run_condition_id(self.config, self.condition))


@dataclass(frozen=True)
class RunFailure:
    """A run that raised instead of finishing (a user's training function failed).

    It is stored in the ``failures`` table, not among the runs: the run counts as not done, so
    rerunning the study retries it; when it succeeds its failure row is removed.

    Attributes:
        run_id, arm, condition, condition_id, seed: which run.
        message: one line naming the problem (the user's exception and where it was raised).
        traceback: the full traceback, for ``--debug`` and the report.
    """

    run_id: str
    arm: str
    condition: str
    condition_id: str
    seed: int
    message: str
    traceback: str = ""


def run_condition_id(config: dict[str, Any], label: str) -> str:
    """A run's condition id from its config (the condition's resolved definition).

    A config without a ``condition`` (hand-made results) falls back to an id of the label.
    """
    definition = config.get("condition") if isinstance(config, dict) else None
    if isinstance(definition, dict):
        return condition_id(definition)
    return condition_id({"label": label})


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

    def __init__(
        self, directory: Path, connection: sqlite3.Connection, *, readonly: bool, schema: int
    ) -> None:
        self.directory = directory
        self.readonly = readonly
        self.schema = schema
        self._db = connection
        # called with each pack's finished runs once they are committed (experiment trackers)
        self.on_write: Callable[[list[RunResult]], None] | None = None

    @property
    def path(self) -> Path:
        return self.directory / DB_NAME

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, directory: str | Path, *, create: bool = True, readonly: bool = False) -> Store:
        """Open the store in ``directory``.

        Args:
            directory: the study directory.
            create: make the directory and the store when they do not exist (write mode only).
            readonly: open without writing anything (no creation, no migration, no journal change).

        Raises:
            FileNotFoundError: no store there (``create=False`` or ``readonly=True``).
            StoreError: the file is not a smoothflip store, has an unknown schema, or cannot be opened.
        """
        directory = Path(directory)
        path = directory / DB_NAME
        if directory.exists() and not directory.is_dir():
            raise StoreError(f"output path {directory} exists and is not a directory")
        if (readonly or not create) and not path.is_file():
            raise FileNotFoundError(f"no smoothflip study in {directory} ({DB_NAME} not found)")
        if readonly:
            return cls._open_readonly(directory, path)
        existed = path.is_file() and path.stat().st_size > 0
        if existed:
            cls._check_foreign(path)
        directory.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            cls._create(path)
        try:
            db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")  # all tables or none, even under kill -9
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{path} is not a usable smoothflip store: {err}") from None
        store = cls(directory, db, readonly=False, schema=SCHEMA_VERSION)
        version = store._schema_version()
        if version is None:
            store.set_meta("schema_version", str(SCHEMA_VERSION))
        elif version == 1:
            store._migrate_v1()
        elif version != SCHEMA_VERSION:
            db.close()
            raise StoreError(f"{path} has store schema {version}; this smoothflip reads schemas 1 and 2")
        return store

    @staticmethod
    def _create(path: Path) -> None:
        """Make a new store whole before it appears under its name.

        The tables and the schema version are written into a private file that is then linked to
        ``path``, so a reader polling the directory (``verdict`` while the first run trains) sees no
        store or a whole one, never a database without tables. Linking fails when another process
        made the store first; then that store is the one used.
        """
        partial = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.new")
        try:
            db = sqlite3.connect(partial, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(
                    f"BEGIN IMMEDIATE;{_SCHEMA}"
                    f"INSERT INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');COMMIT;"
                )
            finally:
                db.close()
            try:
                os.link(partial, path)
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links: a rename (a creator racing it could lose)
                if not path.exists():
                    os.replace(partial, path)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"cannot create a smoothflip store at {path}: {err}") from None
        finally:
            for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
                leftover.unlink(missing_ok=True)

    @classmethod
    def _open_readonly(cls, directory: Path, path: Path) -> Store:
        if path.stat().st_size == 0:
            raise StoreError(f"{path} is an empty file, not a smoothflip store")
        if not writable(directory, path):
            db = open_unwritable(path)
            try:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            except sqlite3.DatabaseError as err:
                _close(db)
                raise StoreError(f"{path} is not a smoothflip store ({err})") from None
            return cls._readonly_store(directory, path, db, tables)
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.OperationalError:
            # A WAL database in a read-only directory: SQLite cannot create its shared-memory file.
            # Nothing can be writing to it there, so read it as an immutable file.
            try:
                db = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            except sqlite3.DatabaseError as err:
                raise StoreError(f"{path} cannot be read as a smoothflip store: {err}") from None
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{path} is not a smoothflip store ({err})") from None
        return cls._readonly_store(directory, path, db, tables)

    @classmethod
    def _readonly_store(cls, directory: Path, path: Path, db: sqlite3.Connection, tables: set[str]) -> Store:
        if not {"meta", "runs"} <= tables:
            _close(db)
            raise StoreError(
                f"{path} is not a smoothflip store (no smoothflip tables in it); it was left as it is"
            )
        store = cls(directory, db, readonly=True, schema=1)
        version = store._schema_version()
        if version not in READABLE_SCHEMAS:
            _close(db)
            raise StoreError(f"{path} has store schema {version}; this smoothflip reads schemas 1 and 2")
        store.schema = version
        return store

    @staticmethod
    def _check_foreign(path: Path) -> None:
        """Refuse, before writing anything, a database that holds tables but not smoothflip's."""
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
            try:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            finally:
                db.close()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{path} is not a smoothflip store ({err}); it was left as it is") from None
        foreign = sorted(tables - TABLES)
        if foreign:
            raise StoreError(
                f"{path} is not a smoothflip store (it holds other tables: {', '.join(foreign[:5])}); "
                "it was left as it is"
            )

    def _schema_version(self) -> int | None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: cannot read the meta table ({err})") from None
        if row is None:
            return None
        try:
            return int(row[0])
        except (TypeError, ValueError):
            raise StoreError(
                f"{self.path}: meta.schema_version is {row[0]!r}, not a schema number; the store is damaged"
            ) from None

    def _migrate_v1(self) -> None:
        """Schema 1 -> 2: add each run's condition id, computed from its stored config."""
        with self._transaction() as db:
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            if "condition_id" not in columns:
                db.execute("ALTER TABLE runs ADD COLUMN condition_id TEXT NOT NULL DEFAULT ''")
            updates = []
            for run_id, label, config in db.execute("SELECT run_id, condition, config FROM runs").fetchall():
                updates.append((run_condition_id(self._json(config, run_id, "config"), label), run_id))
            db.executemany("UPDATE runs SET condition_id = ? WHERE run_id = ?", updates)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )

    def close(self) -> None:
        _close(self._db)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(f"{self.path} was opened read-only")
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

    def claim(
        self,
        *,
        name: str,
        identity: str,
        study_json: str,
        study_toml: str,
        accept: Callable[[str, str], str | None] | None = None,
    ) -> None:
        """Bind this directory to a study, or check that it may continue the study it holds.

        ``identity`` is a hash of the resolved study (data content included). A directory bound to
        another identity is refused, unless ``accept(stored_identity, stored_study_json)`` returns
        None: the study then *grows* (more seeds, arms or conditions, a new description; see
        :mod:`smoothflip.study.growth`) and the directory is rebound to it. Either way no run is
        changed or removed.

        Raises:
            StoreError: the directory holds a different study (``accept`` says why, when given).
        """
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
            if row is not None and row[0] != identity:
                stored = db.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
                problem = (
                    "other settings or data"
                    if accept is None
                    else accept(row[0], stored[0] if stored else "{}")
                )
                if problem is not None:
                    other = db.execute("SELECT value FROM meta WHERE key = 'name'").fetchone()
                    other_name = other[0] if other else "?"
                    raise StoreError(
                        f"{self.directory} holds a different study ({other_name!r}): {problem}; that would "
                        "change its stored runs, so choose another --out directory or undo the change "
                        "(results are never mixed)"
                    )
            if row is None or row[0] != identity:
                pairs = [("identity", identity), ("name", name), ("study", study_json)]
                if row is None:
                    pairs.append(("created_at", _now()))
                db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", pairs)
        atomic_write(self.directory / "study.toml", study_toml.encode("utf-8"))
        atomic_write(self.directory / "study.json", study_json.encode("utf-8"))

    # ------------------------------------------------------------------ runs

    def finished_ids(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT run_id FROM runs")}

    def write_pack(self, results: Iterable[RunResult | RunFailure]) -> int:
        """Store a finished pack in one transaction; runs already stored are left as they are.

        A :class:`RunFailure` is recorded (or its attempt count raised) in the ``failures`` table;
        a run that finishes removes its earlier failure. After the commit :attr:`on_write` (if set)
        is called with the pack's finished runs.

        Returns:
            The number of new run rows.
        """
        items = list(results)
        failures = [r for r in items if isinstance(r, RunFailure)]
        results = [r for r in items if not isinstance(r, RunFailure)]
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
                r.condition_id,
            )
            for r in results
        ]
        blobs = [(r.run_id, name, data) for r in results for name, data in r.artifacts.items()]
        with self._transaction() as db:
            before = db.total_changes
            db.executemany(f"INSERT OR IGNORE INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", rows)
            added = db.total_changes - before
            db.executemany("INSERT OR IGNORE INTO artifacts VALUES (?, ?, ?)", blobs)
            db.executemany("DELETE FROM failures WHERE run_id = ?", [(r.run_id,) for r in results])
            for f in failures:
                db.execute(
                    "INSERT INTO failures VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(run_id) "
                    "DO UPDATE SET message = excluded.message, traceback = excluded.traceback, "
                    "attempts = attempts + 1, "
                    "failed_at = excluded.failed_at",
                    (
                        f.run_id,
                        f.arm,
                        f.condition,
                        f.condition_id,
                        int(f.seed),
                        f.message,
                        f.traceback,
                        _now(),
                    ),
                )
        if self.on_write is not None and results:
            self.on_write(results)
        return added

    def failures(self) -> list[tuple[RunFailure, int]]:
        """Runs whose last attempt failed, with their number of attempts (oldest first)."""
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "failures" not in tables:
            return []
        rows = self._db.execute(
            "SELECT run_id, arm, condition, condition_id, seed, message, traceback, attempts FROM failures "
            "ORDER BY failed_at, run_id"
        )
        return [(RunFailure(*row[:7]), int(row[7])) for row in rows]

    def _json(self, text: Any, run_id: str, column: str) -> Any:
        try:
            return json.loads(text)
        except (TypeError, ValueError) as err:
            raise StoreError(
                f"{self.path}: run {run_id}: column {column!r} is not valid JSON ({err}); "
                "the store is damaged"
            ) from None

    def results(self) -> list[RunResult]:
        """Every stored run, in insertion order.

        Raises:
            StoreError: a row is damaged (the message names the store, the run and the column).
        """
        columns = _COLUMNS if self.schema >= 2 else _COLUMNS.replace(", condition_id", "")
        out = []
        for row in self._db.execute(f"SELECT {columns} FROM runs ORDER BY rowid"):
            run_id, arm, condition, noise, rate, seed, *blobs = row
            names = ("config", "metrics", "curves", "extras", "timings", "versions")
            config, metrics, curves, extras, timings, versions = (
                self._json(text, run_id, name) for text, name in zip(blobs[:6], names, strict=True)
            )
            stored_id = blobs[7] if self.schema >= 2 else ""
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
                    config if isinstance(config, dict) else {},
                    metrics if isinstance(metrics, dict) else {},
                    curves if isinstance(curves, dict) else {},
                    extras if isinstance(extras, dict) else {},
                    timings if isinstance(timings, dict) else {},
                    versions if isinstance(versions, dict) else {},
                    condition_id=stored_id or "",
                )
            )
        return out

    def run_config(self, run_id: str) -> dict[str, Any] | None:
        """The stored config of one run, or None."""
        row = self._db.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else self._json(row[0], run_id, "config")

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
