"""The :class:`Dataset` container and the checks every source shares.

Each source (built-in or user file) produces raw arrays; :func:`finish` turns them into a validated
:class:`Dataset`: features as finite float32, labels encoded ``0..K-1`` from the sorted unique
training labels, a stratified train/test split where the source has none, and z-scoring of tabular
features with training statistics (channel by channel for images). Every error is one line that
names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Sources that ship with smoothflip.
BUILTIN_DATASETS: tuple[str, ...] = ("mnist1d", "digits", "synthetic", "iris", "wine", "breast_cancer")

#: File types of features-and-labels files (lower-case suffixes): what a data source, a label-flip
#: file command and a defence file command read.
FILE_TYPES: tuple[str, ...] = (".npz", ".csv", ".parquet")

#: File types a data source may have: :data:`FILE_TYPES` and ``.npy`` image arrays (a data source
#: may also be a folder of images, see :mod:`smoothflip.data.images`).
SOURCE_FILE_TYPES: tuple[str, ...] = (*FILE_TYPES, ".npy")

#: ``split_seed`` and data seeds go to NumPy's legacy seeding, which accepts ``[0, 2**32 - 1]``.
MAX_SEED = 2**32 - 1

_MAX_LISTED = 10  # how many offending labels / columns an error message lists


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset with a fixed train/test split.

    Attributes:
        name: display name: ``"mnist1d"``, ``"digits"``, ``"synthetic"`` or the file's name.
        x_train: ``[N_train, *input_shape]`` float32, finite.
        y_train: ``[N_train]`` int64 class indices in ``[0, K)``.
        x_test: ``[N_test, *input_shape]`` float32, finite.
        y_test: ``[N_test]`` int64 class indices in ``[0, K)``.
        class_names: ``K`` display names; ``class_names[i]`` is the original label of class ``i``.
        input_shape: shape of one example: ``(40,)`` mnist1d, ``(8, 8)`` digits, ``(d,)`` tabular.

    The dataclass is frozen (fields cannot be reassigned) and checks its own invariants on
    construction; treat the arrays as read-only, :meth:`fingerprint` hashes their contents.
    Equality is identity: compare fingerprints to compare contents.

    Example:
        >>> import numpy as np
        >>> ds = Dataset(
        ...     name="toy",
        ...     x_train=np.zeros((4, 2), np.float32),
        ...     y_train=np.array([0, 1, 0, 1]),
        ...     x_test=np.ones((2, 2), np.float32),
        ...     y_test=np.array([1, 0]),
        ...     class_names=("cat", "dog"),
        ...     input_shape=(2,),
        ... )
        >>> ds.num_classes, len(ds.fingerprint())
        (2, 64)
        >>> ds
        Dataset(name='toy', train=4, test=2, input_shape=(2,), num_classes=2)
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Dataset.name must be a non-empty str, got {self.name!r}")
        if isinstance(self.class_names, str) or not isinstance(self.class_names, Sequence):
            raise TypeError(
                f"Dataset.class_names must be a tuple of str, got {type(self.class_names).__name__}"
            )
        names = tuple(self.class_names)
        if not all(isinstance(c, str) for c in names):
            raise TypeError("Dataset.class_names must hold only str")
        if len(names) < 2:
            raise ValueError(f"Dataset.class_names must name at least 2 classes, got {len(names)}")
        if len(set(names)) != len(names):
            raise ValueError(f"Dataset.class_names must be distinct, got {names!r}")
        try:
            shape = tuple(int(d) for d in self.input_shape)
        except (TypeError, ValueError):
            raise TypeError(
                f"Dataset.input_shape must be a tuple of ints, got {self.input_shape!r}"
            ) from None
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "input_shape", shape)
        k = len(names)
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype != np.float32:
                raise TypeError(f"Dataset.x_{split} must be a float32 numpy array, got {_describe(x)}")
            if not isinstance(y, np.ndarray) or y.dtype != np.int64:
                raise TypeError(f"Dataset.y_{split} must be an int64 numpy array, got {_describe(y)}")
            if x.shape[1:] != shape or x.shape[0] == 0:
                raise ValueError(
                    f"Dataset.x_{split} must have shape [N > 0, *input_shape] with input_shape={shape}, "
                    f"got {x.shape}"
                )
            if y.shape != (x.shape[0],):
                raise ValueError(f"Dataset.y_{split} must have shape ({x.shape[0]},), got {y.shape}")
            if y.min() < 0 or y.max() >= k:
                raise ValueError(
                    f"Dataset.y_{split} must hold class indices in [0, {k}), "
                    f"found {int(y.min())}..{int(y.max())}"
                )
            if not np.isfinite(x).all():
                raise ValueError(f"Dataset.x_{split} must be finite")

    @property
    def num_classes(self) -> int:
        """``K``, the number of classes."""
        return len(self.class_names)

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the four arrays (dtype, shape and bytes) and the class names.

        Two datasets with the same contents have the same fingerprint whatever their ``name``;
        changing one label, one feature value or one class name changes it. Use it for
        provenance and run ids.
        """
        digest = hashlib.sha256(b"smoothflip.Dataset/1\0")
        for field in ("x_train", "y_train", "x_test", "y_test"):
            arr = np.ascontiguousarray(getattr(self, field))
            digest.update(f"{field}|{arr.dtype.str}|{arr.shape}\0".encode())
            digest.update(arr.view(np.uint8).reshape(-1))
        digest.update(json.dumps(list(self.class_names), ensure_ascii=False).encode())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


# --------------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------------


def check_options(
    options: Mapping[str, Any] | None, allowed: Sequence[str], *, source: str
) -> dict[str, Any]:
    """Return ``options`` as a dict after refusing keys that ``source`` does not know.

    Raises:
        TypeError: ``options`` is not a mapping.
        ValueError: an unknown key; the message lists the allowed ones.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(
            f"data.options must be a table of option names to values, got {type(options).__name__}"
        )
    for key in options:
        if key not in allowed:
            listed = ", ".join(allowed) if allowed else "none (this source takes no options)"
            raise ValueError(f"data.options: unknown key {key!r} for {source!r}; allowed: {listed}")
    return dict(options)


# --------------------------------------------------------------------------------------------------
# features and labels
# --------------------------------------------------------------------------------------------------


def as_features(x: Any, *, what: str, feature_names: Sequence[str] | None = None) -> np.ndarray:
    """Return ``x`` as a fresh float32 array ``[N, *input_shape]`` or raise naming ``what``.

    A 1-D ``x`` is read as one feature per example (``[N, 1]``). NaN and inf are refused with
    their count and the columns (or the first position) where they occur.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError(f"data: {what} must be an array [N, ...] of examples, got a scalar")
    if x.ndim == 1:
        x = x[:, None]
    if x.dtype.kind not in "biuf":
        raise ValueError(f"data: {what} must be numeric (bool, int or float), got dtype {x.dtype}")
    if any(d == 0 for d in x.shape[1:]):
        raise ValueError(f"data: {what} has no features: shape {x.shape}")
    if x.dtype.kind == "f":
        _check_finite(x, what=what, feature_names=feature_names)
    with np.errstate(over="ignore"):
        out = x.astype(np.float32)
    if x.dtype.kind == "f" and x.dtype.itemsize > 4 and not np.isfinite(out).all():
        biggest = float(np.abs(x).max())
        raise ValueError(
            f"data: {what} holds values too large for float32 (largest |x| = {biggest:g} > 3.4e38); "
            f"rescale them"
        )
    return out


def _check_finite(x: np.ndarray, *, what: str, feature_names: Sequence[str] | None) -> None:
    finite = np.isfinite(x)
    if finite.all():
        return
    bad = ~finite
    n_bad = int(bad.sum())
    n_nan = int(np.isnan(x).sum())
    if x.ndim == 2:
        per_column = bad.sum(axis=0)
        columns = np.flatnonzero(per_column)
        if feature_names is None:
            names = [f"feature {j}" for j in columns[:_MAX_LISTED]]
        else:
            names = [repr(feature_names[j]) for j in columns[:_MAX_LISTED]]
        listed = ", ".join(f"{name} ({int(per_column[j])})" for name, j in zip(names, columns, strict=False))
        more = f" and {len(columns) - _MAX_LISTED} more" if len(columns) > _MAX_LISTED else ""
        where = f" in column{'s' if len(columns) > 1 else ''} {listed}{more}"
    else:
        first = np.argwhere(bad)[0]
        where = f", first at example {int(first[0])}, position {tuple(int(i) for i in first[1:])}"
    raise ValueError(
        f"data: {what} has {n_bad} non-finite feature value{'s' if n_bad > 1 else ''} "
        f"({n_nan} NaN, {n_bad - n_nan} inf){where}; impute or drop them first"
    )


def as_labels(y: Any, *, what: str) -> np.ndarray:
    """Return ``y`` as a 1-D array of int64, bool or str labels, or raise naming ``what``.

    Integer-valued floats become int64; bytes become str. Any other dtype is refused.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"data: {what} must be a 1-D array of labels [N], got shape {y.shape}")
    kind = y.dtype.kind
    if kind in "bU":
        return y.copy()
    if kind == "S":
        try:
            return y.astype(str)
        except UnicodeDecodeError:
            raise ValueError(
                f"data: {what} holds bytes labels that are not ASCII; save them as str"
            ) from None
    if kind in "iu":
        if kind == "u" and y.size and int(y.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"data: {what} holds labels larger than int64 allows")
        return y.astype(np.int64)
    if kind == "f":
        finite = np.isfinite(y)
        if not finite.all():
            raise ValueError(f"data: {what} has {int((~finite).sum())} missing (NaN) or infinite labels")
        fractional = y != np.round(y)
        if fractional.any() or (y.size and float(np.abs(y).max()) >= 2.0**63):
            example = float(y[fractional][0]) if fractional.any() else float(np.abs(y).max())
            raise ValueError(f"data: {what} must hold integer or string labels, found the number {example!r}")
        return y.astype(np.int64)
    raise ValueError(f"data: {what} must hold integer or string labels, got dtype {y.dtype}")


def format_label(value: Any) -> str:
    """A label as users wrote it: strings quoted, numbers bare."""
    if isinstance(value, (str, np.str_)):
        return repr(str(value))
    if isinstance(value, np.generic):
        return repr(value.item())
    return repr(value)


def _format_labels(values: np.ndarray) -> str:
    listed = ", ".join(format_label(v) for v in values[:_MAX_LISTED])
    more = f" and {len(values) - _MAX_LISTED} more" if len(values) > _MAX_LISTED else ""
    return listed + more


def _label_kind(y: np.ndarray) -> str:
    return {"b": "booleans", "i": "integers", "U": "strings"}[y.dtype.kind]


# --------------------------------------------------------------------------------------------------
# split, encode, standardize
# --------------------------------------------------------------------------------------------------


def stratified_split(
    y: np.ndarray, *, test_fraction: float, split_seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of a stratified split of ``y`` fixed by ``split_seed``.

    Raises a one-line ``ValueError`` when a class has fewer than 2 examples or when the split
    sizes cannot hold one example of every class.
    """
    from sklearn.model_selection import train_test_split

    classes, counts = np.unique(y, return_counts=True)
    _require_two_classes(classes, what=what, rows=len(y))
    rare = counts < 2
    if rare.any():
        listed = _format_labels(classes[rare])
        raise ValueError(
            f"data: {what} has class(es) {listed} with only 1 example; a stratified train/test split "
            f"needs at least 2 per class — add examples, drop the class or give data.test_source"
        )
    n = len(y)
    k = len(classes)
    n_test = math.ceil(test_fraction * n)  # the rounding scikit-learn uses
    n_train = n - n_test
    if n_test < k or n_train < k:
        raise ValueError(
            f"data.test_fraction: {test_fraction:g} of the {n} examples in {what} gives {n_train} train / "
            f"{n_test} test examples, but a stratified split of {k} classes needs at least {k} in each; "
            f"change test_fraction or add examples"
        )
    try:
        train, test = train_test_split(
            np.arange(n), test_size=test_fraction, random_state=split_seed, shuffle=True, stratify=y
        )
    except ValueError as exc:  # a case the checks above did not foresee
        raise ValueError(f"data.test_fraction: cannot split {what}: {one_line(exc)}") from None
    return np.asarray(train), np.asarray(test)


def _require_two_classes(classes: np.ndarray, *, what: str, rows: int | None = None) -> None:
    raise_unless_two_classes(classes, what=f"data: {what}", rows=rows)


def raise_unless_two_classes(classes: np.ndarray, *, what: str, rows: int | None = None) -> None:
    """Raise a one-line ``ValueError`` saying which single class (or how few rows) ``what`` holds.

    Example:
        >>> raise_unless_two_classes(np.array([0]), what="'a.csv'", rows=1)
        Traceback (most recent call last):
        ...
        ValueError: 'a.csv' holds only 1 row (of class 0); at least 2 rows of 2 different classes are needed
    """
    if len(classes) >= 2:
        return
    if rows is not None and rows < 2:
        held = "no rows" if rows == 0 else f"only 1 row (of class {_format_labels(classes)})"
        raise ValueError(f"{what} holds {held}; at least 2 rows of 2 different classes are needed")
    if not len(classes):
        raise ValueError(f"{what} holds no labels; at least 2 different classes are needed")
    raise ValueError(
        f"{what}: every label is the same class, {_format_labels(classes)}; at least 2 different "
        "classes are needed"
    )


def non_numeric_example(column: Any) -> str:
    """``", e.g. '4x' in row 2"``: the first value of a pandas column that is not a number, or ``""``."""
    import pandas as pd

    present = column.dropna()
    if not len(present):
        return ""
    numbers = pd.to_numeric(present.astype(str), errors="coerce")
    bad = np.flatnonzero(numbers.isna().to_numpy())
    at = int(bad[0]) if bad.size else 0
    row = int(np.flatnonzero(column.notna().to_numpy())[at]) + 1
    return f", e.g. {present.iloc[at]!r} in row {row}"


def encode_labels(
    y_train: np.ndarray, y_test: np.ndarray, *, what: str, test_what: str
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Map the sorted unique training labels to ``0..K-1``.

    Returns:
        ``(y_train [N_train] int64, y_test [N_test] int64, class_names)`` with
        ``class_names[i] = str(i-th sorted training label)``.
    """
    if y_train.dtype.kind != y_test.dtype.kind:
        raise ValueError(
            f"data: the labels of {what} are {_label_kind(y_train)} but those of {test_what} are "
            f"{_label_kind(y_test)}; use the same kind of label in both"
        )
    classes = np.unique(y_train)
    _require_two_classes(classes, what=f"the training split of {what}")
    unseen_mask = ~np.isin(y_test, classes)
    if unseen_mask.any():
        unseen = np.unique(y_test[unseen_mask])
        raise ValueError(
            f"data: {test_what} has labels never seen in training: {_format_labels(unseen)} "
            f"({int(unseen_mask.sum())} test examples); every test class must occur in the training data"
        )
    names = tuple(str(c.item()) if isinstance(c, np.generic) else str(c) for c in classes)
    return (
        np.searchsorted(classes, y_train).astype(np.int64),
        np.searchsorted(classes, y_test).astype(np.int64),
        names,
    )


def standardize_features(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score ``[N, d]`` features with the training mean and std (a constant feature keeps std 1).

    Statistics are computed in float64; the results are float32.
    """
    mean = x_train.mean(axis=0, dtype=np.float64)
    std = x_train.std(axis=0, dtype=np.float64)
    constant = np.ptp(x_train, axis=0) == 0
    mean[constant] = x_train[0, constant]
    std[constant] = 1.0

    def apply(x: np.ndarray) -> np.ndarray:
        return ((x.astype(np.float64) - mean) / std).astype(np.float32)

    return apply(x_train), apply(x_test)


def standardize_channels(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Z-score images ``[N, C, H, W]`` channel by channel with the training split's mean and std.

    Each channel's statistics pool all training pixels of that channel; a constant channel is only
    centred (std 1). Statistics are computed in float64; the results are float32.
    """
    axes = (0, *range(2, x_train.ndim))
    mean = x_train.mean(axis=axes, dtype=np.float64, keepdims=True)
    std = x_train.std(axis=axes, dtype=np.float64, keepdims=True)
    std[std == 0] = 1.0

    def apply(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / std).astype(np.float32)

    return apply(x_train), apply(x_test)


def finish(
    *,
    name: str,
    x: Any,
    y: Any,
    x_test: Any | None = None,
    y_test: Any | None = None,
    test_fraction: float,
    split_seed: int,
    standardize: bool,
    what: str,
    test_what: str | None = None,
    feature_names: Sequence[str] | None = None,
    per_channel: bool = False,
) -> Dataset:
    """Validate raw arrays from one source and build the :class:`Dataset`.

    Args:
        name: the dataset's display name.
        x: ``[N, ...]`` numeric features (a 1-D array is one feature per example).
        y: ``[N]`` integer, bool or string labels.
        x_test: ``[N_test, ...]`` features of the source's own test split, or ``None`` to split
            ``x`` / ``y`` stratified by ``test_fraction`` and ``split_seed``.
        y_test: ``[N_test]`` labels, given exactly when ``x_test`` is.
        test_fraction: share of examples held out when splitting, in ``(0, 1)``.
        split_seed: seed of the split.
        standardize: z-score with training statistics: every feature of tabular data ``[N, d]``,
            or every channel of images ``[N, C, H, W]`` with ``per_channel`` (callers pass
            ``False`` for other data).
        what: how messages name the source, e.g. ``"'/data/train.csv'"``.
        test_what: how messages name the test data when ``x_test`` is given.
        feature_names: ``d`` column names for messages about ``[N, d]`` features.
        per_channel: ``x`` holds images ``[N, C, H, W]``; standardize channel by channel.
    """
    x = as_features(x, what=what, feature_names=feature_names)
    y = as_labels(y, what=f"the labels of {what}")
    _check_lengths(x, y, what=what)
    if x_test is None:
        train, test = stratified_split(y, test_fraction=test_fraction, split_seed=split_seed, what=what)
        x, x_test, y, y_test = x[train], x[test], y[train], y[test]
        test_what = f"the test split of {what}"
    else:
        test_what = test_what or f"the test data of {what}"
        x_test = as_features(x_test, what=test_what, feature_names=feature_names)
        y_test = as_labels(y_test, what=f"the labels of {test_what}")
        _check_lengths(x_test, y_test, what=test_what)
        if x_test.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"data: examples in {test_what} have shape {x_test.shape[1:]} but training examples "
                f"have shape {x.shape[1:]}"
            )
    y, y_test, class_names = encode_labels(y, y_test, what=what, test_what=test_what)
    if standardize:
        x, x_test = (standardize_channels if per_channel else standardize_features)(x, x_test)
    return Dataset(
        name=name,
        x_train=np.ascontiguousarray(x),
        y_train=y,
        x_test=np.ascontiguousarray(x_test),
        y_test=y_test,
        class_names=class_names,
        input_shape=tuple(x.shape[1:]),
    )


def _check_lengths(x: np.ndarray, y: np.ndarray, *, what: str) -> None:
    if len(x) == 0 and len(y) == 0:
        raise ValueError(f"data: {what} holds no examples")
    if len(x) != len(y):
        raise ValueError(
            f"data: {what} has {len(x)} examples but {len(y)} labels; features and labels must have "
            f"the same length"
        )


def one_line(exc: BaseException) -> str:
    """An exception's message squeezed onto one line."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__
