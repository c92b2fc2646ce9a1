"""The TensorBoard tracker: each study run's scalars in its own folder.

Runs are written with ``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard``
package: ``pip install 'smoothflip[tensorboard]'``) under ``DIR/<study>/<arm>/<condition>/seed-<s>``
(names made safe for a path: ``symmetric 20%`` becomes ``symmetric-20``), so ``tensorboard
--logdir DIR`` shows every run and groups them by study, arm and condition:

- the per-epoch curves (``test_acc``, ``val_nll``, ``train_loss`` ...) with the epoch as step;
- the final metrics as ``final/selected_test_acc``, ``final/last_test_acc`` ... at the last epoch;
- the run's parameters and tags as a text summary (``params``).

Without ``dir`` the folder is ``./runs`` (PyTorch's default). Each run's folder gets a small
``smoothflip-run.json`` (the run's id and tags) once its events are written and closed; a run whose
folder holds it is never written again, so a resumed study or a second export duplicates no
scalars. A run interrupted while being written is rewritten from scratch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from smoothflip.tracking.session import StudyInfo, run_curves, run_metrics, run_params, run_tags

__all__ = ["MARKER", "TensorBoardTracker", "run_folder"]

MARKER = "smoothflip-run.json"
"""The file that marks a run's folder as completely written."""


def _part(name: str) -> str:
    """A name as one safe path component."""
    safe = re.sub(r"[^0-9A-Za-z_.=+-]+", "-", name).strip(".-")
    return safe or "_"


def run_folder(base: Path, run: Any) -> Path:
    """``base/<arm>/<condition>/seed-<s>`` of a run (made safe for a path).

    Example:
        >>> from types import SimpleNamespace
        >>> run_folder(Path("runs/demo"), SimpleNamespace(arm="ls-0.1", condition="symmetric 20%", seed=3))
        PosixPath('runs/demo/ls-0.1/symmetric-20/seed-3')
    """
    return base / _part(run.arm) / _part(run.condition) / f"seed-{int(run.seed)}"


def _marked(folder: Path) -> str | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8")).get("smoothflip.run_id")
    except (OSError, ValueError, AttributeError):
        return None


class TensorBoardTracker:
    """Writes a study's runs as TensorBoard event files (see the module docstring).

    Args:
        dir: the log folder (default ``./runs``).
    """

    name = "tensorboard"
    keeps_report = False

    def __init__(self, dir: str | None = None) -> None:
        self.root = Path(dir if dir is not None else "runs").expanduser().resolve()
        self.base: Path | None = None

    def describe(self) -> str:
        return f"tensorboard at {self.root}"

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.root.is_dir():
            raise NotADirectoryError(f"{self.root} is not a folder")

    def begin(self, study: StudyInfo) -> set[str]:
        self.base = self.root / _part(study.name)
        self.base.mkdir(parents=True, exist_ok=True)
        return {run_id for marker in self.base.rglob(MARKER) if (run_id := _marked(marker.parent))}

    def log_run(self, study: StudyInfo, run: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        assert self.base is not None
        folder = run_folder(self.base, run)
        held = _marked(folder)
        if held is not None and held != run.run_id:  # another run's folder (names that read alike)
            folder = folder.with_name(f"{folder.name}-{run.run_id[:8]}")
        suffix = f".{run.run_id}"
        for stale in folder.glob(f"events.out.tfevents.*{suffix}"):  # an interrupted earlier write
            stale.unlink()
        writer = SummaryWriter(log_dir=str(folder), filename_suffix=suffix)
        try:
            for key, points in run_curves(run).items():
                for step, value in points:
                    writer.add_scalar(key, value, step)
            last = max((int(e) for e in run.curves.get("epoch") or [0]), default=0)
            for key, value in run_metrics(run).items():
                writer.add_scalar(f"final/{key}", value, last)
            params = {**run_params(run), **run_tags(study, run)}
            table = "\n".join(f"| {k} | {v} |" for k, v in params.items())
            writer.add_text("params", "| parameter | value |\n|---|---|\n" + table, 0)
        finally:
            writer.close()
        tags = run_tags(study, run)
        (folder / MARKER).write_text(json.dumps(tags, sort_keys=True) + "\n", encoding="utf-8")

    def attach_report(self, study: StudyInfo, report: Path) -> None:
        return None  # TensorBoard shows scalars; the report stays in the study directory

    def end(self, study: StudyInfo, status: str) -> None:
        return None
