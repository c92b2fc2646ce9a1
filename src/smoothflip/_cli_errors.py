"""How the ``smoothflip`` command reports errors: one line on stderr, exit code 2.

- :func:`clean_errors` wraps each command: a :class:`~smoothflip.errors.SmoothflipError`, an
  ``OSError`` about a file and a damaged SQLite file print ``error: ...`` (one line) and exit 2;
  ``KeyboardInterrupt`` exits 130; anything else is a bug and shows its traceback (exit 1).
- :class:`OneLineGroup` does the same for the command line's own parse errors (an unknown option,
  ``--pack-size abc``), which Click and Typer would print as a multi-line box.
- ``SMOOTHFLIP_DEBUG=1`` or the global ``--debug`` flag (:data:`DEBUG`) shows the full traceback of
  a user error instead (for a user's own code: the traceback inside it).
"""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from smoothflip._text import printable
from smoothflip.errors import SmoothflipError

__all__ = ["DEBUG", "OneLineGroup", "clean_errors", "debugging", "one_line", "os_error_sentence"]

F = TypeVar("F", bound=Callable[..., Any])

DEBUG = {"on": False}
"""Set by the global ``--debug`` flag (the environment variable ``SMOOTHFLIP_DEBUG`` does the same)."""

# Click's exception base, whichever Click Typer uses (its own vendored copy or the click package).
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)

_ERRNO_TEXT = {
    errno.EACCES: "permission denied (this user may not read or write it)",
    errno.EPERM: "operation not permitted",
    errno.EEXIST: "it already exists",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EISDIR: "it is a directory, not a file",
    errno.ENOENT: "no such file or directory",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space is left on the device",
    errno.ENAMETOOLONG: "the name is too long",
}


def debugging() -> bool:
    return DEBUG["on"] or bool(os.environ.get("SMOOTHFLIP_DEBUG"))


def one_line(text: object) -> str:
    return printable(" ".join(str(text).split()))


def os_error_sentence(err: OSError) -> str:
    """``[Errno 13] Permission denied: 'x'`` -> ``cannot use 'x': permission denied (...)``."""
    if isinstance(err, SmoothflipError) or err.errno is None:
        return one_line(err) or type(err).__name__
    problem = _ERRNO_TEXT.get(err.errno) or (err.strerror or type(err).__name__).lower()
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    if not paths:
        return f"{problem}"
    where = " -> ".join(repr(os.fsdecode(p)) for p in paths)
    return one_line(f"cannot use {where}: {problem}")


def clean_errors(fn: F) -> F:
    """Turn bad input into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            typer.echo(
                "interrupted: finished packs are stored; run the same command again to resume", err=True
            )
            raise typer.Exit(130) from None
        except (SmoothflipError, OSError, sqlite3.DatabaseError) as err:
            if debugging():
                raise
            if isinstance(err, OSError) and not isinstance(err, SmoothflipError):
                message = os_error_sentence(err)
            else:
                message = one_line(err) or type(err).__name__
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


class OneLineGroup(TyperGroup):
    """A Typer group whose command-line parse errors are one ``error:`` line on stderr (exit 2)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _ClickException as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # plain `smoothflip`: the help, as before
                err.show()  # type: ignore[attr-defined]
                sys.exit(2)
            message = one_line(err.format_message()) if hasattr(err, "format_message") else one_line(err)
            ctx = getattr(err, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"error: {message}{hint}", err=True)
            sys.exit(getattr(err, "exit_code", 2) or 2)
        except Exception as err:
            if type(err).__name__ != "Abort":
                raise
            typer.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
