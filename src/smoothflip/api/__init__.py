"""The Python API behind ``import smoothflip as sf``: studies built and run from Python, results read back.

- :class:`~smoothflip.api.study.Study` — a study from keyword arguments (the study file's keys, with
  data in memory and Python callables allowed), from a dict or from a study file; ``study.run()``;
- :class:`~smoothflip.api.results.Results` — a study directory as DataFrames, a verdict table, the
  report and its figures; :func:`~smoothflip.api.results.open_results` (``sf.open``);
- :mod:`~smoothflip.api.inputs` — in-memory data and callables named by reference;
- :mod:`~smoothflip.api.display` — the progress display and each warning once;
- :mod:`~smoothflip.api.running` — what ``study.run()`` does, step by step.

The top-level package re-exports these names lazily (``smoothflip/__init__.py``).
"""

from smoothflip.api.results import Results, Verdict, open_results
from smoothflip.api.study import Study

__all__ = ["Results", "Study", "Verdict", "open_results"]
