"""User files: ``.npz`` and ``.npy`` (NumPy arrays), ``.csv`` and ``.parquet`` (tables).

- ``.npz``: arrays ``x`` ``[N, ...]`` (numeric) and ``y`` ``[N]`` (integer or string labels), and
  optionally ``x_test`` / ``y_test``; no other arrays. Read with ``numpy.load(allow_pickle=False)``:
  object arrays are refused, smoothflip never unpickles user files.
- ``.npy``: images only, ``[N, H, W]`` or ``[N, H, W, C]`` (see :mod:`smoothflip.data.images`);
  the option ``labels`` names a ``.npy`` of the ``N`` labels (relative to the study file's folder)
  and, with a ``test_source`` ``.npy``, ``test_labels`` names its labels.
- ``.csv`` / ``.parquet``: one row per example; ``label_column`` holds the labels, every other
  column is a numeric feature. ``.csv`` takes the option ``sep`` (one character, default ``","``).

Every ``.npy`` header (a ``.npy`` file, or each array of an ``.npz``) is checked against the bytes
present before NumPy reads the array (:mod:`smoothflip.data._npy`), so a forged header is a
one-line error, never a huge allocation.

Labels may be integers or strings: the sorted unique *training* labels become classes ``0..K-1``
and their ``str()`` the class names. Without a test split of its own (``x_test`` / ``y_test`` or
``test_source``, a second file of the same kind and columns) the data is split stratified by
``test_fraction`` and ``split_seed``. Features that are one vector per example (tables, ``.npz``
with ``x`` ``[N, d]``) are z-scored with training statistics when ``standardize`` is set. Image
arrays (``.npy``; ``.npz`` whose ``x`` is ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` with
``C`` in 1..4) are stored channels first, ``[N, C, H, W]``, and z-scored channel by channel; other
arrays (``[N, a, b, c]`` with no dimension of 1..4 channels, 5-D, ...) are left as they are. The
``.npz`` option ``layout = "as_saved"`` keeps every array as saved instead (multichannel signals
``[N, C, L]`` for ``cnn1d``, say), standardizing only tabular ``x``.

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

from smoothflip.data._common import (
    SOURCE_FILE_TYPES,
    Dataset,
    as_features,
    check_options,
    finish,
    non_numeric_example,
    one_line,
)
from smoothflip.data._npy import check_npz_members, read_npy
from smoothflip.data.images import image_array_layout, to_channels_first
from smoothflip.errors import DataError

__all__ = ["FILE_OPTIONS", "NPZ_LAYOUTS", "arrays_dataset", "load_file", "resolve_path"]

#: Options each file type takes, with their defaults.
FILE_OPTIONS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        ".npz": MappingProxyType({"layout": "auto"}),
        ".csv": MappingProxyType({"sep": ","}),
        ".parquet": MappingProxyType({}),
        ".npy": MappingProxyType({"labels": None, "test_labels": None}),
    }
)

#: Values of the ``.npz`` option ``layout``: ``"auto"`` reads 3-D and 4-D ``x`` as images (stored
#: ``[N, C, H, W]``, standardized per channel); ``"as_saved"`` keeps every array as saved (e.g.
#: multichannel signals ``[N, C, L]`` for ``cnn1d``) and standardizes only tabular ``[N, d]``.
NPZ_LAYOUTS: tuple[str, ...] = ("auto", "as_saved")

# Which file types may pair as data.source and data.test_source.
_FAMILY = {".npz": "npz", ".npy": "npy", ".csv": "table", ".parquet": "table"}

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
        ValueError: the suffix is not one of ``.npz``, ``.csv``, ``.parquet``, ``.npy``, or the path
            is a folder.
        FileNotFoundError: nothing at the path; the message gives the resolved path.
    """
    path = absolute_path(source, base_dir=base_dir)
    suffix = path.suffix.lower()
    if suffix not in SOURCE_FILE_TYPES:
        shown = repr(suffix) if suffix else "(no extension)"
        raise ValueError(
            f"{key}: unknown file type {shown} for {os.fspath(source)!r}; allowed: "
            f"{', '.join(SOURCE_FILE_TYPES)}, or a folder of images"
        )
    if not path.exists():
        raise FileNotFoundError(f"{key}: file not found: '{path}'")
    if not path.is_file():
        raise ValueError(f"{key}: '{path}' is not a file")
    return path


def absolute_path(source: str | os.PathLike[str], *, base_dir: str | os.PathLike[str] | None) -> Path:
    """``source`` made absolute: a relative path resolves against ``base_dir`` or the working directory."""
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir).expanduser() / path
    return path.absolute()


def load_file(
    path: str | os.PathLike[str],
    *,
    test_path: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
    label_column: str | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
    base_dir: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Load a ``.npz``, ``.npy``, ``.csv`` or ``.parquet`` file as a :class:`~smoothflip.data.Dataset`.

    Prefer :func:`smoothflip.data.load_dataset`, which also resolves relative paths and checks
    ``test_fraction`` and ``split_seed``; this function assumes they are valid.

    Args:
        path: the data file.
        test_path: a second file of the same kind (``.npz`` with ``.npz``, ``.npy`` with ``.npy``;
            ``.csv`` / ``.parquet`` with either, same columns) holding the test examples; else the
            file's own ``x_test`` / ``y_test`` or a stratified split.
        options: file-type options (:data:`FILE_OPTIONS`); unknown keys are refused.
        label_column: the label column of a table; required for ``.csv`` / ``.parquet``, refused
            for ``.npz`` and ``.npy``.
        test_fraction: held-out share when the data is split, in ``(0, 1)``.
        split_seed: seed of the stratified split.
        standardize: z-score vector features (``[N, d]``) with training mean and std, images
            channel by channel.
        base_dir: folder the ``labels`` / ``test_labels`` options of a ``.npy`` resolve against.

    Returns:
        The dataset, named after the file (``path.name``): ``x`` ``[N, d]`` for tables,
        ``[N, C, H, W]`` for image arrays, ``[N, *shape]`` for other ``.npz`` arrays.
    """
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in SOURCE_FILE_TYPES:
        raise ValueError(
            f"data.source: unknown file type {kind!r} for '{path}'; allowed: {', '.join(SOURCE_FILE_TYPES)}"
        )
    opts = {**FILE_OPTIONS[kind], **check_options(options, tuple(FILE_OPTIONS[kind]), source=path.name)}
    if test_path is not None:
        test_path = Path(test_path)
        test_kind = test_path.suffix.lower()
        if _FAMILY[kind] != _FAMILY.get(test_kind):
            raise ValueError(
                f"data.test_source: '{test_path}' is a {test_kind} file but data.source '{path}' is {kind}; "
                f"pair .npz with .npz, .npy with .npy, and .csv / .parquet with .csv / .parquet"
            )
        if test_path.exists() and path.exists() and os.path.samefile(test_path, path):
            raise ValueError(
                f"data.test_source: '{test_path}' is the data.source file itself; give a separate file"
            )
    if kind in (".npz", ".npy") and label_column is not None:
        raise ValueError(
            f"data.label_column: only .csv and .parquet sources have columns; '{path}' is an {kind} file "
            f"(got label_column={label_column!r})"
        )
    split = {"test_fraction": test_fraction, "split_seed": split_seed, "standardize": standardize}
    if kind == ".npz":
        if opts["layout"] not in NPZ_LAYOUTS:
            allowed = ", ".join(repr(v) for v in NPZ_LAYOUTS)
            raise ValueError(f"data.options.layout must be one of {allowed}, got {opts['layout']!r}")
        return _load_npz(path, test_path=test_path, as_saved=opts["layout"] == "as_saved", **split)
    if kind == ".npy":
        return _load_npy(path, test_path=test_path, opts=opts, base_dir=base_dir, **split)
    sep = opts.get("sep", ",")
    if not isinstance(sep, str) or len(sep) != 1:
        raise ValueError(f"data.options.sep must be one character such as ',', ';' or '\\t', got {sep!r}")
    return _load_table(path, test_path=test_path, sep=sep, label_column=label_column, **split)


# --------------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------------


def _load_npz(
    path: Path,
    *,
    test_path: Path | None,
    as_saved: bool,
    test_fraction: float,
    split_seed: int,
    standardize: bool,
) -> Dataset:
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
    return arrays_dataset(
        name=path.name,
        x=arrays["x"],
        y=arrays["y"],
        x_test=x_test,
        y_test=y_test,
        as_saved=as_saved,
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=standardize,
        what=f"'{path}'",
        test_what=test_what,
    )


def arrays_dataset(
    *,
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    as_saved: bool,
    test_fraction: float,
    split_seed: int,
    standardize: bool,
    what: str,
    test_what: str | None,
) -> Dataset:
    """Arrays ``x`` / ``y`` (and ``x_test`` / ``y_test``) as an ``.npz`` file holds them, as a
    :class:`~smoothflip.data.Dataset`: 3-D and 4-D ``x`` read as images unless ``as_saved``
    (what ``.npz`` files and in-memory arrays share, so both give the same dataset)."""
    layout = None if as_saved else image_array_layout(x.shape)
    if layout is not None:  # checked in the user's layout, so messages give positions as saved
        x = to_channels_first(as_features(x, what=what), layout)
        test_layout = image_array_layout(x_test.shape) if x_test is not None else None
        if test_layout is not None:
            x_test = to_channels_first(as_features(x_test, what=test_what or ""), test_layout)
    return finish(
        name=name,
        x=x,
        y=y,
        x_test=x_test,
        y_test=y_test,
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=standardize and (x.ndim <= 2 or layout is not None),
        per_channel=layout is not None,
        what=what,
        test_what=test_what,
    )


def _load_npy(
    path: Path,
    *,
    test_path: Path | None,
    opts: Mapping[str, Any],
    base_dir: str | os.PathLike[str] | None,
    test_fraction: float,
    split_seed: int,
    standardize: bool,
) -> Dataset:
    """A ``.npy`` of images with its labels in the ``.npy`` named by the ``labels`` option."""
    if opts["labels"] is None:
        raise ValueError(
            f"data.options.labels is required for a .npy source: the path of a .npy holding the {path.name} "
            f"images' labels [N] (relative to the study file's folder)"
        )
    if (test_path is None) != (opts["test_labels"] is None):
        raise ValueError(
            "data.options.test_labels: give it exactly when data.test_source is a .npy (the test images' "
            "labels)"
        )
    x = _npy_images(path, key="data.source")
    y = read_npy(_labels_path(opts["labels"], "labels", base_dir), key="data.options.labels")
    x_test = y_test = test_what = None
    if test_path is not None:
        x_test = _npy_images(test_path, key="data.test_source")
        y_test = read_npy(
            _labels_path(opts["test_labels"], "test_labels", base_dir), key="data.options.test_labels"
        )
        test_what = f"test_source '{test_path}'"
    return finish(
        name=path.name,
        x=x,
        y=y,
        x_test=x_test,
        y_test=y_test,
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=standardize,
        per_channel=True,
        what=f"'{path}'",
        test_what=test_what,
    )


def _npy_images(path: Path, *, key: str) -> np.ndarray:
    x = read_npy(path, key=key)
    layout = image_array_layout(x.shape)
    if layout is None:
        raise DataError(
            f"{key}: '{path}' must hold images [N, H, W] or [N, H, W, C] with C in 1..4 (or [N, C, H, W]), "
            f"got shape {x.shape}; save tabular features as .npz with x and y"
        )
    what = f"'{path}'" if key == "data.source" else f"test_source '{path}'"
    return to_channels_first(as_features(x, what=what), layout)  # checked as saved, then moved


def _labels_path(value: Any, option: str, base_dir: str | os.PathLike[str] | None) -> Path:
    key = f"data.options.{option}"
    if not isinstance(value, str | os.PathLike) or not os.fspath(value).strip():
        raise ValueError(f"{key} must be the path of a .npy file of labels, got {value!r}")
    path = absolute_path(value, base_dir=base_dir)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{key}: '{path}' must be a .npy file of labels [N]")
    if not path.is_file():
        raise FileNotFoundError(f"{key}: file not found: '{path}'")
    return path


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
        check_npz_members(path, names, key=key)
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
            example = non_numeric_example(table[column])
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
