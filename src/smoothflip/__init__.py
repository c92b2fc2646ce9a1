"""smoothflip: do label smoothing and label flipping help your model?

``import smoothflip as sf`` gives the public API (a thin facade; each name is imported from its
module on first use, so ``import smoothflip`` stays light):

- ``sf.Study(...)`` — a study from keyword arguments mirroring the study file (data in memory and
  Python callables allowed), ``sf.Study.from_toml(path)``, ``sf.Study.from_dict(d)``;
  ``study.run(...)`` returns ``sf.Results``;
- ``sf.open(directory)`` — a study directory's ``sf.Results``, read-only;
- ``sf.Results`` — ``runs`` / ``curves`` DataFrames, ``verdict()``, ``report()``, ``figure(name)``;
- ``sf.meta(directories, out=...)`` — several studies pooled by random-effects meta-analysis
  (``sf.MetaAnalysis``: ``pooled_frame()``, ``studies_frame()``, ``write(out)``).

The technique library lives in submodules, one concept each:

- :mod:`smoothflip.losses` — smoothed cross-entropy, confidence penalty, distillation, robust losses
- :mod:`smoothflip.flipping` — training-time label flipping (DisturbLabel)
- :mod:`smoothflip.noise` — seeded label-noise models returning :class:`~smoothflip.noise.NoisyLabels`
- :mod:`smoothflip.metrics` — accuracy, NLL, Brier, ECE (binned, class-wise, smooth) with bootstrap
  intervals, temperature scaling, selective classification (AURC), mutual information
- :mod:`smoothflip.certify` — certificates against label flips: label-independent partitions, DPA
  and Finite Aggregation vote certificates, certified accuracy
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from smoothflip.api.results import Results as Results
    from smoothflip.api.results import Verdict as Verdict
    from smoothflip.api.results import open_results as open  # noqa: F401
    from smoothflip.api.study import Study as Study
    from smoothflip.study.meta import MetaAnalysis as MetaAnalysis
    from smoothflip.study.meta import meta as meta

_PUBLIC: dict[str, str] = {
    "Study": "smoothflip.api.study:Study",
    "Results": "smoothflip.api.results:Results",
    "Verdict": "smoothflip.api.results:Verdict",
    "open": "smoothflip.api.results:open_results",
    "meta": "smoothflip.study.meta:meta",
    "MetaAnalysis": "smoothflip.study.meta:MetaAnalysis",
}
"""The public API: name -> ``"module:attribute"`` (a new public name is one entry here)."""

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        module, _, attribute = _PUBLIC[name].partition(":")
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'smoothflip' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
