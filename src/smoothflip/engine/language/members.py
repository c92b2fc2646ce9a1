"""A language-model run's model and the loss context its techniques are built in."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from smoothflip.lm.losses import unigram_prior
from smoothflip.lm.models import build_lm
from smoothflip.study.grid import RunConfig
from smoothflip.techniques import LossContext


def build_lm_member(run: RunConfig, corpus: Any) -> torch.nn.Module:
    """The run's language model, initialized from its ``init`` seed without touching the caller's RNG."""
    cfg = run.shared["model"]
    options = {k: v for k, v in cfg.get("options", {}).items() if k != "context"}
    context = int(cfg.get("options", {}).get("context", 8))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed_for("init"))
        return build_lm(cfg["name"], vocab_size=corpus.vocab_size, context=context, options=options)


def lm_loss_context(corpus: Any) -> LossContext:
    """Every member's loss context: the vocabulary, the tokens that never receive smoothing mass (BOS,
    PAD), and the unigram distribution of the training targets (add-one smoothed) for ``prior = "train"``.

    Language-model members share it: the corpus is the same for every run.
    """
    never = torch.as_tensor(np.asarray(corpus.never_target, dtype=bool))
    prior = unigram_prior(corpus.train[:, 1:], corpus.vocab_size, smoothing=1.0, never_target=never)
    return LossContext(num_classes=corpus.vocab_size, class_prior=prior, no_smoothing=never, key="corpus")
