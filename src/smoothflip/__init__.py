"""smoothflip: do label smoothing and label flipping help your model?

The technique library lives in submodules, one concept each:

- :mod:`smoothflip.losses` — smoothed cross-entropy, confidence penalty, distillation, robust losses
- :mod:`smoothflip.flipping` — training-time label flipping (DisturbLabel)
- :mod:`smoothflip.noise` — seeded label-noise models returning :class:`~smoothflip.noise.NoisyLabels`
- :mod:`smoothflip.metrics` — accuracy, NLL, Brier, ECE (binned, class-wise, smooth) with bootstrap
  intervals, temperature scaling, selective classification (AURC), mutual information
- :mod:`smoothflip.certify` — certificates against label flips: label-independent partitions, DPA
  and Finite Aggregation vote certificates, certified accuracy
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
