"""Tiny causal language models that train fast on a CPU and stack under ``torch.vmap``.

Every model is a :class:`CausalLM`: an embedding-based ``body`` mapping token ids ``[B, T]`` to
features ``[B, T, F]``, and a linear ``head`` (``nn.Linear(F, V)``) mapping them to next-token
logits ``[B, T, V]``. Position ``t`` sees only the ``context`` tokens ``t - context + 1 .. t``
(a window that reaches before a sequence's start sees only its start), never a later one. Give
``context >= T`` for a model that sees the whole prefix.

Like :mod:`smoothflip.models`, the models are built for the study engine, which trains many
copies at once with :func:`torch.func.stack_module_state` and ``torch.vmap(functional_call(...))``:
no dropout, no batch statistics, no in-place ops, no data-dependent control flow; the causal mask
is built in ``forward`` from the sequence length only. Construction draws from torch's global RNG
only (``torch.manual_seed`` before :func:`build_lm` fixes the parameters).

Models (options and defaults in :func:`lm_options`):

===============  =========================================================================
``transformer``  one pre-LayerNorm transformer block: causal multi-head self-attention over
                 the last ``context`` tokens (learned absolute positions up to
                 ``max_length``) and a GELU MLP, each with a residual connection, then a
                 final LayerNorm. ``"attention"`` is accepted as an alias (its first name).
``gru``          a single-layer GRU (Cho et al. 2014; the gate equations of
                 :class:`torch.nn.GRU`) over token embeddings of width ``dim``, written with
                 explicit gate matmuls so that it batches under ``torch.vmap`` (``nn.GRU``'s
                 fused kernel does not); features are its ``hidden`` state.
``mlp``          a fixed-window neural LM (Bengio et al. 2003): the embeddings of the last
                 ``context`` tokens, concatenated, through an MLP (``hidden``, ``activation``).
===============  =========================================================================

**The GRU and ``context``.** With ``context >= T`` the GRU runs once over the sequence from a zero
state (``T`` steps), exactly :class:`torch.nn.GRU`. With ``context < T`` each position gets its own
run from a zero state over its last ``context`` tokens only (``context`` steps over all ``B * T``
windows at once), so the model obeys the same window as the others — at ``context`` times the
arithmetic (on a CPU, ``context=8`` at ``T=64`` trains about 2x slower than ``context=64``). Give
a GRU ``context >= T`` unless the window itself is what is studied.

Example:
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> lm = build_lm("mlp", vocab_size=50, context=3)
    >>> ids = torch.randint(0, 50, (4, 12))
    >>> lm(ids).shape, lm.features(ids).shape
    (torch.Size([4, 12, 50]), torch.Size([4, 12, 128]))
    >>> gru = build_lm("gru", vocab_size=50, context=12)
    >>> gru(ids).shape, gru.feature_dim
    (torch.Size([4, 12, 50]), 64)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smoothflip._validation import check_choice, check_int
from smoothflip.models import BodyHead

__all__ = ["LM_ACTIVATIONS", "LM_MODELS", "LM_MODEL_ALIASES", "CausalLM", "build_lm", "lm_options"]

#: Names of the built-in language models.
LM_MODELS: tuple[str, ...] = ("transformer", "gru", "mlp")

#: Other names accepted for a built-in model: alias → name in :data:`LM_MODELS`.
LM_MODEL_ALIASES: Mapping[str, str] = MappingProxyType({"attention": "transformer"})

#: Activations the ``mlp`` accepts.
LM_ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "tanh")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "transformer": {"embedding": 32, "heads": 2, "mlp_ratio": 4, "max_length": 256},
    "gru": {"dim": 32, "hidden": 64},
    "mlp": {"embedding": 32, "hidden": [128], "activation": "relu"},
}


class CausalLM(BodyHead):
    """Token ids ``[B, T]`` → features ``[B, T, F]`` (``body``) → logits ``[B, T, V]`` (``head``).

    Args:
        body: maps int64 token ids ``[B, T]`` to features ``[B, T, F]``, causally.
        head: ``nn.Linear(F, V)``.

    Example:
        >>> lm = CausalLM(nn.Embedding(10, 4), nn.Linear(4, 10))
        >>> lm(torch.zeros(2, 3, dtype=torch.long)).shape, lm.vocab_size, lm.feature_dim
        (torch.Size([2, 3, 10]), 10, 4)
    """

    @property
    def vocab_size(self) -> int:
        """``V``, the number of logits per position."""
        return self.head.out_features

    def features(self, input_ids: Tensor) -> Tensor:
        """Features ``[B, T, F]`` of token ids ``[B, T]``."""
        return self.body(input_ids)

    def forward(self, input_ids: Tensor) -> Tensor:
        """Next-token logits ``[B, T, V]``: position ``t`` scores the token at ``t + 1``."""
        return self.head(self.body(input_ids))


class _WindowMLP(nn.Module):
    """Concatenated embeddings of the last ``context`` tokens → MLP; features ``[B, T, hidden[-1]]``."""

    def __init__(
        self, vocab_size: int, context: int, embedding: int, hidden: list[int], activation: str
    ) -> None:
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(vocab_size, embedding)
        layers: list[nn.Module] = []
        width = context * embedding
        for h in hidden:
            layers += [nn.Linear(width, h), _ACTIVATION[activation]()]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, input_ids: Tensor) -> Tensor:
        emb = self.embed(input_ids)  # [B, T, E]
        t = emb.shape[-2]
        padded = F.pad(emb, (0, 0, self.context - 1, 0))  # zeros before the start: [B, T + c - 1, E]
        # oldest token first; slice i holds the token i - (c - 1) positions back
        window = torch.cat([padded[..., i : i + t, :] for i in range(self.context)], dim=-1)
        return self.mlp(window)


class _AttentionBlock(nn.Module):
    """Embedding + positions → one pre-LN transformer block (banded causal mask) → LayerNorm."""

    def __init__(
        self, vocab_size: int, context: int, embedding: int, heads: int, mlp_ratio: int, max_length: int
    ) -> None:
        super().__init__()
        self.context = context
        self.heads = heads
        self.max_length = max_length
        self.embed = nn.Embedding(vocab_size, embedding)
        self.position = nn.Embedding(max_length, embedding)
        self.norm1 = nn.LayerNorm(embedding)
        self.qkv = nn.Linear(embedding, 3 * embedding)
        self.proj = nn.Linear(embedding, embedding)
        self.norm2 = nn.LayerNorm(embedding)
        self.mlp = nn.Sequential(
            nn.Linear(embedding, mlp_ratio * embedding),
            nn.GELU(),
            nn.Linear(mlp_ratio * embedding, embedding),
        )
        self.norm_out = nn.LayerNorm(embedding)
        self.out_features = embedding

    def forward(self, input_ids: Tensor) -> Tensor:
        t = input_ids.shape[-1]
        if t > self.max_length:
            raise ValueError(f"sequence length {t} exceeds the model's max_length={self.max_length}")
        positions = torch.arange(t, device=input_ids.device)
        x = self.embed(input_ids) + self.position(positions)  # [B, T, E]
        *lead, _, e = x.shape
        d = e // self.heads
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        # [B, T, E] -> [B, H, T, d]
        q, k, v = (z.reshape(*lead, t, self.heads, d).transpose(-3, -2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # [B, H, T, T]
        i = positions.unsqueeze(1)
        j = positions.unsqueeze(0)
        allowed = (j <= i) & (j > i - self.context)  # causal, and at most `context` tokens back
        scores = scores.masked_fill(~allowed, float("-inf"))
        attended = torch.softmax(scores, dim=-1) @ v  # [B, H, T, d]
        x = x + self.proj(attended.transpose(-3, -2).reshape(*lead, t, e))
        x = x + self.mlp(self.norm2(x))
        return self.norm_out(x)


class _GRU(nn.Module):
    """Embedding → single-layer GRU from a zero state; features ``[B, T, hidden]``.

    The gates are those of :class:`torch.nn.GRU` (reset ``r``, update ``z``, candidate ``n``; the
    weights have its layout, so its parameters can be copied in)::

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    ``input.weight`` ``[3H, dim]`` and ``recurrent.weight`` ``[3H, H]`` stack the ``r, z, n``
    blocks; every weight and bias is drawn from ``U(-1/√H, 1/√H)``, as ``nn.GRU`` does.
    """

    def __init__(self, vocab_size: int, context: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.context = context
        self.hidden = hidden
        self.embed = nn.Embedding(vocab_size, dim)
        self.input = nn.Linear(dim, 3 * hidden)
        self.recurrent = nn.Linear(hidden, 3 * hidden)
        bound = 1.0 / math.sqrt(hidden)
        for layer in (self.input, self.recurrent):
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.uniform_(layer.bias, -bound, bound)
        self.out_features = hidden

    def _step(self, gi: Tensor, h: Tensor) -> Tensor:
        """One GRU step: input projection ``gi`` ``[..., 3H]`` and state ``h`` ``[..., H]`` → ``[..., H]``."""
        gh = self.recurrent(h)
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        return (1 - z) * n + z * h

    def forward(self, input_ids: Tensor) -> Tensor:
        gi = self.input(self.embed(input_ids))  # [B, T, 3H]: every input projection at once
        t = gi.shape[-2]
        h = gi.new_zeros((*gi.shape[:-2], self.hidden))  # [B, H]
        if self.context >= t:  # the whole prefix: one run over the sequence
            states = []
            for step in range(t):
                h = self._step(gi[..., step, :], h)
                states.append(h)
            return torch.stack(states, dim=-2)
        # one run per position over its last `context` tokens, all positions at once: step k reads
        # the token k - (c - 1) positions from each position, skipped before the sequence's start
        c = self.context
        padded = F.pad(gi, (0, 0, c - 1, 0))  # [B, T + c - 1, 3H]
        positions = torch.arange(t, device=gi.device)
        h = gi.new_zeros((*gi.shape[:-1], self.hidden))  # [B, T, H]
        for k in range(c):
            new = self._step(padded[..., k : k + t, :], h)
            if k < c - 1:
                new = torch.where((positions >= c - 1 - k).unsqueeze(-1), new, h)
            h = new
        return h


_ACTIVATION: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def lm_options(name: str) -> dict[str, Any]:
    """The options a built-in language model accepts, with their defaults (a fresh copy).

    - ``transformer`` (alias ``attention``): ``embedding`` (32) model width, ``heads`` (2, must
      divide ``embedding``), ``mlp_ratio`` (4) MLP width / model width, ``max_length`` (256)
      longest sequence.
    - ``gru``: ``dim`` (32) token embedding width, ``hidden`` (64) GRU state width.
    - ``mlp``: ``embedding`` (32) per-token width, ``hidden`` ([128]) hidden widths (the empty
      list gives a linear model over the window), ``activation`` (``"relu"`` | ``"gelu"`` |
      ``"tanh"``).

    Example:
        >>> lm_options("transformer")
        {'embedding': 32, 'heads': 2, 'mlp_ratio': 4, 'max_length': 256}
        >>> lm_options("gru")
        {'dim': 32, 'hidden': 64}
    """
    return copy.deepcopy(_DEFAULTS[_canonical(name)])


def build_lm(
    name: str,
    *,
    vocab_size: int,
    context: int,
    options: Mapping[str, Any] | None = None,
) -> CausalLM:
    """Build a built-in causal LM, initialized from torch's global RNG.

    Parameter counts with the default options: ``transformer`` ``20960 + 65 V``, ``gru``
    ``18816 + 97 V``, ``mlp`` ``4096 * context + 128 + 161 V`` (at ``V = 100``,
    ``context = 3``: 27460, 28516 and 28516).

    Args:
        name: ``"transformer"`` (or its alias ``"attention"``), ``"gru"`` or ``"mlp"``.
        vocab_size: ``V >= 2``.
        context: how many tokens each position sees, itself included (``>= 1``); ``1`` gives a
            bigram model; ``>=`` the sequence length lets every position see its whole prefix.
        options: model options (see :func:`lm_options`); None means all defaults.

    Returns:
        A :class:`CausalLM` mapping token ids ``[B, T]`` (int64) to logits ``[B, T, V]``.

    Raises:
        ValueError: an unknown name or option, or a value out of range (named ``model.<option>``).
        TypeError: an option of the wrong type.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> lm = build_lm("transformer", vocab_size=40, context=8, options={"embedding": 16})
        >>> lm(torch.zeros(3, 10, dtype=torch.long)).shape
        torch.Size([3, 10, 40])
        >>> gru = build_lm("gru", vocab_size=40, context=64, options={"dim": 8, "hidden": 16})
        >>> gru(torch.zeros(3, 10, dtype=torch.long)).shape
        torch.Size([3, 10, 40])
    """
    name = _canonical(name)
    vocab_size = check_int("vocab_size", vocab_size, low=2)
    context = check_int("context", context, low=1)
    opts = _resolve(name, options)
    body: nn.Module
    if name == "mlp":
        body = _WindowMLP(vocab_size, context, **opts)
    elif name == "gru":
        body = _GRU(vocab_size, context, **opts)
    else:
        body = _AttentionBlock(vocab_size, context, **opts)
    return CausalLM(body, nn.Linear(body.out_features, vocab_size))


def _canonical(name: Any) -> str:
    """The name in :data:`LM_MODELS` of ``name`` or of the model it is an alias of."""
    if isinstance(name, str) and name in LM_MODEL_ALIASES:
        return LM_MODEL_ALIASES[name]
    return check_choice("model.name", name, LM_MODELS)


def _resolve(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    opts = lm_options(name)
    if options is None:
        return opts
    if not isinstance(options, Mapping):
        raise TypeError(f"model options must be a mapping, got {type(options).__name__}")
    for key, value in options.items():
        if key not in opts:
            raise ValueError(f"model.{key}: unknown option for {name!r}; allowed: {', '.join(opts)}")
        opts[key] = value
    if name == "mlp":
        opts["embedding"] = check_int("model.embedding", opts["embedding"], low=1)
        hidden = opts["hidden"]
        if isinstance(hidden, int | str) or not isinstance(hidden, list | tuple):
            raise TypeError(f"model.hidden must be a list of widths, got {hidden!r}")
        opts["hidden"] = [check_int("model.hidden", h, low=1) for h in hidden]
        opts["activation"] = check_choice("model.activation", opts["activation"], LM_ACTIVATIONS)
    elif name == "gru":
        opts["dim"] = check_int("model.dim", opts["dim"], low=1)
        opts["hidden"] = check_int("model.hidden", opts["hidden"], low=1)
    else:
        opts["embedding"] = check_int("model.embedding", opts["embedding"], low=1)
        opts["heads"] = check_int("model.heads", opts["heads"], low=1)
        if opts["embedding"] % opts["heads"]:
            raise ValueError(
                f"model.heads must divide model.embedding ({opts['embedding']}), got {opts['heads']}"
            )
        opts["mlp_ratio"] = check_int("model.mlp_ratio", opts["mlp_ratio"], low=1)
        opts["max_length"] = check_int("model.max_length", opts["max_length"], low=1)
    return opts
