"""In-memory data: NumPy arrays, a pandas DataFrame or a torch ``Dataset``, read exactly as files are.

A study made in Python may name its data by value instead of by path (``sf.Study(data=(x, y))``):

- **arrays**: ``(x, y)``, ``(x, y, x_test, y_test)`` or a mapping with ``x``, ``y`` (and
  ``x_test``, ``y_test``) — NumPy arrays or torch tensors, read as an ``.npz`` file holding them is
  (3-D and 4-D ``x`` as images, ``options = {"layout": "as_saved"}`` keeps them as they are);
- **a DataFrame** with a ``label_column``, every other column a numeric feature — read as a
  ``.parquet`` file holding it is;
- **a torch Dataset** of ``(x, y)`` pairs (a ``TensorDataset`` is read at once, any other is
  indexed ``0 .. len - 1``) — read as the arrays it holds.

:func:`memory_source` checks the data and turns it into raw arrays (labels must be integers,
booleans or strings: float labels are refused) and returns the reference that names it, with a
hash of its content (``"memory:arrays@3f2a…"``), so equal data gives the same study identity and
changed data another. :func:`load_memory` (what :func:`smoothflip.data.load_dataset` calls for such a
reference) then splits, encodes and standardizes it with the same code as the files, so a study of
arrays and the same study of an ``.npz`` file of those arrays train on bit-identical datasets.

Example:
    >>> import numpy as np
    >>> x, y = np.arange(40.0).reshape(20, 2), np.array([0, 1] * 10)
    >>> reference, entry = memory_source((x, y))
    >>> reference.startswith("memory:arrays@")
    True
    >>> from smoothflip._memory import register
    >>> register(reference, entry)
    >>> load_memory(reference, test_fraction=0.25)
    Dataset(name='arrays', train=15, test=5, input_shape=(2,), num_classes=2)
    >>> memory_source((x, y.astype(float)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: data.source: the labels y are floats (float64); labels must be integers or strings, ...
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from smoothflip._memory import PREFIX, Entry, lookup
from smoothflip.data._common import Dataset, check_options, finish
from smoothflip.data.files import NPZ_LAYOUTS, arrays_dataset
from smoothflip.errors import DataError

__all__ = ["DATA_KINDS", "is_memory_data", "load_memory", "memory_source"]

DATA_KINDS: Mapping[str, str] = {
    "arrays": "arrays",
    "dataframe": "DataFrame",
    "torch-dataset": "torch Dataset",
}
"""Kinds of in-memory data (as references name them) and their display names."""

_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "arrays": {"layout": "auto"},
    "dataframe": {},
    "torch-dataset": {"layout": "auto"},
}


def _is_torch_dataset(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.utils.data.Dataset)


def _is_frame(value: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def _is_array(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return isinstance(value, np.ndarray) or (torch is not None and isinstance(value, torch.Tensor))


def is_memory_data(value: Any) -> bool:
    """Whether ``value`` is data in memory: a tuple of 2 or 4 arrays, a mapping with arrays ``x`` and
    ``y``, a pandas DataFrame or a torch Dataset (not a path or a built-in dataset's name)."""
    if _is_frame(value) or _is_torch_dataset(value) or _is_array(value):
        return True
    if isinstance(value, tuple | list) and len(value) in (2, 4):
        return all(_is_array(v) or isinstance(v, list) for v in value) and any(_is_array(v) for v in value)
    return isinstance(value, Mapping) and "x" in value and "y" in value


# --------------------------------------------------------------------------- checking


def _array(value: Any, key: str, name: str) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key}: {name} is not an array ({type(value).__name__}: {err})") from None


def _features(value: Any, key: str, name: str) -> np.ndarray:
    x = _array(value, key, name)
    if x.ndim == 0:
        raise ValueError(f"{key}: {name} must be an array [N, ...] of examples, got a scalar")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{key}: {name} must hold numbers (bool, int or float), got dtype {x.dtype}")
    return x


def _labels(value: Any, key: str, name: str) -> np.ndarray:
    y = _array(value, key, name)
    if y.ndim != 1:
        raise ValueError(f"{key}: the labels {name} must be a 1-D array [N], got shape {y.shape}")
    if y.dtype.kind == "O":
        if not all(isinstance(v, str) for v in y.tolist()):
            raise ValueError(f"{key}: the labels {name} must be integers or strings, got Python objects")
        y = y.astype(str)
    if y.dtype.kind == "f":
        raise ValueError(
            f"{key}: the labels {name} are floats ({y.dtype}); labels must be integers or strings, "
            f"e.g. {name}.astype(int)"
        )
    if y.dtype.kind not in "biuUS":
        raise ValueError(f"{key}: the labels {name} must be integers or strings, got dtype {y.dtype}")
    return y


def _same_length(x: np.ndarray, y: np.ndarray, key: str, names: str) -> None:
    if len(x) != len(y):
        raise ValueError(
            f"{key}: {names} have different lengths ({len(x)} examples, {len(y)} labels); "
            "features and labels must have one row each per example"
        )
    if len(x) == 0:
        raise ValueError(f"{key}: {names} hold no examples")


def _arrays(value: Any, key: str) -> dict[str, np.ndarray]:
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in ("x", "y", "x_test", "y_test")]
        if unknown:
            raise ValueError(
                f"{key}: unknown array(s) {', '.join(map(repr, unknown))}; allowed: x, y, x_test, y_test"
            )
        given = dict(value)
    elif isinstance(value, tuple | list) and len(value) in (2, 4):
        given = dict(zip(("x", "y", "x_test", "y_test"), value, strict=False))
    elif _is_array(value):
        raise ValueError(f"{key}: give the features and the labels, (x, y), not one array")
    else:
        raise TypeError(
            f"{key}: expected arrays (x, y) or (x, y, x_test, y_test), got {type(value).__name__}"
        )
    if ("x_test" in given) != ("y_test" in given):
        raise ValueError(f"{key}: give both x_test and y_test, or neither")
    out = {"x": _features(given["x"], key, "x"), "y": _labels(given["y"], key, "y")}
    _same_length(out["x"], out["y"], key, "x and y")
    if "x_test" in given:
        out["x_test"] = _features(given["x_test"], key, "x_test")
        out["y_test"] = _labels(given["y_test"], key, "y_test")
        _same_length(out["x_test"], out["y_test"], key, "x_test and y_test")
    return out


def _frame(value: Any, key: str, label_column: str | None) -> dict[str, Any]:
    from smoothflip.data.files import _list_columns, _table_arrays

    table = value.rename(columns=str)
    if label_column is None:
        raise ValueError(
            f"data.label_column is required for a DataFrame; its columns: {_list_columns(table.columns)}"
        )
    duplicated = table.columns[table.columns.duplicated()]
    if len(duplicated):
        raise ValueError(f"{key}: the DataFrame has duplicate column names: {_list_columns(duplicated)}")
    x, y, features = _table_arrays(table, label_column=label_column, what="the DataFrame")
    return {"x": x, "y": _labels(y, key, f"in column {label_column!r}"), "features": features}


def _torch_dataset(value: Any, key: str) -> dict[str, np.ndarray]:
    tensors = getattr(value, "tensors", None)
    if isinstance(tensors, tuple) and len(tensors) == 2:
        x, y = tensors
    else:
        try:
            size = len(value)
        except TypeError:
            raise TypeError(f"{key}: a torch Dataset must have a length (__len__)") from None
        xs, ys = [], []
        for i in range(size):
            item = value[i]
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise ValueError(f"{key}: item {i} of the torch Dataset is not a pair (x, y)")
            xs.append(_array(item[0], key, f"x of item {i}"))
            label = item[1]
            ys.append(label.item() if hasattr(label, "item") else label)
        if not xs:
            raise ValueError(f"{key}: the torch Dataset holds no examples")
        shapes = {a.shape for a in xs}
        if len(shapes) > 1:
            raise ValueError(
                f"{key}: the examples of the torch Dataset have different shapes: {sorted(shapes)[:3]}"
            )
        x, y = np.stack(xs), np.asarray(ys)
    out = {"x": _features(x, key, "x"), "y": _labels(y, key, "y")}
    _same_length(out["x"], out["y"], key, "x and y")
    return out


def _normalize(value: Any, key: str, label_column: str | None) -> tuple[str, dict[str, Any]]:
    if _is_frame(value):
        return "dataframe", _frame(value, key, label_column)
    if label_column is not None:
        raise ValueError("data.label_column: only a DataFrame (or a .csv / .parquet file) has columns")
    if _is_torch_dataset(value):
        return "torch-dataset", _torch_dataset(value, key)
    return "arrays", _arrays(value, key)


def _digest(kind: str, raw: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(f"smoothflip.memory/1|{kind}\0".encode())
    for name in ("x", "y", "x_test", "y_test"):
        if name in raw:
            array = np.ascontiguousarray(raw[name])
            digest.update(f"{name}|{array.dtype.str}|{array.shape}\0".encode())
            digest.update(array.view(np.uint8).reshape(-1))
    digest.update(json.dumps(raw.get("features")).encode())
    return digest.hexdigest()


def memory_source(
    source: Any, *, test_source: Any | None = None, label_column: str | None = None
) -> tuple[str, Entry]:
    """Check in-memory data and name it: ``(reference, entry)`` for :func:`smoothflip._memory.register`.

    Args:
        source: arrays, a DataFrame or a torch Dataset (see the module docstring).
        test_source: the test examples, of the same kind (arrays ``(x_test, y_test)``, a DataFrame with
            the same columns, a torch Dataset); or None (the arrays' own ``x_test`` / ``y_test``, else a
            stratified split by ``test_fraction``).
        label_column: the label column of a DataFrame (required there, refused elsewhere).

    Raises:
        ValueError / TypeError: one line naming ``data.source`` or ``data.test_source`` and the
            problem (arrays of different lengths, float labels, a missing label column, ...).
    """
    kind, raw = _normalize(source, "data.source", label_column)
    if test_source is not None:
        test_kind, test = _normalize(test_source, "data.test_source", label_column)
        if test_kind != kind:
            raise ValueError(
                f"data.test_source: a {DATA_KINDS[test_kind]} beside data.source, a {DATA_KINDS[kind]}; "
                "give the test examples as the same kind of data"
            )
        if "x_test" in raw or "x_test" in test:
            raise ValueError("data.test_source: give the test examples once (x_test / y_test or test_source)")
        if raw.get("features") != test.get("features"):
            raise ValueError("data.test_source: the test DataFrame must have the same columns as data.source")
        raw.update(x_test=test["x"], y_test=test["y"])
    reference = f"{PREFIX}{kind}@{_digest(kind, raw)[:16]}"
    return reference, Entry(kind=kind, value=raw)


def load_memory(
    reference: str,
    *,
    options: Mapping[str, Any] | None = None,
    label_column: str | None = None,
    test_source: str | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    standardize: bool = True,
) -> Dataset:
    """The :class:`~smoothflip.data.Dataset` of the in-memory data ``reference`` names in this process.

    The data's own test examples are used when it has them; otherwise a stratified split by
    ``test_fraction`` and ``split_seed``. ``label_column`` was applied when the data was named.

    Raises:
        DataError: nothing in this process has that name (a study written from a Python session,
            run again from elsewhere).
    """
    entry = lookup(reference)
    if entry is None or entry.kind not in DATA_KINDS:
        raise DataError(
            f"data.source = {reference!r} names in-memory data of a Python session, which is not here; "
            "run the study from Python (sf.Study(data=...)), or save the data to a file (.npz, .parquet) "
            "and name its path"
        )
    if test_source is not None:
        raise ValueError("data.test_source: in-memory data carries its test examples itself")
    kind, raw = entry.kind, entry.value
    name = DATA_KINDS[kind]
    opts = {**_OPTIONS[kind], **check_options(options, tuple(_OPTIONS[kind]), source=name)}
    test_what = f"the test examples of the {name}" if "x_test" in raw else None
    split = {"test_fraction": test_fraction, "split_seed": split_seed, "standardize": standardize}
    if kind == "dataframe":
        return finish(
            name=name,
            x=raw["x"],
            y=raw["y"],
            x_test=raw.get("x_test"),
            y_test=raw.get("y_test"),
            what="the DataFrame",
            test_what=test_what,
            feature_names=raw["features"],
            **split,
        )
    if opts["layout"] not in NPZ_LAYOUTS:
        allowed = ", ".join(repr(v) for v in NPZ_LAYOUTS)
        raise ValueError(f"data.options.layout must be one of {allowed}, got {opts['layout']!r}")
    return arrays_dataset(
        name=name,
        x=raw["x"],
        y=raw["y"],
        x_test=raw.get("x_test"),
        y_test=raw.get("y_test"),
        as_saved=opts["layout"] == "as_saved",
        what=f"the {name}",
        test_what=test_what,
        **split,
    )
