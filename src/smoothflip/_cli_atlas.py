"""``smoothflip atlas``: train every built-in atlas study, then pool them (the command's body).

One progress bar covers the whole atlas; it advances by each study's estimated training time (the
engine's timing probe), so its ETA is about the atlas, not the study in training. Killed, the same
command resumes: every study is an ordinary study directory under ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from smoothflip._cli_errors import clean_errors
from smoothflip.errors import SmoothflipError

__all__ = ["register_atlas"]

DEFAULT_ATLAS_DIR = Path("smoothflip-runs") / "atlas"


def _atlas(
    out: Console,
    console: Console,
    out_dir: Path,
    *,
    only: list[str] | None,
    quick: bool,
    quiet: bool,
    study_reports: bool,
    run_options: dict[str, Any],
) -> None:
    from smoothflip._cli_meta import print_pooled
    from smoothflip.engine.atlas import atlas_specs, run_atlas
    from smoothflip.engine.planning import format_duration

    atlas_specs(only, quick=quick)  # an unknown study fails here, before the progress bar shows
    if (out_dir / "smoothflip.sqlite").exists():
        raise SmoothflipError(
            f"--out {out_dir}: is a study directory; the atlas needs a directory of its own"
        )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[runs]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, disable=quiet, transient=False) as bar:
        task = bar.add_task("atlas", total=None, runs="")

        def on_plan(planned: list[Any], seconds: float | None) -> None:
            runs = sum(p.runs for p in planned)
            stored = sum(p.stored for p in planned)
            estimate = f", estimated {format_duration(seconds)} to train" if seconds is not None else ""
            if not quiet:
                console.print(
                    f"atlas: {len(planned)} studies, {runs} runs ({stored} already stored){estimate}; "
                    f"into {escape(str(out_dir))}"
                )
            bar.update(task, total=max(sum(p.weight for p in planned), 1e-9), completed=0.0)

        def on_progress(p: Any) -> None:
            label = f"atlas: {p.study} ({p.index}/{p.studies})" if p.study else "atlas: done"
            bar.update(
                task,
                description=escape(label),
                completed=p.work_done,
                runs=f"{p.runs_done:.0f}/{p.runs_total} runs",
            )

        def after_study(study: Any) -> None:
            if study_reports:
                from smoothflip.report import write_report

                write_report(study.directory)

        analysis = run_atlas(
            out_dir,
            only=only,
            quick=quick,
            progress=on_progress,
            on_plan=on_plan,
            after_study=after_study,
            **run_options,
        )
    if analysis is None:
        (name,) = [s.name.removeprefix("atlas-") for s in atlas_specs(only, quick=quick)]
        out.print(
            f"atlas: one study ({name}): nothing to pool; its verdict: smoothflip verdict {out_dir / name}",
            markup=False,
        )
        return
    print_pooled(out, analysis)
    meta_dir = out_dir / "meta"
    out.print(f"studies: {out_dir}/<study> (each an ordinary study directory)", markup=False)
    out.print(f"pooled:  {meta_dir / 'pooled.csv'} (and {meta_dir / 'studies.csv'})", markup=False)
    out.print(f"report:  {meta_dir / 'report' / 'index.html'} (and report.md)", markup=False)


def register_atlas(app: typer.Typer, *, out: Console, console: Console) -> None:
    """Add ``smoothflip atlas`` to the command line ``app``."""

    @app.command()
    @clean_errors
    def atlas(
        out_dir: Annotated[
            Path, typer.Option("--out", "-o", help="The atlas directory.")
        ] = DEFAULT_ATLAS_DIR,
        only: Annotated[
            list[str] | None,
            typer.Option("--only", help="Run only this atlas study (repeatable), e.g. iris-mlp."),
        ] = None,
        device: Annotated[str, typer.Option("--device", help="Where to train: cpu, cuda or cuda:N.")] = "cpu",
        executor: Annotated[
            str, typer.Option("--executor", help="local (here) or ray (packs as tasks on a Ray cluster).")
        ] = "local",
        address: Annotated[str | None, typer.Option("--address", help="Ray only: the cluster.")] = None,
        cpus_per_pack: Annotated[
            float | None, typer.Option("--cpus-per-pack", help="Ray only: CPUs reserved per pack.")
        ] = None,
        gpus_per_pack: Annotated[
            float | None, typer.Option("--gpus-per-pack", help="Ray only: GPUs reserved per pack.")
        ] = None,
        workers: Annotated[int, typer.Option("--workers", help="Local only: packs trained at once.")] = 1,
        pack_size: Annotated[
            int | None, typer.Option("--pack-size", help="Runs trained together per pack.")
        ] = None,
        checkpoint_seconds: Annotated[
            float, typer.Option("--checkpoint-seconds", help="Least seconds between checkpoints (-1: none).")
        ] = 60.0,
        quick: Annotated[
            bool,
            typer.Option(
                "--quick",
                help="A smoke test: 2 seeds, 2 epochs, small data (seconds; the numbers mean nothing).",
            ),
        ] = False,
        no_study_reports: Annotated[
            bool,
            typer.Option(
                "--no-study-reports", help="Skip each study's own report (the pooled one is written)."
            ),
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Ask the question on every built-in dataset and model (the atlas), then pool the answers."""
        if executor == "ray":
            from smoothflip.engine.ray_executor import ray_options

            ray_options(
                address=address, cpus_per_pack=cpus_per_pack, gpus_per_pack=gpus_per_pack, device=device
            )
        elif any(v is not None for v in (address, cpus_per_pack, gpus_per_pack)):
            raise SmoothflipError(
                "--address, --cpus-per-pack and --gpus-per-pack are options of --executor ray"
            )
        _atlas(
            out,
            console,
            out_dir,
            only=only,
            quick=quick,
            quiet=quiet,
            study_reports=not no_study_reports,
            run_options={
                "device": device,
                "executor": executor,
                "address": address,
                "cpus_per_pack": cpus_per_pack,
                "gpus_per_pack": gpus_per_pack,
                "workers": workers,
                "pack_size": pack_size,
                "checkpoint_seconds": checkpoint_seconds,
            },
        )
