"""Fused large-vocabulary smoothed cross-entropy: Triton kernels on CUDA, an exact chunked torch fallback.

- :func:`linear_cross_entropy` (module twin :class:`LinearCrossEntropy`): the loss of
  ``hidden @ weight.T + bias`` without ever materializing the ``[N, V]`` logits.
- :func:`cross_entropy` (module twin :class:`CrossEntropy`): the same loss on given ``[N, V]`` logits
  with at most one logits-sized gradient buffer of extra memory (none with ``inplace_backward=True``).

Both compute, per non-ignored row, label-smoothed cross-entropy with uniform ``eps / V`` smoothing
(``eps`` may be negative), minus ``beta`` times the prediction's entropy (the confidence penalty),
plus ``z_loss * logsumexp^2``; ``"mean"`` is over non-ignored rows. ``backend="auto"`` uses the
Triton kernels (:mod:`smoothflip.kernels.triton_ce`, imported only when needed) for CUDA tensors
and the torch fallback (:mod:`smoothflip.kernels.torch_chunked`) everywhere else. The materializing
references in :mod:`smoothflip.kernels.reference` define what both must equal.
"""

from smoothflip.kernels.api import CrossEntropy, LinearCrossEntropy, cross_entropy, linear_cross_entropy

__all__ = ["CrossEntropy", "LinearCrossEntropy", "cross_entropy", "linear_cross_entropy"]
