"""The errors smoothflip raises for problems of the user's making.

Every user-facing error is a :class:`SmoothflipError` (a ``ValueError``, so ``except ValueError``
keeps working): a study file that cannot run, a data file that cannot be read, a store that is not
a smoothflip store, a user's own model factory or training function that fails. Its message is one
line that names the problem. The ``smoothflip`` command prints such errors as ``error: ...`` with
exit code 2; anything else that escapes is a bug in smoothflip and shows its traceback (exit 1).

Library functions (losses, noise models, metrics) keep raising plain ``ValueError`` / ``TypeError``
for bad arguments, as PyTorch and NumPy do; where user input enters them (a study file, a data file,
a command-line option) the caller converts those into a :class:`SmoothflipError` with
:func:`user_input`, which names where the value came from.

Example:
    >>> from smoothflip.errors import SmoothflipError, user_input
    >>> try:
    ...     with user_input("arms[1] (ls)"):
    ...         raise ValueError("eps must be <= 1, got 1.5")
    ... except SmoothflipError as err:
    ...     print(err)
    arms[1] (ls): eps must be <= 1, got 1.5
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "DataError",
    "SmoothflipError",
    "SpecError",
    "StoreError",
    "UserCodeError",
    "code_location",
    "user_code_error",
    "user_input",
]


class SmoothflipError(ValueError):
    """Base of every error caused by the user's input (study file, data, store, options, own code)."""


class SpecError(SmoothflipError):
    """A study file that cannot be run; the message names the key, the bad value and what is allowed."""


class StoreError(SmoothflipError):
    """A study directory that cannot hold this study: another study lives there, it is damaged, it is
    not a smoothflip store, or another process is running a study in it."""


class DataError(SmoothflipError):
    """A data source that cannot be read or used (file missing, malformed, too large, empty class)."""


class UserCodeError(SmoothflipError):
    """The user's own code (a model factory, a training function) could not be imported or failed.

    Attributes:
        where: ``"file.py, line 12"`` when known, else ``""``.
    """

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(message)
        self.where = where


@contextmanager
def user_input(
    prefix: str | None = None, *, error: type[SmoothflipError] = SmoothflipError
) -> Iterator[None]:
    """Turn a ``ValueError`` / ``TypeError`` raised inside into a :class:`SmoothflipError`.

    Use it where user input enters a library function, so that a bad value becomes a one-line user
    error while the same exception raised later (during training, say) stays a bug.

    Args:
        prefix: where the input came from, put before the message (``"arms[1] (ls)"``).
        error: the :class:`SmoothflipError` subclass to raise.
    """
    try:
        yield
    except SmoothflipError:
        raise
    except (ValueError, TypeError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        raise error(f"{prefix}: {message}" if prefix else message) from err


def code_location(err: BaseException, *, prefer: str | Path | None = None) -> str:
    """``"file.py, line 12"``: where ``err`` was raised, or ``""``.

    A ``SyntaxError`` names its own file and line. Otherwise the innermost frame of the traceback in
    the file ``prefer`` (the user's file) is taken, else the innermost frame.
    """
    if isinstance(err, SyntaxError) and err.filename:
        return f"{err.filename}, line {err.lineno}"
    frames = traceback.extract_tb(err.__traceback__)
    if prefer is not None:
        wanted = str(Path(prefer).resolve())
        mine = [f for f in frames if f.filename and str(Path(f.filename).resolve()) == wanted]
        frames = mine or frames
    return f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else ""


def user_code_error(prefix: str, err: BaseException, *, prefer: str | Path | None = None) -> UserCodeError:
    """A one-line :class:`UserCodeError` for an exception raised by the user's own code.

    Raise it ``from err``: ``SMOOTHFLIP_DEBUG=1`` / ``--debug`` then shows the user's traceback.

    Example:
        >>> try:
        ...     raise RuntimeError("boom")
        ... except RuntimeError as err:
        ...     print(user_code_error("model.factory 'net.py:make'", err).args[0])  # doctest: +ELLIPSIS
        model.factory 'net.py:make': RuntimeError: boom (..., line 2)
    """
    where = code_location(err, prefer=prefer)
    detail = err.msg if isinstance(err, SyntaxError) and err.msg else str(err)
    message = " ".join(f"{prefix}: {type(err).__name__}: {detail}".split())
    return UserCodeError(f"{message} ({where})" if where else message, where=where)
