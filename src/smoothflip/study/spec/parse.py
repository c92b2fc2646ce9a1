"""Reading a study file: TOML text -> a validated :class:`~smoothflip.study.spec.schema.StudySpec`."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from smoothflip._text import control_characters, printable
from smoothflip.errors import SpecError
from smoothflip.study.conditions import read_condition
from smoothflip.study.kinds import default_kind, get_kind, kind_names, table_owners
from smoothflip.study.spec.analysis import read_analysis
from smoothflip.study.spec.schema import ConditionSpec, StudySpec, frozen
from smoothflip.study.spec.sections import read_data, read_probes, read_seeds, read_train
from smoothflip.study.tables import Table, show

TOP_LEVEL_KEYS = (
    "name",
    "description",
    "kind",
    "seeds",
    "baseline",
    "data",
    "model",
    "train",
    "arms",
    "distillation",
    "conditions",
    "probes",
    "analysis",
    "certify",
)
NO_CONDITIONS = [{"noise": "none"}]


def read_conditions(raw: Any) -> tuple[ConditionSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError("conditions: give at least one [[conditions]] table (noise, rates)")
    out = []
    for index, table in enumerate(raw):
        path = f"conditions[{index}]"
        noise, rates, options = read_condition(Table(table, path), path)
        out.append(ConditionSpec(noise=noise, rates=rates, options=frozen(options)))
    return tuple(out)


def _refuse_control_characters(value: Any, key: str) -> None:
    """A name or value holding terminal control characters (``"\\x1b[2J"``) is refused: it would reach
    the terminal of whoever looks at the results. A ``description`` may hold newlines and tabs."""
    if isinstance(value, str):
        text = value.replace("\n", "").replace("\t", "") if key == "description" else value
        found = control_characters(text)
        if found:
            raise SpecError(
                f"{key or 'study file'} = '{printable(value)}' holds control characters ({found}); "
                "names and values must be plain text"
            )
    elif isinstance(value, Mapping):
        for k, v in value.items():
            sub = f"{key}.{k}" if key else str(k)
            if control_characters(str(k)):
                raise SpecError(f"key '{printable(sub)}' holds control characters; keys must be plain text")
            _refuse_control_characters(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _refuse_control_characters(v, f"{key}[{i}]")


def parse_study(
    document: Mapping[str, Any],
    *,
    base_dir: str | Path = ".",
    default_name: str = "study",
    stored: bool = False,
) -> StudySpec:
    """Validate a parsed TOML document into a :class:`StudySpec`.

    Args:
        document: the parsed study file.
        base_dir: folder that relative paths (data files, model factories) resolve against.
        default_name: the study's name when the file gives none.
        stored: the resolved study of a study directory (``DIR/study.toml``), read back as it is:
            control characters in its names are not refused (a study written by an older smoothflip
            may hold them); whatever shows those names escapes them.

    Raises:
        SpecError: one line naming the key, the value and what is allowed.
    """
    if not stored:
        _refuse_control_characters(document, "")
    top = Table(document, "")
    name = top.str("name", default_name)
    if not name.strip():
        raise SpecError("name must not be empty")
    description = top.str("description", "")
    seeds = read_seeds(top.raw("seeds", 3))
    data = read_data(top.raw("data"))
    kind = get_kind(top.str("kind", default_kind(top.data.get("model")), choices=kind_names()))
    model = kind.read_model(top.raw("model", {}), "model")
    train = read_train(top.raw("train", {}), default_selection=kind.default_selection)
    arms, extra = kind.read_arms(top, kind)
    names = [a.name for a in arms]
    for i, arm_name in enumerate(names):
        if arm_name in names[:i]:
            raise SpecError(f"arms[{i}].name = {show(arm_name)}: arm names must be unique")
    raw_conditions = top.raw("conditions", NO_CONDITIONS)
    if not kind.label_conditions and raw_conditions != NO_CONDITIONS:
        raise SpecError(
            f'conditions: a study of kind = "{kind.name}" trains on its data as it is; remove [[conditions]]'
        )
    conditions = read_conditions(raw_conditions)
    probes = read_probes(top.raw("probes", {}))
    if not kind.probes:
        if top.has("probes") and probes.seeds > 0:
            raise SpecError(
                f'probes: a study of kind = "{kind.name}" records no representation probes; remove it'
            )
        probes = dataclasses.replace(probes, seeds=0)
    baseline = kind.read_baseline(top, arms)
    for table, owner in table_owners().items():
        if owner != kind.name and top.has(table):
            raise SpecError(f'{table}: only for kind = "{owner}" (this study is kind = "{kind.name}")')
    own = {table: read(top) for table, read in kind.tables.items()}
    spec = StudySpec(
        name=name,
        data=data,
        model=model,
        train=train,
        arms=arms,
        conditions=conditions,
        seeds=seeds,
        baseline=baseline,
        description=description,
        probes=probes,
        kind=kind.name,
        distillation=extra,
        base_dir=str(base_dir),
        **own,
    )
    analysis = read_analysis(top.raw("analysis", {}), kind.study_metrics(spec))
    top.finish(TOP_LEVEL_KEYS)
    return dataclasses.replace(spec, analysis=analysis)


def load_study(path: str | Path, *, stored: bool = False) -> StudySpec:
    """Read and validate a study file.

    Raises:
        FileNotFoundError: no such file.
        SpecError: the file is not TOML, or a key or value is wrong.
    """
    path = Path(path)
    if path.is_dir():
        hint = (
            " (a study directory? its resolved study is study.toml inside)"
            if (path / "study.toml").is_file()
            else ""
        )
        raise FileNotFoundError(f"{path} is a directory, not a study file{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"study file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path} is not a text (UTF-8) TOML file") from None
    return loads_study(
        text, base_dir=path.resolve().parent, default_name=path.stem, origin=str(path), stored=stored
    )


def loads_study(
    text: str,
    *,
    base_dir: str | Path = ".",
    default_name: str = "study",
    origin: str = "study file",
    stored: bool = False,
) -> StudySpec:
    """Parse TOML text and validate it (see :func:`parse_study`)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{origin} is not valid TOML: {err}") from None
    return parse_study(document, base_dir=base_dir, default_name=default_name, stored=stored)
