"""Growing a study: more seeds, arms or conditions reuse the stored runs; changes that would alter them
are refused naming the key; ``--until-settled`` end to end on a tiny study."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smoothflip.cli import app
from smoothflip.engine import run_study
from smoothflip.study.growth import growth_problem
from smoothflip.study.results import load_study_data
from smoothflip.study.spec import loads_study
from smoothflip.study.store import Store, StoreError

TINY = """
name = "grow"
seeds = 3
[data]
source = "digits"
test_fraction = 0.25
[model]
name = "logistic"
[train]
epochs = 1
batch_size = 128
[[arms]]
name = "ce"
loss = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.2
[[conditions]]
noise = "symmetric"
rates = [0.0]
"""


def study(text: str = TINY, **replace: str):
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    return loads_study(textwrap.dedent(text))


def stored(directory: Path) -> dict[str, str]:
    """Run id -> its stored metrics as canonical JSON (bitwise: floats round-trip exactly)."""
    with Store.open(directory, readonly=True) as store:
        return {r.run_id: json.dumps(r.metrics, sort_keys=True) for r in store.results()}


def test_three_seeds_then_five_equal_five_from_the_start(tmp_path):
    run_study(study(), tmp_path / "grown", pack_size=4)
    first = stored(tmp_path / "grown")
    assert len(first) == 6
    plans = []
    run_study(study(**{"seeds = 3": "seeds = 5"}), tmp_path / "grown", pack_size=4, on_plan=plans.append)
    assert plans[0].remaining == 4  # only the new seeds train
    grown = stored(tmp_path / "grown")
    assert {k: grown[k] for k in first} == first  # nothing stored changed
    run_study(study(**{"seeds = 3": "seeds = 5"}), tmp_path / "direct", pack_size=4)
    assert grown == stored(tmp_path / "direct")
    assert load_study_data(tmp_path / "grown").spec.seeds == (0, 1, 2, 3, 4)
    # a file with fewer seeds trains nothing and loses nothing: the directory keeps all five
    run_study(study(), tmp_path / "grown", pack_size=4, on_plan=plans.append)
    assert plans[-1].remaining == 0
    assert load_study_data(tmp_path / "grown").spec.seeds == (0, 1, 2, 3, 4)
    assert stored(tmp_path / "grown") == grown


def test_new_arms_conditions_and_descriptive_changes_are_accepted(tmp_path):
    run_study(study(), tmp_path, pack_size=4)
    before = stored(tmp_path)
    cp = '[[arms]]\nname = "cp"\nloss = "confidence_penalty"\nbeta = 0.5\n[[conditions]]'
    text = TINY.replace("rates = [0.0]", "rates = [0.0, 0.3]").replace("[[conditions]]", cp)
    text = text.replace('name = "grow"', 'name = "grow"\ndescription = "now with more"')
    more = study(text + '\n[analysis]\nprimary = "ece"\n')
    plans = []
    run_study(more, tmp_path, pack_size=4, on_plan=plans.append)
    assert len(plans[0].done) == 6
    assert plans[0].remaining == 3 * 2 * 3 - 6
    after = stored(tmp_path)
    assert {k: after[k] for k in before} == before
    data = load_study_data(tmp_path)
    assert data.spec.description == "now with more"
    assert data.spec.analysis.primary == "test_ece"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('name = "logistic"', 'name = "mlp"', 'model.name changed from "logistic" to "mlp"'),
        ("test_fraction = 0.25", "test_fraction = 0.3", "data.test_fraction changed from 0.25 to 0.3"),
        ("epochs = 1", "epochs = 2", "train.epochs changed from 1 to 2"),
        ("eps = 0.2", "eps = 0.1", 'arms["ls"].params.eps changed from 0.2 to 0.1'),
        ('name = "grow"', 'name = "other"', 'name changed from "grow" to "other"'),
    ],
)
def test_a_change_that_would_alter_stored_runs_is_refused_naming_the_key(tmp_path, old, new, message):
    run_study(study(), tmp_path, pack_size=6)
    db = (tmp_path / "smoothflip.sqlite").read_bytes()
    toml = (tmp_path / "study.toml").read_bytes()
    with pytest.raises(StoreError, match="holds a different study") as err:
        run_study(study(**{old: new}), tmp_path)
    assert message in str(err.value)
    assert (tmp_path / "smoothflip.sqlite").read_bytes() == db
    assert (tmp_path / "study.toml").read_bytes() == toml


def test_a_changed_data_file_and_dropped_arms_are_refused(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_text("x1,x2,label\n" + "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(120)))
    text = TINY.replace('source = "digits"', 'source = "data.csv"\nlabel_column = "label"')
    spec = loads_study(textwrap.dedent(text), base_dir=tmp_path)
    run_study(spec, tmp_path / "out", pack_size=6)
    csv.write_text("x1,x2,label\n" + "".join(f"{i % 5},{(i * 3) % 7},{i % 2}\n" for i in range(120)))
    again = loads_study(textwrap.dedent(text), base_dir=tmp_path)
    with pytest.raises(StoreError, match="content of its data"):
        run_study(again, tmp_path / "out")
    dropped = {"arms": [{"name": "ce"}]}
    assert "drops arm" in growth_problem({"arms": [{"name": "ce"}, {"name": "ls"}]}, dropped)


def test_cli_refuses_a_changed_model_in_one_line_with_exit_2(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(TINY)
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o"), "-q"]).exit_code == 0
    path.write_text(TINY.replace('name = "logistic"', 'name = "mlp"'))
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "model.name changed" in lines[0]


SETTLE = TINY.replace(
    "[[conditions]]", '[[arms]]\nname = "ce-again"\nloss = "ce"\n[[conditions]]'
)  # an arm identical to the baseline: its differences are all 0, so it settles as equivalent


def test_until_settled_end_to_end(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SETTLE)
    out = tmp_path / "o"
    runner = CliRunner()
    command = ["run", str(path), "--out", str(out), "--until-settled", "--max-seeds", "8"]
    result = runner.invoke(app, [*command, "--round-size", "2", "--pack-size", "1"])
    assert result.exit_code == 0, result.output
    assert "look 0: 2 cell(s) inconclusive" in result.stderr
    with Store.open(out, readonly=True) as store:
        design = json.loads(store.get_meta("design"))
    cells = {c["arm"]: c for c in design["seeds_per_cell"]}
    assert cells["ce-again"]["verdict"] == "equivalent"
    assert cells["ce-again"]["seeds"] < 8  # settled early: no seeds spent on it afterwards
    assert 3 <= cells["ls"]["seeds"] <= 8
    assert design["max_seeds"] == 8
    assert design["round_size"] == 2
    assert design["rounds"] >= 1
    assert design["stopped"].startswith(("every cell is settled", "the budget is spent"))
    data = load_study_data(out)
    runs = {(r.arm, r.seed) for r in data.results}
    assert {s for a, s in runs if a == "ce-again"} < {s for a, s in runs if a == "ce"}
    verdict = runner.invoke(app, ["verdict", str(out)])
    assert verdict.exit_code == 0, verdict.output
    assert "Design: until settled" in verdict.output
    assert "Stopped because" in verdict.output
    assert "equivalent" in verdict.output
    html = (out / "report" / "index.html").read_text(encoding="utf-8")
    assert "Design: until settled" in html
    assert "Stopped because" in html
    assert "anytime-valid" in html


def test_until_settled_option_errors_are_one_line(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(TINY)
    runner = CliRunner()
    missing = runner.invoke(app, ["run", str(path), "--until-settled", "-q"])
    assert missing.exit_code == 2
    assert "--until-settled needs --max-seeds" in missing.stderr
    small = runner.invoke(app, ["run", str(path), "--until-settled", "--max-seeds", "2", "-q"])
    assert small.exit_code == 2
    assert "must be at least the study's 3 seeds" in small.stderr
