"""Dataset registry: built-in benchmarks and user files, loaded as one :class:`Dataset` type.

:func:`load_dataset` is the single entry point the study engine uses (``[data]`` in a study file):

- built-ins (:data:`BUILTIN_DATASETS`): ``mnist1d`` (generated offline by the ``mnist1d``
  package, 4000/1000 examples ``(40,)``), ``digits`` (scikit-learn, 1797 images ``(8, 8)``) and
  ``synthetic`` (:func:`sklearn.datasets.make_classification`, clean labels), and scikit-learn's
  small tabular sets ``iris``, ``wine`` and ``breast_cancer``; see :mod:`smoothflip.data.builtin`.
- user files (:data:`SOURCE_FILE_TYPES`): ``.npz`` with arrays ``x`` / ``y`` (optionally
  ``x_test`` / ``y_test``), ``.csv`` / ``.parquet`` with a ``label_column``, or ``.npy`` image
  arrays with a ``labels`` option; see :mod:`smoothflip.data.files`.
- image folders: a folder with one folder of image files per class, or with ``train/`` and
  ``test/`` folders of that layout (decoded with Pillow; options ``resize``, ``grayscale``,
  ``extensions``); see :mod:`smoothflip.data.images`.
- data in memory (arrays, a DataFrame, a torch Dataset), named ``"memory:<kind>@<hash>"`` by a
  study made in Python; see :mod:`smoothflip.data.memory`.

The test split is fixed by ``split_seed`` (stratified), never by a run's seed, so every run of a
study is scored on the same examples. Labels become ``0..K-1`` in the sorted order of the unique
training labels; the original values are kept as ``class_names``.

**Standardization.** With ``standardize=True`` (the default) *tabular* data — ``synthetic``,
``.csv``, ``.parquet`` and ``.npz`` files whose ``x`` is ``[N, d]`` — is z-scored feature by
feature with the *training* mean and standard deviation (a constant feature is only centred).
User images — image folders, ``.npy`` and ``.npz`` image arrays, stored ``[N, C, H, W]`` — are
z-scored channel by channel with the training split's statistics. The built-ins keep their own
preprocessing: ``digits`` stays in ``[0, 1]`` and ``mnist1d`` is standardized by its generator.

Example:
    >>> from smoothflip.data import load_dataset
    >>> ds = load_dataset("synthetic", options={"n_samples": 400, "n_classes": 3}, test_fraction=0.25)
    >>> ds
    Dataset(name='synthetic', train=300, test=100, input_shape=(20,), num_classes=3)
    >>> ds.x_train.dtype, ds.y_train.dtype, ds.class_names
    (dtype('float32'), dtype('int64'), ('0', '1', '2'))
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from smoothflip._memory import is_memory
from smoothflip._validation import check_int, check_range
from smoothflip.data._common import BUILTIN_DATASETS, FILE_TYPES, MAX_SEED, SOURCE_FILE_TYPES, Dataset
from smoothflip.data.builtin import load_builtin
from smoothflip.data.files import absolute_path, load_file, resolve_path
from smoothflip.data.images import load_image_folder
from smoothflip.data.memory import load_memory

__all__ = ["BUILTIN_DATASETS", "FILE_TYPES", "SOURCE_FILE_TYPES", "Dataset", "load_dataset"]

_SOURCES_HINT = f"or a path to a {', '.join(SOURCE_FILE_TYPES)} file or to a folder of images"


def load_dataset(
    source: str | os.PathLike[str],
    *,
    options: Mapping[str, Any] | None = None,
    label_column: str | None = None,
    test_source: str | os.PathLike[str] | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
    base_dir: str | os.PathLike[str] | None = None,
) -> Dataset:
    """Load a built-in dataset, a user file or an image folder as a :class:`Dataset` with a fixed split.

    Args:
        source: ``"mnist1d"``, ``"digits"``, ``"synthetic"``, ``"iris"``, ``"wine"``,
            ``"breast_cancer"``, a path to a ``.npz``, ``.csv``, ``.parquet`` or ``.npy`` file, or
            to a folder of images (one folder per class, or ``train/`` and ``test/`` folders of
            that layout).
        options: source-specific keys: ``mnist1d`` → ``num_samples`` (5000), ``train_split``
            (0.8), ``seed`` (42) and the generator's transform knobs; ``synthetic`` →
            ``n_samples``, ``n_features``, ``n_informative``, ``n_redundant``, ``n_classes``,
            ``n_clusters_per_class``, ``class_sep``, ``random_state``; ``.csv`` → ``sep``;
            ``.npz`` → ``layout`` (``"auto"`` | ``"as_saved"``); ``.npy`` → ``labels``,
            ``test_labels`` (paths of ``.npy`` label arrays); an image
            folder → ``resize`` ([H, W]), ``grayscale`` (true / false), ``extensions``.
            Unknown keys are refused with the list of allowed ones.
        label_column: the label column of a ``.csv`` / ``.parquet`` file (required there,
            refused elsewhere).
        test_source: a second file with the test examples (same kind and columns as ``source``),
            or a second folder of class folders for an image-folder ``source``.
        test_fraction: held-out share, in ``(0, 1)``, when the source has no test split of its own
            (``mnist1d``, files with ``x_test``, folders with ``train/`` and ``test/``, and
            ``test_source`` give one).
        split_seed: seed of the stratified train/test split, in ``[0, 2**32 - 1]``.
        standardize: z-score tabular features, and user images channel by channel, with training
            statistics (see the module docstring).
        base_dir: folder that relative paths resolve against (the study file's folder); ``None``
            means the working directory.

    Returns:
        The :class:`Dataset`: ``x_train`` ``[N_train, *input_shape]`` float32, ``y_train``
        ``[N_train]`` int64 in ``[0, K)``, the same for the test split, ``class_names`` (``K``).

    Raises:
        ValueError: a bad value; the one-line message names the key, the value and what is allowed
            (a :class:`~smoothflip.errors.DataError` for files and folders that cannot be used).
        TypeError: a value of the wrong kind.
        FileNotFoundError: ``source`` or ``test_source`` does not exist (the message gives the path).

    Example:
        >>> ds = load_dataset("digits", test_fraction=0.25, split_seed=0)
        >>> ds.x_train.shape, ds.x_test.shape, ds.input_shape
        ((1347, 8, 8), (450, 8, 8), (8, 8))
        >>> load_dataset("synthetic", options={"n_sample": 10})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: data.options: unknown key 'n_sample' for 'synthetic'; allowed: n_samples, n_features, ...
    """
    test_fraction = check_range(
        "data.test_fraction", test_fraction, low=0.0, high=1.0, low_open=True, high_open=True
    )
    split_seed = check_int("data.split_seed", split_seed, low=0, high=MAX_SEED)
    if not isinstance(standardize, bool):
        raise TypeError(f"data.standardize must be true or false, got {standardize!r}")
    source = _check_path_like("data.source", source)
    if label_column is not None and not isinstance(label_column, str):
        raise TypeError(f"data.label_column must be a column name (str), got {type(label_column).__name__}")
    if test_source is not None:
        test_source = _check_path_like("data.test_source", test_source)
    if base_dir is not None and not isinstance(base_dir, str | os.PathLike):
        raise TypeError(f"base_dir must be a path, got {type(base_dir).__name__}")
    if is_memory(source):  # data a Python session holds (smoothflip.data.memory)
        return load_memory(
            source,
            options=options,
            label_column=label_column,
            test_source=test_source,
            test_fraction=test_fraction,
            split_seed=split_seed,
            standardize=standardize,
        )

    if source in BUILTIN_DATASETS:
        if label_column is not None:
            raise ValueError(
                f"data.label_column: only .csv and .parquet sources have a label column; "
                f"{source!r} is a built-in dataset (got label_column={label_column!r})"
            )
        if test_source is not None:
            raise ValueError(
                f"data.test_source: only file sources take a separate test file; {source!r} is a "
                f"built-in dataset (got test_source={test_source!r})"
            )
        return load_builtin(
            source,
            options=options,
            test_fraction=test_fraction,
            split_seed=split_seed,
            standardize=standardize,
        )

    split = {"test_fraction": test_fraction, "split_seed": split_seed, "standardize": standardize}
    folder = absolute_path(source, base_dir=base_dir)
    if folder.is_dir():
        return load_image_folder(
            folder,
            test_path=_test_folder(folder, test_source, label_column, base_dir=base_dir),
            options=options,
            **split,
        )
    looks_like_path = bool(PurePath(source).suffix) or "/" in source or os.sep in source
    if not looks_like_path:
        close = difflib.get_close_matches(source.lower(), BUILTIN_DATASETS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"data.source: unknown dataset {source!r}{hint}; built-ins: {', '.join(BUILTIN_DATASETS)}, "
            f"{_SOURCES_HINT}"
        )
    path = resolve_path(source, base_dir=base_dir, key="data.source")
    test_path = None
    if test_source is not None:
        test_path = resolve_path(test_source, base_dir=base_dir, key="data.test_source")
    return load_file(
        path, test_path=test_path, options=options, label_column=label_column, base_dir=base_dir, **split
    )


def _test_folder(
    folder: Path,
    test_source: str | None,
    label_column: str | None,
    *,
    base_dir: str | os.PathLike[str] | None,
) -> Path | None:
    """The absolute ``test_source`` folder of an image-folder source (or ``None``), checked."""
    if label_column is not None:
        raise ValueError(
            f"data.label_column: only .csv and .parquet sources have a label column; '{folder}' is a folder "
            f"of images, labelled by their class folders (got label_column={label_column!r})"
        )
    if test_source is None:
        return None
    test_path = absolute_path(test_source, base_dir=base_dir)
    if not test_path.exists():
        raise FileNotFoundError(f"data.test_source: folder not found: '{test_path}'")
    if not test_path.is_dir():
        raise ValueError(
            f"data.test_source: '{test_path}' is not a folder; data.source '{folder}' is a folder of images, "
            f"so the test images must be a folder of class folders too"
        )
    if os.path.samefile(test_path, folder):
        raise ValueError(f"data.test_source: '{test_path}' is the data.source folder itself; give another")
    return test_path


def _check_path_like(key: str, value: Any) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a dataset name or a file path (str), got {type(value).__name__}")
    if not value.strip():
        raise ValueError(
            f"{key} must not be empty; built-ins: {', '.join(BUILTIN_DATASETS)}, {_SOURCES_HINT}"
        )
    return value
