"""From Python values to a study document: in-memory data and callables become references.

``sf.Study(...)`` takes what a study file holds, as Python values, plus what a file cannot hold:
arrays, a DataFrame or a torch Dataset as ``data``, a function or an ``nn.Module`` subclass as
``model``, a training function as ``trainer``. :func:`study_document` turns those into the
references of :mod:`smoothflip._memory` (registered for this process) and returns the plain
document that :func:`smoothflip.study.spec.parse_study` validates exactly as a study file.

A callable is named by its qualified name and a hash of its source text
(``"memory:__main__.make_net@3fa2b1c9d0e4"``). The hash sees the function's own text (a class: its
methods' text), not what the function reads at call time: a changed global variable, a changed
helper defined elsewhere, a changed default computed outside it. Put such values into the model's
options (``model={"factory": make_net, "width": 64}``), which are part of the study.

Example:
    >>> import numpy as np
    >>> from torch import nn
    >>> def linear(input_shape, num_classes):
    ...     return nn.Linear(input_shape[0], num_classes)
    >>> document, entries = study_document(
    ...     {"data": (np.zeros((4, 2)), np.array([0, 1, 0, 1])), "model": linear}
    ... )
    >>> document["data"]["source"].startswith("memory:arrays@"), document["model"]["factory"][:28]
    (True, 'memory:smoothflip.api.inputs')
    >>> study_document({"model": 42})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    smoothflip.errors.SpecError: model = 42: give a built-in model's name ("mlp"), a table of options, ...
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from smoothflip._memory import PREFIX, Entry, is_memory, lookup, register, system_module
from smoothflip.data.memory import is_memory_data, memory_source
from smoothflip.errors import SpecError, user_input

__all__ = [
    "callable_reference",
    "file_reference",
    "file_references",
    "memory_keys",
    "source_hash",
    "study_document",
]

_MODEL_HINT = (
    'give a built-in model\'s name ("mlp"), a table of options, a factory function '
    "(input_shape, num_classes, **options) -> nn.Module, or an nn.Module subclass"
)


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays as Python numbers and lists (``seeds=np.arange(5)``, ``lr=np.float32``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _code_text(code: types.CodeType) -> str:
    """A code object's instructions, names and constants (nested code included), without its file
    name and line numbers: the same function text gives the same result in every notebook cell."""
    consts = [_code_text(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    return repr((code.co_code.hex(), code.co_names, code.co_varnames, code.co_freevars, consts))


def _source_text(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):  # a class defined in a notebook (Python < 3.13), exec'd code
        pass
    if inspect.isclass(obj):
        bases = ", ".join(f"{b.__module__}.{b.__qualname__}" for b in obj.__bases__)
        parts = [f"class {obj.__qualname__}({bases})"]
        for name, member in sorted(vars(obj).items()):
            function = getattr(member, "__func__", member)  # staticmethod, classmethod
            if inspect.isfunction(function):
                parts.append(_source_text(function))
            elif not name.startswith("__"):
                parts.append(f"{name} = {member!r}")
        return "\n".join(parts)
    code = getattr(obj, "__code__", None)
    if isinstance(code, types.CodeType):
        return _code_text(code)
    raise TypeError(f"cannot read the source of {obj!r}")


def source_hash(obj: Any) -> str:
    """12 hex digits of the SHA-256 of a function's or class's source text.

    Example:
        >>> def f(x):
        ...     return x + 1
        >>> len(source_hash(f)), source_hash(f) == source_hash(f)
        (12, True)
    """
    return hashlib.sha256(_source_text(obj).encode("utf-8")).hexdigest()[:12]


def callable_reference(obj: Any, key: str, *, module_class: bool = True) -> tuple[str, Entry]:
    """``(reference, entry)`` naming a function or class by qualified name and source hash.

    Args:
        obj: a function, or a class (an ``nn.Module`` subclass, when ``module_class``).
        key: the study key it was given as (``"model.factory"``, ``"model.trainer"``), for messages.
        module_class: classes must be ``nn.Module`` subclasses (a model); False: no class allowed.

    Raises:
        SpecError: ``obj`` is not callable, an ``nn.Module`` instance, or another kind of callable
            (a ``functools.partial``, an object with ``__call__``).
    """
    from torch import nn

    if isinstance(obj, nn.Module):
        raise SpecError(
            f"{key}: an nn.Module instance ({type(obj).__name__}) cannot be trained afresh for every seed; "
            "give its class or a function that builds it"
        )
    if not callable(obj):
        raise SpecError(
            f"{key} = {obj!r}: not callable; {_MODEL_HINT if module_class else 'give a function'}"
        )
    is_class = inspect.isclass(obj)
    if is_class and not (module_class and issubclass(obj, nn.Module)):
        allowed = "a function or an nn.Module subclass" if module_class else "a function"
        raise SpecError(f"{key} = {obj.__qualname__}: a class that is not an nn.Module; give {allowed}")
    if not is_class and not inspect.isfunction(obj):
        raise SpecError(
            f"{key}: a {type(obj).__name__} cannot be named by its source; give a plain function "
            "(put fixed arguments into the model's options)"
        )
    try:
        digest = source_hash(obj)
    except TypeError as err:
        raise SpecError(f"{key}: {err}") from None
    reference = f"{PREFIX}{obj.__module__}.{obj.__qualname__}@{digest}"
    return reference, Entry(kind="callable", value=obj)


def _data_table(value: Any, entries: list[Entry]) -> dict[str, Any]:
    if isinstance(value, str | os.PathLike):
        table: dict[str, Any] = {"source": os.fspath(value)}
    elif is_memory_data(value) and not (isinstance(value, Mapping) and "source" in value):
        table = {"source": value}
    elif isinstance(value, Mapping):
        table = dict(value)
    else:
        raise SpecError(
            f"data = {type(value).__name__}: give a built-in dataset's name, a path, arrays (x, y), a "
            "DataFrame, a torch Dataset, or a table with source = one of those"
        )
    source, test = table.get("source"), table.get("test_source")
    if is_memory_data(source) or (test is not None and is_memory_data(test)):
        with user_input():
            reference, entry = memory_source(source, test_source=test, label_column=table.get("label_column"))
        register(reference, entry)
        entries.append(entry)
        table["source"] = reference
        table.pop("test_source", None)
    return {k: (v if k == "source" else _plain(v)) for k, v in table.items()}


def _model_table(value: Any, key: str, entries: list[Entry]) -> dict[str, Any]:
    from torch import nn

    if isinstance(value, str):
        table: dict[str, Any] = {"name": value}
    elif isinstance(value, Mapping):
        table = dict(value)
    elif isinstance(value, nn.Module) or callable(value):
        table = {"factory": value}
    else:
        raise SpecError(f"{key} = {value!r}: {_MODEL_HINT}")
    for name in ("factory", "trainer"):
        if name in table and not isinstance(table[name], str):
            reference, entry = callable_reference(
                table[name], f"{key}.{name}", module_class=name == "factory"
            )
            register(reference, entry)
            entries.append(entry)
            table[name] = reference
    return {k: _plain(v) for k, v in table.items()}


def study_document(settings: Mapping[str, Any]) -> tuple[dict[str, Any], list[Entry]]:
    """A study document (what a parsed study file holds) from Python settings.

    Args:
        settings: the study's top-level keys as :class:`~smoothflip.api.Study` takes them (None values
            are left out); besides the study file's keys, ``trainer`` (a training function, or a
            ``"file.py:function"`` reference) is ``[model] trainer``.

    Returns:
        ``(document, entries)``: the document with in-memory objects replaced by references, and the
        registered entries (whoever holds them keeps the references valid in this process).

    Raises:
        SpecError: a value that is neither what the study file takes nor in-memory data / a callable.
    """
    entries: list[Entry] = []
    document: dict[str, Any] = {}
    for key, value in settings.items():
        if value is None or key == "trainer":
            continue
        if key == "data":
            document[key] = _data_table(value, entries)
        elif key == "model":
            document[key] = _model_table(value, "model", entries)
        elif key == "distillation" and isinstance(value, Mapping) and "teacher_model" in value:
            teacher = _model_table(value["teacher_model"], "distillation.teacher_model", entries)
            document[key] = {**_plain(dict(value)), "teacher_model": teacher}
        else:
            document[key] = _plain(value)
    trainer = settings.get("trainer")
    if trainer is not None:
        model = document.setdefault("model", {})
        if "trainer" in model:
            raise SpecError("trainer: given twice (as trainer = and as model.trainer); give it once")
        if isinstance(trainer, str):
            model["trainer"] = trainer
        else:
            reference, entry = callable_reference(trainer, "trainer", module_class=False)
            register(reference, entry)
            entries.append(entry)
            model["trainer"] = reference
    return document, entries


def memory_keys(document: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The keys of ``document`` whose values are in-memory references, with the references
    (``{"data.source": "memory:arrays@...", ...}``)."""
    found: dict[str, str] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if is_memory(value):
            found[path] = value
        elif isinstance(value, Mapping):
            found.update(memory_keys(value, f"{path}."))
    return found


def file_reference(obj: Any, *, relative_to: str | os.PathLike[str]) -> str | None:
    """How a study file names the function or class ``obj``: ``"path/to/file.py:name"`` for one
    defined at the top of a ``.py`` file (the path relative to ``relative_to`` where possible),
    ``"package.module:name"`` for one of the standard library or an installed package; None for one
    a file cannot name: defined in ``__main__`` (a script, a notebook cell), inside a function, or in
    a module without a ``.py`` file.

    Example:
        >>> import json
        >>> file_reference(json.dumps, relative_to=".")
        'json:dumps'
        >>> def local(input_shape, num_classes): ...
        >>> file_reference(local, relative_to=".") is None  # not found at the top of its module
        True
    """
    module_name, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    module = sys.modules.get(module_name) if module_name and module_name != "__main__" else None
    if module is None or "<locals>" in qualname:
        return None
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not obj:  # not what the name finds in its module (redefined, or not at its top)
        return None
    if system_module(module):
        return f"{module_name}:{qualname}"
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py") or not Path(file).is_file():
        return None
    path = Path(file).resolve()
    try:
        where = Path(os.path.relpath(path, Path(relative_to).resolve())).as_posix()
    except ValueError:  # another drive
        where = path.as_posix()
    return f"{where}:{qualname}"


def file_references(memory: Mapping[str, str], *, relative_to: str | os.PathLike[str]) -> dict[str, str]:
    """The in-memory references among ``memory`` (:func:`memory_keys`) a study file can name
    instead — callables :func:`file_reference` names — as ``{reference: "file.py:name"}``."""
    out = {}
    for reference in memory.values():
        entry = lookup(reference)
        if entry is not None and entry.kind == "callable":
            named = file_reference(entry.value, relative_to=relative_to)
            if named is not None:
                out[reference] = named
    return out
