"""The atlas' wall time, study by study, and the figure for the README (run on an idle machine).

Trains (or resumes) every atlas study into ``OUT/<study>`` exactly as ``smoothflip atlas`` does
(``smoothflip.engine.atlas.run_atlas``: one pack at a time, local executor, each study's report), and
prints per study: runs, the engine's estimate before training, the wall time of its training and
report, and its clean-label MDE on accuracy (at the family's first Holm level); then the total wall
time, the pooled clean-condition table (Markdown, for the README) and the figure to embed
(``OUT/meta/report/figures/clean.png``). Delete ``OUT`` first for a cold measurement.

    python benchmarks/atlas.py [--out smoothflip-runs/atlas] [--only iris-mlp ...] [--quick]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path

import torch

from smoothflip.analysis import format_diff, format_size
from smoothflip.engine.atlas import run_atlas
from smoothflip.engine.planning import format_duration
from smoothflip.report import write_report
from smoothflip.study.results import load_study_data
from smoothflip.study.verdict import study_verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("smoothflip-runs/atlas"))
    parser.add_argument("--only", action="append", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )
    started = time.perf_counter()
    rows: dict[str, dict] = {}
    clock = {"t": started}

    def on_plan(planned, seconds):
        for p in planned:
            rows[p.name] = {"runs": p.runs, "stored": p.stored, "estimate": p.seconds}
        total = format_duration(seconds) if seconds is not None else "unknown"
        print(f"{len(planned)} studies, {sum(p.runs for p in planned)} runs; engine estimate {total}")
        clock["t"] = time.perf_counter()

    def after_study(study):
        write_report(study.directory)
        now = time.perf_counter()
        rows[study.name]["wall"] = now - clock["t"]
        clock["t"] = now
        verdict = study_verdict(load_study_data(study.directory))
        mde = [c.mde for c in verdict.comparisons if c.metric.key == "test_acc" and c.noise == "none"]
        rows[study.name]["mde"] = max(mde) if mde else math.nan
        print(f"  {study.name}: {format_duration(rows[study.name]['wall'])}", flush=True)

    analysis = run_atlas(args.out, only=args.only, quick=args.quick, on_plan=on_plan, after_study=after_study)
    total = time.perf_counter() - started
    if analysis is None:  # --only one study: nothing pooled
        print(f"\n1 study, wall time {format_duration(total)}: {rows}")
        return
    acc = analysis.primary
    print("\n| study | runs | engine estimate | wall time (training + report) | clean-label MDE (accuracy) |")
    print("|---|--:|--:|--:|--:|")
    for name, r in rows.items():
        estimate = format_duration(r["estimate"]) if r.get("estimate") is not None else "-"
        wall = format_duration(r.get("wall", 0.0))
        mde = format_size(r.get("mde", math.nan), acc)
        print(f"| {name} | {r['runs']} | {estimate} | {wall} | {mde} |")
    print(f"\natlas total wall time (with meta and reports): {format_duration(total)}\n")
    print("| technique | k | estimate | 95% interval (HKSJ) | prediction interval | I² | verdict |")
    print("|---|--:|--:|--:|--:|--:|---|")
    for k in analysis.keys:
        if k.role != "primary" or k.noise != "none":
            continue
        r = k.result
        pi = f"[{format_diff(r.pi[0], acc)}, {format_diff(r.pi[1], acc)}]" if r.pi else "-"
        print(
            f"| {k.arm} | {r.k} | {format_diff(r.estimate, acc)} | [{format_diff(r.ci[0], acc)}, "
            f"{format_diff(r.ci[1], acc)}] | {pi} | {r.i2:.0f}% | {k.verdict} |"
        )
    print(f"\nfigure: {args.out / 'meta' / 'report' / 'figures' / 'clean.png'}")


if __name__ == "__main__":
    main()
