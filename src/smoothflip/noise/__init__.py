"""Label-noise models: numpy in, numpy out, seeded by a local generator.

Convention (the whole package uses it): a label-noise transition matrix is **row-stochastic**,

    ``T[i, j] = P(noisy label = j | true label = i)``,  every row sums to 1.

cleanlab stores the transpose (its ``noise_matrix[i][j] = P(label=i | true_label=j)``, columns sum
to 1); :func:`to_cleanlab` and :func:`from_cleanlab` convert.

Every generator takes ``seed`` (an int, a :class:`numpy.random.Generator` or ``None``) and never
touches the global NumPy RNG. Each returns a :class:`NoisyLabels`: the noisy labels, the flip mask,
the *realized* transition matrix and the *realized* flip rate, so a study can always report what
was actually applied, not only what was asked for.

Modes: ``"random"`` modes decide every example independently (the realized rate fluctuates around
the request with binomial spread); ``"exact"`` modes fix the number of flipped labels per class by
largest-remainder apportioning (see :func:`symmetric`), so the realized rate is deterministic.

Layout: :mod:`~smoothflip.noise._common` holds :class:`NoisyLabels`,
:func:`realized_transition_matrix` and the shared checks and apportioning helpers;
:mod:`~smoothflip.noise._symmetric` the rate-only models (:func:`symmetric`, :func:`pair_flip`);
:mod:`~smoothflip.noise._asymmetric` the class-map model :func:`asymmetric` and its presets;
:mod:`~smoothflip.noise._matrix` noise from a transition matrix, random matrices and the cleanlab
converters; :mod:`~smoothflip.noise._instance` instance-dependent noise. Import everything from
:mod:`smoothflip.noise` itself: the submodules are private.

Presets: :data:`ASYMMETRIC_PRESETS` is the read-only registry of the class maps
:func:`asymmetric` accepts by name (``"mnist"``, ``"cifar10"``), preset name →
``{source class: target class}``.

Example:
    >>> import numpy as np
    >>> from smoothflip import noise
    >>> y = np.repeat(np.arange(10), 100)
    >>> out = noise.symmetric(y, 0.2, 10, mode="exact", seed=0)
    >>> out.rate, int(out.flipped.sum())
    (0.2, 200)
    >>> bool((out.labels[out.flipped] != y[out.flipped]).all())
    True
"""

from __future__ import annotations

from smoothflip.noise._asymmetric import ASYMMETRIC_PRESETS, asymmetric
from smoothflip.noise._common import STOCHASTIC_ATOL as STOCHASTIC_ATOL  # public beside __all__
from smoothflip.noise._common import Mode as Mode  # public beside __all__
from smoothflip.noise._common import NoisyLabels, realized_transition_matrix
from smoothflip.noise._instance import instance_dependent
from smoothflip.noise._matrix import (
    from_cleanlab,
    from_transition_matrix,
    random_transition_matrix,
    to_cleanlab,
)
from smoothflip.noise._symmetric import pair_flip, symmetric

__all__ = [
    "ASYMMETRIC_PRESETS",
    "NoisyLabels",
    "asymmetric",
    "from_cleanlab",
    "from_transition_matrix",
    "instance_dependent",
    "pair_flip",
    "random_transition_matrix",
    "realized_transition_matrix",
    "symmetric",
    "to_cleanlab",
]
