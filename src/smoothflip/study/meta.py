"""One answer from many studies: random-effects meta-analysis of paired technique effects.

:func:`meta` opens study directories read-only (as ``smoothflip verdict`` does), matches their arms,
conditions and metrics by what was run (:mod:`smoothflip.study.meta_keys`), and pools each key
``(arm, baseline, condition, metric)`` over the studies that have it:

1. each study contributes the mean paired difference ``arm - baseline`` over the seeds both arms
   have and its variance ``s² / n`` (``n >= 2``; a zero variance — every seed agreed — is floored at
   the smallest positive variance another study of the key has, and flagged). A key whose studies
   *all* have zero variance (every study had identical paired differences at every seed) gets
   **no verdict** and a note: nothing measures its noise, and an interval built on a floor would claim
   a precision no seed showed (``smoothflip atlas --quick`` made "equivalent" verdicts with an MDE
   of 0.001 points that way). It is not counted in its family;
2. :func:`smoothflip.analysis.meta.random_effects` pools them (REML + HKSJ by default) with the
   fixed-effect, Wald and modified-HKSJ readings and the leave-one-out range beside it;
3. the primary metric's keys form one Holm family, equivalence claims in the same family, and every
   secondary metric a Benjamini-Hochberg family (:func:`smoothflip.analysis.meta_family.pooled_verdicts`:
   helps / hurts / equivalent / inconclusive / no verdict, and a pooled MDE);
4. the paired probability of improvement over every (study, seed) pair, with a stratified bootstrap
   (conditional on these tasks).

``k`` (the studies behind a key) is shown per key and nothing is imputed: a study without a key (or
with fewer than 2 paired seeds on it) does not count for it. Studies of different kinds or tasks
pool only the metrics they share.

Example:
    >>> import smoothflip.study.meta as m
    >>> result = m.meta(["runs/a", "runs/b", "runs/c"], out="runs/pooled")  # doctest: +SKIP
    >>> result.pooled_frame()[["arm", "condition", "k", "estimate", "verdict"]]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoothflip._validation import check_choice, check_range
from smoothflip.analysis.meta import INTERVALS, METHODS, MetaResult, random_effects, sensitivity
from smoothflip.analysis.meta_family import (
    ProbabilityOfImprovement,
    paired_probability_of_improvement,
    pooled_verdicts,
)
from smoothflip.errors import SmoothflipError, user_input
from smoothflip.study._readonly import DB_NAME
from smoothflip.study.conditions import LabelCondition, distinct_labels
from smoothflip.study.ids import condition_id
from smoothflip.study.meta_keys import KeyParts, StudyEffect, arm_words, study_effects
from smoothflip.study.results import StudyData, load_study_data
from smoothflip.study.spec.analysis import primary_metric, raw_margin

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MetaAnalysis", "PooledKey", "PooledStudy", "meta"]


@dataclass(frozen=True)
class PooledStudy:
    """One pooled study: its name (unique among the pooled ones), directory, kind and runs."""

    name: str
    directory: Path
    kind: str
    runs: int
    seeds: int


@dataclass(frozen=True)
class PooledKey:
    """One key pooled over the studies that have it.

    Attributes:
        key: the key's id.
        arm: display name (the arm's name in the first study that has it; with its definition, or
            ``vs`` its baseline's, when another key would print alike).
        arm_names: every name the arm has in the pooled studies (the first study's first: ``arm``
            starts with it).
        arm_definition: the arm's technique and parameters in words.
        baseline: display name of the baseline.
        baseline_definition: the baseline's technique and parameters in words.
        condition: display label of the condition (from its definition).
        noise: the condition's noise model (``none`` for correct labels).
        rate: its rate.
        definition: the condition's resolved definition (noise model, rate and options), as keyed.
        metric: the metric (:class:`~smoothflip.analysis.MetricSpec`).
        role: ``"primary"`` or ``"secondary"``.
        effects: each study's contribution, in study order.
        result: the pooled random-effects result.
        sensitivity: ``"fixed effect"``, ``"wald"`` and ``"hksj_modified"`` results (k >= 2).
        loo: smallest and largest pooled estimate with one study left out (NaN for k < 3).
        verdict: helps / hurts / equivalent / inconclusive / no verdict.
        p_adjusted: the corrected p-value of ``μ = 0`` (NaN when untested).
        verdict_low: lower end of the interval the verdict is read from (simultaneous).
        verdict_high: its upper end.
        mde: pooled minimum detectable effect of the two-test rule (raw units;
            :func:`~smoothflip.analysis.meta_family.pooled_mde`; ``inf`` without a verdict).
        margin: the equivalence margin (raw units; NaN: none).
        improvement: paired probability of improvement with its stratified-bootstrap interval.
    """

    key: str
    arm: str
    arm_names: tuple[str, ...]
    arm_definition: str
    baseline: str
    baseline_definition: str
    condition: str
    noise: str
    rate: float
    definition: dict[str, Any]
    metric: Any
    role: str
    effects: tuple[StudyEffect, ...]
    result: MetaResult
    sensitivity: dict[str, MetaResult] = field(default_factory=dict)
    loo: tuple[float, float] = (math.nan, math.nan)
    verdict: str = "no verdict"
    p_adjusted: float = math.nan
    verdict_low: float = math.nan
    verdict_high: float = math.nan
    mde: float = math.inf
    margin: float = math.nan
    improvement: ProbabilityOfImprovement | None = None

    @property
    def k(self) -> int:
        return self.result.k

    @property
    def is_clean(self) -> bool:
        """The key's condition is correct labels (read from its definition by the noise-model registry's
        :class:`~smoothflip.study.conditions.LabelCondition`, never from a display name)."""
        options = tuple((k, v) for k, v in self.definition.items() if k not in ("noise", "rate"))
        return LabelCondition(self.definition["noise"], float(self.definition["rate"]), options).is_clean

    @property
    def seeds_agree(self) -> bool:
        """Every study had identical paired differences at every seed: no variance anywhere (no verdict)."""
        return all(e.floored for e in self.effects)


@dataclass(frozen=True)
class MetaAnalysis:
    """What :func:`meta` found: the studies, every pooled key, and how the verdicts were read.

    Attributes:
        studies: the pooled studies, in the order given.
        keys: every key at least one study has, primary metric first, then by metric, condition, arm.
        primary: the primary metric.
        alpha: the error rate controlled (family-wise for the primary metric, FDR per secondary one).
        power: the power of the pooled MDEs.
        method: how ``τ²`` is estimated (``reml`` by default).
        interval: the estimate's interval (``hksj`` by default).
        level: its level.
        at: whose epoch's metrics: ``"selected"`` or ``"last"``.
        notes: sentences about choices made (margins that differ, floored variances, ...).
    """

    studies: tuple[PooledStudy, ...]
    keys: tuple[PooledKey, ...]
    primary: Any
    alpha: float
    power: float
    method: str
    interval: str
    level: float
    at: str
    notes: tuple[str, ...] = ()

    def pooled_frame(self) -> pd.DataFrame:
        """``pooled.csv``: one row per key (raw units; ``scale`` converts for display)."""
        import pandas as pd

        from smoothflip.study.meta_tables import POOLED_COLUMNS, pooled_rows

        return pd.DataFrame(pooled_rows(self), columns=list(POOLED_COLUMNS))

    def studies_frame(self) -> pd.DataFrame:
        """``studies.csv``: one row per study and key."""
        import pandas as pd

        from smoothflip.study.meta_tables import STUDY_COLUMNS, study_rows

        return pd.DataFrame(study_rows(self), columns=list(STUDY_COLUMNS))

    def write(self, out: str | Path, *, report: bool = True) -> Path:
        """Write ``OUT/pooled.csv``, ``OUT/studies.csv`` and (``report``) ``OUT/report/``; returns ``OUT``."""
        from smoothflip.study.meta_tables import write_tables

        out = check_out(out, self.studies)
        write_tables(self, out)
        if report:
            from smoothflip.report.meta import write_meta_report  # the report reads the study layer

            write_meta_report(self, out / "report")
        return out


def check_out(out: str | Path, studies: Sequence[PooledStudy] | Sequence[Path]) -> Path:
    """Refuse an output directory that is a study directory, lies inside one (its ``report/`` folder
    included), or is one of the pooled studies."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SmoothflipError(f"--out {out}: exists and is not a directory")
    if (out / DB_NAME).exists() or (out / "study.toml").exists():
        raise SmoothflipError(
            f"--out {out}: is a study directory; write the pooled results to a directory of their own"
        )
    for parent in Path(os.path.abspath(out)).resolve().parents:
        if (parent / DB_NAME).is_file():
            raise SmoothflipError(
                f"--out {out}: is inside the study directory {parent}; write the pooled results to a "
                "directory of their own"
            )
    for s in studies:
        directory = s.directory if isinstance(s, PooledStudy) else Path(s)
        if out.exists() and _same(out, directory):
            raise SmoothflipError(f"--out {out}: is one of the pooled studies")
    return out


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def _load(dirs: Sequence[str | Path]) -> list[StudyData]:
    if isinstance(dirs, str | os.PathLike):
        dirs = [dirs]
    paths = [Path(d) for d in dirs]
    if len(paths) < 2:
        got = f"only {paths[0]}" if paths else "none"
        raise SmoothflipError(f"meta pools study directories: it needs at least two, got {got}")
    for i, a in enumerate(paths):
        if not a.is_dir():
            raise SmoothflipError(
                f"{a}: not a directory (give study directories written by `smoothflip run`)"
            )
        if not (a / DB_NAME).is_file():
            raise SmoothflipError(
                f"{a}: not a study directory (no {DB_NAME}; was it written by `smoothflip run`?)"
            )
        for b in paths[:i]:
            if _same(a, b):
                raise SmoothflipError(f"{a}: given twice (as {b}); give each study directory once")
    studies = []
    for path in paths:
        data = load_study_data(path)
        if not data.results:
            raise SmoothflipError(f"{path}: holds no finished runs yet; run the study first")
        studies.append(data)
    return studies


def _names(studies: Sequence[StudyData]) -> list[str]:
    names = [s.spec.name for s in studies]
    return [
        name if names.count(name) == 1 else f"{name} ({s.directory})"
        for name, s in zip(names, studies, strict=True)
    ]


def _primary(studies: Sequence[StudyData], primary: str | None) -> Any:
    if primary is not None:
        known = {}
        for s in studies:
            for m in s.kind.metrics:
                known.setdefault(m.key, m)
                known.setdefault(m.short, m)
        if primary not in known:
            raise SmoothflipError(
                f"--primary {primary!r}: not a metric of these studies; "
                f"they have {', '.join(sorted(set(known)))}"
            )
        return known[primary]
    found = {primary_metric(s.spec.analysis, s.kind.metrics).key: s for s in studies}
    if len(found) > 1:
        raise SmoothflipError(
            f"the studies name different primary metrics ({', '.join(sorted(found))}); "
            "choose one with --primary"
        )
    ((_key, s),) = found.items()
    return primary_metric(s.spec.analysis, s.kind.metrics)


def _common(values: list[float], name: str, default: float, notes: list[str]) -> float:
    distinct = sorted(set(values))
    if len(distinct) == 1:
        return distinct[0]
    notes.append(
        f"the studies differ in [analysis] {name} ({', '.join(f'{v:g}' for v in distinct)}); used {default:g}"
    )
    return default


def meta(
    dirs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    at: str = "selected",
    method: str = "reml",
    interval: str = "hksj",
    level: float = 0.95,
    primary: str | None = None,
    alpha: float | None = None,
    power: float | None = None,
    report: bool = True,
) -> MetaAnalysis:
    """Pool the paired technique effects of several study directories (module docstring).

    Args:
        dirs: study directories written by ``smoothflip run`` (each given once); opened read-only.
        out: where to write ``pooled.csv``, ``studies.csv`` and ``report/`` (None: write nothing).
            Refused when it is a study directory or lies inside one (its ``report/`` included).
        at: the metrics of the validation-selected epoch (``"selected"``) or the last one.
        method: ``τ²`` estimator: ``"reml"``, ``"pm"``, ``"dl"`` or ``"fe"``.
        interval: the estimate's interval: ``"hksj"``, ``"hksj_modified"`` or ``"wald"``.
        level: the interval's level.
        primary: the primary metric (key or short name); default: the one every study names.
        alpha: the error rate of the verdicts; default: the studies' ``[analysis] alpha`` when they
            agree, else 0.05.
        power: the power of the pooled MDEs; default: the studies' when they agree, else 0.8.
        report: with ``out``, also write the HTML/Markdown report.

    Returns:
        A :class:`MetaAnalysis`.

    Raises:
        SmoothflipError: a directory that is not a study, is damaged, holds no runs or is given
            twice; no key shared by two studies; studies naming different primary metrics without
            ``primary``; a bad option or ``out``. Nothing is written then.
    """
    with user_input("meta"):  # a bad option is a user's error (one line on the command line), not a bug
        check_choice("at", at, ("selected", "last"))
        check_choice("method", method, METHODS)
        check_choice("interval", interval, INTERVALS)
        level = check_range("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
        if alpha is not None:
            alpha = check_range("alpha", alpha, low=0.0, high=0.5, low_open=True, high_open=True)
        if power is not None:
            power = check_range("power", power, low=0.0, high=1.0, low_open=True, high_open=True)
    if out is not None:  # before any store is opened: a refused --out touches nothing
        check_out(out, [Path(d) for d in ([dirs] if isinstance(dirs, str | os.PathLike) else dirs)])
    studies = _load(dirs)
    if out is not None:
        check_out(out, [s.directory for s in studies])
    notes: list[str] = []
    prim = _primary(studies, primary)
    alpha = (
        _common([s.spec.analysis.alpha for s in studies], "alpha", 0.05, notes) if alpha is None else alpha
    )
    power = _common([s.spec.analysis.power for s in studies], "power", 0.8, notes) if power is None else power

    parts: dict[str, KeyParts] = {}
    effects: dict[str, list[StudyEffect]] = {}
    names: dict[str, list[str]] = {}
    margins: dict[str, list[float]] = {}
    for i, data in enumerate(studies):
        for part, effect in study_effects(data, i, at=at):
            parts.setdefault(effect.key, part)
            effects.setdefault(effect.key, []).append(effect)
            names.setdefault(effect.key, [])
            if effect.arm not in names[effect.key]:
                names[effect.key].append(effect.arm)
            margin = raw_margin(data.spec.analysis, part.metric)
            margins.setdefault(part.metric.key, []).append(math.nan if margin is None else margin)
    if not any(len(e) >= 2 for e in effects.values()):
        raise SmoothflipError(
            "no (arm, condition, metric) is shared by two of these studies: arms match by technique and "
            "parameters against the same baseline, conditions by noise model and rate"
        )
    margin_of = {}
    for key, values in margins.items():
        finite = sorted({v for v in values if math.isfinite(v)})
        margin_of[key] = finite[0] if finite else math.nan
        if len(finite) > 1:
            notes.append(f"equivalence margins for {key} differ between the studies; the smallest is used")

    # conditions by id (their options may hold maps); those that would print alike are labelled apart
    labels = distinct_labels(c for s in studies for c in s.conditions)
    pooled = [
        _pool(key, _relabel(parts[key], labels), effects[key], names[key], method, interval, level, prim)
        for key in effects
    ]
    floored = sum(e.floored for es in effects.values() if not all(e.floored for e in es) for e in es)
    if floored:
        notes.append(
            f"{floored} study effect(s) had zero variance over their seeds (every seed gave the same "
            "difference); their variance is floored at the smallest positive one of the key"
        )
    agree = sum(p.seeds_agree for p in pooled)
    if agree:
        notes.append(f"{agree} key(s): {_AGREE}")
    pooled = _verdicts(pooled, prim, margin_of, alpha, power)
    pooled = _label(pooled)
    conditions = {label: i for i, label in enumerate(labels.values())}
    arms = {name: i for i, name in enumerate(dict.fromkeys(p.arm for p in pooled))}  # first study's order
    pooled.sort(
        key=lambda p: (
            p.role != "primary",
            _metric_order(studies, p.metric.key),
            conditions.get(p.condition, len(conditions)),
            arms[p.arm],
        )
    )
    seeds = [len({r.seed for r in s.results}) for s in studies]
    result = MetaAnalysis(
        studies=tuple(
            PooledStudy(n, s.directory, s.spec.kind, len(s.results), k)
            for n, s, k in zip(_names(studies), studies, seeds, strict=True)
        ),
        keys=tuple(pooled),
        primary=prim,
        alpha=alpha,
        power=power,
        method=method,
        interval=interval,
        level=level,
        at=at,
        notes=tuple(notes),
    )
    if out is not None:
        result.write(out, report=report)
    return result


def _metric_order(studies: Sequence[StudyData], key: str) -> int:
    for s in studies:
        for i, m in enumerate(s.kind.metrics):
            if m.key == key:
                return i
    return 10**6


def _pool(
    key: str,
    part: KeyParts,
    effects: list[StudyEffect],
    names: list[str],
    method: str,
    interval: str,
    level: float,
    primary: Any,
) -> PooledKey:
    positive = [e.variance for e in effects if e.variance > 0]
    if any(e.floored for e in effects):
        # no positive variance: a floor only so that the estimate can be computed (no verdict, see _AGREE)
        floor = min(positive) if positive else 1e-12 * max(1.0, max(e.estimate**2 for e in effects))
        effects = [e if not e.floored else _with_variance(e, floor) for e in effects]
    y = [e.estimate for e in effects]
    v = [e.variance for e in effects]
    result = random_effects(y, v, method=method, interval=interval, level=level)
    if not positive:
        from dataclasses import replace

        result = replace(result, notes=(*result.notes, f"no verdict: {_AGREE}"))
    loo = (math.nan, math.nan)
    if result.k >= 3:
        loo = result.leave_one_out().range
    improvement = paired_probability_of_improvement(
        [e.diffs for e in effects], higher_is_better=part.metric.higher_is_better, seed=0
    )
    return PooledKey(
        key=key,
        arm=part.arm_name,
        arm_names=tuple(names),
        arm_definition=arm_words(part.arm),
        baseline=part.baseline_name,
        baseline_definition=arm_words(part.baseline),
        condition=part.condition_label,
        noise=part.noise,
        rate=part.rate,
        definition=dict(part.condition),
        metric=part.metric,
        role="primary" if part.metric.key == primary.key else "secondary",
        effects=tuple(effects),
        result=result,
        sensitivity=sensitivity(result),
        loo=loo,
        improvement=improvement,
    )


_AGREE = (
    "every study had identical paired differences at every seed, so nothing measures the noise: no "
    "verdict, and its intervals rest on a floored variance, not on a measurement"
)


def _relabel(part: KeyParts, labels: dict[str, str]) -> KeyParts:
    from dataclasses import replace

    return replace(part, condition_label=labels[condition_id(part.condition)])


def _with_variance(effect: StudyEffect, variance: float) -> StudyEffect:
    from dataclasses import replace

    return replace(effect, variance=variance)


def _verdicts(
    pooled: list[PooledKey], primary: Any, margins: dict[str, float], alpha: float, power: float
) -> list[PooledKey]:
    from dataclasses import replace

    out = list(pooled)
    for metric_key in dict.fromkeys(p.metric.key for p in pooled):
        # keys without any variance are not tested and not counted in the family (no verdict)
        index = [i for i, p in enumerate(pooled) if p.metric.key == metric_key and not p.seeds_agree]
        margin = margins.get(metric_key, math.nan)
        for i, p in enumerate(pooled):
            if p.metric.key == metric_key:
                out[i] = replace(p, margin=margin)
        if not index:
            continue
        members = [pooled[i] for i in index]
        v = pooled_verdicts(
            [p.result for p in members],
            higher_is_better=members[0].metric.higher_is_better,
            margin=margin if math.isfinite(margin) else None,
            alpha=alpha,
            correction="holm" if metric_key == primary.key else "bh",
            power=power,
        )
        for j, i in enumerate(index):
            out[i] = replace(
                pooled[i],
                verdict=str(v.verdict[j]),
                p_adjusted=float(v.p_adjusted[j]),
                verdict_low=float(v.simultaneous_low[j]),
                verdict_high=float(v.simultaneous_high[j]),
                mde=float(v.mde[j]),
                margin=margin,
            )
    return out


def _label(pooled: list[PooledKey]) -> list[PooledKey]:
    """Keys the tables would print alike get the definitions in their label: one arm name for arms
    defined otherwise (``ls-0.1 (smoothed_ce eps=0.2)``), or the same arm against baselines defined
    otherwise (``ls vs gce q=0.7``). The tables show the arm's name only, so the name decides."""
    from dataclasses import replace

    by_name: dict[str, set[tuple[str, str]]] = {}
    for p in pooled:
        by_name.setdefault(p.arm, set()).add((p.arm_definition, p.baseline_definition))
    out = []
    for p in pooled:
        group = by_name[p.arm]
        label = p.arm
        if len({arm for arm, _ in group}) > 1:
            label += f" ({p.arm_definition})"
        if len({base for _, base in group}) > 1:
            label += f" vs {p.baseline_definition}"
        out.append(replace(p, arm=label) if label != p.arm else p)
    return out
