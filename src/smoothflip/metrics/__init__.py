"""Metrics that show what label smoothing and label flipping do to a classifier.

Everything here takes NumPy arrays or torch tensors (any device or dtype; they are detached and
copied to the CPU) and returns Python floats or NumPy arrays. All arithmetic is done in float64.

Shapes used throughout:

- ``probs``: ``[N, K]`` class probabilities; every entry in ``[0, 1]`` and every row summing to 1
  within ``1e-4``.
- ``logits``: ``[N, K]`` unnormalized scores (finite).
- ``labels``: ``[N]`` integer class indices in ``[0, K)``.

Contents, one module per concept (every name is re-exported here):

- :mod:`~smoothflip.metrics.scores`: :func:`accuracy`, :func:`nll`, :func:`nll_from_logits`,
  :func:`brier_score`;
- :mod:`~smoothflip.metrics.calibration`: :func:`expected_calibration_error` (ECE, RMS calibration
  error, MCE; equal-width or equal-count bins) and :func:`reliability_diagram`, both built on one
  binning helper; :func:`classwise_calibration_error` (class-wise ECE, Kull et al. 2019 / static
  calibration error, Nixon et al. 2019); :func:`fit_temperature` / :func:`apply_temperature`
  (temperature scaling, Guo et al. 2017);
- :mod:`~smoothflip.metrics.smooth`: :func:`smooth_ece` (Błasiok & Nakkiran, ICLR 2024: kernel
  smoothing with a self-consistent bandwidth, no bins);
- :mod:`~smoothflip.metrics.intervals`: :func:`calibration_error_interval` (percentile bootstrap over
  test examples, seeded, vectorized over resamples);
- :mod:`~smoothflip.metrics.selective`: :func:`risk_coverage_curve`, :func:`aurc`,
  :func:`excess_aurc`, :func:`selective_risk` (selective classification, Geifman & El-Yaniv 2017);
- :mod:`~smoothflip.metrics.representation`: :func:`mutual_information` (the estimator of Müller,
  Kornblith & Hinton 2019, appendix A.2); :func:`penultimate_plane` / :func:`penultimate_projection`
  (the penultimate-layer visualization of Müller et al. 2019, §2) and :func:`cluster_geometry`.
"""

# The constants and the binning helpers stay reachable as ``metrics.X`` (the tests use them).
from smoothflip.metrics._common import PROB_FLOOR as PROB_FLOOR
from smoothflip.metrics._common import PROB_SUM_ATOL as PROB_SUM_ATOL
from smoothflip.metrics.calibration import (
    ReliabilityDiagram,
    apply_temperature,
    classwise_calibration_error,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)
from smoothflip.metrics.calibration import _assign_bins as _assign_bins
from smoothflip.metrics.calibration import _quantile_edges as _quantile_edges
from smoothflip.metrics.calibration import _reliability as _reliability
from smoothflip.metrics.calibration import _uniform_edges as _uniform_edges
from smoothflip.metrics.intervals import MetricInterval, calibration_error_interval
from smoothflip.metrics.representation import (
    ClusterGeometry,
    PenultimatePlane,
    cluster_geometry,
    mutual_information,
    penultimate_plane,
    penultimate_projection,
)
from smoothflip.metrics.scores import accuracy, brier_score, nll, nll_from_logits
from smoothflip.metrics.selective import (
    RiskCoverageCurve,
    aurc,
    excess_aurc,
    risk_coverage_curve,
    selective_risk,
)
from smoothflip.metrics.smooth import smooth_ece

__all__ = [
    "ClusterGeometry",
    "MetricInterval",
    "PenultimatePlane",
    "ReliabilityDiagram",
    "RiskCoverageCurve",
    "accuracy",
    "apply_temperature",
    "aurc",
    "brier_score",
    "calibration_error_interval",
    "classwise_calibration_error",
    "cluster_geometry",
    "excess_aurc",
    "expected_calibration_error",
    "fit_temperature",
    "mutual_information",
    "nll",
    "nll_from_logits",
    "penultimate_plane",
    "penultimate_projection",
    "reliability_diagram",
    "risk_coverage_curve",
    "selective_risk",
    "smooth_ece",
]
