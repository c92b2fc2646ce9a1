"""The ``smoothflip`` command: parsing and printing only.

Bad input never shows a traceback: a :class:`~smoothflip.errors.SmoothflipError` (and an ``OSError``
about a file) prints one line starting with ``error:`` on stderr and exits with code 2 (set
``SMOOTHFLIP_DEBUG=1`` to see its traceback). Any other exception is a bug in smoothflip: it shows
its traceback and exits with code 1. An interrupted study exits 130 and resumes when the same
command runs again.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from smoothflip import __version__
from smoothflip._cli_errors import DEBUG, OneLineGroup, clean_errors
from smoothflip._cli_meta import register_commands
from smoothflip._cli_track import TRACK_HELP
from smoothflip._text import printable, safe_name
from smoothflip.errors import SmoothflipError, user_input

app = typer.Typer(
    name="smoothflip",
    help="Do label smoothing and label flipping help your model? Measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineGroup,
)
console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 140)  # tables stay readable in logs and pipes

DEFAULT_RUNS_DIR = Path("smoothflip-runs")
DEFAULT_CHECKPOINT_SECONDS = 60.0  # = smoothflip.engine.checkpoint.DEFAULT_SECONDS (a test holds them equal)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smoothflip {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the full traceback of an error (also: SMOOTHFLIP_DEBUG=1)."),
    ] = False,
) -> None:
    """Do label smoothing and label flipping help your model? Measure it."""
    DEBUG["on"] = debug


def shown(name: Any) -> str:
    """A name read from a study file or a store, safe to print: no markup, no control characters."""
    return escape(printable(name))


def _run(
    spec: Any,
    out_dir: Path,
    *,
    quiet: bool,
    settle: tuple[int | None, int] | None = None,
    track: list[str] | None = None,
    **options: Any,
) -> None:
    """Train (or resume) as ``study.run()`` does (the same function, drawing on this console), print
    the summary, write the report; failed runs end the command with exit code 2."""
    from smoothflip._cli_track import tracker_warning
    from smoothflip.api.running import run_study_here

    def summary_and_report(directory: Path) -> Path:
        _print_summary(directory)
        return _write_report(directory)

    run_study_here(
        spec,
        out_dir,
        options=options,
        settle=settle,
        track=track or [],  # a tracker that is not installed: one line, nothing trains
        progress=not quiet,
        console=console,
        warn=tracker_warning(console),
        report=summary_and_report,
    )
    _fail_on_failures(out_dir)


def _fail_on_failures(out_dir: Path) -> None:
    """Runs that failed (a user's training function raised) end the command with exit code 2."""
    from smoothflip.study.results import load_study_data

    failed = load_study_data(out_dir).failures
    if not failed:
        return
    for f in failed[:5]:
        console.print(f"failed: {shown(f.arm)} / {shown(f.condition)} / seed {f.seed}: {shown(f.message)}")
    more = f" ({len(failed) - 5} more listed in the report)" if len(failed) > 5 else ""
    raise SmoothflipError(
        f"{len(failed)} run(s) failed{more}; the other runs are stored — fix the problem and run the same "
        f"command again to retry them (first: {failed[0].message})"
    )


def _write_report(out_dir: Path) -> Path:
    from smoothflip.report import write_report

    with console.status("writing the report"):
        index = write_report(out_dir)
    out.print(f"report:  {index} (and {index.parent / 'report.md'})", markup=False)
    return index


def _print_summary(out_dir: Path) -> None:
    from smoothflip.report.terminal import print_summary
    from smoothflip.study.results import load_study_data

    print_summary(out, load_study_data(out_dir))
    out.print(
        f"results: {out_dir} (store {out_dir / 'smoothflip.sqlite'}, "
        f"resolved study {out_dir / 'study.toml'})",
        markup=False,
    )
    out.print(f"export:  smoothflip export {out_dir} --format csv", markup=False)


DEVICE_HELP = "Where to train: cpu, cuda or cuda:N."
PACK_HELP = "Runs trained together per pack (default: as many as fit memory)."


@app.command()
@clean_errors
def run(
    study: Annotated[Path, typer.Argument(help="The study file (TOML).")],
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Study directory (default: smoothflip-runs/<study name>)."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "cpu",
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help="How packs run: local (here) or ray (tasks on a Ray cluster; needs smoothflip[ray]).",
        ),
    ] = "local",
    pack_size: Annotated[int | None, typer.Option("--pack-size", help=PACK_HELP)] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray only: the cluster, e.g. HEAD:6379 (default: RAY_ADDRESS, a cluster started here "
            "with 'ray start', or a new local one).",
        ),
    ] = None,
    cpus_per_pack: Annotated[
        float | None,
        typer.Option("--cpus-per-pack", help="Ray only: CPUs reserved per pack (default 1; torch threads)."),
    ] = None,
    gpus_per_pack: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-pack",
            help="Ray only: GPUs reserved per pack, 0 to 1 (0.25 = four packs per GPU; default 0, "
            "or 1 with --device cuda).",
        ),
    ] = None,
    cpus_per_run: Annotated[
        float | None,
        typer.Option(
            "--cpus-per-run", help="Ray only: --cpus-per-pack for studies of your own training function."
        ),
    ] = None,
    gpus_per_run: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-run",
            help="Ray only: --gpus-per-pack for studies of your own training function (a pack is one run "
            "there; 0.5 = two runs per GPU).",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            help="Local only: packs trained at once, each in its own process (default 1). For studies of "
            "your own training function a pack is one run.",
        ),
    ] = 1,
    checkpoint_seconds: Annotated[
        float,
        typer.Option(
            "--checkpoint-seconds",
            help="Least seconds between two checkpoints of a pack, saved at the end of an epoch so a "
            "rerun after a kill resumes the pack (default 60; 0: every epoch; -1: no checkpoints).",
        ),
    ] = DEFAULT_CHECKPOINT_SECONDS,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Train even when the study is estimated to take longer than the ceiling (24 h)."
        ),
    ] = False,
    until_settled: Annotated[
        bool,
        typer.Option(
            "--until-settled",
            help="After the file's seeds, add seeds in rounds only to the cells whose primary verdict is "
            "inconclusive (anytime-valid sequential tests), until all are settled or --max-seeds.",
        ),
    ] = False,
    max_seeds: Annotated[
        int | None, typer.Option("--max-seeds", help="--until-settled: the most seeds a cell may get.")
    ] = None,
    round_size: Annotated[
        int, typer.Option("--round-size", help="--until-settled: seeds added per open cell and round.")
    ] = 2,
    track: Annotated[list[str] | None, typer.Option("--track", help=TRACK_HELP)] = None,
) -> None:
    """Run (or resume) a study: techniques x label conditions x seeds, stored in one directory."""
    from smoothflip.study.spec import load_study

    for alias, value, name in (
        ("--cpus-per-run", cpus_per_run, "cpus"),
        ("--gpus-per-run", gpus_per_run, "gpus"),
    ):
        if value is not None:
            given = cpus_per_pack if name == "cpus" else gpus_per_pack
            if given is not None and given != value:
                raise SmoothflipError(f"{alias} and --{name}-per-pack are the same option; give one of them")
            if name == "cpus":
                cpus_per_pack = value
            else:
                gpus_per_pack = value

    if executor == "ray":  # bad options, no Ray or an unreachable cluster: fail before anything starts
        from smoothflip.engine.ray_executor import ray_options

        ray_options(address=address, cpus_per_pack=cpus_per_pack, gpus_per_pack=gpus_per_pack, device=device)
    if until_settled and max_seeds is None:
        raise SmoothflipError("--until-settled needs --max-seeds N (the most seeds a cell may get)")
    if not until_settled and max_seeds is not None:
        raise SmoothflipError("--max-seeds is an option of --until-settled; add --until-settled")
    spec = load_study(study)
    target = out_dir if out_dir is not None else DEFAULT_RUNS_DIR / safe_name(spec.name)
    _run(
        spec,
        target,
        device=device,
        pack_size=pack_size,
        executor=executor,
        quiet=quiet,
        address=address,
        cpus_per_pack=cpus_per_pack,
        gpus_per_pack=gpus_per_pack,
        workers=workers,
        checkpoint_seconds=checkpoint_seconds,
        allow_long=yes,
        settle=(max_seeds, round_size) if until_settled else None,
        track=track,
    )


@app.command()
@clean_errors
def demo(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Study directory.")] = DEFAULT_RUNS_DIR
    / "demo",
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "cpu",
    pack_size: Annotated[int | None, typer.Option("--pack-size", help=PACK_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run the built-in demo study (MNIST-1D CNN; CE vs smoothing, flipping and more; clean and 40% noise)."""
    from smoothflip.study.spec import loads_study

    text = resources.files("smoothflip.studies").joinpath("demo.toml").read_text(encoding="utf-8")
    spec = loads_study(text, default_name="demo", origin="built-in demo study")
    _run(spec, out_dir, device=device, pack_size=pack_size, executor="local", quiet=quiet)


@app.command()
@clean_errors
def export(
    directory: Annotated[Path, typer.Argument(help="A study directory.")],
    format: Annotated[str, typer.Option("--format", "-f", help="csv or parquet.")] = "csv",
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write (default: the study directory).")
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", help="Push the study to a tracker instead: mlflow[=URI] or tensorboard[=DIR]."),
    ] = None,
) -> None:
    """Export a study's runs and per-epoch curves as runs.<fmt> and curves.<fmt> (or --to a tracker)."""
    from smoothflip.study.results import export as export_results

    if to is not None:
        from smoothflip._cli_track import export_to

        return export_to(directory, to, out, file_options={"--format": format != "csv", "--out": out_dir})

    for path in export_results(directory, format=format, out=out_dir):
        out.print(f"wrote {path}", markup=False)


@app.command()
@clean_errors
def verdict(
    directory: Annotated[Path, typer.Argument(help="A study directory.")],
    at: Annotated[
        str, typer.Option("--at", help="Which epoch's metrics: selected (by validation) or last.")
    ] = "selected",
    format: Annotated[
        str, typer.Option("--format", help="table (the terminal) or csv (every row).")
    ] = "table",
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Write the CSV here.")] = None,
    target_mde: Annotated[
        str | None, typer.Option("--target-mde", help="The primary metric's MDE target (display units).")
    ] = None,
) -> None:
    """Print each arm's verdict against the baseline, per label condition (paired by seed): the primary
    metric with family-wise error control, the others as secondary (FDR), with intervals, MDEs and the
    seeds each inconclusive cell would need; --format csv writes the rows for machines."""
    from smoothflip._cli_verdict import verdict_command

    verdict_command(out, directory, at=at, format=format, out_file=out_file, target_mde=target_mde)


@app.command()
@clean_errors
def plan(
    directory: Annotated[Path, typer.Argument(help="A study directory.")],
    target_mde: Annotated[
        str | None, typer.Option("--target-mde", help="The primary metric's MDE target (display units).")
    ] = None,
    at: Annotated[str, typer.Option("--at", help="selected (by validation) or last epoch.")] = "selected",
) -> None:
    """What settling every inconclusive cell would cost: paired seeds and training minutes."""
    from smoothflip._cli_verdict import plan_command

    plan_command(out, directory, at=at, target_mde=target_mde)


@app.command()
@clean_errors
def report(
    directory: Annotated[Path, typer.Argument(help="A study directory.")],
) -> None:
    """Write DIR/report/index.html (self-contained), report.md and figures/*.png."""
    from smoothflip.study.store import Store

    with Store.open(directory, readonly=True) as store:
        if store.count() == 0:
            raise SmoothflipError(f"{directory} holds no finished runs yet; run the study first")
    _write_report(directory)


@app.command()
@clean_errors
def techniques() -> None:
    """List what a study file can name: techniques (arm losses), noise models and study kinds."""
    from smoothflip.study.conditions import NOISE_MODELS
    from smoothflip.study.kinds import KINDS
    from smoothflip.techniques import REQUIRED
    from smoothflip.techniques import techniques as registered

    table = Table(title=escape("techniques: [[arms]] loss = ..."))
    for column in ("loss", "family", "parameters (defaults)", "tasks", "what it does"):
        table.add_column(column, overflow="fold")
    for name, t in registered().items():
        params = ", ".join(f"{k}" if v is REQUIRED else f"{k}={v!r}" for k, v in t.params.items()) or "-"
        summary = t.summary + (f" ({t.reference})" if t.reference else "")
        if not t.in_arms:
            summary += "; generated by its study kind"
        table.add_row(name, t.family, params, ", ".join(sorted(t.tasks)), summary)
    out.print(table)
    noise = Table(title=escape('label conditions: [[conditions]] noise = ... (attacks: attack = "...")'))
    for column in ("noise", "options (defaults)", "what it does"):
        noise.add_column(column, overflow="fold")
    for name, model in NOISE_MODELS.items():
        options = ", ".join(f"{k}" if o.required else f"{k}={o.default!r}" for k, o in model.options.items())
        noise.add_row(name, options or ("rates" if model.takes_rates else "-"), model.summary)
    out.print(noise)
    kinds = Table(title='study kinds: kind = "..."')
    for column in ("kind", "task", "compared metrics", "what it is"):
        kinds.add_column(column, overflow="fold")
    for name, kind in KINDS.items():
        kinds.add_row(name, kind.task, ", ".join(m.key for m in kind.metrics), kind.summary)
    out.print(kinds)


def _parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["k=10", "eta=0.5", "side=farthest"]`` -> ``{"k": 10, "eta": 0.5, "side": "farthest"}``."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SmoothflipError(f"--option {pair!r}: write key=value")
        key, raw = pair.split("=", 1)
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        out[key.strip()] = value
    return out


def _parse_budget(text: str) -> float | int:
    """A fraction (``0.1``) or a count (``50``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise SmoothflipError(
            f"--budget {text!r}: give a fraction in (0, 1) such as 0.1, or a count such as 50"
        ) from None


OPTION_HELP = "A strategy or defense option as key=value (repeatable), e.g. --option k=10."


@app.command()
@clean_errors
def attack(
    data: Annotated[Path, typer.Argument(help="A .csv, .parquet or .npz file of examples and labels.")],
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help="random, targeted, margin, greedy or alfa.")
    ],
    budget: Annotated[
        str, typer.Option("--budget", "-b", help="Labels to flip: a fraction (0.1) or a count (50).")
    ],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Where to write the attacked file.")],
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="The label column (.csv/.parquet).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    option: Annotated[list[str] | None, typer.Option("--option", help=OPTION_HELP)] = None,
) -> None:
    """Flip labels of a data file with a budgeted attack; the flip mask is written beside the labels."""
    from smoothflip.labelfiles import attack_file

    with user_input():  # the file command's options and data are all user input
        result = attack_file(
            data,
            out_file,
            strategy=strategy,
            budget=_parse_budget(budget),
            seed=seed,
            label_column=label_column,
            **_parse_options(option),
        )
    out.print(result.summary(), highlight=False, markup=False)


@app.command()
@clean_errors
def clean(
    data: Annotated[Path, typer.Argument(help="A .csv, .parquet or .npz file of examples and labels.")],
    defense: Annotated[str, typer.Option("--defense", "-d", help="knn, confident_learning or small_loss.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Where to write the cleaned file.")],
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="The label column (.csv/.parquet).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    option: Annotated[list[str] | None, typer.Option("--option", help=OPTION_HELP)] = None,
) -> None:
    """Clean the labels of a data file with a defense; flagged examples are marked (and scored when
    the file carries a flip mask, e.g. from `smoothflip attack`)."""
    from smoothflip.labelfiles import clean_file

    with user_input():
        result = clean_file(
            data, out_file, defense=defense, seed=seed, label_column=label_column, **_parse_options(option)
        )
    out.print(result.summary(), highlight=False, markup=False)


register_commands(app, out=out, console=console)  # `meta` and `atlas`: _cli_meta.py, _cli_atlas.py
