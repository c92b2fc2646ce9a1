"""Certified studies (``kind = "certified"``): the ``[certify]`` table and the metrics it defines.

```toml
kind = "certified"
[certify]
partitions = [50, 200]   # one ensemble per k (base learners trained as packs)
scheme = "hash"          # hash (DPA: salted content hash) | sorted (SS-DPA: lexicographic rank)
d = 1                    # Finite Aggregation's spread: d*k learners, each example feeds d of them
radii = [0, 5, 10, 15, 20]   # label flips certified accuracy is reported at (default: 5 from 0 to k/2)
selection = "last"       # last | partition (each learner selects its epoch on its own held-out labels)
holdout = 0.1            # selection = "partition" only: the share of each part held out
attack_checks = 1        # retrainings on attacked labels per run at the first seed (0: none)
attack = "margin"        # a strategy of smoothflip.attacks.label_flip
attack_options = {}
```

The metrics of a certified study depend on its table: certified accuracy at every radius for every
``k``, the median certified radius, the ensemble's clean accuracy and the mean base-learner
accuracy (:func:`certified_metrics`). The first ``k`` has the plain keys (``test_acc``,
``test_mcr``, ``test_cert_acc_r10``), the others a ``_k<k>`` suffix. The default primary metric is
certified accuracy at the middle radius of the first ``k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from smoothflip.analysis import MetricSpec
from smoothflip.errors import SpecError
from smoothflip.study.spec.schema import CertifySpec, StudySpec, frozen
from smoothflip.study.tables import Table, show

SELECTIONS = ("last", "partition")
RADII_DEFAULT_COUNT = 5
CERTIFY_KEYS = (
    "partitions",
    "scheme",
    "d",
    "radii",
    "selection",
    "holdout",
    "attack_checks",
    "attack",
    "attack_options",
)


def _whole_list(t: Table, name: str, default: Any, *, low: int) -> tuple[int, ...]:
    value = t.raw(name, default)
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values):
        raise SpecError(f"{t.key(name)} = {show(value)}: must be whole numbers >= {low} (one or a list)")
    if len(set(values)) != len(values):
        raise SpecError(f"{t.key(name)} = {show(value)}: values must not repeat")
    return tuple(values)


def default_radii(partitions: tuple[int, ...]) -> tuple[int, ...]:
    """Five radii from 0 to ``floor(min k / 2)`` (the largest radius any ensemble can certify).

    Example:
        >>> default_radii((50, 200)), default_radii((3,))
        ((0, 6, 12, 19, 25), (0, 1))
    """
    top = min(partitions) // 2
    return tuple(sorted({round(top * i / (RADII_DEFAULT_COUNT - 1)) for i in range(RADII_DEFAULT_COUNT)}))


def read_certify(top: Table) -> CertifySpec:
    """``[certify]`` of a certified study (arms with a ``defense`` are refused: a defence reads every
    training label, so a learner would depend on labels outside its part)."""
    from smoothflip.attacks import STRATEGIES, STRATEGY_OPTIONS
    from smoothflip.certify import SCHEMES

    for i, arm in enumerate(top.data.get("arms") or []):
        if isinstance(arm, Mapping) and "defense" in arm:
            raise SpecError(
                f'arms[{i}].defense: not available for kind = "certified" (a defence reads every training '
                "label, so a base learner would depend on labels outside its own part)"
            )
    t = Table(top.raw("certify", {}), "certify")
    partitions = _whole_list(t, "partitions", list(CertifySpec.partitions), low=1)
    scheme = t.str("scheme", CertifySpec.scheme, choices=SCHEMES)
    d = t.int("d", CertifySpec.d, low=1)
    radii = tuple(sorted(_whole_list(t, "radii", list(default_radii(partitions)), low=0)))
    selection = t.str("selection", CertifySpec.selection, choices=SELECTIONS)
    if selection == "partition":
        holdout = t.float("holdout", 0.1, low=0.0, high=1.0, low_open=True, high_open=True)
    elif t.has("holdout") and t.raw("holdout") != 0.0:
        raise SpecError(
            f'certify.holdout = {show(t.raw("holdout"))}: only with selection = "partition" '
            '(selection = "last" holds nothing out)'
        )
    else:
        holdout = 0.0
    attack_checks = t.int("attack_checks", CertifySpec.attack_checks, low=0)
    attack = t.str("attack", CertifySpec.attack, choices=STRATEGIES)
    options = t.raw("attack_options", {})
    if not isinstance(options, Mapping):
        raise SpecError(f"certify.attack_options = {show(options)}: must be a table")
    for key in options:
        if key not in STRATEGY_OPTIONS[attack]:
            allowed = ", ".join(STRATEGY_OPTIONS[attack]) or "none"
            raise SpecError(
                f"certify.attack_options.{key}: unknown option for attack {attack!r}; allowed: {allowed}"
            )
    t.finish(CERTIFY_KEYS)
    return CertifySpec(
        partitions=partitions,
        scheme=scheme,
        d=d,
        radii=radii,
        selection=selection,
        holdout=holdout,
        attack_checks=attack_checks,
        attack=attack,
        attack_options=frozen(dict(options)),
    )


def metric_suffix(spec: Any, k: int) -> str:
    """``""`` for the first ``k`` of ``spec.partitions``, ``"_k<k>"`` for the others (``spec``: the
    :class:`CertifySpec`, or anything with its ``partitions``, as the engine's settings)."""
    return "" if k == spec.partitions[0] else f"_k{k}"


def certified_measured_at(spec: StudySpec) -> str:
    """Where a certified run's metrics come from (no validation split: see ``selection``).

    Example:
        >>> from smoothflip.study.spec.schema import CertifySpec
        >>> class Study:  # stands for a StudySpec
        ...     certify = CertifySpec(selection="partition")
        >>> certified_measured_at(Study())
        "each base learner's best epoch on its own held-out labels"
    """
    selection = spec.certify.selection if spec.certify is not None else CertifySpec.selection
    if selection == "partition":
        return "each base learner's best epoch on its own held-out labels"
    return "each base learner's last epoch"


def middle_radius(spec: CertifySpec) -> int:
    """The middle of the radii (the lower middle of an even count): the default primary's radius."""
    return spec.radii[(len(spec.radii) - 1) // 2]


def certified_metrics(spec: StudySpec) -> tuple[MetricSpec, ...]:
    """The metrics of a certified study, the default primary first.

    Example:
        >>> from smoothflip.study.spec.schema import CertifySpec
        >>> class Study:  # stands for a StudySpec
        ...     certify = CertifySpec(partitions=(10,), radii=(0, 2, 4))
        >>> [m.key for m in certified_metrics(Study())]
        ['test_cert_acc_r2', 'test_cert_acc_r0', 'test_cert_acc_r4', 'test_mcr', 'test_acc', 'test_base_acc']
    """
    cert = (
        spec.certify if spec.certify is not None else CertifySpec(radii=default_radii(CertifySpec.partitions))
    )
    out: list[MetricSpec] = []
    middle = middle_radius(cert)
    for k in cert.partitions:
        suffix = metric_suffix(cert, k)
        of = f" (k = {k})" if len(cert.partitions) > 1 else ""
        for r in (middle, *(r for r in cert.radii if r != middle)):
            out.append(
                MetricSpec(
                    f"test_cert_acc_r{r}{suffix}",
                    f"certified accuracy at {r} flip{'' if r == 1 else 's'}{of}",
                    True,
                    100.0,
                    "pts",
                    f"certified_accuracy_r{r}{suffix}",
                    0.5,
                )
            )
        out.append(
            MetricSpec(
                f"test_mcr{suffix}", f"median certified radius{of}", True, 1.0, "flips", f"mcr{suffix}", 1.0
            )
        )
        out.append(
            MetricSpec(
                f"test_acc{suffix}",
                f"clean ensemble accuracy{of}",
                True,
                100.0,
                "pts",
                f"accuracy{suffix}",
                0.5,
            )
        )
        out.append(
            MetricSpec(
                f"test_base_acc{suffix}",
                f"mean base-learner accuracy{of}",
                True,
                100.0,
                "pts",
                f"base_accuracy{suffix}",
                0.5,
            )
        )
    return tuple(out)


def certified_summary_metrics(spec: StudySpec) -> dict[int, tuple[MetricSpec, ...]]:
    """A certified study's summary metrics per ``k``: clean accuracy, certified accuracy at each
    radius (in order), the median certified radius.

    Example:
        >>> from smoothflip.study.spec.schema import CertifySpec
        >>> class Study:  # stands for a StudySpec
        ...     certify = CertifySpec(partitions=(10,), radii=(0, 2, 4))
        >>> {k: [m.key for m in ms] for k, ms in certified_summary_metrics(Study()).items()}
        {10: ['test_acc', 'test_cert_acc_r0', 'test_cert_acc_r2', 'test_cert_acc_r4', 'test_mcr']}
    """
    metrics = {m.key: m for m in certified_metrics(spec)}
    cert = spec.certify
    if cert is None:
        cert = CertifySpec(radii=default_radii(CertifySpec.partitions))
    out: dict[int, tuple[MetricSpec, ...]] = {}
    for k in cert.partitions:
        suffix = metric_suffix(cert, k)
        keys = (
            f"test_acc{suffix}",
            *(f"test_cert_acc_r{r}{suffix}" for r in cert.radii),
            f"test_mcr{suffix}",
        )
        out[k] = tuple(metrics[key] for key in keys)
    return out


CERTIFIED_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("test_cert_acc_r<r>", "certified accuracy at r flips (one per radius)", True, 100.0, "pts"),
    MetricSpec("test_mcr", "median certified radius", True, 1.0, "flips", "mcr", 1.0),
    MetricSpec("test_acc", "clean ensemble accuracy", True, 100.0, "pts", "accuracy", 0.5),
    MetricSpec("test_base_acc", "mean base-learner accuracy", True, 100.0, "pts", "base_accuracy", 0.5),
)
"""What ``smoothflip kinds`` lists for a certified study (the real keys follow its ``[certify]``)."""
