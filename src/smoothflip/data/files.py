"""User files: ``.npz`` (NumPy arrays), ``.csv`` and ``.parquet`` (tables).

- ``.npz``: arrays ``x`` ``[N, ...]`` (numeric) and ``y`` ``[N]`` (integer or string labels), and
  optionally ``x_test`` / ``y_test``; no other arrays. Read with ``numpy.load(allow_pickle=False)``:
  object arrays are refused, smoothflip never unpickles user files.
- ``.csv`` / ``.parquet``: one row per example; ``label_column`` holds the labels, every other
  column is a numeric feature. ``.csv`` takes the option ``sep`` (one character, default ``","``).

Labels may be integers or strings: the sorted unique *training* labels become classes ``0..K-1``
and their ``str()`` the class names. Without a test split of its own (``x_test`` / ``y_test`` or
``test_source``, a second file of the same kind and columns) the data is split stratified by
``test_fraction`` and ``split_seed``. Features that are one vector per example (tables, ``.npz``
with ``x`` ``[N, d]``) are z-scored with training statistics when ``standardize`` is set; images
(``.npz`` with ``x`` ``[N, H, W, ...]``) are left as they are.

Example:
    >>> import pathlib, tempfile
    >>> import numpy as np, pandas as pd
    >>> table = pd.DataFrame({"a": np.arange(20.0), "b": np.ones(20), "kind": ["cat", "dog"] * 10})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     table.to_csv(pathlib.Path(folder) / "pets.csv", index=False)
    ...     ds = load_file(pathlib.Path(folder) / "pets.csv", label_column="kind", test_fraction=0.2)
    >>> ds.x_train.shape, ds.class_names
    ((16, 2), ('cat', 'dog'))
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from smoothflip.data._common import FILE_TYPES, Dataset, check_options, finish, one_line

__all__ = ["FILE_OPTIONS", "load_file", "resolve_path"]

#: Options each file type takes, with their defaults.
FILE_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        ".npz": MappingProxyType({}),
        ".csv": MappingProxyType({"sep": ","}),
        ".parquet": MappingProxyType({}),
    }
)

_NPZ_ARRAYS = ("x", "y", "x_test", "y_test")
_MAX_COLUMNS_LISTED = 20


def resolve_path(
    source: str | os.PathLike[str], *, base_dir: str | os.PathLike[str] | None, key: str
) -> Path:
    """The absolute path of a user file, checked for a known type and existence.

    Args:
        source: the path as written; a relative one resolves against ``base_dir`` (the study
            file's folder) or, without one, the working directory.
        base_dir: folder for relative paths, or ``None``.
        key: the setting being resolved, for messages (``"data.source"``, ``"data.test_source"``).

    Raises:
        ValueError: the suffix is not one of ``.npz``, ``.csv``, ``.parquet``, or the path is a folder.
        FileNotFoundError: nothing at the path; the message gives the resolved path.
    """
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir).expanduser() / path
    path = path.absolute()
    suffix = path.suffix.lower()
    if suffix not in FILE_TYPES:
        shown = repr(suffix) if suffix else "(no extension)"
        raise ValueError(
            f"{key}: unknown file type {shown} for {os.fspath(source)!r}; allowed: {', '.join(FILE_TYPES)}"
        )
    if not path.exists():
        raise FileNotFoundError(f"{key}: file not found: '{path}'")
    if not path.is_file():
        raise ValueError(f"{key}: '{path}' is not a file")
    return path


def load_file(
    path: str | os.PathLike[str],
    *,
    test_path: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
    label_column: str | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
) -> Dataset:
    """Load a ``.npz``, ``.csv`` or ``.parquet`` file as a :class:`~smoothflip.data.Dataset`.

    Prefer :func:`smoothflip.data.load_dataset`, which also resolves relative paths and checks
    ``test_fraction`` and ``split_seed``; this function assumes they are valid.

    Args:
        path: the data file.
        test_path: a second file of the same kind (``.npz`` with ``.npz``; ``.csv`` / ``.parquet``
            with either, same columns) holding the test examples; else the file's own
            ``x_test`` / ``y_test`` or a stratified split.
        options: file-type options (:data:`FILE_OPTIONS`); unknown keys are refused.
        label_column: the label column of a table; required for ``.csv`` / ``.parquet``, refused
            for ``.npz``.
        test_fraction: held-out share when the data is split, in ``(0, 1)``.
        split_seed: seed of the stratified split.
        standardize: z-score vector features (``[N, d]``) with training mean and std.

    Returns:
        The dataset, named after the file (``path.name``): ``x`` ``[N, d]`` for tables,
        ``[N, *shape]`` for ``.npz``.
    """
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in FILE_TYPES:
        raise ValueError(
            f"data.source: unknown file type {kind!r} for '{path}'; allowed: {', '.join(FILE_TYPES)}"
        )
    opts = {**FILE_OPTIONS[kind], **check_options(options, tuple(FILE_OPTIONS[kind]), source=path.name)}
    if test_path is not None:
        test_path = Path(test_path)
        test_kind = test_path.suffix.lower()
        if (kind == ".npz") != (test_kind == ".npz"):
            raise ValueError(
                f"data.test_source: '{test_path}' is a {test_kind} file but data.source '{path}' is {kind}; "
                f"pair .npz with .npz, and .csv / .parquet with .csv / .parquet"
            )
        if test_path.exists() and path.exists() and os.path.samefile(test_path, path):
            raise ValueError(
                f"data.test_source: '{test_path}' is the data.source file itself; give a separate file"
            )
    if kind == ".npz":
        return _load_npz(
            path,
            test_path=test_path,
            label_column=label_column,
            test_fraction=test_fraction,
            split_seed=split_seed,
            standardize=standardize,
        )
    sep = opts.get("sep", ",")
    if not isinstance(sep, str) or len(sep) != 1:
        raise ValueError(f"data.options.sep must be one character such as ',', ';' or '\\t', got {sep!r}")
    return _load_table(
        path,
        test_path=test_path,
        sep=sep,
        label_column=label_column,
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=standardize,
    )


# --------------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------------


def _load_npz(
    path: Path,
    *,
    test_path: Path | None,
    label_column: str | None,
    test_fraction: float,
    split_seed: int,
    standardize: bool,
) -> Dataset:
    if label_column is not None:
        raise ValueError(
            f"data.label_column: only .csv and .parquet sources have columns; '{path}' is an .npz file "
            f"with arrays x and y (got label_column={label_column!r})"
        )
    arrays = _read_npz(path, key="data.source", allowed=_NPZ_ARRAYS)
    own_test = [name for name in ("x_test", "y_test") if name in arrays]
    if len(own_test) == 1:
        other = "y_test" if own_test[0] == "x_test" else "x_test"
        raise ValueError(f"data.source: '{path}' holds {own_test[0]} but no {other}; give both or neither")
    x_test = y_test = test_what = None
    if test_path is not None:
        if own_test:
            raise ValueError(
                f"data.test_source: '{path}' already holds x_test and y_test; drop them or drop test_source"
            )
        test_arrays = _read_npz(test_path, key="data.test_source", allowed=("x", "y"))
        x_test, y_test = test_arrays["x"], test_arrays["y"]
        test_what = f"test_source '{test_path}'"
    elif own_test:
        x_test, y_test = arrays["x_test"], arrays["y_test"]
        test_what = f"the test split (x_test, y_test) of '{path}'"
    x = arrays["x"]
    return finish(
        name=path.name,
        x=x,
        y=arrays["y"],
        x_test=x_test,
        y_test=y_test,
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=standardize and x.ndim <= 2,
        what=f"'{path}'",
        test_what=test_what,
    )


def _read_npz(path: Path, *, key: str, allowed: Sequence[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read without unpickling anything."""
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{key}: '{path}' is not an .npz archive (a zip of .npy arrays); "
            f"save one with numpy.savez(path, x=features, y=labels)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{key}: cannot read '{path}' as .npz: {one_line(exc)}") from None
    with archive:
        names = list(archive.files)
        unknown = [name for name in names if name not in allowed]
        if unknown:
            raise ValueError(
                f"{key}: '{path}' holds unexpected array(s) {', '.join(map(repr, unknown))}; "
                f"allowed: {', '.join(allowed)}"
            )
        for name in ("x", "y"):
            if name not in names:
                held = ", ".join(map(repr, names)) or "no arrays"
                raise ValueError(
                    f"{key}: '{path}' has no array {name!r} (it holds {held}); "
                    f"save it with numpy.savez(path, x=features, y=labels)"
                )
        out: dict[str, np.ndarray] = {}
        for name in names:
            try:
                out[name] = archive[name]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise ValueError(
                        f"{key}: '{path}' holds an object array {name!r}; smoothflip never unpickles user "
                        f"files — save numeric or string arrays (e.g. x.astype(np.float32), y.astype(str))"
                    ) from None
                raise ValueError(f"{key}: cannot read array {name!r} of '{path}': {one_line(exc)}") from None
            except (OSError, EOFError, zipfile.BadZipFile) as exc:
                raise ValueError(f"{key}: cannot read array {name!r} of '{path}': {one_line(exc)}") from None
    return out


# --------------------------------------------------------------------------------------------------
# .csv / .parquet
# --------------------------------------------------------------------------------------------------


def _load_table(
    path: Path,
    *,
    test_path: Path | None,
    sep: str,
    label_column: str | None,
    test_fraction: float,
    split_seed: int,
    standardize: bool,
) -> Dataset:
    table = _read_table(path, key="data.source", sep=sep)
    if label_column is None:
        raise ValueError(
            f"data.label_column is required for {path.suffix.lower()} sources; "
            f"columns of '{path}': {_list_columns(table.columns)}"
        )
    if not isinstance(label_column, str):
        raise TypeError(f"data.label_column must be a column name (str), got {type(label_column).__name__}")
    what = f"'{path}'"
    x, y, features = _table_arrays(table, label_column=label_column, what=what)
    x_test = y_test = test_what = None
    if test_path is not None:
        test_table = _read_table(test_path, key="data.test_source", sep=sep)
        test_what = f"test_source '{test_path}'"
        missing = [c for c in table.columns if c not in test_table.columns]
        extra = [c for c in test_table.columns if c not in table.columns]
        if missing or extra:
            parts = [
                f"missing: {_list_columns(missing)}" if missing else "",
                f"extra: {_list_columns(extra)}" if extra else "",
            ]
            raise ValueError(
                f"data.test_source: '{test_path}' must have the same columns as '{path}'; "
                + "; ".join(p for p in parts if p)
            )
        x_test, y_test, _ = _table_arrays(
            test_table[list(table.columns)], label_column=label_column, what=test_what
        )
    return finish(
        name=path.name,
        x=x,
        y=y,
        x_test=x_test,
        y_test=y_test,
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=standardize,
        what=what,
        test_what=test_what,
        feature_names=features,
    )


def _read_table(path: Path, *, key: str, sep: str) -> Any:
    import pandas as pd

    kind = path.suffix.lower()
    try:
        if kind == ".csv":
            table = pd.read_csv(path, sep=sep, low_memory=False)
        else:
            table = pd.read_parquet(path, engine="pyarrow")
    except (OSError, ValueError, TypeError, NotImplementedError, ImportError) as exc:
        raise ValueError(f"{key}: cannot read '{path}' as {kind[1:]}: {one_line(exc)}") from None
    table.columns = [str(c) for c in table.columns]
    duplicated = table.columns[table.columns.duplicated()]
    if len(duplicated):
        raise ValueError(f"{key}: '{path}' has duplicate column names: {_list_columns(duplicated)}")
    return table


def _table_arrays(table: Any, *, label_column: str, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(x [N, d] float64 with NaN for missing, y [N] labels, feature names)`` of one table."""
    import pandas as pd

    if label_column not in table.columns:
        raise ValueError(
            f"data.label_column: {label_column!r} is not a column of {what}; "
            f"columns: {_list_columns(table.columns)}"
        )
    features = [c for c in table.columns if c != label_column]
    if not features:
        raise ValueError(f"data: {what} has no feature columns besides label_column {label_column!r}")
    if len(table) == 0:
        raise ValueError(f"data: {what} holds no examples")
    for column in features:
        dtype = table[column].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_complex_dtype(dtype):
            present = table[column].dropna()
            example = f", e.g. {present.iloc[0]!r}" if len(present) else ""
            raise ValueError(
                f"data: column {column!r} of {what} is not numeric (dtype {dtype}{example}); every column "
                f"except label_column {label_column!r} must hold numbers — encode or drop it"
            )
    x = table[features].to_numpy(dtype=np.float64, na_value=np.nan)
    return x, _column_labels(table[label_column], label_column=label_column, what=what), features


def _column_labels(column: Any, *, label_column: str, what: str) -> np.ndarray:
    """A label column as a 1-D int64, float64 (checked later), bool or str array."""
    import pandas as pd

    missing = int(column.isna().sum())
    if missing:
        raise ValueError(
            f"data.label_column: column {label_column!r} of {what} has {missing} missing label(s); "
            f"every row needs one"
        )
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(column.cat.categories.dtype)
    if pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64)
    return np.array([str(v) for v in column.tolist()], dtype=str)


def _list_columns(columns: Sequence[Any]) -> str:
    names = [repr(str(c)) for c in columns]
    if len(names) > _MAX_COLUMNS_LISTED:
        return ", ".join(names[:_MAX_COLUMNS_LISTED]) + f" and {len(names) - _MAX_COLUMNS_LISTED} more"
    return ", ".join(names) or "(none)"
