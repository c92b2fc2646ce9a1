"""Losses that drop into any PyTorch training loop, each a function plus an ``nn.Module`` twin.

All follow ``F.cross_entropy``'s conventions: logits ``[N, C]`` / ``[N, C, d1, ...]`` / ``[C]``,
hard (class index) or soft (probability) targets, ``weight``, ``ignore_index=-100``,
``reduction="mean"|"sum"|"none"``, float32 accumulation for fp16/bf16 logits. When every position
of a batch is ignored, ``"mean"`` gives NaN (as ``F.cross_entropy`` does) unless
``all_ignored="zero"``; the gradient is zero either way.

- :func:`smoothed_cross_entropy` — label smoothing: uniform (``F.cross_entropy(label_smoothing=)``
  semantics), off-target, prior/unigram and negative (Wei et al. 2022); optional z-loss.
- :func:`confidence_penalty_loss` — CE minus the prediction's entropy (Pereyra et al. 2017), plain
  or hinged.
- :func:`soft_target_cross_entropy`, :func:`distillation_loss` (Hinton et al. 2015, ``T^2`` scaled).
- Noise-robust baselines: :func:`generalized_cross_entropy`, :func:`symmetric_cross_entropy`,
  :func:`bootstrapping_loss`, :func:`forward_corrected_cross_entropy`.
- :class:`OnlineLabelSmoothing` — soft targets learned from the model's own correct predictions,
  one epoch behind (Zhang et al. 2021); stateful, with an ``end_epoch()`` hook.
- :func:`label_relaxation_loss` — no loss once ``p_y >= 1 - alpha``, else KL to that credal set
  (Lienen & Hüllermeier 2021).
"""

from smoothflip.losses.confidence import ConfidencePenaltyLoss, confidence_penalty_loss
from smoothflip.losses.distillation import DistillationLoss, distillation_loss
from smoothflip.losses.online import OnlineLabelSmoothing, online_label_smoothing_loss
from smoothflip.losses.relaxation import LabelRelaxationLoss, label_relaxation_loss
from smoothflip.losses.robust import (
    BootstrappingLoss,
    ForwardCorrectedCrossEntropy,
    GeneralizedCrossEntropy,
    SymmetricCrossEntropy,
    bootstrapping_loss,
    forward_corrected_cross_entropy,
    generalized_cross_entropy,
    symmetric_cross_entropy,
)
from smoothflip.losses.smoothing import (
    SmoothedCrossEntropy,
    SoftTargetCrossEntropy,
    smooth_targets,
    smoothed_cross_entropy,
    soft_target_cross_entropy,
)

__all__ = [
    "BootstrappingLoss",
    "ConfidencePenaltyLoss",
    "DistillationLoss",
    "ForwardCorrectedCrossEntropy",
    "GeneralizedCrossEntropy",
    "LabelRelaxationLoss",
    "OnlineLabelSmoothing",
    "SmoothedCrossEntropy",
    "SoftTargetCrossEntropy",
    "SymmetricCrossEntropy",
    "bootstrapping_loss",
    "confidence_penalty_loss",
    "distillation_loss",
    "forward_corrected_cross_entropy",
    "generalized_cross_entropy",
    "label_relaxation_loss",
    "online_label_smoothing_loss",
    "smooth_targets",
    "smoothed_cross_entropy",
    "soft_target_cross_entropy",
    "symmetric_cross_entropy",
]
