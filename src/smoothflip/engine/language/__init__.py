"""The language-model track (``kind = "lm"``): next-token smoothing trained as packs.

The corpus is the synthetic language (whose true next-token distribution is known at every
position) or the user's own text (:mod:`smoothflip.data.corpora`). Every arm trains the same tiny
causal LM (:mod:`smoothflip.lm.models`) on the same sequences; a run's seed drives its
initialization and data order.

Per epoch the validation and test splits are scored (next-token NLL, accuracy, ECE, model entropy,
and on the synthetic language the KL divergence from the true next-token distribution). The
selected epoch is the one with the lowest validation NLL (``[train] selection``); its weights are
kept, and at the end the selected and the last weights are scored in full, with temperature scaling
fitted on the validation tokens, and the model's next-token distribution after a few named contexts
("hello how are ...") is stored beside the true one.

- :mod:`.members` — the run's model and its loss context; :mod:`.evaluation` — scoring;
  :mod:`.tracking` — curves and selection; :mod:`.pack` / :mod:`.reference` — the trainers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from smoothflip.data.corpora import corpus_fingerprint, load_corpus
from smoothflip.engine.language.members import build_lm_member, lm_loss_context
from smoothflip.engine.language.pack import train_lm_pack
from smoothflip.engine.language.reference import train_lm_reference
from smoothflip.engine.language.tracking import LMTracker, finish
from smoothflip.engine.results import pack_timings
from smoothflip.engine.schedule import training_schedule
from smoothflip.engine.sizing import MAX_PACK, MEMORY_SHARE, check_fits, free_memory, meta_parameter_count
from smoothflip.errors import user_input
from smoothflip.study.grid import RunConfig
from smoothflip.study.spec.schema import StudySpec
from smoothflip.study.store import RunResult
from smoothflip.techniques import build_loss

__all__ = ["TRACK", "LanguageTrack", "train_lm_pack", "train_lm_reference"]


class LanguageTrack:
    """Language-model studies on a corpus; no label conditions, no flipping."""

    name = "language"

    def load(self, spec: StudySpec) -> Any:
        with user_input():
            return load_corpus(spec.to_dict()["data"], base_dir=spec.base_dir)

    def fingerprint(self, data: Any) -> str:
        return corpus_fingerprint(data)

    def describe(self, data: Any) -> str:
        return (
            f"{data.name}: {len(data.train)} / {len(data.validation)} / {len(data.test)} sequences of "
            f"{data.train.shape[1]} tokens, vocabulary {data.vocab_size}"
        )

    def check(self, spec: StudySpec, data: Any, runs: Sequence[RunConfig]) -> None:
        with user_input("model"):  # counted before it is allocated
            count = meta_parameter_count(lambda: build_lm_member(runs[0], data))
        if count is not None:
            check_fits(count, torch.device("cpu"), what=f"language model {runs[0].shared['model']['name']!r}")
        with user_input("model"):
            build_lm_member(runs[0], data)
        context = lm_loss_context(data)
        for arm in spec.arms:
            with user_input(f"arm {arm.name!r}"):
                build_loss(arm.loss, arm.params, context)

    def estimate(
        self, packs: Sequence[Sequence[RunConfig]], data: Any, *, device: torch.device, base_dir: str
    ) -> tuple[int, float | None]:
        """Planned optimizer steps (no timing probe for language models yet)."""
        n_train = int(data.train.shape[0])
        return sum(training_schedule(p[0].shared["train"], n_train).total_steps for p in packs if p), None

    def auto_pack_size(
        self, runs: Sequence[RunConfig], data: Any, *, device: torch.device, base_dir: str
    ) -> int:
        """The largest pack of language models that fits a quarter of free memory, capped."""
        batch_size = int(runs[0].shared["train"]["batch_size"])
        params = sum(p.numel() for p in build_lm_member(runs[0], data).parameters())
        tokens = batch_size * data.train.shape[1]
        per_member = 4 * (4 * params + 6 * tokens * data.vocab_size)  # logits, log-softmax, grads, slack
        fit = int(MEMORY_SHARE * free_memory(device) // per_member)
        return max(1, min(MAX_PACK.get(device.type, 64), fit))

    def train_pack(self, runs: Sequence[RunConfig], data: Any, **options: Any) -> list[RunResult]:
        return train_lm_pack(runs, data, **options)

    def train_reference(self, run: RunConfig, data: Any, **options: Any) -> RunResult:
        return train_lm_reference(run, data, **options)

    def skipped(self, run: RunConfig, data: Any, reason: str) -> RunResult:
        tracker = LMTracker(run)
        result = finish(tracker, data, torch.device("cpu"), None, None, pack_timings(0.0, 0, 0))
        result.extras["skipped"] = reason
        return result


TRACK = LanguageTrack()
