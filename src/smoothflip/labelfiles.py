"""Attack or clean the labels of a data file: read it, change the labels, write the same kind of file.

What ``smoothflip attack DATA OUT`` and ``smoothflip clean DATA OUT`` run.

**Files.** ``.npz`` (arrays ``x`` ``[N, ...]`` and ``y`` ``[N]``; ``x_test`` / ``y_test`` are
passed through untouched), ``.csv`` and ``.parquet`` (one row per example; ``label_column`` holds
the labels, every other column is a numeric feature). Labels may be integers, strings or booleans:
they are mapped to classes ``0..K-1`` in sorted order for the attack or defence and written back
as the original values. ``.npz`` files are read with ``allow_pickle=False`` (object arrays are
refused); the output's extension picks its format (``.npz`` to ``.npz``; ``.csv`` and
``.parquet`` to either), it is written atomically (a temporary file in the same folder, then
``os.replace``) and never over the input.

**What is written.** Every row of the input, in order, with its features unchanged, plus:

===================  ===========================  =============================================
table column         ``.npz`` array               content
===================  ===========================  =============================================
``label_column``     ``y``                        the attacked / cleaned labels
``<label>_original`` ``y_original``               the labels before the first smoothflip step
``flipped``          ``flipped``                  (attack) bool, the label was flipped
``<label>_noisy``    ``y_noisy``                  (clean, when the input already has
                                                  ``_original``) the labels it was given
``flagged``          ``flagged``                  (clean) bool, the defence relabelled or
                                                  dropped the example
``kept``             ``kept``                     (clean, filtering defences) bool, keep it
===================  ===========================  =============================================

So the output of :func:`attack_file` is a valid input of :func:`clean_file`, which then scores
its flags against the ``flipped`` mask. The columns smoothflip writes are never read as features.

Example:
    >>> import pathlib, tempfile
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> table = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    >>> table["kind"] = np.where(table["a"] > 0, "cat", "dog")
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     src, bad, fixed = (pathlib.Path(folder) / n for n in ("pets.csv", "bad.csv", "fixed.csv"))
    ...     table.to_csv(src, index=False)
    ...     attacked = attack_file(src, bad, strategy="random", budget=6, label_column="kind", seed=0)
    ...     cleaned = clean_file(bad, fixed, defense="knn", label_column="kind", k=5)
    ...     written = pd.read_csv(bad)
    >>> attacked.n_flipped, int(written["flipped"].sum()), sorted(written.columns)
    (6, 6, ['a', 'b', 'flipped', 'kind', 'kind_original'])
    >>> cleaned.detection.n_flipped
    6
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smoothflip.attacks import label_flip
from smoothflip.data._common import (
    FILE_TYPES,
    as_features,
    as_labels,
    non_numeric_example,
    raise_unless_two_classes,
)
from smoothflip.data.files import _column_labels, _list_columns, _read_npz, _read_table
from smoothflip.defenses import DefenseResult, DetectionScore, apply_defense, score_detection
from smoothflip.noise import NoisyLabels

__all__ = ["AttackFileResult", "CleanFileResult", "attack_file", "clean_file"]

#: Defences that drop examples (their output gets a ``kept`` column).
FILTERING_DEFENSES: tuple[str, ...] = ("confident_learning", "small_loss")

_NPZ_DATA = ("x", "y", "x_test", "y_test")
_TABLES = (".csv", ".parquet")


# --------------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AttackFileResult:
    """What :func:`attack_file` did.

    Attributes:
        path: the input file.
        out: the written file.
        strategy: the attack strategy.
        noisy: the attack's :class:`~smoothflip.noise.NoisyLabels` (class indices ``0..K-1``).
        classes: ``[K]`` the original label values; class ``i`` is ``classes[i]``.
    """

    path: Path
    out: Path
    strategy: str
    noisy: NoisyLabels
    classes: np.ndarray = field(repr=False)

    @property
    def n_examples(self) -> int:
        """Number of examples (rows) in the file."""
        return len(self.noisy)

    @property
    def n_flipped(self) -> int:
        """Number of labels flipped."""
        return int(self.noisy.flipped.sum())

    @property
    def rate(self) -> float:
        """Realized fraction of flipped labels."""
        return self.noisy.rate

    def summary(self) -> str:
        """One line for a terminal."""
        return (
            f"attacked '{self.path}' -> '{self.out}': strategy {self.strategy}, {self.n_flipped} of "
            f"{self.n_examples} labels flipped ({100 * self.rate:.2f}%)"
        )


@dataclass(frozen=True, eq=False)
class CleanFileResult:
    """What :func:`clean_file` did.

    Attributes:
        path: the input file.
        out: the written file.
        defense: the defence's name.
        result: the :class:`~smoothflip.defenses.DefenseResult` (class indices ``0..K-1``).
        detection: flags scored against the input's flip mask, or ``None`` without one.
        classes: ``[K]`` the original label values; class ``i`` is ``classes[i]``.
    """

    path: Path
    out: Path
    defense: str
    result: DefenseResult
    detection: DetectionScore | None
    classes: np.ndarray = field(repr=False)

    @property
    def n_examples(self) -> int:
        """Number of examples (rows) in the file."""
        return int(self.result.labels.shape[0])

    @property
    def n_flagged(self) -> int:
        """Number of examples the defence relabelled or dropped."""
        return int(self.result.flagged.sum())

    def summary(self) -> str:
        """One line for a terminal."""
        line = (
            f"cleaned '{self.path}' -> '{self.out}': defense {self.defense}, {self.n_flagged} of "
            f"{self.n_examples} examples flagged ({self.result.n_relabelled} relabelled, "
            f"{self.result.n_dropped} dropped)"
        )
        if self.detection is not None:
            d = self.detection
            line += (
                f"; against the {d.n_flipped} flipped labels: precision {_fmt(d.precision)}, "
                f"recall {_fmt(d.recall)}, F1 {_fmt(d.f1)}"
            )
        return line


# --------------------------------------------------------------------------------------------------
# entry points
# --------------------------------------------------------------------------------------------------


#: Attack options that name a class: given as a label value of the file.
CLASS_OPTIONS = ("source", "target")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _class_index(key: str, value: Any, classes: np.ndarray, src: Path) -> int:
    """The position in ``classes`` of the file's label ``value`` (compared as is, then as text)."""
    for i, c in enumerate(classes):
        if _plain(c) == value or str(_plain(c)) == str(value):
            return i
    shown = ", ".join(repr(_plain(c)) for c in classes[:12]) + (", ..." if classes.size > 12 else "")
    raise ValueError(f"{key}={value!r} is not a label of '{src}' (its labels: {shown})")


def attack_file(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    strategy: str,
    budget: float | int,
    seed: int = 0,
    label_column: str | None = None,
    sep: str = ",",
    **options: Any,
) -> AttackFileResult:
    """Flip a budget of a file's labels with :func:`smoothflip.attacks.label_flip` and write the result.

    Args:
        path: the input ``.npz``, ``.csv`` or ``.parquet`` file.
        out: where to write; its extension picks the format (``.npz`` for an ``.npz`` input,
            ``.csv`` or ``.parquet`` for a table). Must not be the input file; an existing other
            file is replaced.
        strategy: an attack strategy (:data:`smoothflip.attacks.STRATEGIES`).
        budget: a fraction in ``(0, 1)`` or a count of labels to flip, realized exactly.
        seed: seeds the attack.
        label_column: the label column of a table (required for ``.csv`` / ``.parquet``, refused
            for ``.npz``).
        sep: the field separator of ``.csv`` files (read and written).
        **options: the strategy's options (e.g. ``side="farthest"``). ``source`` and ``target``
            (``"targeted"``) name label *values* of the file (``source="cat"``, or ``source=3`` for
            a label 3), not positions: the labels are renumbered internally.

    Returns:
        :class:`AttackFileResult` (``summary()`` gives one line).

    Raises:
        FileNotFoundError: no input file, or no folder for ``out``.
        ValueError: a bad file, column, label, output path or attack argument (one line).

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     src = pathlib.Path(folder) / "d.npz"
        ...     np.savez(src, x=rng.normal(size=(50, 3)), y=np.arange(50) % 2)
        ...     r = attack_file(src, pathlib.Path(folder) / "d-attacked.npz", strategy="random", budget=0.1)
        ...     with np.load(r.out) as written:
        ...         names = sorted(written.files)
        >>> r.n_flipped, names
        (5, ['flipped', 'x', 'y', 'y_original'])
    """
    src, dst = _check_paths(path, out)
    data = _read(src, label_column=label_column, sep=sep, role="attack", flip_mask_column=None)
    classes, encoded = np.unique(data.labels, return_inverse=True)
    raise_unless_two_classes(classes, what=f"'{src}'", rows=len(data.labels))
    options = {
        key: _class_index(key, value, classes, src) if key in CLASS_OPTIONS else value
        for key, value in options.items()
    }
    noisy = label_flip(
        data.x, encoded, budget=budget, strategy=strategy, seed=seed, num_classes=classes.size, **options
    )
    columns = {
        "labels": classes[noisy.labels],
        "original": data.labels,
        "flipped": noisy.flipped,
    }
    _write(data, dst, columns, sep=sep)
    return AttackFileResult(path=src, out=dst, strategy=strategy, noisy=noisy, classes=classes)


def clean_file(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    defense: str,
    seed: int = 0,
    label_column: str | None = None,
    flip_mask_column: str | None = None,
    sep: str = ",",
    **options: Any,
) -> CleanFileResult:
    """Run a defence (:func:`smoothflip.defenses.apply_defense`) on a file's labels and write the result.

    Args:
        path: the input ``.npz``, ``.csv`` or ``.parquet`` file (e.g. written by
            :func:`attack_file`).
        out: where to write (format from the extension, as in :func:`attack_file`).
        defense: one of :data:`smoothflip.defenses.DEFENSES`.
        seed: seeds the defence.
        label_column: the label column of a table (required for tables, refused for ``.npz``).
        flip_mask_column: the column (table) or array (``.npz``) holding the true flip mask to
            score the defence against; default ``"flipped"`` when the input has one. It is not a
            feature.
        sep: the field separator of ``.csv`` files (read and written).
        **options: the defence's options (e.g. ``k=10, eta=0.5``; ``keep_fraction`` for
            ``"small_loss"``).

    Returns:
        :class:`CleanFileResult`, with :attr:`~CleanFileResult.detection` (precision, recall, F1
        of the flags against the flip mask) when the input has a flip mask.

    Raises:
        FileNotFoundError: no input file, or no folder for ``out``.
        ValueError: a bad file, column, label, output path or defence argument (one line).

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> x = np.concatenate([np.zeros((20, 2)), np.ones((20, 2))]) + np.linspace(0, 0.1, 40)[:, None]
        >>> y = np.repeat([0, 1], 20)
        >>> y[:2] = 1  # two wrong labels
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     src = pathlib.Path(folder) / "d.npz"
        ...     np.savez(src, x=x, y=y)
        ...     r = clean_file(src, pathlib.Path(folder) / "d-clean.npz", defense="knn", k=5)
        ...     with np.load(r.out) as written:
        ...         fixed, flagged = written["y"][:4].tolist(), int(written["flagged"].sum())
        >>> fixed, flagged
        ([0, 0, 0, 0], 2)
    """
    src, dst = _check_paths(path, out)
    data = _read(src, label_column=label_column, sep=sep, role="clean", flip_mask_column=flip_mask_column)
    classes, encoded = np.unique(data.labels, return_inverse=True)
    raise_unless_two_classes(classes, what=f"'{src}'", rows=len(data.labels))
    result = apply_defense(defense, data.x, encoded, seed=seed, **options)
    columns: dict[str, np.ndarray] = {"labels": classes[result.labels], "flagged": result.flagged}
    if data.original is None:
        columns["original"] = data.labels
    else:
        columns["noisy"] = data.labels
    if defense in FILTERING_DEFENSES:
        columns["kept"] = result.keep
    _write(data, dst, columns, sep=sep)
    detection = None if data.flip_mask is None else score_detection(result.flagged, data.flip_mask)
    return CleanFileResult(
        path=src, out=dst, defense=defense, result=result, detection=detection, classes=classes
    )


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------


@dataclass
class _Data:
    """One input file: features, labels and what is needed to write it back."""

    kind: str
    x: np.ndarray
    labels: np.ndarray
    label_column: str | None
    table: Any = None
    arrays: dict[str, np.ndarray] | None = None
    original: np.ndarray | None = None
    flip_mask: np.ndarray | None = None


def _check_paths(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> tuple[Path, Path]:
    src = Path(path).expanduser().absolute()
    dst = Path(out).expanduser().absolute()
    for name, p in (("path", src), ("out", dst)):
        if p.suffix.lower() not in FILE_TYPES:
            shown = repr(p.suffix) if p.suffix else "(no extension)"
            raise ValueError(f"{name}: unknown file type {shown} for '{p}'; allowed: {', '.join(FILE_TYPES)}")
    if not src.exists():
        raise FileNotFoundError(f"path: file not found: '{src}'")
    if not src.is_file():
        raise ValueError(f"path: '{src}' is not a file")
    kind, out_kind = src.suffix.lower(), dst.suffix.lower()
    if (kind == ".npz") != (out_kind == ".npz"):
        raise ValueError(
            f"out: '{dst}' is a {out_kind} file but the input '{src}' is {kind}; write .npz from .npz, "
            f".csv or .parquet from a table"
        )
    if not dst.parent.is_dir():
        raise FileNotFoundError(f"out: folder not found: '{dst.parent}'")
    if dst.is_dir():
        raise ValueError(f"out: '{dst}' is a folder; give a file name")
    if dst == src or (dst.exists() and os.path.samefile(dst, src)):
        raise ValueError(f"out: '{dst}' is the input file; refusing to overwrite it — give another name")
    return src, dst


def _read(src: Path, *, label_column: str | None, sep: str, role: str, flip_mask_column: str | None) -> _Data:
    if not isinstance(sep, str) or len(sep) != 1:
        raise ValueError(f"sep must be one character such as ',', ';' or '\\t', got {sep!r}")
    if src.suffix.lower() == ".npz":
        return _read_npz_file(src, label_column=label_column, role=role, flip_mask_column=flip_mask_column)
    return _read_table_file(
        src, label_column=label_column, sep=sep, role=role, flip_mask_column=flip_mask_column
    )


def _read_npz_file(src: Path, *, label_column: str | None, role: str, flip_mask_column: str | None) -> _Data:
    if label_column is not None:
        raise ValueError(
            f"label_column: '{src}' is an .npz file with arrays x and y, it has no columns "
            f"(got label_column={label_column!r})"
        )
    mask_name = flip_mask_column or "flipped"
    written = ("y_original", "flipped", "y_noisy", "flagged", "kept")
    arrays = _read_npz(src, key="path", allowed=(*_NPZ_DATA, *written, mask_name))
    _refuse_written(src, [n for n in arrays if n in _refused(role, "y_original", "y_noisy")], role)
    if flip_mask_column is not None and flip_mask_column not in arrays:
        raise ValueError(
            f"flip_mask_column: '{src}' has no array {flip_mask_column!r}; it holds {', '.join(arrays)}"
        )
    x = as_features(arrays["x"], what=f"array x of '{src}'")
    labels = as_labels(arrays["y"], what=f"array y of '{src}'")
    n = labels.shape[0]
    if x.shape[0] != n:
        raise ValueError(f"'{src}': x has {x.shape[0]} examples but y has {n} labels")
    original = arrays.get("y_original") if role == "clean" else None
    if original is not None and np.shape(original) != (n,):
        raise ValueError(f"'{src}': y_original must have shape ({n},), got {np.shape(original)}")
    mask = None
    if role == "clean" and mask_name in arrays:
        mask = _flip_mask(arrays[mask_name], n, what=f"array {mask_name!r} of '{src}'")
    return _Data(
        kind=".npz",
        x=x,
        labels=np.asarray(arrays["y"]),
        label_column=None,
        arrays=arrays,
        original=original,
        flip_mask=mask,
    )


def _read_table_file(
    src: Path, *, label_column: str | None, sep: str, role: str, flip_mask_column: str | None
) -> _Data:
    table = _read_table(src, key="path", sep=sep)
    if label_column is None:
        raise ValueError(
            f"label_column is required for {src.suffix.lower()} files; columns of '{src}': "
            f"{_list_columns(table.columns)}"
        )
    if not isinstance(label_column, str):
        raise TypeError(f"label_column must be a column name (str), got {type(label_column).__name__}")
    if label_column not in table.columns:
        raise ValueError(
            f"label_column: {label_column!r} is not a column of '{src}'; "
            f"columns: {_list_columns(table.columns)}"
        )
    if len(table) == 0:
        raise ValueError(f"'{src}' holds no rows")
    original_name, noisy_name = f"{label_column}_original", f"{label_column}_noisy"
    _refuse_written(src, [c for c in table.columns if c in _refused(role, original_name, noisy_name)], role)
    mask_name = flip_mask_column or "flipped"
    if flip_mask_column is not None and flip_mask_column not in table.columns:
        raise ValueError(
            f"flip_mask_column: {flip_mask_column!r} is not a column of '{src}'; "
            f"columns: {_list_columns(table.columns)}"
        )
    not_features = {label_column, original_name, noisy_name, "flipped", "flagged", "kept", mask_name}
    features = [c for c in table.columns if c not in not_features]
    if not features:
        raise ValueError(f"'{src}' has no feature columns besides label_column {label_column!r}")
    import pandas as pd

    for column in features:
        dtype = table[column].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_complex_dtype(dtype):
            raise ValueError(
                f"column {column!r} of '{src}' is not numeric (dtype {dtype}"
                f"{non_numeric_example(table[column])}); every column except "
                f"label_column {label_column!r} must hold numbers — encode or drop it"
            )
    what = f"'{src}'"
    x = as_features(
        table[features].to_numpy(dtype=np.float64, na_value=np.nan), what=what, feature_names=features
    )
    labels = _column_labels(table[label_column], label_column=label_column, what=what)
    as_labels(labels, what=f"column {label_column!r} of {what}")
    original = None
    if role == "clean" and original_name in table.columns:
        original = table[original_name].to_numpy()
    mask = None
    if role == "clean" and mask_name in table.columns:
        mask = _flip_mask(table[mask_name].to_numpy(), len(table), what=f"column {mask_name!r} of {what}")
    return _Data(
        kind=src.suffix.lower(),
        x=x,
        labels=labels,
        label_column=label_column,
        table=table,
        original=original,
        flip_mask=mask,
    )


def _refused(role: str, original_name: str, noisy_name: str) -> tuple[str, ...]:
    """Names an input must not already hold: what this step would write over."""
    if role == "attack":
        return (original_name, "flipped", noisy_name, "flagged", "kept")
    return (noisy_name, "flagged", "kept")


def _refuse_written(src: Path, present: list[str], role: str) -> None:
    if not present:
        return
    listed = ", ".join(map(repr, present))
    if role == "attack":
        hint = "it looks attacked or cleaned already — attack the original file, or rename them"
    else:
        hint = "it looks cleaned already — clean the attacked or original file, or rename them"
    raise ValueError(f"'{src}' already holds {listed}, which {role}_file writes; {hint}")


def _flip_mask(values: Any, n: int, *, what: str) -> np.ndarray:
    mask = np.asarray(values)
    if mask.shape != (n,):
        raise ValueError(f"{what} must have one value per example ({n}), got shape {mask.shape}")
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind in "iuf" and np.isin(mask, (0, 1)).all():
        return mask.astype(bool)
    raise ValueError(f"{what} must hold booleans (or 0/1), got dtype {mask.dtype}")


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------


def _write(data: _Data, dst: Path, columns: Mapping[str, np.ndarray], *, sep: str) -> None:
    """Write the input with new labels and extra columns to ``dst``, atomically."""
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        if data.kind == ".npz":
            _write_npz(data, tmp, columns)
        else:
            _write_table(data, tmp, dst.suffix.lower(), columns, sep=sep)
        os.replace(tmp, dst)
    except OSError as exc:
        raise ValueError(f"out: cannot write '{dst}': {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_npz(data: _Data, tmp: Path, columns: Mapping[str, np.ndarray]) -> None:
    arrays = dict(data.arrays or {})
    y = np.asarray(data.arrays["y"])
    arrays["y"] = np.asarray(columns["labels"]).astype(y.dtype, copy=False)
    names = {
        "original": "y_original",
        "noisy": "y_noisy",
        "flipped": "flipped",
        "flagged": "flagged",
        "kept": "kept",
    }
    for key, name in names.items():
        if key in columns:
            value = np.asarray(columns[key])
            arrays[name] = value.astype(y.dtype, copy=False) if key in ("original", "noisy") else value
    with open(tmp, "wb") as handle:  # a file object: numpy appends no ".npz" to the name
        np.savez(handle, **arrays)


def _write_table(data: _Data, tmp: Path, kind: str, columns: Mapping[str, np.ndarray], *, sep: str) -> None:
    table = data.table.copy()
    label = str(data.label_column)
    table[label] = columns["labels"]
    names = {
        "original": f"{label}_original",
        "noisy": f"{label}_noisy",
        "flipped": "flipped",
        "flagged": "flagged",
        "kept": "kept",
    }
    for key, name in names.items():
        if key in columns:
            table[name] = columns[key]
    if kind == ".csv":
        table.to_csv(tmp, index=False, sep=sep)
    else:
        table.to_parquet(tmp, engine="pyarrow", index=False)


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
