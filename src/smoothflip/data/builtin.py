"""Built-in datasets: ``mnist1d`` (generated offline), ``digits`` (scikit-learn), ``synthetic`` and
scikit-learn's small tabular sets ``iris``, ``wine`` and ``breast_cancer``.

- ``mnist1d``: Greydanus's MNIST-1D, generated with the :mod:`mnist1d` package; 10 classes,
  examples ``(40,)``, its own train/test split (``test_fraction`` and ``split_seed`` do not apply),
  already standardized by the package (``standardize`` does not apply). Options
  (:data:`MNIST1D_DEFAULTS`): ``num_samples`` (rounded down to a multiple of 10: the package makes
  ``num_samples // 10`` examples per class), ``train_split``, ``seed`` (the data seed) and the
  package's transform knobs ``padding``, ``scale_coeff``, ``max_translation``,
  ``corr_noise_scale``, ``iid_noise_scale``, ``shear_scale``, ``shuffle_seq``, ``final_seq_length``.
- ``digits``: scikit-learn's 1797 handwritten digits, images ``(8, 8)`` scaled to ``[0, 1]`` (÷16),
  10 classes, split by ``test_fraction`` / ``split_seed``; images are not standardized. No options.
- ``iris`` (150 examples, 4 features, 3 classes), ``wine`` (178, 13, 3) and ``breast_cancer``
  (569, 30, 2): the tabular sets scikit-learn ships (no download; :data:`SKLEARN_TABULAR`), split by
  ``test_fraction`` / ``split_seed`` and z-scored with training statistics when ``standardize`` is
  set; class names are scikit-learn's (``setosa``, ``class_0``, ``malignant`` ...). No options.
- ``synthetic``: :func:`sklearn.datasets.make_classification` with the options in
  :data:`SYNTHETIC_DEFAULTS`, examples ``(n_features,)``, z-scored with training statistics when
  ``standardize`` is set. Labels are always clean (``flip_y=0``): adding label noise is
  smoothflip's job, done per run by :mod:`smoothflip.noise`, so that it is known and measured.

Generating ``mnist1d`` takes a few seconds, so each resolved option set is cached in process and,
unless switched off, on disk as a plain ``.npz`` under :func:`cache_dir`. The package seeds the
global ``random`` and ``numpy.random`` generators; both are saved and restored around the call, so
the caller's random streams are left exactly as they were (a lock serializes generations; another
thread drawing from the global generators *during* a generation would still see them moved).

Example:
    >>> ds = load_builtin("synthetic", options={"n_samples": 200, "n_classes": 2})
    >>> ds.x_train.shape, ds.x_test.shape, ds.class_names
    ((160, 20), (40, 20), ('0', '1'))
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
import tempfile
import threading
import zipfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from smoothflip._validation import check_int, check_range
from smoothflip.data._common import (
    BUILTIN_DATASETS,
    MAX_SEED,
    Dataset,
    check_options,
    finish,
    one_line,
)

__all__ = [
    "CACHE_ENV",
    "MNIST1D_DEFAULTS",
    "SKLEARN_TABULAR",
    "SYNTHETIC_DEFAULTS",
    "cache_dir",
    "clear_memory_cache",
    "load_builtin",
]

#: Environment variable naming the on-disk cache folder; ``off`` (or ``0``, ``false``, ``none``,
#: empty) switches the disk cache off.
CACHE_ENV = "SMOOTHFLIP_CACHE"

#: ``mnist1d`` options and their defaults (those of ``mnist1d.data.get_dataset_args()``).
MNIST1D_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "num_samples": 5000,
        "train_split": 0.8,
        "seed": 42,
        "padding": (36, 60),
        "scale_coeff": 0.4,
        "max_translation": 48,
        "corr_noise_scale": 0.25,
        "iid_noise_scale": 2e-2,
        "shear_scale": 0.75,
        "shuffle_seq": False,
        "final_seq_length": 40,
    }
)

#: ``synthetic`` options and their defaults, passed to :func:`sklearn.datasets.make_classification`.
SYNTHETIC_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "n_samples": 2000,
        "n_features": 20,
        "n_informative": 10,
        "n_redundant": 2,
        "n_classes": 4,
        "n_clusters_per_class": 1,
        "class_sep": 1.0,
        "random_state": 0,
    }
)

#: The small tabular sets scikit-learn ships, by source name: the ``sklearn.datasets`` loader of each.
SKLEARN_TABULAR: Mapping[str, str] = MappingProxyType(
    {"iris": "load_iris", "wine": "load_wine", "breast_cancer": "load_breast_cancer"}
)

_CACHE_FORMAT = 1
_CACHE_ARRAYS = ("x", "y", "x_test", "y_test")
_OFF = frozenset({"", "0", "off", "false", "none", "no"})
_GLOBAL_RNG_LOCK = threading.Lock()


def load_builtin(
    name: str,
    *,
    options: Mapping[str, Any] | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
) -> Dataset:
    """Load a built-in dataset.

    Prefer :func:`smoothflip.data.load_dataset`, which also checks ``test_fraction`` and
    ``split_seed``; this function assumes they are valid.

    Args:
        name: one of :data:`~smoothflip.data.BUILTIN_DATASETS`.
        options: source-specific keys (see the module docstring); unknown keys are refused.
        test_fraction: held-out share for ``digits`` and ``synthetic``; ``mnist1d`` has its own split.
        split_seed: seed of the stratified split for ``digits`` and ``synthetic``.
        standardize: z-score ``synthetic`` features with training statistics; images and
            ``mnist1d`` are left as they are.

    Returns:
        The :class:`~smoothflip.data.Dataset`: ``mnist1d`` ``[N, 40]``, ``digits`` ``[N, 8, 8]``,
        ``synthetic`` ``[N, n_features]``, ``iris`` ``[N, 4]``, ``wine`` ``[N, 13]``, ``breast_cancer``
        ``[N, 30]``.

    Example:
        >>> ds = load_builtin("digits", test_fraction=0.25, split_seed=1)
        >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
        ((1347, 8, 8), (450, 8, 8), 10)
    """
    if name == "mnist1d":
        return _load_mnist1d(options)
    if name == "digits":
        return _load_digits(options, test_fraction=test_fraction, split_seed=split_seed)
    if name == "synthetic":
        return _load_synthetic(
            options, test_fraction=test_fraction, split_seed=split_seed, standardize=standardize
        )
    if name in SKLEARN_TABULAR:
        return _load_sklearn_tabular(
            name, options, test_fraction=test_fraction, split_seed=split_seed, standardize=standardize
        )
    raise ValueError(
        f"data.source: unknown built-in dataset {name!r}; built-ins: {', '.join(BUILTIN_DATASETS)}"
    )


# --------------------------------------------------------------------------------------------------
# digits and synthetic
# --------------------------------------------------------------------------------------------------


def _load_digits(options: Mapping[str, Any] | None, *, test_fraction: float, split_seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    check_options(options, (), source="digits")
    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).reshape(-1, 8, 8)
    return finish(
        name="digits",
        x=x,
        y=np.asarray(bunch.target, dtype=np.int64),
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=False,
        what="'digits'",
    )


def _load_synthetic(
    options: Mapping[str, Any] | None, *, test_fraction: float, split_seed: int, standardize: bool
) -> Dataset:
    from sklearn.datasets import make_classification

    opts = {**SYNTHETIC_DEFAULTS, **check_options(options, tuple(SYNTHETIC_DEFAULTS), source="synthetic")}
    lows = {"n_samples": 1, "n_features": 1, "n_informative": 1, "n_redundant": 0, "n_classes": 2}
    lows |= {"n_clusters_per_class": 1, "random_state": 0}
    for key, low in lows.items():
        high = MAX_SEED if key == "random_state" else None
        opts[key] = check_int(f"data.options.{key}", opts[key], low=low, high=high)
    opts["class_sep"] = check_range("data.options.class_sep", opts["class_sep"], low=0.0)
    try:
        x, y = make_classification(**opts, n_repeated=0, flip_y=0.0, shuffle=True)
    except ValueError as exc:
        raise ValueError(f"data.options: impossible combination for 'synthetic': {one_line(exc)}") from None
    return finish(
        name="synthetic",
        x=x,
        y=y,
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=standardize,
        what="'synthetic'",
    )


def _load_sklearn_tabular(
    name: str, options: Mapping[str, Any] | None, *, test_fraction: float, split_seed: int, standardize: bool
) -> Dataset:
    import sklearn.datasets

    check_options(options, (), source=name)
    bunch = getattr(sklearn.datasets, SKLEARN_TABULAR[name])()
    names = [str(n) for n in bunch.target_names]
    return finish(
        name=name,
        x=np.asarray(bunch.data, dtype=np.float64),
        y=np.asarray([names[int(t)] for t in bunch.target]),
        test_fraction=test_fraction,
        split_seed=split_seed,
        standardize=standardize,
        what=repr(name),
        feature_names=[str(f) for f in bunch.feature_names],
    )


# --------------------------------------------------------------------------------------------------
# mnist1d
# --------------------------------------------------------------------------------------------------


def cache_dir() -> Path | None:
    """The folder of the on-disk ``mnist1d`` cache, or ``None`` when it is switched off.

    ``$SMOOTHFLIP_CACHE`` if set (``off``, ``0``, ``false``, ``none`` or empty switch the disk cache
    off), else ``$XDG_CACHE_HOME/smoothflip``, else ``~/.cache/smoothflip``.
    """
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    if base:
        return Path(base) / "smoothflip"
    try:
        return Path.home() / ".cache" / "smoothflip"
    except RuntimeError:  # no home directory to be found
        return None


def clear_memory_cache() -> None:
    """Forget the ``mnist1d`` arrays cached in this process (files on disk stay)."""
    _mnist1d_arrays.cache_clear()


def _load_mnist1d(options: Mapping[str, Any] | None) -> Dataset:
    resolved = _resolve_mnist1d(options)
    x, y, x_test, y_test = _mnist1d_arrays(tuple(resolved.items()))
    return finish(  # copies the cached (read-only) arrays
        name="mnist1d",
        x=x,
        y=y,
        x_test=x_test,
        y_test=y_test,
        test_fraction=0.5,  # unused: mnist1d brings its own split
        split_seed=0,
        standardize=False,
        what="'mnist1d'",
        test_what="the test split of 'mnist1d'",
    )


def _resolve_mnist1d(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every ``mnist1d`` option, checked and normalized (so equal requests share a cache entry)."""
    opts = {**MNIST1D_DEFAULTS, **check_options(options, tuple(MNIST1D_DEFAULTS), source="mnist1d")}

    def key(name: str) -> str:
        return f"data.options.{name}"

    out: dict[str, Any] = {}
    out["num_samples"] = check_int(key("num_samples"), opts["num_samples"], low=10)
    out["train_split"] = check_range(
        key("train_split"), opts["train_split"], low=0.0, high=1.0, low_open=True, high_open=True
    )
    out["seed"] = check_int(key("seed"), opts["seed"], low=0, high=MAX_SEED)
    padding = opts["padding"]
    if isinstance(padding, str | bytes) or not isinstance(padding, Sequence) or len(padding) != 2:
        raise TypeError(f"{key('padding')} must be a pair [low, high] of ints, got {padding!r}")
    low = check_int(key("padding") + "[0]", padding[0], low=0)
    out["padding"] = (low, check_int(key("padding") + "[1]", padding[1], low=low))
    out["max_translation"] = check_int(key("max_translation"), opts["max_translation"], low=1)
    for name in ("scale_coeff", "corr_noise_scale", "iid_noise_scale", "shear_scale"):
        out[name] = check_range(key(name), opts[name], low=0.0)
    if not isinstance(opts["shuffle_seq"], bool | np.bool_):
        raise TypeError(f"{key('shuffle_seq')} must be true or false, got {opts['shuffle_seq']!r}")
    out["shuffle_seq"] = bool(opts["shuffle_seq"])
    out["final_seq_length"] = check_int(key("final_seq_length"), opts["final_seq_length"], low=1)
    total = 10 * (out["num_samples"] // 10)
    n_train = int(total * out["train_split"])
    if n_train < 1 or n_train >= total:
        raise ValueError(
            f"{key('train_split')}: {out['train_split']:g} of {total} examples leaves "
            f"{n_train} train / {total - n_train} test; both must be non-empty"
        )
    return {name: out[name] for name in MNIST1D_DEFAULTS}


@functools.lru_cache(maxsize=8)
def _mnist1d_arrays(key: tuple[tuple[str, Any], ...]) -> tuple[np.ndarray, ...]:
    """``(x [N, L] float32, y [N] int64, x_test, y_test)``, read-only, for one resolved option set."""
    resolved = dict(key)
    meta = json.dumps(
        {"format": _CACHE_FORMAT, "mnist1d": _mnist1d_version(), "options": resolved}, sort_keys=True
    )
    directory = cache_dir()
    path = None
    if directory is not None:
        path = directory / f"mnist1d-{hashlib.sha256(meta.encode()).hexdigest()[:24]}.npz"
    arrays = _read_cache(path, meta, resolved) if path is not None else None
    if arrays is None:
        arrays = _generate_mnist1d(resolved)
        if path is not None:
            _write_cache(path, arrays, meta)
    for arr in arrays:
        arr.setflags(write=False)
    return arrays


def _mnist1d_version() -> str:
    try:
        return metadata.version("mnist1d")
    except metadata.PackageNotFoundError:
        return "unknown"


def _generate_mnist1d(resolved: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:
        raise ImportError(
            f"data.source: 'mnist1d' needs the mnist1d package (pip install mnist1d): {one_line(exc)}"
        ) from exc
    args = get_dataset_args()  # keeps the package's other fields (template_len, url)
    for name, value in resolved.items():
        setattr(args, name, list(value) if name == "padding" else value)
    # mnist1d seeds the global RNGs (random.seed, np.random.seed): give the caller's states back.
    with _GLOBAL_RNG_LOCK:
        python_state = random.getstate()
        numpy_state = np.random.get_state()  # noqa: NPY002 (restoring, not drawing)
        try:
            data = make_dataset(args)
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)  # noqa: NPY002
    return (
        np.asarray(data["x"], dtype=np.float32),
        np.asarray(data["y"], dtype=np.int64),
        np.asarray(data["x_test"], dtype=np.float32),
        np.asarray(data["y_test"], dtype=np.int64),
    )


def _read_cache(path: Path, meta: str, resolved: Mapping[str, Any]) -> tuple[np.ndarray, ...] | None:
    """The cached arrays, or ``None`` when the file is missing, unreadable or not what we asked for."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if str(archive["meta"]) != meta:
                return None
            x, y, x_test, y_test = (archive[name] for name in _CACHE_ARRAYS)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    total = 10 * (resolved["num_samples"] // 10)
    n_train = int(total * resolved["train_split"])
    length = resolved["final_seq_length"]
    expected = {
        "x": (x, np.float32, (n_train, length)),
        "y": (y, np.int64, (n_train,)),
        "x_test": (x_test, np.float32, (total - n_train, length)),
        "y_test": (y_test, np.int64, (total - n_train,)),
    }
    for arr, dtype, shape in expected.values():
        if arr.dtype != dtype or arr.shape != shape:
            return None
    return x, y, x_test, y_test


def _write_cache(path: Path, arrays: tuple[np.ndarray, ...], meta: str) -> None:
    """Write atomically (temp file + ``os.replace``); a cache that cannot be written is no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    except OSError:
        return
    replaced = False
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, meta=np.array(meta), **dict(zip(_CACHE_ARRAYS, arrays, strict=True)))
        os.replace(tmp, path)
        replaced = True
    except OSError:
        pass
    finally:
        if not replaced:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
