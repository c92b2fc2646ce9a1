"""Class-conditional noise along a fixed class map, and the named maps (presets) it accepts.

:func:`asymmetric` flips each example of a source class to that class's target (Patrini et al.
2017); :data:`ASYMMETRIC_PRESETS` is the public, read-only registry of named maps (``"mnist"``,
``"cifar10"``) that callers such as the study layer read the preset names from. Re-exported by
:mod:`smoothflip.noise`.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral
from types import MappingProxyType
from typing import Any

import numpy as np

from smoothflip._validation import SeedLike, as_generator, check_choice, check_int
from smoothflip.noise._common import (
    Mode,
    NoisyLabels,
    _check_labels,
    _check_rate,
    _choose_per_class,
    _exact_flip_counts,
    _result,
)

#: Read-only registry of the class maps :func:`asymmetric` accepts by name: preset name →
#: ``{source class: target class}`` (a ``MappingProxyType`` of ``MappingProxyType``; every preset
#: has 10 classes).
#: Class maps of Patrini et al. 2017 (``noisify_mnist_asymmetric`` / ``noisify_cifar10_asymmetric``).
#: CIFAR-10: truck→automobile, bird→airplane, cat↔dog, deer→horse.
ASYMMETRIC_PRESETS: Mapping[str, Mapping[int, int]] = MappingProxyType(
    {
        "mnist": MappingProxyType({2: 7, 3: 8, 5: 6, 6: 5, 7: 1}),
        "cifar10": MappingProxyType({9: 1, 2: 0, 3: 5, 5: 3, 4: 7}),
    }
)
_PRESET_NUM_CLASSES = {"mnist": 10, "cifar10": 10}


def _resolve_mapping(mapping: Any) -> tuple[dict[int, int], int | None]:
    if isinstance(mapping, str):
        name = check_choice("mapping", mapping, tuple(ASYMMETRIC_PRESETS))
        return dict(ASYMMETRIC_PRESETS[name]), _PRESET_NUM_CLASSES[name]
    if not isinstance(mapping, Mapping):
        raise TypeError(
            "mapping must be a dict {source: target} or a preset name "
            f"({', '.join(map(repr, ASYMMETRIC_PRESETS))}), got {type(mapping).__name__}"
        )
    if not mapping:
        raise ValueError("mapping must not be empty")
    out: dict[int, int] = {}
    for src, dst in mapping.items():
        for v in (src, dst):
            if isinstance(v, bool | np.bool_) or not isinstance(v, Integral):
                raise ValueError(f"mapping must map integer classes to integer classes, got {v!r}")
            if v < 0:
                raise ValueError(f"mapping classes must be >= 0, got {int(v)}")
        if src == dst:
            raise ValueError(f"mapping maps class {int(src)} to itself; drop that entry")
        out[int(src)] = int(dst)
    return out, None


def asymmetric(
    labels: Any,
    rate: float,
    mapping: Mapping[int, int] | str,
    *,
    num_classes: int | None = None,
    mode: Mode = "random",
    seed: SeedLike = None,
) -> NoisyLabels:
    """Class-conditional noise along a fixed class map (Patrini et al. 2017).

    Each example whose *true* label is a source class of ``mapping`` flips to that class's target
    with probability ``rate``; all other examples are untouched. The decision is made once per
    example from its true label, so a cat flipped to dog is never flipped back by the dog→cat rule
    (ELR's in-place class-by-class loop has that double-flip bug).

    **The realized overall rate is ``rate × (share of examples in source classes)``**, e.g. about
    ``0.5·rate`` for the CIFAR-10 map on balanced data (5 of 10 classes are sources).

    Args:
        labels: ``[N]`` integer labels in ``[0, K)``.
        rate: flip probability for examples of source classes, in ``[0, 1)``.
        mapping: ``{source: target}`` dict, or a preset name: ``"mnist"`` (2→7, 3→8, 5↔6, 7→1) or
            ``"cifar10"`` (9→1 truck→automobile, 2→0 bird→airplane, 3↔5 cat↔dog, 4→7 deer→horse).
        num_classes: ``K``; defaults to 10 for presets, else ``1 + max`` over labels and mapping.
        mode: ``"random"`` (independent per-example flips) or ``"exact"`` (``floor``/``ceil`` of
            ``rate·n_k`` per source class, ``round(rate·n_sources)`` in total; see :func:`symmetric`).
        seed: int, ``numpy.random.Generator`` or ``None``.

    Returns:
        :class:`NoisyLabels` (``[N]`` labels, mask, realized ``[K, K]`` matrix, realized rate).

    Example:
        >>> y = np.arange(10).repeat(10)
        >>> out = asymmetric(y, 0.4, "cifar10", mode="exact", seed=0)
        >>> out.rate  # 0.4 of the 50 source-class examples
        0.2
        >>> round(float(out.transition_matrix[3, 5]), 2), round(float(out.transition_matrix[0, 0]), 2)
        (0.4, 1.0)
    """
    pairs, preset_k = _resolve_mapping(mapping)
    mode = check_choice("mode", mode, ("random", "exact"))
    rate = _check_rate(rate)
    if num_classes is None:
        y = _check_labels(labels, None)
        num_classes = preset_k or max(int(y.max()), *pairs.keys(), *pairs.values()) + 1
        num_classes = max(num_classes, 2)
    num_classes = check_int("num_classes", num_classes, low=2)
    y = _check_labels(labels, num_classes)
    bad = [c for pair in pairs.items() for c in pair if c >= num_classes]
    if bad:
        raise ValueError(f"mapping uses class {bad[0]}, outside [0, num_classes={num_classes})")
    rng = as_generator(seed)
    target = np.arange(num_classes)
    target[list(pairs)] = list(pairs.values())
    source = target != np.arange(num_classes)
    if mode == "random":
        flip = source[y] & (rng.random(y.shape[0]) < rate)
    else:
        quotas = _exact_flip_counts(y, rate, num_classes, source, rng)
        flip = _choose_per_class(y, quotas, num_classes, rng)
    z = np.where(flip, target[y], y)
    return _result(y, z, num_classes)
