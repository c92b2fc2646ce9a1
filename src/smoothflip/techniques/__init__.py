"""The techniques a study can compare: one registry entry each (see :mod:`._registry`).

Every module of this package registers its entries when imported; importing the package imports
them all, so a new technique is one loss in :mod:`smoothflip.losses` plus one module (or one
:func:`register` call) here.

Example:
    >>> from smoothflip.techniques import get_technique, techniques
    >>> list(techniques())[:3]
    ['ce', 'smoothed_ce', 'online_ls']
    >>> get_technique("label_relaxation").params
    {'alpha': 0.1}
"""

from __future__ import annotations

import importlib
import pkgutil

from smoothflip.techniques._registry import (
    ARM_OPTIONS,
    FAMILIES,
    REQUIRED,
    LossContext,
    Technique,
    build_loss,
    check_arm,
    get_technique,
    register,
    techniques,
)

__all__ = [
    "ARM_OPTIONS",
    "FAMILIES",
    "REQUIRED",
    "LossContext",
    "Technique",
    "build_loss",
    "check_arm",
    "get_technique",
    "register",
    "techniques",
]

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_module}")
