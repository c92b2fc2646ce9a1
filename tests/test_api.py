"""``import smoothflip as sf``: studies from Python values (arrays, DataFrames, torch Datasets, callables),
their resume and identity, the same numbers as the same study from files, results read back, bad input."""

from __future__ import annotations

import inspect
import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import smoothflip as sf
from smoothflip.data import load_dataset
from smoothflip.data.memory import load_memory, memory_source
from smoothflip.errors import SmoothflipError, SpecError, StoreError
from smoothflip.study.store import Store


def make_net(input_shape, num_classes, width=8):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width), nn.ReLU(), nn.Linear(width, num_classes)
    )


def blobs(n: int = 240, d: int = 6, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=2.0, size=(k, d))
    y = np.arange(n) % k
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


SETTINGS = {
    "name": "api-tiny",
    "seeds": 2,
    "train": {"epochs": 2, "batch_size": 50},
    "arms": [{"name": "ce"}, {"name": "ls", "loss": "smoothed_ce", "eps": 0.1}],
    "conditions": [{"noise": "symmetric", "rates": [0.0, 0.2]}],
}


def memory_study(**changes) -> sf.Study:
    x, y = blobs()
    return sf.Study(**{**SETTINGS, "data": (x, y), "model": {"factory": make_net, "width": 8}, **changes})


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> sf.Results:
    """The in-memory study, run once (with its report) for the tests that read results back."""
    out = tmp_path_factory.mktemp("api") / "memory"
    return memory_study().run(out=out, progress=False, report=False)


def by_cell(results: list) -> dict:
    return {(r.arm, r.condition, r.seed): r for r in results}


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_import_smoothflip_is_light_and_names_the_public_api():
    code = "import sys, smoothflip as sf; print('torch' in sys.modules, sorted(sf.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"  # nothing heavy until a name is used
    assert "'Study'" in out
    assert "'open'" in out
    assert "'Results'" in out
    assert "'meta'" in out
    assert sf.Study.__module__ == "smoothflip.api.study"
    assert sf.open.__name__ == "open_results"


def test_an_in_memory_study_resumes_and_equals_the_same_study_from_files(stored, tmp_path):
    assert stored.trained == 8
    assert len(stored.runs) == 8
    # the notebook cell run again: new objects, equal arrays and function text -> nothing trains
    again = memory_study().run(out=stored.directory, progress=False, report=False)
    assert again.trained == 0
    assert sorted(again.runs["run_id"]) == sorted(stored.runs["run_id"])

    # the same study from files: the arrays in an .npz, the function in a .py file
    x, y = blobs()
    np.savez(tmp_path / "data.npz", x=x, y=y)
    (tmp_path / "net.py").write_text(
        "import numpy as np\nfrom torch import nn\n\n\n" + inspect.getsource(make_net)
    )
    settings = textwrap.dedent(
        """
        name = "api-tiny"
        seeds = 2
        [data]
        source = "data.npz"
        [model]
        factory = "net.py:make_net"
        width = 8
        [train]
        epochs = 2
        batch_size = 50
        [[arms]]
        name = "ce"
        [[arms]]
        name = "ls"
        loss = "smoothed_ce"
        eps = 0.1
        [[conditions]]
        noise = "symmetric"
        rates = [0.0, 0.2]
        """
    )
    (tmp_path / "study.toml").write_text(settings)
    from_files = sf.Study.from_toml(tmp_path / "study.toml").run(
        out=tmp_path / "files", progress=False, report=False
    )
    with (
        Store.open(stored.directory, readonly=True) as a,
        Store.open(from_files.directory, readonly=True) as b,
    ):
        memory, files = by_cell(a.results()), by_cell(b.results())
    assert memory.keys() == files.keys()
    assert len(memory) == 8
    for cell, run in memory.items():
        other = files[cell]
        assert run.config["dataset_fingerprint"] == other.config["dataset_fingerprint"]  # bit-identical data
        for key, values in run.curves.items():
            assert all(same(u, v) for u, v in zip(values, other.curves[key], strict=True)), (cell, key)
        for which in ("selected", "last"):
            assert all(same(v, other.metrics[which][k]) for k, v in run.metrics[which].items()), (cell, which)


def test_a_changed_model_function_is_refused_like_a_changed_model_table(stored, tmp_path):
    source = inspect.getsource(make_net).replace("nn.ReLU()", "nn.Tanh()")
    namespace = {"__name__": __name__, "nn": nn, "np": np}
    exec(compile(source, "<a re-run notebook cell>", "exec"), namespace)  # same name, changed body
    changed = namespace["make_net"]
    assert changed.__qualname__ == make_net.__qualname__
    with pytest.raises(StoreError) as err:
        memory_study(model={"factory": changed, "width": 8}).run(out=stored.directory, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "holds a different study ('api-tiny'): model.factory changed from" in message
    assert "make_net@" in message
    # the same line as for a changed [model] table
    with pytest.raises(
        StoreError, match=r"holds a different study \('api-tiny'\): model.options.width changed"
    ):
        memory_study(model={"factory": make_net, "width": 16}).run(out=stored.directory, progress=False)
    assert sf.open(stored.directory).runs.shape[0] == 8  # nothing was written


def test_results_read_back_as_frames_a_verdict_table_the_report_and_figures(stored):
    opened = sf.open(stored.directory)
    assert opened.trained is None
    runs = opened.runs
    assert len(runs) == 8
    assert {"run_id", "arm", "condition", "seed", "selected_test_acc"} <= set(runs)
    assert set(runs["arm"]) == {"ce", "ls"}
    assert set(runs["seed"]) == {0, 1}
    curves = opened.curves
    assert len(curves) == 8 * 2
    assert {"epoch", "test_acc", "train_loss"} <= set(curves)
    summary = opened.summary()
    assert list(summary["n"]) == [2, 2, 2, 2]

    verdict = opened.verdict()
    frame = verdict.to_frame()
    assert {"condition", "arm", "metric", "difference", "ci_low", "ci_high", "verdict"} <= set(frame)
    primary = frame[frame["role"] == "primary"]
    assert list(primary["metric"]) == ["accuracy", "accuracy"]
    assert frame["role"].iloc[0] == "primary"
    for _, row in primary.iterrows():  # the difference is the mean paired difference, in points
        ls = runs[(runs.arm == "ls") & (runs.condition == row["condition"])].sort_values("seed")
        ce = runs[(runs.arm == "ce") & (runs.condition == row["condition"])].sort_values("seed")
        expected = 100 * np.mean(ls["selected_test_acc"].to_numpy() - ce["selected_test_acc"].to_numpy())
        assert row["difference"] == pytest.approx(expected)
    page = verdict._repr_html_()
    assert page.count("<table>") == 2
    assert "primary verdicts" in page
    assert "ls" in page

    figure = opened.figure("accuracy_vs_noise")
    from matplotlib.figure import Figure

    assert isinstance(figure, Figure)
    assert figure._repr_png_().startswith(b"\x89PNG")
    with pytest.raises(SmoothflipError, match="figure 'nope': must be one of 'accuracy_vs_noise'"):
        opened.figure("nope")
    with pytest.raises(SmoothflipError, match="figure 'projection' is not drawn for this study"):
        opened.figure("projection")
    assert opened.report() == stored.directory / "report" / "index.html"
    assert "runs stored" in opened._repr_html_()
    with pytest.raises(FileNotFoundError, match="no study in"):
        sf.open(stored.directory / "report")


def test_dataframes_and_torch_datasets_read_exactly_as_files_and_arrays(tmp_path):
    from smoothflip._memory import register

    x, y = blobs(n=60)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])]).assign(
        kind=np.array(list("abc"))[y]
    )
    frame.to_parquet(tmp_path / "t.parquet")
    from_file = load_dataset(str(tmp_path / "t.parquet"), label_column="kind")
    reference, entry = memory_source(frame, label_column="kind")
    register(reference, entry)
    assert reference.startswith("memory:dataframe@")
    assert load_memory(reference).fingerprint() == from_file.fingerprint()

    arrays_ref, arrays_entry = memory_source((x, y))
    register(arrays_ref, arrays_entry)
    tensors = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))

    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return torch.from_numpy(x[i]), int(y[i])

    want = load_memory(arrays_ref).fingerprint()
    for dataset in (tensors, Pairs()):
        ref, found = memory_source(dataset)
        register(ref, found)
        assert load_memory(ref).fingerprint() == want
    assert memory_source((x, y))[0] == arrays_ref  # the content names it
    assert memory_source((x, (y + 1) % 3))[0] != arrays_ref


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"model": 42}, "model = 42: give a built-in model's name"),
        ({"model": {"factory": 42}}, "model.factory = 42: not callable"),
        ({"model": nn.Linear(2, 2)}, "model.factory: an nn.Module instance (Linear)"),
        ({"trainer": "not a function".upper}, "trainer: a builtin_function_or_method cannot be named"),
        ({"data": (np.zeros((10, 2)), np.zeros(9, int))}, "data.source: x and y have different lengths (10"),
        ({"data": (np.zeros((10, 2)), np.zeros(10))}, "data.source: the labels y are floats (float64)"),
        (
            {"data": pd.DataFrame({"a": [1.0, 2.0], "b": [0, 1]})},
            "data.label_column is required for a DataFrame",
        ),
        ({"data": object()}, "data = object: give a built-in dataset's name"),
        ({"seeds": np.int64(0)}, "seeds = 0: a count must be >= 1"),
    ],
)
def test_bad_input_is_one_line_naming_it(settings, match):
    with pytest.raises(SmoothflipError) as err:
        sf.Study(**{**SETTINGS, "data": blobs(n=30), "model": make_net, **settings})
    assert match in str(err.value)
    assert "\n" not in str(err.value)


def test_a_tracker_that_is_not_installed_is_one_line_and_nothing_starts(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails
    with pytest.raises(SmoothflipError) as err:
        memory_study().run(out=tmp_path / "out", track="mlflow", progress=False)
    assert "'mlflow' needs the mlflow package" in str(err.value)
    assert "pip install 'smoothflip[mlflow]'" in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_to_toml_round_trips_a_file_study_and_refuses_in_memory_values(tmp_path):
    study = sf.Study(**{**SETTINGS, "data": "digits", "model": {"name": "mlp", "hidden": [16]}})
    text = study.to_toml(tmp_path / "s.toml")
    assert sf.Study.from_toml(tmp_path / "s.toml").spec.to_dict() == study.spec.to_dict()
    assert 'source = "digits"' in text
    assert (
        sf.Study.from_dict({**SETTINGS, "data": "digits", "model": {"name": "mlp", "hidden": [16]}}).spec
        == study.spec
    )
    with pytest.raises(SpecError, match=r"to_toml: data.source hold\(s\) in-memory data or a Python"):
        memory_study().to_toml()  # (make_net, of this test file, is named by its path)
    cell = {"__name__": "__main__"}
    exec(textwrap.dedent(NETS), cell)  # a function of a notebook cell or a script
    for model in (cell["make"], lambda input_shape, num_classes: make_net(input_shape, num_classes)):
        with pytest.raises(SpecError, match=r"to_toml: model.factory hold\(s\) in-memory data or a Python"):
            sf.Study(**{**SETTINGS, "data": "digits", "model": model}).to_toml()


NETS = """
import math

from torch import nn


def make(input_shape, num_classes, width=8):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(), nn.Linear(width, num_classes)
    )
"""


def test_to_toml_names_a_function_of_a_py_file_by_its_path_and_the_file_reruns_the_study(
    tmp_path, monkeypatch
):
    import importlib.util

    from typer.testing import CliRunner

    from smoothflip.cli import app
    from smoothflip.engine import resolve_study

    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "f24_nets.py").write_text(NETS)
    found = importlib.util.spec_from_file_location("f24_nets", tmp_path / "nets" / "f24_nets.py")
    module = importlib.util.module_from_spec(found)
    monkeypatch.setitem(sys.modules, "f24_nets", module)
    found.loader.exec_module(module)  # `from f24_nets import make`, in a notebook
    settings = {**SETTINGS, "seeds": 1, "train": {"epochs": 1, "batch_size": 100}, "data": "digits"}
    study = sf.Study(**settings, model={"factory": module.make, "width": 8})
    path = tmp_path / "studies" / "s.toml"
    path.parent.mkdir()
    text = study.to_toml(path)
    assert 'factory = "../nets/f24_nets.py:make"' in text  # relative to the study file's folder

    monkeypatch.chdir(tmp_path / "nets")  # the file's paths resolve against its folder, not here
    written = sf.Study.from_toml(path)
    assert written.to_toml() == text
    by_hand = sf.Study(
        **settings, model={"factory": "../nets/f24_nets.py:make", "width": 8}, base_dir=path.parent
    )
    assert written.spec.to_dict() == by_hand.spec.to_dict()
    ids = [r.run_id for r in resolve_study(written.spec)[1]]
    assert ids == [r.run_id for r in resolve_study(by_hand.spec)[1]]

    first = written.run(out=tmp_path / "file", progress=False, report=False)
    assert sorted(first.runs["run_id"]) == sorted(ids)
    original = study.run(out=tmp_path / "memory", progress=False, report=False)
    cells = ["arm", "condition", "seed"]
    a, b = (r.runs.sort_values(cells).reset_index(drop=True) for r in (original, first))
    pd.testing.assert_frame_equal(a[[*cells, "selected_test_acc"]], b[[*cells, "selected_test_acc"]])
    again = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "file")])
    assert again.exit_code == 0, again.output
    assert "4 runs (4 already stored): nothing to train" in " ".join(again.stderr.split())


def test_the_command_line_finds_what_study_run_stored_in_the_default_directory(tmp_path, monkeypatch):
    """Without ``out``, both write to ``smoothflip-runs/<name>`` with the same folder name (a name in
    any script), so `smoothflip run` on the study's file resumes what the notebook trained."""
    from typer.testing import CliRunner

    from smoothflip import cli
    from smoothflip.api import study as api_study

    monkeypatch.chdir(tmp_path)
    study = sf.Study(
        name="étude: ls/0.1",
        seeds=1,
        data="digits",
        model={"name": "mlp", "hidden": [8]},
        train={"epochs": 1, "batch_size": 200},
        arms=[{"name": "ce"}],
    )
    assert study.run(progress=False, report=False).directory == Path("smoothflip-runs/étude--ls-0.1")
    study.to_toml("s.toml")
    again = CliRunner().invoke(cli.app, ["run", "s.toml"])
    assert again.exit_code == 0, again.output
    assert "1 runs (1 already stored): nothing to train" in " ".join(again.stderr.split())
    assert cli.DEFAULT_RUNS_DIR == api_study.DEFAULT_RUNS_DIR
    assert sorted(p.name for p in (tmp_path / "smoothflip-runs").iterdir()) == ["étude--ls-0.1"]


def test_warnings_raised_on_every_run_are_shown_once(tmp_path):
    calls = []

    def noisy_net(input_shape, num_classes):
        calls.append(1)
        warnings.warn(f"building net number {len(calls)}", UserWarning, stacklevel=1)
        return make_net(input_shape, num_classes)

    study = memory_study(name="warns", model=noisy_net, seeds=1, arms=[{"name": "ce"}], conditions=None)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        study.run(out=tmp_path / "w", progress=False, report=False)
    shown = [w for w in seen if "building net number" in str(w.message)]
    assert len(calls) > 2
    assert len(shown) == 1


@pytest.mark.slow
def test_ray_and_worker_processes_get_notebook_callables_by_value(tmp_path, monkeypatch):
    """A function defined in a module no worker can import (a notebook cell) trains through spawned
    worker processes and through Ray tasks: both receive it by value (cloudpickle)."""
    ray = pytest.importorskip("ray")
    namespace = {"__name__": "a_notebook_cell", "nn": nn, "np": np}
    exec(compile(inspect.getsource(make_net), "<cell>", "exec"), namespace)
    study = memory_study(model={"factory": namespace["make_net"], "width": 8})
    local = study.run(out=tmp_path / "local", progress=False, report=False)
    workers = study.run(out=tmp_path / "workers", workers=2, pack_size=2, progress=False, report=False)
    # Every Ray test in the suite runs its private cluster with token authentication off: Ray fixes the
    # auth mode once per process, and a later cluster of another mode in the same test process (xdist
    # worker) starts actors that die before they run (reproduced: the atlas test's checkpoint keeper).
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        remote = study.run(
            out=tmp_path / "ray",
            executor="ray",
            pack_size=2,
            progress=False,
            report=False,
            track=f"tensorboard={tmp_path / 'tb'}",
        )
    finally:
        ray.shutdown()
    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert len(events) == 8
    assert all(f".{os.getpid()}." in e.name for e in events)  # logged by the driver, not the workers
    want = local.runs.sort_values("run_id").reset_index(drop=True)
    for other in (workers, remote):
        got = other.runs.sort_values("run_id").reset_index(drop=True)
        assert list(got["run_id"]) == list(want["run_id"])
        pd.testing.assert_series_equal(got["selected_test_acc"], want["selected_test_acc"], atol=1e-6)


CELL = """
class Net(nn.Module):
    def __init__(self, input_shape, num_classes, width=8):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width), nn.ReLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))
"""


def test_a_module_class_from_a_cell_is_named_by_its_text_across_reruns():
    from smoothflip.api.inputs import callable_reference

    def run_cell(source: str, name: str) -> type:
        namespace = {"__name__": "__main__", "nn": nn, "np": np}
        exec(compile(source, name, "exec"), namespace)  # no file behind it, as in a notebook
        return namespace["Net"]

    first, again = run_cell(CELL, "<cell 3>"), run_cell(CELL, "<cell 7>")
    changed = run_cell(CELL.replace("nn.ReLU()", "nn.GELU()"), "<cell 8>")
    reference = callable_reference(first, "model.factory")[0]
    assert reference.startswith("memory:__main__.Net@")
    assert callable_reference(again, "model.factory")[0] == reference
    assert callable_reference(changed, "model.factory")[0] != reference
    study = sf.Study(**{**SETTINGS, "data": blobs(n=30), "model": first})
    assert study.spec.model.factory == reference


def test_every_table_of_the_study_file_is_a_keyword_of_study():
    from smoothflip.study.spec.parse import TOP_LEVEL_KEYS

    keywords = set(inspect.signature(sf.Study.__init__).parameters)
    assert set(TOP_LEVEL_KEYS) <= keywords
    certified = {
        "name": "cert",
        "kind": "certified",
        "data": "digits",
        "certify": {"partitions": [5, 10], "radii": [0, 1, 2]},
        "arms": [{"name": "ce"}],
    }
    study = sf.Study(**certified)
    assert study.spec.certify.partitions == (5, 10)
    assert study.spec == sf.Study.from_dict(certified).spec
    with pytest.raises(SpecError, match=r"^certify.radii = \[0, -1\]: must be whole numbers >= 0"):
        sf.Study(**{**certified, "certify": {"partitions": 5, "radii": [0, -1]}})


@pytest.mark.parametrize(
    ("kind", "own"),
    [("standard", None), ("distillation", "distillation"), ("certified", "certified_accuracy")],
)
def test_the_figure_names_follow_the_study_kind(kind, own):
    from types import SimpleNamespace

    from smoothflip.report.figures import ALL_FIGURE_NAMES, FIGURE_NAMES, figure_names
    from smoothflip.study.kinds import get_kind

    names = figure_names(SimpleNamespace(kind=get_kind(kind)))
    assert names == ((own,) if own else ()) + FIGURE_NAMES
    assert set(names) <= set(ALL_FIGURE_NAMES)


UNGUARDED = """
import numpy as np
from torch import nn
import smoothflip as sf

rng = np.random.default_rng(0)
y = np.arange(4000) % 3
x = (rng.normal(size=(3, 16))[y] + rng.normal(size=(4000, 16))).astype(np.float32)  # 256 KB: > a pipe


def net(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(16, num_classes))


study = sf.Study(name="unguarded", seeds=2, data=(x, y), model=net, train={"epochs": 1},
                 arms=[{"name": "ce"}, {"name": "ls", "loss": "smoothed_ce", "eps": 0.1}])
study.run(out="out", workers=2, pack_size=1, progress=False, report=False)  # no __main__ guard
"""


@pytest.mark.slow
def test_workers_of_a_script_without_a_main_guard_are_one_error_not_a_hang(tmp_path):
    """Each spawned worker imports the script again and dies starting; the study stops with one line
    (it used to block forever writing the dataset to a worker that was gone)."""
    (tmp_path / "script.py").write_text(UNGUARDED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "script.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("smoothflip.errors.SmoothflipError: a worker process ended abruptly")
    assert 'outside `if __name__ == "__main__":`' in last


def test_until_settled_adds_seeds_in_rounds_and_its_options_are_checked(tmp_path):
    with pytest.raises(SmoothflipError, match="until_settled needs max_seeds"):
        memory_study().run(out=tmp_path / "s", until_settled=True)
    with pytest.raises(SmoothflipError, match="max_seeds is an option of until_settled"):
        memory_study().run(out=tmp_path / "s", max_seeds=4)
    assert not (tmp_path / "s").exists()
    study = memory_study(conditions=None, train={"epochs": 1, "batch_size": 80})
    results = study.run(out=tmp_path / "s", until_settled=True, max_seeds=4, progress=False, report=False)
    seeds = set(results.runs["seed"])
    assert {0, 1} <= seeds <= {0, 1, 2, 3}
    assert results.trained == len(results.runs) == 2 * len(seeds)
    assert any(line.startswith("Design: until settled") for line in results.verdict().design)
