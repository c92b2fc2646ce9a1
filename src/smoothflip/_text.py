"""Terminal-safe text: finding and escaping control characters in names.

A study directory someone sends you holds names (arms, conditions, the study's own) that its author
chose. A name carrying terminal control characters (``"\\x1b]0;pwned\\x07"`` retitles a terminal,
``"\\x1b[2J"`` clears it) must never reach a terminal or a Markdown file raw: the study file refuses
them when it is read (:func:`control_characters`), and everything that shows a name read from a
store writes it through :func:`printable`.

Example:
    >>> printable("ls\\x1b[2J-0.1")
    'ls\\\\x1b[2J-0.1'
    >>> control_characters("ce"), control_characters("a\\u202eb")
    ('', "'\\\\u202e'")
"""

from __future__ import annotations

import unicodedata

__all__ = ["control_characters", "printable", "safe_name"]

_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Bidirectional overrides and isolates: they reorder what a terminal or an editor shows."""


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc" or ch in _BIDI


def control_characters(text: str) -> str:
    """The distinct control characters in ``text``, escaped and quoted (``"'\\\\x1b', '\\\\x07'"``),
    or ``""`` when there are none."""
    found = dict.fromkeys(ch for ch in text if _is_control(ch))
    return ", ".join(repr(ch)[1:-1].join("''") for ch in found)


def printable(text: object) -> str:
    """``text`` with each control character written as its Python escape (``\\x1b``, ``\\u202e``)."""
    value = str(text)
    if not any(_is_control(ch) for ch in value):
        return value
    return "".join(ch.encode("unicode_escape").decode("ascii") if _is_control(ch) else ch for ch in value)


def safe_name(name: str) -> str:
    """A study's name as a folder name (``smoothflip-runs/<it>``, the default study directory of
    ``smoothflip run`` and ``study.run()`` alike): letters and digits of any script, ``-``, ``_``
    and ``.`` kept, anything else ``-``, no leading or trailing ``.`` or ``-``; ``"study"`` if empty.

    Example:
        >>> safe_name("étude: ls/0.1"), safe_name("日本"), safe_name("..")
        ('étude--ls-0.1', '日本', 'study')
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip(".-")
    return safe or "study"
