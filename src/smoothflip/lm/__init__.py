"""Language-model track: token-level losses, next-token metrics and tiny causal LMs.

- :mod:`smoothflip.lm.losses` — :func:`causal_lm_loss` over logits ``[B, T, V]`` with the causal
  shift done right: cross-entropy, uniform / negative / unigram-prior label smoothing (optionally
  keeping smoothing mass off tokens that are never targets), confidence penalty; built on
  :mod:`smoothflip.losses`, and on the fused kernels of :mod:`smoothflip.kernels` on CUDA;
  :func:`causal_lm_linear_loss` takes hidden states and the unembedding matrix instead of logits.
- :mod:`smoothflip.lm.metrics` — perplexity, next-token accuracy and ECE, model entropy, and, for
  data with known next-token distributions, :func:`kl_to_truth` and :func:`true_entropy`.
- :mod:`smoothflip.lm.models` — :func:`build_lm`: a one-block causal Transformer, a GRU (explicit
  gates) or a window MLP, all vmap-compatible for the study engine.
- :mod:`smoothflip.lm.hf` (optional extra ``hf``, imported on its own) — a ``compute_loss_func``
  for the Hugging Face ``Trainer``.

The synthetic language with known next-token distributions lives in
:mod:`smoothflip.data.language`.

Example:
    >>> import torch
    >>> from smoothflip.data.language import SyntheticLanguage
    >>> from smoothflip.lm import build_lm, causal_lm_loss, kl_to_truth
    >>> lang = SyntheticLanguage(100, seed=0)
    >>> ids = torch.from_numpy(lang.sample(8, 16, seed=0))
    >>> _ = torch.manual_seed(0)
    >>> lm = build_lm("mlp", vocab_size=100, context=3)
    >>> loss = causal_lm_loss(lm(ids), ids, kind="smoothed", eps=0.1, never_target=lang.never_target)
    >>> loss.backward()
    >>> kl = kl_to_truth(lang.true_distributions(ids.numpy()), lm(ids))
    >>> kl > 0
    True
"""

from smoothflip.lm.losses import (
    KINDS,
    CausalLMLoss,
    causal_lm_linear_loss,
    causal_lm_loss,
    shift_labels,
    smoothing_prior,
    unigram_prior,
)
from smoothflip.lm.metrics import (
    kl_to_truth,
    lm_metrics,
    model_entropy,
    next_token_accuracy,
    next_token_ece,
    next_token_nll,
    perplexity,
    true_entropy,
)
from smoothflip.lm.models import LM_ACTIVATIONS, LM_MODELS, CausalLM, build_lm, lm_options

__all__ = [
    "KINDS",
    "LM_ACTIVATIONS",
    "LM_MODELS",
    "CausalLM",
    "CausalLMLoss",
    "build_lm",
    "causal_lm_linear_loss",
    "causal_lm_loss",
    "kl_to_truth",
    "lm_metrics",
    "lm_options",
    "model_entropy",
    "next_token_accuracy",
    "next_token_ece",
    "next_token_nll",
    "perplexity",
    "shift_labels",
    "smoothing_prior",
    "true_entropy",
    "unigram_prior",
]
