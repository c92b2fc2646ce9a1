"""In-memory inputs named by reference: arrays, tables and Python callables a study uses.

A study made in Python (``sf.Study(data=(x, y), model=make_net)``) names what lives in memory by a
reference string in place of a file path or a ``"module:function"`` reference:

- data: ``"memory:arrays@<content hash>"`` (``arrays``, ``dataframe`` or ``torch-dataset``);
- a callable: ``"memory:<module>.<qualified name>@<source hash>"``.

The reference is what the study file records, so it is part of the study's identity and of every
run id: the same arrays and the same function source give the same references (a rerun resumes),
a changed array or function body gives another. This module only keeps the table from references
to objects, in this process; :mod:`smoothflip.api.inputs` makes the references and
:mod:`smoothflip.data.memory` reads the data back. The table holds its values weakly: an entry
lives as long as the study that registered it (or, in a worker process, for the process).

Worker processes and Ray tasks get the callables they need by value (:func:`pack_callables`:
cloudpickle bytes, as Ray ships functions; never a file path), and :func:`install` puts them in
their own table.

Example:
    >>> entry = Entry(kind="callable", value=len)
    >>> register("memory:builtins.len@0", entry)
    >>> lookup("memory:builtins.len@0") is entry, is_memory("memory:x@1"), is_memory("net.py:make")
    (True, True, False)
"""

from __future__ import annotations

import sys
import sysconfig
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PREFIX", "Entry", "install", "is_memory", "lookup", "pack_callables", "references", "register"]

PREFIX = "memory:"
"""What every in-memory reference starts with."""


@dataclass(eq=False)
class Entry:
    """One in-memory object: ``kind`` is ``"callable"`` or a data kind; ``value`` the object itself
    (for data, the checked raw arrays; see :mod:`smoothflip.data.memory`)."""

    kind: str
    value: Any
    meta: dict[str, Any] = field(default_factory=dict)


_TABLE: weakref.WeakValueDictionary[str, Entry] = weakref.WeakValueDictionary()
_KEEP: list[Entry] = []  # entries installed in a worker process live as long as the process


def is_memory(reference: Any) -> bool:
    """Whether ``reference`` names an in-memory object (a string starting with ``"memory:"``)."""
    return isinstance(reference, str) and reference.startswith(PREFIX)


def register(reference: str, entry: Entry) -> None:
    """Make ``reference`` name ``entry`` in this process (while something else holds ``entry``)."""
    _TABLE[reference] = entry


def lookup(reference: str) -> Entry | None:
    """The entry ``reference`` names in this process, or None."""
    return _TABLE.get(reference)


def references(value: Any) -> list[str]:
    """Every in-memory reference in a nested structure of dicts, lists and strings (a study's dict)."""
    if is_memory(value):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [r for item in value for r in references(item)]
    return []


def system_module(module: Any) -> bool:
    """A module of the standard library or of an installed package (pickled by reference)."""
    name = getattr(module, "__name__", "")
    if name.partition(".")[0] in sys.stdlib_module_names or name.startswith("smoothflip"):
        return True
    path = getattr(module, "__file__", None)
    if not path:
        return False
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(Path(r).resolve()) for r in roots)


def pack_callables(references: Iterable[str]) -> bytes | None:
    """The registered callables among ``references`` as cloudpickle bytes (None when there are none).

    A callable defined in a notebook or script (``__main__``) or in a module of the user's own (not
    an installed package) is pickled by value, so a worker needs neither the notebook nor the file.
    """
    found = {r: e.value for r in dict.fromkeys(references) if (e := lookup(r)) is not None}
    found = {r: v for r, v in found.items() if lookup(r).kind == "callable"}  # type: ignore[union-attr]
    if not found:
        return None
    import cloudpickle

    modules = {getattr(v, "__module__", None) for v in found.values()}
    by_value = [
        sys.modules[m]
        for m in modules
        if m and m != "__main__" and m in sys.modules and not system_module(sys.modules[m])
    ]
    registered = []
    try:
        for module in by_value:
            try:
                cloudpickle.register_pickle_by_value(module)
                registered.append(module)
            except (ValueError, TypeError):  # not a real module: leave it by reference
                pass
        return cloudpickle.dumps(found)
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


def install(blob: bytes | None) -> None:
    """Register callables packed by :func:`pack_callables` in this (worker) process."""
    if not blob:
        return
    import pickle

    for reference, value in pickle.loads(blob).items():
        entry = Entry(kind="callable", value=value)
        _KEEP.append(entry)
        register(reference, entry)
