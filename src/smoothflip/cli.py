"""The ``smoothflip`` command."""

from __future__ import annotations

import typer

from smoothflip import __version__

app = typer.Typer(
    name="smoothflip",
    help="Do label smoothing and label flipping help your model? Measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smoothflip {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Do label smoothing and label flipping help your model? Measure it."""


@app.command()
def demo() -> None:
    """Run the built-in demonstration."""
    typer.echo("smoothflip demo: not yet")
