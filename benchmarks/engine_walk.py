"""How a study spec walks down the code: calls traced from ``run_study``, and how often they climb back.

The engine is layered in floors (the CLI on top; the executors; the tracks; the shared pack
machinery; the study layer; the technique registry; the leaf libraries; errors and argument checks
at the bottom). Every Python call made by smoothflip code into smoothflip code is one step; a step
*climbs back* when the callee sits on a higher floor than the caller (a leaf calling back into the
engine, a shared helper calling back into a track). A layered design only goes down or sideways.

    python benchmarks/engine_walk.py            # the first 400 steps of a tiny study, and all steps
    python benchmarks/engine_walk.py --steps 1000 --show

Prints the climbs with caller and callee, so a regression names where it happens.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
from pathlib import Path

FLOORS: list[tuple[str, int]] = [
    ("smoothflip.cli", 0),
    ("smoothflip.engine.runner", 1),
    ("smoothflip.engine.planning", 2),
    ("smoothflip.engine.local", 2),
    ("smoothflip.engine.ray_executor", 2),
    ("smoothflip.engine.tracks", 3),
    ("smoothflip.engine.classifier", 4),
    ("smoothflip.engine.language", 4),
    ("smoothflip.engine", 5),  # stacked, member_losses, schedule, results, sizing, teachers
    ("smoothflip.study", 6),
    ("smoothflip.techniques", 7),
    ("smoothflip.errors", 9),
    ("smoothflip._validation", 9),
    ("smoothflip", 8),  # data, models, losses, noise, attacks, defenses, metrics, lm, analysis ...
]

STUDY = """
name = "walk"
seeds = 2
[data]
source = "digits"
test_fraction = 0.25
[model]
name = "mlp"
hidden = [16]
[train]
epochs = 2
batch_size = 128
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[arms]]
name = "cp"
loss = "confidence_penalty"
beta = 0.5
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.2]
[probes]
seeds = 1
"""


def floor(module: str) -> int | None:
    for prefix, level in FLOORS:
        if module == prefix or module.startswith(prefix + "."):
            return level
    return None


def walk(limit: int | None) -> tuple[int, list[tuple[str, str, str]]]:
    """Trace ``run_study`` on a tiny study; returns (steps, climbs as (caller, callee, function))."""
    from smoothflip.study.spec import loads_study

    try:
        from smoothflip.engine.runner import run_study
    except ImportError:  # smoothflip 0.1
        from smoothflip.engine.local import run_study

    spec = loads_study(textwrap.dedent(STUDY))
    steps, climbs = 0, []

    def tracer(frame, event, arg):
        nonlocal steps
        if event != "call":
            return None
        callee = frame.f_globals.get("__name__", "")
        caller_frame = frame.f_back
        caller = caller_frame.f_globals.get("__name__", "") if caller_frame is not None else ""
        lc, lr = floor(callee), floor(caller)
        if lc is None or lr is None or (limit is not None and steps >= limit):
            return None
        steps += 1
        if lc < lr:
            climbs.append((caller, callee, frame.f_code.co_name))
        return None

    with tempfile.TemporaryDirectory() as out:
        sys.setprofile(None)
        sys.settrace(tracer)
        try:
            run_study(spec, Path(out) / "walk")
        finally:
            sys.settrace(None)
    return steps, climbs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="steps to count climbs in (default 400)")
    parser.add_argument("--show", action="store_true", help="list every climb")
    args = parser.parse_args()
    steps, climbs = walk(args.steps)
    print(f"first {steps} steps from run_study: {len(climbs)} climb(s) back up")
    total, all_climbs = walk(None)
    print(f"all {total} steps of the tiny study: {len(all_climbs)} climb(s) back up")
    shown = climbs if args.show else climbs[:10]
    for caller, callee, name in shown:
        print(f"  {caller} -> {callee}.{name}")
    if all_climbs and not args.show:
        kinds = sorted({(a, b) for a, b, _ in all_climbs})
        print("  distinct (caller -> callee) module pairs over the whole run:")
        for a, b in kinds:
            print(f"    {a} -> {b}")


if __name__ == "__main__":
    main()
