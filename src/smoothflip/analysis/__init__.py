"""Paired statistics and verdicts: does an arm help, hurt, match the baseline, or is it too early to say?

The statistics work on plain arrays of per-seed differences ``arm - baseline`` (rliable-style) and
know nothing of studies; the study layer (:mod:`smoothflip.study.compare`, :mod:`smoothflip.study.meta`)
adapts stored runs to them.

================================================  ==================================================
module                                            what it holds
================================================  ==================================================
:mod:`~smoothflip.analysis.compare`               :func:`paired_comparison` of two arrays paired by
                                                  seed, :class:`Comparison`, the metric table, the
                                                  per-comparison :func:`verdict_of` (no correction)
:mod:`~smoothflip.analysis.text`                  :func:`format_diff`, :func:`headline`, :func:`headlines`
:mod:`~smoothflip.analysis.intervals`             bootstrap and t intervals, interquartile mean
:mod:`~smoothflip.analysis.paired`                paired t-test, exact sign-flip test, TOST equivalence
:mod:`~smoothflip.analysis.multiplicity`          Holm (FWER) and Benjamini-Hochberg (FDR)
:mod:`~smoothflip.analysis.power`                 power and minimum detectable effect (noncentral t),
                                                  seeds to detect an effect or show equivalence
:mod:`~smoothflip.analysis.planning`              :func:`plan_cells`: the seeds each inconclusive
                                                  cell of a family needs, at its family's level
:mod:`~smoothflip.analysis.sequential`            safe t-test e-process, anytime-valid p-values,
                                                  confidence sequences
:mod:`~smoothflip.analysis.verdicts`              :func:`family_verdicts` (helps / hurts / equivalent
                                                  / inconclusive with error control), the
                                                  until-settled loop's decision functions
:mod:`~smoothflip.analysis.meta`                  :func:`random_effects` (REML / PM / DL / FE, HKSJ),
                                                  leave-one-out, pooled verdicts across studies
================================================  ==================================================

Chosen methods, in one paragraph each (the module docstrings give formulas, references and
measured numbers):

- **Primary metric**: Holm's step-down over every arm × condition cell, on the paired t-test
  (fixed design) or on anytime-valid p-values (sequential design), controls the family-wise error
  rate under any dependence between cells; the equivalence claims (TOST) share the same Holm
  family with Shaffer's logical bound (a cell cannot be both "no difference" and "not
  equivalent"), so one ``alpha`` covers every helps, hurts and equivalent claim.
- **Secondary metrics**: Benjamini-Hochberg over the same hypotheses (false discovery rate).
- **Adding seeds and looking again** (``--until-settled``): the safe t-test e-process
  (Grünwald, de Heide & Koolen 2024; Pérez-Ortiz et al. 2024): valid under any stopping rule at
  every ``n >= 2`` for normal differences with unknown variance, with no planned number of looks.

Example:
    >>> from smoothflip.analysis import family_verdicts, holm, minimum_detectable_effect
    >>> round(minimum_detectable_effect(5, 1.0, alpha=0.05), 2)
    1.68
    >>> holm([0.001, 0.03, 0.04]).reject.tolist()
    [True, False, False]
"""

from smoothflip.analysis.compare import (
    LM_METRICS,
    METRICS,
    SELECTIVE_METRICS,
    VERDICTS,
    Comparison,
    MetricSpec,
    comparisons_frame,
    metric_specs,
    paired_comparison,
    verdict_of,
)
from smoothflip.analysis.intervals import (
    MIN_SEEDS,
    MIN_SEEDS_IQM,
    expanded_level,
    interquartile_mean,
    paired_interval,
    paired_t_interval,
)
from smoothflip.analysis.meta import LeaveOneOut, MetaResult, leave_one_out, random_effects
from smoothflip.analysis.meta_family import (
    PooledVerdicts,
    ProbabilityOfImprovement,
    paired_probability_of_improvement,
    pooled_verdicts,
)
from smoothflip.analysis.multiplicity import MultipleTests, benjamini_hochberg, holm
from smoothflip.analysis.paired import (
    PairedTTest,
    SignFlipTest,
    Tost,
    paired_t_test,
    sign_flip_test,
    tost,
)
from smoothflip.analysis.planning import CellPlans, plan_cells, planning_level
from smoothflip.analysis.power import (
    MAX_PLAN_SEEDS,
    minimum_detectable_effect,
    power_of_equivalence,
    power_of_paired_t,
    seeds_to_detect,
    seeds_to_show_equivalence,
)
from smoothflip.analysis.sequential import (
    DEFAULT_PRIOR_SD,
    anytime_p_value,
    confidence_sequence,
    sequential_critical_t,
    sequential_minimum_detectable_effect,
    t_e_process,
)
from smoothflip.analysis.text import format_diff, format_size, headline, headlines
from smoothflip.analysis.verdicts import (
    CORRECTIONS,
    DESIGNS,
    FAMILY_VERDICTS,
    CellVerdict,
    FamilyVerdicts,
    UntilSettled,
    cells_to_extend,
    family_verdicts,
    replay_until_settled,
    sequential_verdicts,
)

__all__ = [
    "CORRECTIONS",
    "DEFAULT_PRIOR_SD",
    "DESIGNS",
    "FAMILY_VERDICTS",
    "LM_METRICS",
    "MAX_PLAN_SEEDS",
    "METRICS",
    "MIN_SEEDS",
    "MIN_SEEDS_IQM",
    "SELECTIVE_METRICS",
    "VERDICTS",
    "CellPlans",
    "CellVerdict",
    "Comparison",
    "FamilyVerdicts",
    "LeaveOneOut",
    "MetaResult",
    "MetricSpec",
    "MultipleTests",
    "PairedTTest",
    "PooledVerdicts",
    "ProbabilityOfImprovement",
    "SignFlipTest",
    "Tost",
    "UntilSettled",
    "anytime_p_value",
    "benjamini_hochberg",
    "cells_to_extend",
    "comparisons_frame",
    "confidence_sequence",
    "expanded_level",
    "family_verdicts",
    "format_diff",
    "format_size",
    "headline",
    "headlines",
    "holm",
    "interquartile_mean",
    "leave_one_out",
    "metric_specs",
    "minimum_detectable_effect",
    "paired_comparison",
    "paired_interval",
    "paired_probability_of_improvement",
    "paired_t_interval",
    "paired_t_test",
    "plan_cells",
    "planning_level",
    "pooled_verdicts",
    "power_of_equivalence",
    "power_of_paired_t",
    "random_effects",
    "replay_until_settled",
    "seeds_to_detect",
    "seeds_to_show_equivalence",
    "sequential_critical_t",
    "sequential_minimum_detectable_effect",
    "sequential_verdicts",
    "sign_flip_test",
    "t_e_process",
    "tost",
    "verdict_of",
]
