"""The ray executor on a real local Ray cluster (one per module): same results as the local executor,
a worker killed mid-pack, a driver stopped mid-study, distillation stages, and the errors.

The cluster tests are skipped when Ray is not installed (``pip install 'smoothflip[ray]'``; the
``test`` extra installs it); the install-hint test runs either way.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import os
import signal
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smoothflip.cli import app
from smoothflip.engine import ray_executor
from smoothflip.engine.planning import Progress
from smoothflip.engine.runner import run_study
from smoothflip.study.spec import loads_study
from smoothflip.study.store import RunResult, Store

SMALL = """
name = "ray-small"
seeds = 2
[data]
source = "digits"
[model]
name = "mlp"
hidden = [16]
[train]
epochs = 2
batch_size = 64
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.2
[[arms]]
name = "disturb"
disturb_alpha = 0.2
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.3]
"""

DISTILL = """
name = "ray-distill"
kind = "distillation"
seeds = 1
[data]
source = "digits"
[model]
name = "logistic"
[train]
epochs = 2
batch_size = 64
[distillation]
teacher_eps = [0.0, 0.3]
temperatures = [2.0]
alpha = 0.7
student_eps = [0.0]
[distillation.teacher_model]
name = "mlp"
hidden = [16]
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.3]
"""

# A model factory that makes the first Ray worker to build a model hang (the driver builds one too,
# to check the study, and is left alone), after telling the test its PID: the test kills it there,
# mid-pack. Later builds (the pack's retry among them) go on normally.
KILLABLE_FACTORY = """
import os
import time

from torch import nn

DRIVER = {driver}
HERE = {here!r}


def make_net(*, input_shape, num_classes):
    if os.getpid() != DRIVER:
        try:
            fd = os.open(os.path.join(HERE, "claimed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            with open(os.path.join(HERE, "victim.tmp"), "w") as fh:
                fh.write(str(os.getpid()))
            os.replace(os.path.join(HERE, "victim.tmp"), os.path.join(HERE, "victim.pid"))
            time.sleep(60)  # killed here
    size = 1
    for n in input_shape:
        size *= n
    return nn.Sequential(nn.Flatten(), nn.Linear(size, num_classes))
"""

KILLABLE = """
name = "ray-killable"
seeds = 2
[data]
source = "digits"
[model]
factory = "killable.py:make_net"
[train]
epochs = 3
batch_size = 64
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.2
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.3]
"""

runner = CliRunner()


@pytest.fixture(scope="module")
def cluster():
    """One local 2-CPU Ray cluster for the whole module (start-up and shutdown take seconds)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'smoothflip[ray]'")
    if ray.is_initialized():
        ray.shutdown()
    auth = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a private test cluster: no token written to ~/.ray
    ray.init(
        address="local",  # never a cluster that happens to run on this machine
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        logging_level=logging.WARNING,
        # A loaded 2-core machine can miss a few health checks; the default (5 misses) then marks the
        # node dead and Ray kills the driver, i.e. the test process itself.
        _system_config={"health_check_failure_threshold": 100},
    )
    yield ray
    ray.shutdown()
    if auth is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = auth


def assert_one_line_error(result, match: str) -> None:
    """Exit code 2 and one line on stderr, ``error: ...`` naming the problem."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert match in lines[0], lines[0]


def study(text: str, **kwargs):
    return loads_study(textwrap.dedent(text), **kwargs)


def stored(out: Path) -> list[RunResult]:
    with Store.open(out, create=False) as store:
        assert store.integrity_check() == "ok"
        return store.results()


def _close(a: float, b: float, tol: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def assert_same_store(a: list[RunResult], b: list[RunResult], tol: float = 1e-6) -> None:
    """The same runs (ids), each with the same curves and metrics within ``tol``."""
    by_id = {r.run_id: r for r in b}
    assert len(a) == len(b) == len(by_id)
    assert {r.run_id for r in a} == by_id.keys()
    for x in a:
        y = by_id[x.run_id]
        assert (x.arm, x.condition, x.seed) == (y.arm, y.condition, y.seed)
        assert x.curves.keys() == y.curves.keys()
        for key in x.curves:
            assert len(x.curves[key]) == len(y.curves[key])
            for u, v in zip(x.curves[key], y.curves[key], strict=True):
                assert _close(u, v, tol), (x.arm, x.condition, key, u, v)
        for which in ("selected", "last"):
            for key, u in x.metrics[which].items():
                assert _close(u, y.metrics[which][key], tol), (x.arm, which, key, u)
        assert x.metrics["diverged"] == y.metrics["diverged"]


def test_ray_executor_stores_the_same_results_as_the_local_executor(cluster, tmp_path):
    study_file = tmp_path / "small.toml"
    study_file.write_text(textwrap.dedent(SMALL))
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    result = runner.invoke(
        app,
        [
            "run",
            str(study_file),
            "--out",
            str(ray_out),
            "--executor",
            "ray",
            "--pack-size",
            "2",
            "--cpus-per-pack",
            "1",
            "--gpus-per-pack",
            "0",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert cluster.is_initialized()  # a session the caller opened is left open
    seen: list[Progress] = []
    run_study(study(SMALL), local_out, pack_size=2, progress=seen.append)
    assert_same_store(stored(ray_out), stored(local_out))
    assert len(stored(ray_out)) == 3 * 2 * 2

    # progress is reported once per stored pack, ending at the total
    ray_seen: list[Progress] = []
    run_study(study(SMALL), tmp_path / "ray2", executor="ray", pack_size=5, progress=ray_seen.append)
    assert [(p.done, p.packs_done) for p in ray_seen][-1] == (12, 3)
    assert sorted(p.done for p in ray_seen) == [p.done for p in ray_seen]
    assert {p.packs_total for p in ray_seen} == {3}


def test_distillation_through_ray_stores_teachers_first_and_matches_local(cluster, tmp_path):
    spec = study(DISTILL)
    run_study(spec, tmp_path / "ray", executor="ray", pack_size=2)
    run_study(spec, tmp_path / "local", pack_size=2)
    results = stored(tmp_path / "ray")
    assert_same_store(results, stored(tmp_path / "local"))
    roles = [r.config["arm"].get("role") for r in results]
    students = [i for i, r in enumerate(results) if r.config.get("teacher_run")]
    assert students
    assert roles.count("teacher") == 4
    assert min(students) > max(i for i, role in enumerate(roles) if role == "teacher")
    with Store.open(tmp_path / "ray", create=False) as store:
        teachers = [r for r in results if r.config["arm"].get("role") == "teacher"]
        assert all(store.artifact(r.run_id, "state") for r in teachers)


LM_STUDY = """
name = "lm-ray"
kind = "lm"
seeds = 2
[data]
source = "language"
[data.options]
vocab_size = 48
num_train = 48
num_validation = 16
num_test = 16
length = 10
[model]
name = "mlp"
context = 2
[train]
epochs = 2
batch_size = 16
[[arms]]
name = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.2
"""


def test_a_language_model_study_through_ray_matches_local(cluster, tmp_path):
    spec = study(LM_STUDY)
    run_study(spec, tmp_path / "ray", executor="ray", pack_size=2)
    run_study(spec, tmp_path / "local", pack_size=2)
    assert_same_store(stored(tmp_path / "ray"), stored(tmp_path / "local"))


def _kill_when_ready(victim: Path, timeout: float = 60.0) -> int | None:
    """Wait for the hanging worker's PID, then SIGKILL it; returns the PID (None if it never came)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if victim.exists():
            pid = int(victim.read_text())
            os.kill(pid, signal.SIGKILL)
            return pid
        time.sleep(0.02)
    return None


def _killable(tmp_path: Path):
    (tmp_path / "killable.py").write_text(KILLABLE_FACTORY.format(driver=os.getpid(), here=str(tmp_path)))
    return study(KILLABLE, base_dir=tmp_path)


def _process_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_worker_killed_mid_pack_is_retried_and_every_run_stored_once(cluster, tmp_path):
    spec = _killable(tmp_path)
    out = tmp_path / "out"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        killer = pool.submit(_kill_when_ready, tmp_path / "victim.pid")
        run_study(spec, out, executor="ray", pack_size=2)
        pid = killer.result()
    assert pid is not None, "no Ray worker built the killable model"
    assert pid != os.getpid()
    assert _process_gone(pid)
    results = stored(out)
    ids = [r.run_id for r in results]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2
    with Store.open(out, create=False) as store:
        assert store.count() == 8


def test_a_pack_that_fails_after_its_retries_is_a_clean_error_and_a_rerun_resumes(
    cluster, tmp_path, monkeypatch
):
    spec = _killable(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(ray_executor, "MAX_RETRIES", 0)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        killer = pool.submit(_kill_when_ready, tmp_path / "victim.pid")
        with pytest.raises(ray_executor.PackFailedError, match="run the same command again to resume"):
            run_study(spec, out, executor="ray", pack_size=2)
        assert killer.result() is not None
    first = stored(out)
    assert len(first) < 8  # the killed pack is missing
    assert len(first) % 2 == 0  # whole packs only
    monkeypatch.undo()
    run_study(spec, out, executor="ray", pack_size=2)
    ids = [r.run_id for r in stored(out)]
    assert len(ids) == len(set(ids)) == 8
    assert ids[: len(first)] == [r.run_id for r in first]  # what was stored stays as it was


def test_a_driver_stopped_mid_study_resumes_without_duplicates(cluster, tmp_path, monkeypatch):
    spec = study(SMALL)
    out = tmp_path / "out"

    def stop_after_first_pack(p: Progress) -> None:
        if p.packs_done == 1:
            raise KeyboardInterrupt

    stops = []
    stop = ray_executor.stop_in_flight

    def spy(ray, refs, **kwargs):
        stops.append((list(refs), kwargs, stop(ray, refs, **kwargs)))
        return stops[-1][2]

    monkeypatch.setattr(ray_executor, "stop_in_flight", spy)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, out, executor="ray", pack_size=2, progress=stop_after_first_pack)
    assert 2 <= len(stored(out)) < 12
    # The session is the test's (as a notebook's ray.init would be): the packs still in flight were
    # stopped here, each cancelled unless it finished within the settle wait.
    [(refs, kwargs, cancelled)] = stops
    assert kwargs == {"own_session": False}
    assert len(refs) >= 1
    assert set(cancelled) <= set(refs)
    for ref in cancelled:
        with pytest.raises(cluster.exceptions.TaskCancelledError):
            cluster.get(ref, timeout=60)
    plans = []
    run_study(spec, out, executor="ray", pack_size=2, on_plan=plans.append)
    assert len(plans[0].done) >= 2
    ids = [r.run_id for r in stored(out)]
    assert len(ids) == len(set(ids)) == 12


def test_without_ray_the_cli_says_how_to_install_it(tmp_path, monkeypatch):
    study_file = tmp_path / "small.toml"
    study_file.write_text(textwrap.dedent(SMALL))
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as if not installed
    result = runner.invoke(app, ["run", str(study_file), "--out", str(tmp_path / "o"), "--executor", "ray"])
    assert_one_line_error(result, "pip install 'smoothflip[ray]'")
    assert not (tmp_path / "o").exists()  # failed before anything was created


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--executor", "ray", "--cpus-per-pack", "0"], "cpus_per_pack must be a positive number, got 0"),
        (["--executor", "ray", "--cpus-per-pack", "-1"], "cpus_per_pack must be a positive number"),
        (["--executor", "ray", "--cpus-per-pack", "1.5"], "must be a whole number"),
        (["--executor", "ray", "--gpus-per-pack", "-0.5"], "gpus_per_pack must be a number >= 0"),
        (["--executor", "ray", "--gpus-per-pack", "2"], "gpus_per_pack must be at most 1"),
        (["--executor", "ray", "--gpus-per-pack", "nan"], "gpus_per_pack must be a number >= 0"),
        (["--executor", "ray", "--device", "cuda:1"], "Ray assigns each pack its GPU"),
        (["--cpus-per-pack", "2"], "apply to executor 'ray' only"),
        (["--address", "localhost:6379"], "apply to executor 'ray' only"),
    ],
)
def test_bad_ray_options_exit_2_with_one_line(tmp_path, args, match):
    study_file = tmp_path / "small.toml"
    study_file.write_text(textwrap.dedent(SMALL))
    result = runner.invoke(app, ["run", str(study_file), "--out", str(tmp_path / "o"), "-q", *args])
    assert_one_line_error(result, match)


def test_unreachable_address_and_infeasible_requests_fail_fast(cluster, tmp_path):
    study_file = tmp_path / "small.toml"
    study_file.write_text(textwrap.dedent(SMALL))
    base = ["run", str(study_file), "--out", str(tmp_path / "o"), "-q", "--executor", "ray"]
    started = time.monotonic()
    result = runner.invoke(app, [*base, "--address", "127.0.0.1:1"])
    assert_one_line_error(result, "cannot reach a Ray cluster at 127.0.0.1:1")
    assert time.monotonic() - started < 30  # not Ray's own minutes of retries
    result = runner.invoke(app, [*base, "--address", "no-port"])
    assert_one_line_error(result, "address must look like 'HEAD:6379'")
    # the test cluster has no GPU and 2 CPUs: no node can run such a pack
    result = runner.invoke(app, [*base, "--gpus-per-pack", "1", "--pack-size", "4"])
    assert_one_line_error(result, "no node of the Ray cluster can run a pack")
    result = runner.invoke(app, [*base, "--cpus-per-pack", "3", "--pack-size", "4"])
    assert_one_line_error(result, "lower cpus_per_pack")


def test_in_flight_limit_counts_what_the_nodes_can_run():
    class FakeRay:
        def __init__(self, nodes):
            self._nodes = nodes

        def nodes(self):
            return self._nodes

    nodes = [
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 2.0}},
        {"Alive": True, "Resources": {"CPU": 4.0}},
        {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}},
    ]
    limit = ray_executor._in_flight_limit
    options = ray_executor.RayOptions
    assert limit(FakeRay(nodes), options(cpus_per_pack=1)) == 2 * 12
    assert limit(FakeRay(nodes), options(cpus_per_pack=3)) == 2 * (2 + 1)
    assert limit(FakeRay(nodes), options(cpus_per_pack=1, gpus_per_pack=0.25)) == 2 * 8
    assert limit(FakeRay(nodes), options(cpus_per_pack=4, gpus_per_pack=1)) == 2 * 2
    with pytest.raises(ValueError, match="no node of the Ray cluster"):
        limit(FakeRay(nodes), options(cpus_per_pack=16))


class RecordingRay:
    """Records the calls :func:`ray_executor.stop_in_flight` and :func:`ray_session` make."""

    def __init__(self, ready=(), initialized=False):
        self.calls = []
        self.ready = list(ready)
        self.initialized = initialized

    def wait(self, refs, **kwargs):
        self.calls.append(("wait", list(refs), kwargs))
        return [r for r in refs if r in self.ready], [r for r in refs if r not in self.ready]

    def cancel(self, ref, **kwargs):
        self.calls.append(("cancel", ref, kwargs))

    def is_initialized(self):
        return self.initialized

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))

    def shutdown(self):
        self.calls.append(("shutdown",))


def test_a_stop_lets_finishing_packs_finish_then_cancels_only_the_running_ones():
    """Ray aborts the driver when a cancel meets a task's arriving result (the CI crash this guards
    against): the packs get the settle wait first, and only those still running are cancelled."""
    ray = RecordingRay(ready=["finishing"])
    cancelled = ray_executor.stop_in_flight(ray, ["finishing", "a", "b"], own_session=False)
    assert cancelled == ["a", "b"]
    assert ray.calls == [
        (
            "wait",
            ["finishing", "a", "b"],
            {"num_returns": 3, "timeout": ray_executor.SETTLE_S, "fetch_local": False},
        ),
        ("cancel", "a", {"force": True}),
        ("cancel", "b", {"force": True}),
    ]
    assert ray_executor.SETTLE_S >= 0.5  # the CI crash came with a reply 54 ms after the cancel


def test_a_stop_in_the_studys_own_session_leaves_the_tasks_to_the_shutdown():
    ray = RecordingRay()
    assert ray_executor.stop_in_flight(ray, ["a", "b"], own_session=True) == []
    assert ray.calls == []
    assert ray_executor.stop_in_flight(RecordingRay(), [], own_session=False) == []


def test_the_study_owns_and_ends_only_the_session_it_opened():
    ray = RecordingRay(initialized=False)
    owned = []

    def interrupted_study() -> None:
        with ray_executor.ray_session(ray, None) as own:
            owned.append(own)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_study()
    assert owned == [True]
    assert [c[0] for c in ray.calls] == ["init", "shutdown"]
    ray = RecordingRay(initialized=True)
    with ray_executor.ray_session(ray, None) as own:
        assert own is False
    assert ray.calls == []


def test_a_ray_task_resumes_a_pack_from_the_checkpoint_the_driver_keeps(cluster, tmp_path, monkeypatch):
    """A pack interrupted after its first checkpoint (here by the local executor) is resumed by a
    Ray task through the keeper actor: the stored results are bitwise those of an uninterrupted
    study, the checkpoint is deleted, and progress moved in fractions of the pack."""
    from smoothflip.engine.checkpoint import FilePackCheckpoint

    spec = study(SMALL.replace("epochs = 2", "epochs = 4"))
    run_study(spec, tmp_path / "whole", pack_size=100, checkpoint_seconds=-1)

    class Interrupted(Exception):
        pass

    original = FilePackCheckpoint.save

    def dying_save(self, state):
        original(self, state)
        raise Interrupted

    monkeypatch.setattr(FilePackCheckpoint, "save", dying_save)
    with pytest.raises(Interrupted):
        run_study(spec, tmp_path / "cut", pack_size=100, checkpoint_seconds=0)
    monkeypatch.setattr(FilePackCheckpoint, "save", original)
    assert len(list((tmp_path / "cut" / "checkpoints").glob("*.pt"))) == 1
    seen: list[float] = []
    run_study(
        spec,
        tmp_path / "cut",
        executor="ray",
        pack_size=100,
        checkpoint_seconds=0,
        progress=lambda p: seen.append(p.done),
    )
    assert not (tmp_path / "cut" / "checkpoints").exists()
    whole = {r.run_id: json.dumps([r.metrics, r.curves], sort_keys=True) for r in stored(tmp_path / "whole")}
    cut = {r.run_id: json.dumps([r.metrics, r.curves], sort_keys=True) for r in stored(tmp_path / "cut")}
    assert cut == whole
    assert seen[-1] == len(whole)


def test_a_dead_keeper_costs_checkpoints_never_the_pack(cluster, tmp_path):
    """A pack whose checkpoint keeper died loads nothing and saves nothing, with one warning, and
    never raises: checkpoints are a convenience, the pack's training is the work."""
    from smoothflip.engine.checkpoint import CheckpointWarning, FileCheckpoints
    from smoothflip.engine.ray_checkpoints import RemotePackCheckpoint, start_keeper

    ray = cluster
    checkpoints = FileCheckpoints(tmp_path, identity="id", seconds=0)
    keeper = start_keeper(ray, checkpoints)
    ray.kill(keeper)
    pack = RemotePackCheckpoint(keeper, "id", ["a", "b"], 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = pack.load()
        pack.save({"epoch": 1})
        pack.save({"epoch": 2})
        pack.report(0.5)
    assert loaded is None
    gone = [w for w in caught if issubclass(w.category, CheckpointWarning)]
    assert len(gone) == 1
    assert "keeper is gone" in str(gone[0].message)


def test_the_driver_ends_its_keeper_when_the_study_ends(cluster, tmp_path, monkeypatch):
    """The keeper is killed when the study ends, not left to the garbage collector."""
    from smoothflip.engine import ray_checkpoints

    started = []
    original = ray_checkpoints.start_keeper

    def keep(ray, checkpoints):
        started.append(original(ray, checkpoints))
        return started[-1]

    monkeypatch.setattr(ray_executor, "start_keeper", keep)
    run_study(study(SMALL), tmp_path / "out", executor="ray", pack_size=100, checkpoint_seconds=0)
    assert len(started) == 1
    with pytest.raises(cluster.exceptions.RayActorError):
        cluster.get(started[0].progress.remote(), timeout=60)
