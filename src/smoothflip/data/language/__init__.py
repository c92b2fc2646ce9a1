"""A synthetic language whose true next-token distribution is known at every position.

:class:`SyntheticLanguage` is a seeded, sparse, higher-order Markov chain over ``vocab_size``
tokens. Because every next-token distribution is known exactly, a language model trained on it can
be scored against the *truth* (:func:`smoothflip.lm.metrics.kl_to_truth`), not only against the
sampled next token — the setting in which to ask whether label smoothing makes a model's
distribution closer to, or further from, the real one.

**Tokens.** ``0`` is ``<pad>`` and ``1`` is ``<bos>`` (every sequence starts with it; neither is
ever a next token). Then come the named words of the phrasebook (``hello``, ``how``, ``are``,
``you``, ...), and every other token is named after its id: ``w17``.

**The generic rule** (every context the phrasebook does not cover). The next token after a
history ``... x_{t-2}, x_{t-1}, x_t`` is drawn from a sparse set of ``candidates`` tokens with
**Zipfian** weights ``p_r ∝ r^(-s)`` over ranks ``r = 1..candidates``:

- *which* tokens are candidates depends on the last token ``x_t`` (a fixed random set per token);
- *how they are ranked* depends on ``x_t`` and on the *classes* of the ``order - 1`` tokens
  before it (each token has one of ``classes`` random classes, like a part of speech), through a
  hash of the context. So the chain has order ``order``, and a model that only sees the last token
  can at best reach the entropy of the mixture over rankings, which is higher.

Every generic context therefore has the same entropy ``H(candidates, s)``: the **entropy knob**.
Give ``mean_entropy`` (nats; the Zipf exponent ``s`` is solved for it exactly) or ``zipf_exponent``
directly. Lower entropy means fewer right answers per context; ``mean_entropy = log(candidates)``
makes all candidates equally likely (``s = 0``), ``0`` makes the chain deterministic. With
``candidates = 32``: ``s = 0`` → 3.47 nats, ``s = 1`` → 2.88, ``s = 1.5`` → 2.15, ``s = 2`` → 1.47,
``s = 3`` → 0.67; the default ``mean_entropy = 2.0`` gives ``s = 1.60``.

**The phrasebook** (``phrases=True``): a few hand-written contexts that override the generic rule,
matched on the longest suffix of the history (so the chain's true order is at least 3):

=====================  ===========================================================================
context                next-token distribution (``*``: the rest follows the generic rule)
=====================  ===========================================================================
``<bos>``              hello 0.25, ``*`` 0.75
``hello``              how 0.5, there 0.2, world 0.1, ``*`` 0.2
``hello how``          are 0.8, is 0.1, do 0.1
``hello how are``      you 0.6, things 0.15, we 0.1, they 0.1, ya 0.05
``how are you``        doing 0.4, today 0.3, ``*`` 0.3
=====================  ===========================================================================

About one sequence in ten starts "hello how are", after which "you" is the most likely token.

Layout: :mod:`~smoothflip.data.language._distributions` holds :class:`TokenDistributions` and the
Zipf helpers (:func:`zipf_entropy`, the exponent solver); :mod:`~smoothflip.data.language._chain`
the token ids :data:`PAD` / :data:`BOS`, the phrasebook and :class:`SyntheticLanguage`;
:mod:`~smoothflip.data.language._corpus` the :class:`Corpus` protocol, :class:`LanguageData`
and :func:`language_dataset`. Import everything from :mod:`smoothflip.data.language` itself.

Example:
    >>> lang = SyntheticLanguage(200, seed=0)
    >>> lang.most_likely("hello how are", top=3)
    [('you', 0.6), ('things', 0.15), ('we', 0.1)]
    >>> seqs = lang.sample(4, 12, seed=1)           # [N, length], seqs[:, 0] == <bos>
    >>> seqs.shape, lang.decode(seqs[0])[:5]
    ((4, 12), '<bos>')
    >>> true = lang.true_distributions(seqs)        # sparse: indices / probs [N, length - 1, W]
    >>> true.shape, true.dense().shape
    ((4, 11), (4, 11, 200))
    >>> round(lang.generic_entropy, 6)              # the default mean_entropy
    2.0
"""

from __future__ import annotations

from smoothflip.data.language._chain import BOS, PAD, SyntheticLanguage
from smoothflip.data.language._corpus import CORPUS_SPLITS, Corpus, LanguageData, language_dataset
from smoothflip.data.language._distributions import TokenDistributions, zipf_entropy

__all__ = [
    "BOS",
    "CORPUS_SPLITS",
    "PAD",
    "Corpus",
    "LanguageData",
    "SyntheticLanguage",
    "TokenDistributions",
    "language_dataset",
    "zipf_entropy",
]
