"""Stable ids: canonical JSON, short hashes and per-purpose seeds.

A run's id, a condition's id and a study's identity are hashes of canonical JSON (sorted keys, no
whitespace, tuples as lists), so they do not depend on dict order or on the Python process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """Mappings as dicts with string keys and tuples as lists, recursively (JSON-able form)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), allow_nan=True)


def short_hash(value: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``value`` (a string, or its canonical JSON)."""
    text = value if isinstance(value, str) else canonical_json(value)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def derive_seed(seed: int, *purpose: Any) -> int:
    """A 63-bit seed for one purpose of a run (``"noise"``, ``"init"``, ``"order"`` ...).

    Purposes are hashed, so adding an arm or a condition never changes the seeds of the others.
    """
    key = canonical_json([seed, *purpose]).encode("utf-8")
    words = np.frombuffer(hashlib.sha256(key).digest()[:16], dtype=np.uint32)
    state = np.random.SeedSequence([int(w) for w in words]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def condition_id(definition: Mapping[str, Any]) -> str:
    """The id of a label condition: a hash of its resolved definition (model, rate, every option).

    Results are stored and grouped under this id; the condition's label is for display only, so two
    conditions that print alike (two asymmetric maps at the same rate) never merge.
    """
    return short_hash({"condition": plain(definition)})
