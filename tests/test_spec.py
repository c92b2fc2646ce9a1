"""Study files: validation into frozen dataclasses, one-line errors, resolved TOML round trip."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from smoothflip.study.conditions import study_conditions
from smoothflip.study.grid import build_grid, derive_seed, make_packs
from smoothflip.study.spec import SpecError, dumps_study, load_study, loads_study

BASE = """
name = "t"
seeds = 2
[data]
source = "digits"
[model]
name = "mlp"
[[arms]]
name = "ce"
loss = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.1
[[conditions]]
noise = "symmetric"
rates = [0.0, 0.2]
"""


def parse(extra: str = "", base: str = BASE):
    return loads_study(textwrap.dedent(base) + textwrap.dedent(extra))


def test_defaults_are_filled_in():
    spec = parse()
    assert spec.baseline == "ce"
    assert spec.seeds == (0, 1)
    assert spec.train.epochs == 75
    assert spec.train.steps is None
    assert (spec.train.optimizer, spec.train.lr, spec.train.lr_schedule) == ("adam", 0.02, "cosine")
    assert spec.data.validation_fraction == 0.1
    assert spec.arm("ls").params == {"eps": 0.1, "convention": "uniform", "prior": "uniform", "z_loss": 0.0}
    assert dict(spec.model.options) == {"hidden": [100, 100], "activation": "relu"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.arm("ls").params["eps"] = 0.5  # type: ignore[index]


def test_every_documented_technique_parses():
    spec = parse(
        """
        [[arms]]
        name = "nls"
        loss = "smoothed_ce"
        eps = -0.2
        warmup_epochs = 5
        [[arms]]
        name = "disturb"
        loss = "ce"
        disturb_alpha = 0.1
        [[arms]]
        name = "cp"
        loss = "confidence_penalty"
        beta = 0.5
        [[arms]]
        name = "gce"
        loss = "gce"
        q = 0.7
        [[arms]]
        name = "sce"
        loss = "sce"
        alpha = 0.1
        beta = 1.0
        [[arms]]
        name = "boot"
        loss = "bootstrap"
        mode = "hard"
        [[arms]]
        name = "fwd"
        loss = "forward"
        [[arms]]
        name = "prior"
        loss = "smoothed_ce"
        prior = "train"
        """
    )
    assert [a.name for a in spec.arms] == [
        "ce",
        "ls",
        "nls",
        "disturb",
        "cp",
        "gce",
        "sce",
        "boot",
        "fwd",
        "prior",
    ]
    assert spec.arm("nls").params["eps"] == -0.2
    assert spec.arm("nls").warmup_epochs == 5
    assert spec.arm("disturb").disturb_alpha == 0.1


def test_integer_parameters_become_floats_so_run_ids_agree():
    a = parse().arm("ls").params
    b = parse(base=BASE.replace("eps = 0.1", "eps = 0")).arm("ls").params
    assert isinstance(b["eps"], float)
    assert a.keys() == b.keys()


def test_conditions_resolve_and_clean_appears_once():
    spec = parse(
        """
        [[conditions]]
        noise = "pair"
        rates = [0.0, 0.45]
        [[conditions]]
        noise = "asymmetric"
        mapping = "mnist"
        rates = [0.3]
        [[conditions]]
        noise = "matrix"
        matrix = [[0.9, 0.1], [0.2, 0.8]]
        """
    )
    labels = [c.label for c in study_conditions(spec)]
    assert labels == ["clean", "symmetric 20%", "pair 45%", "asymmetric 30% (mnist)", "matrix 15%"]


def test_grid_is_arms_x_conditions_x_seeds_with_stable_ids():
    spec = parse()
    runs = build_grid(spec, "fp")
    assert len(runs) == 2 * 2 * 2
    assert len({r.run_id for r in runs}) == 8
    assert [r.run_id for r in build_grid(parse(), "fp")] == [r.run_id for r in runs]
    assert {r.run_id for r in build_grid(spec, "other data")}.isdisjoint({r.run_id for r in runs})
    # paired design: the same seed gives the same noise, split, init and order across arms
    ce, ls = (r for r in runs if r.seed == 0 and r.condition.label == "symmetric 20%")
    for purpose in ("noise", "split", "init", "order"):
        assert ce.seed_for(purpose) == ls.seed_for(purpose)
    assert ce.seed_for("flip") != ls.seed_for("flip")
    assert derive_seed(0, "noise") != derive_seed(1, "noise")


def test_packs_share_a_key_and_are_balanced():
    runs = build_grid(parse(base=BASE.replace("seeds = 2", "seeds = 10")), "fp")
    packs = make_packs(runs, 15)
    assert [len(p) for p in packs] == [14, 13, 13]
    assert [r.run_id for p in packs for r in p] == [r.run_id for r in runs]


def test_resolved_toml_round_trips():
    base = BASE.replace('name = "t"', 'name = "t"\ndescription = "with \\"quotes\\" and ünïcode"')
    spec = parse(
        """
        [train]
        lr_schedule = "cosine"
        [[arms]]
        name = "cp"
        loss = "confidence_penalty"
        beta = 0.5
        hinge = 1.0
        [[conditions]]
        noise = "asymmetric"
        mapping = {"2" = 7, "5" = 6}
        rates = [0.3]
        """,
        base=base,
    )
    assert "ünïcode" in spec.description
    again = loads_study(dumps_study(spec))
    assert again.to_dict() == spec.to_dict()


def test_load_study_reads_files_and_names_the_study_after_the_file(tmp_path):
    path = tmp_path / "my-study.toml"
    path.write_text(BASE.replace('name = "t"\n', ""))
    spec = load_study(path)
    assert spec.name == "my-study"
    assert spec.base_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("extra", "base_edit", "match"),
    [
        (None, ('name = "t"', 'name = "t"\ncolour = 1'), r"^colour: unknown key; allowed: name, description"),
        ("[train]\nlr = -0.1", None, r"^train\.lr = -0\.1: must be > 0$"),
        ("[train]\nepochs = 0", None, r"^train\.epochs = 0: must be >= 1$"),
        ("[train]\nepochs = 3\nsteps = 100", None, r"either epochs or steps"),
        (
            '[train]\noptimizer = "lion"',
            None,
            r"train\.optimizer = \"lion\": must be one of 'adam', 'adamw', 'sgd'",
        ),
        ("[train]\nbatch = 10", None, r"^train\.batch: unknown key; allowed: .*batch_size"),
        (None, ("eps = 0.1", "eps = 1.5"), r"arms\[1\] \(ls\): eps must be <= 1"),
        (None, ("eps = 0.1", "eps = nan"), r"arms\[1\] \(ls\): eps must be finite"),
        (None, ("eps = 0.1", 'eps = "big"'), r"arms\[1\] \(ls\): eps must be a real number"),
        (None, ("eps = 0.1", "epsilon = 0.1"), r"arms\[1\]\.epsilon: unknown key for loss 'smoothed_ce'"),
        (
            None,
            ('loss = "smoothed_ce"', 'loss = "focal"'),
            r"arms\[1\]\.loss = \"focal\": must be one of 'ce'",
        ),
        ('[[arms]]\nname = "d"\ndisturb_alpha = 1.5', None, r"arms\[2\]\.disturb_alpha = 1\.5: must be <= 1"),
        ('[[arms]]\nname = "cp"\nloss = "confidence_penalty"', None, r"arms\[2\]\.beta is required"),
        ('[[arms]]\nname = "ce"', None, r"arms\[2\]\.name = \"ce\": arm names must be unique"),
        (None, ("rates = [0.0, 0.2]", "rates = [0.0, 1.0]"), r"conditions\[0\]\.rates\[1\] = 1: must be < 1"),
        (
            None,
            ("rates = [0.0, 0.2]", "rates = []"),
            r"conditions\[0\]\.rates = \[\]: must be a non-empty list",
        ),
        (
            None,
            ('noise = "symmetric"', 'noise = "gaussian"'),
            r"conditions\[0\]\.noise = \"gaussian\": must be one of",
        ),
        (
            '[[conditions]]\nnoise = "matrix"\nmatrix = [[0.5, 0.6], [0, 1]]',
            None,
            r"conditions\[1\]\.matrix\[0\] sums to 1\.1",
        ),
        (
            '[[conditions]]\nnoise = "asymmetric"\nmapping = "svhn"\nrates = [0.1]',
            None,
            r"mapping = \"svhn\"",
        ),
        (
            None,
            ('name = "t"', 'name = "t"\nbaseline = "nope"'),
            r"baseline = \"nope\": must name one of the arms",
        ),
        (None, ("seeds = 2", "seeds = 0"), r"seeds = 0: a count must be >= 1"),
        (None, ("seeds = 2", "seeds = [1, 1]"), r"seeds must be distinct"),
        (None, ('name = "mlp"', 'name = "vgg"'), r"model\.name = \"vgg\": must be one of 'mlp'"),
        (
            None,
            ('name = "mlp"', 'name = "mlp"\nwidth = 3'),
            r"model\.width: unknown option for 'mlp'; allowed",
        ),
        (None, ('[data]\nsource = "digits"', "[data]"), r"^data\.source is required$"),
        ("[data.extra]\nx = 1", None, r"data\.extra: unknown key"),
        (None, ("[model]", "[model]\n[model.sub]"), r"model\.sub: unknown option"),
        (
            '[[conditions]]\nattack = "poison"\nbudgets = [0.1]',
            None,
            r'conditions\[1\]\.attack = "poison": must be one of',
        ),
        (
            '[[conditions]]\nattack = "greedy"\nbudgets = [1.0]',
            None,
            r"conditions\[1\]\.budgets\[0\] = 1: must be < 1",
        ),
        (
            '[[conditions]]\nattack = "targeted"\nbudgets = [0.1]',
            None,
            r"conditions\[1\]\.source is required",
        ),
        (
            '[[conditions]]\nattack = "greedy"\nbudgets = [0.1]\nrounds = 3\nturbo = 1',
            None,
            r"conditions\[1\]\.turbo: unknown key",
        ),
        ('[[arms]]\nname = "d"\ndefense = "prayer"', None, r'arms\[2\]\.defense = "prayer": must be one of'),
        (
            '[[arms]]\nname = "d"\ndefense = "knn"\ndefense_options = {kk = 3}',
            None,
            r"defense_options\.kk: unknown option",
        ),
    ],
)
def test_bad_study_files_give_one_line_naming_key_and_value(extra, base_edit, match):
    base = BASE
    if base_edit is not None:
        assert base_edit[0] in base
        base = base.replace(base_edit[0], base_edit[1], 1)
    with pytest.raises(SpecError, match=match) as info:
        parse(extra or "", base=base)
    assert "\n" not in str(info.value)


def test_not_toml_is_a_spec_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n[[arms]")
    with pytest.raises(SpecError, match=r"bad\.toml is not valid TOML"):
        load_study(bad)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SpecError, match="not a text"):
        load_study(binary)
    with pytest.raises(FileNotFoundError, match="study file not found"):
        load_study(tmp_path / "missing.toml")
    with pytest.raises(FileNotFoundError, match="is a directory, not a study file"):
        load_study(tmp_path)


def test_example_study_files_are_valid():
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
    assert examples
    for path in examples:
        assert load_study(path).arms
