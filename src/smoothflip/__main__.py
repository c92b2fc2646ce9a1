"""``python -m smoothflip`` is the ``smoothflip`` command."""

from smoothflip.cli import app

app(prog_name="smoothflip")
