"""The study engine: tracks (how each study kind trains), packs, executors.

``from smoothflip.engine import run_study, resolve_study`` — see :mod:`.runner` and :mod:`.planning`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["resolve_study", "run_study"]


def __getattr__(name: str) -> Any:  # imported on use: importing a submodule stays cheap
    if name == "run_study":
        from smoothflip.engine.runner import run_study

        return run_study
    if name == "resolve_study":
        from smoothflip.engine.planning import resolve_study

        return resolve_study
    raise AttributeError(name)
