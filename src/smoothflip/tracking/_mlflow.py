"""The MLflow tracker: one parent run per study, one nested run per study run.

It talks to MLflow through ``mlflow.tracking.MlflowClient`` only (never the fluent
``mlflow.start_run``, so a notebook's own active run is left alone), which ``mlflow-skinny``
provides (``pip install 'smoothflip[mlflow]'``):

- the **experiment** is the study's name unless ``experiment`` is given;
- the **parent run** (named after the study, tagged ``smoothflip.parent = true`` and
  ``smoothflip.study_key``) holds the study's settings as parameters and, at the end, the report
  as artifacts (``report/index.html``, ``report/report.md``, ``report/figures/*.png``) and the
  resolved study file (``study.toml``); a resumed or grown study finds it again by that key;
- a **nested run** per study run (``mlflow.parentRunId``), named ``arm / condition / seed s``, with
  its parameters, the per-epoch curves as metrics with the epoch as step, the final metrics, and the
  tags ``smoothflip.run_id``, ``smoothflip.condition_id``, ``smoothflip.study``. A run whose id is
  already among the parent's finished children is never logged again (a child whose logging was cut
  off, left unfinished, is deleted and logged again whole).

Where (``uri``): an ``http(s)://`` tracking server (checked to answer before the study starts; a
dead one warns once), ``databricks``, or a local folder / ``file://`` URI. Without ``uri``:
``MLFLOW_TRACKING_URI``, else ``./mlruns``. A local folder is MLflow's file store, which MLflow 3
keeps in maintenance mode behind the opt-in ``MLFLOW_ALLOW_FILE_STORE=true``; smoothflip sets that
variable in its own process when you name a local folder (it does not override an explicit
``false``), and you set it too to read the folder back (``MLFLOW_ALLOW_FILE_STORE=true mlflow ui
--backend-store-uri ./mlruns``). Database URIs (``sqlite:///``, ``postgresql://``) need the full
``mlflow`` package (its SQLAlchemy store), which ``mlflow-skinny`` lacks: they are refused with one
line saying so.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from smoothflip.tracking import TrackingError
from smoothflip.tracking.session import StudyInfo, run_curves, run_metrics, run_params, run_tags

__all__ = ["MlflowTracker"]

CONNECT_TIMEOUT_S = 5.0
"""How long the check waits for an ``http(s)://`` tracking server to accept a connection."""

_DATABASES = ("sqlite", "postgresql", "mysql", "mssql", "oracle")
_KEY = re.compile(r"[^0-9A-Za-z_\-. /:]")
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's log_batch limits


def _now_ms() -> int:
    return int(time.time() * 1000)


def _key(name: str) -> str:
    return _KEY.sub("_", name)[:250]


def _local_uri(uri: str) -> str | None:
    """The ``file://`` URI of a local folder target, or None for a remote one."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return uri
    if parsed.scheme and len(parsed.scheme) > 1:  # http, databricks, sqlite ... (not a drive letter)
        return None
    return Path(uri).expanduser().resolve().as_uri()


class MlflowTracker:
    """Logs a study to MLflow (see the module docstring).

    Args:
        uri: the tracking URI or a local folder (default: ``MLFLOW_TRACKING_URI``, else ``./mlruns``).
        experiment: the experiment's name (default: the study's name).

    Raises:
        TrackingError: a database URI without the full ``mlflow`` package.
    """

    name = "mlflow"
    keeps_report = True

    def __init__(self, uri: str | None = None, experiment: str | None = None) -> None:
        uri = uri if uri is not None else os.environ.get("MLFLOW_TRACKING_URI") or "mlruns"
        if not isinstance(uri, str) or not uri.strip():
            raise TrackingError(f"track: mlflow uri = {uri!r}: give a tracking URI or a folder")
        if experiment is not None and (not isinstance(experiment, str) or not experiment.strip()):
            raise TrackingError(f"track: mlflow experiment = {experiment!r}: give a non-empty name")
        scheme = urlparse(uri).scheme.partition("+")[0]
        if scheme in _DATABASES and importlib.util.find_spec("sqlalchemy") is None:
            raise TrackingError(
                f"track: mlflow uri {uri!r} is a database store, which needs the full mlflow package "
                "(pip install mlflow); mlflow-skinny logs to tracking servers (http://...) and local folders"
            )
        local = _local_uri(uri)
        if local is not None:
            Path(urlparse(local).path).mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's opt-in for a folder
        self.uri = local or uri
        self.experiment = experiment
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        self.parent: str | None = None
        self.experiment_id: str | None = None

    def describe(self) -> str:
        return f"mlflow at {self.uri}"

    def check(self) -> None:
        parsed = urlparse(self.uri)
        if parsed.scheme in ("http", "https"):
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            with socket.create_connection((parsed.hostname or "localhost", port), timeout=CONNECT_TIMEOUT_S):
                pass

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            return self.client.create_experiment(name)
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return found.experiment_id

    def _search(self, filter_string: str) -> list[Any]:
        out, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=filter_string, max_results=1000, page_token=token
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    def begin(self, study: StudyInfo) -> set[str]:
        self.experiment_id = self._experiment(self.experiment or study.name)
        parents = self._search(
            f"tags.`smoothflip.study_key` = '{study.key}' and tags.`smoothflip.parent` = 'true'"
        )
        if parents:
            self.parent = parents[0].info.run_id
            self.client.update_run(self.parent, status="RUNNING")
        else:
            spec = study.spec
            tags = {
                "smoothflip.parent": "true",
                "smoothflip.study_key": study.key,
                "smoothflip.study": study.name,
            }
            self.parent = self.client.create_run(
                self.experiment_id, run_name=study.name, tags=tags
            ).info.run_id
            params = {
                "kind": spec.kind,
                "arms": ", ".join(a.name for a in spec.arms),
                "baseline": spec.baseline,
                "seeds": len(spec.seeds),
                "data": spec.data.source,
                "model": spec.model.trainer or spec.model.factory or spec.model.name,
                "directory": str(study.directory.resolve()),
            }
            self._batch(self.parent, params={k: str(v) for k, v in params.items()})
        held = set()
        for child in self._search(f"tags.mlflow.parentRunId = '{self.parent}'"):
            if child.info.status == "FINISHED" and "smoothflip.run_id" in child.data.tags:
                held.add(child.data.tags["smoothflip.run_id"])
            else:  # a run whose logging was cut off (a killed study): deleted, then logged again whole
                self.client.delete_run(child.info.run_id)
        return held

    def _batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Any] = (),
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Param, RunTag

        params_list = [Param(_key(k), v[:6000]) for k, v in (params or {}).items()]
        tags_list = [RunTag(_key(k), v[:5000]) for k, v in (tags or {}).items()]
        metrics = list(metrics)
        while metrics or params_list or tags_list:
            self.client.log_batch(
                run_id,
                metrics=metrics[: _BATCH["metrics"]],
                params=params_list[: _BATCH["params"]],
                tags=tags_list[: _BATCH["tags"]],
            )
            metrics = metrics[_BATCH["metrics"] :]
            params_list = params_list[_BATCH["params"] :]
            tags_list = tags_list[_BATCH["tags"] :]

    def log_run(self, study: StudyInfo, run: Any) -> None:
        from mlflow.entities import Metric

        if self.parent is None:
            raise RuntimeError("the study's parent run was not created")
        self.check()  # a server gone away fails at once, not after MLflow's minutes of retries
        now = _now_ms()
        name = f"{run.arm} / {run.condition} / seed {run.seed}"
        tags = {**run_tags(study, run), "mlflow.parentRunId": self.parent}
        child = self.client.create_run(
            self.experiment_id, start_time=now, run_name=name, tags=tags
        ).info.run_id
        metrics = [
            Metric(_key(k), v, now, step) for k, points in run_curves(run).items() for step, v in points
        ]
        last = max((int(e) for e in run.curves.get("epoch") or [0]), default=0)
        metrics += [Metric(_key(k), v, now, last) for k, v in run_metrics(run).items()]
        self._batch(child, metrics=metrics, params=run_params(run))
        self.client.set_terminated(child, status="FINISHED", end_time=_now_ms())

    def attach_report(self, study: StudyInfo, report: Path) -> None:
        if self.parent is None:
            return
        self.client.log_artifacts(self.parent, str(report), artifact_path="report")
        toml = study.directory / "study.toml"
        if toml.is_file():
            self.client.log_artifact(self.parent, str(toml))

    def end(self, study: StudyInfo, status: str) -> None:
        if self.parent is not None:
            self.client.set_terminated(self.parent, status=status, end_time=_now_ms())
