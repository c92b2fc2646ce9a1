"""Writing the resolved study back as TOML: every default filled in, so the file reruns the same study."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from smoothflip.study.conditions import get_noise_model
from smoothflip.study.ids import plain
from smoothflip.study.kinds import get_kind
from smoothflip.study.spec.analysis import analysis_table
from smoothflip.study.spec.schema import StudySpec


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write the non-finite number {value!r} to TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key, ensure_ascii=False)


def _toml_lines(pairs: Mapping[str, Any]) -> list[str]:
    return [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in pairs.items() if v is not None]


def dumps_study(spec: StudySpec) -> str:
    """The resolved study as TOML: every default written out, so the file reruns the same study."""
    kind = get_kind(spec.kind)
    out = [
        "# Resolved by smoothflip: every default is written out. Rerun with `smoothflip run` on this file.",
        *_toml_lines(
            {
                "name": spec.name,
                "description": spec.description or None,
                "seeds": list(spec.seeds),
                "baseline": spec.baseline if kind.user_arms else None,
            }
        ),
        "",
        "[data]",
    ]
    data = asdict(spec.data)
    options = data.pop("options")
    out += _toml_lines(data)
    if options:
        out += ["", "[data.options]", *_toml_lines(dict(options))]
    out += ["", "[model]"]
    model = {
        "name": spec.model.name,
        "factory": spec.model.factory,
        "trainer": spec.model.trainer,
        **dict(spec.model.options),
    }
    out += _toml_lines(model)
    out += ["", "[train]", *_toml_lines(asdict(spec.train))]
    if kind.name != "standard":
        out[1:1] = [f"kind = {_toml_value(kind.name)}"]
    if spec.distillation is not None:
        d = spec.distillation
        out += ["", "[distillation]"]
        out += _toml_lines(
            {
                "teacher_eps": list(d.teacher_eps),
                "temperatures": list(d.temperatures),
                "alpha": d.alpha,
                "student_eps": list(d.student_eps),
            }
        )
        if d.teacher_model is not None:
            teacher = {
                "name": d.teacher_model.name,
                "factory": d.teacher_model.factory,
                **dict(d.teacher_model.options),
            }
            out += ["", "[distillation.teacher_model]", *_toml_lines(teacher)]
    for arm in spec.arms if kind.user_arms else ():
        out += ["", "[[arms]]"]
        out += _toml_lines({"name": arm.name, "loss": arm.loss, **dict(arm.params)})
        out += _toml_lines(
            {
                "disturb_alpha": arm.disturb_alpha,
                "flip_rate": arm.flip_rate,
                "warmup_epochs": arm.warmup_epochs,
            }
        )
        if arm.defense is not None:
            out += _toml_lines({"defense": arm.defense, "defense_options": dict(arm.defense_options)})
    for condition in spec.conditions if kind.label_conditions else ():
        table = get_noise_model(condition.noise).table(condition.rates, dict(condition.options))
        out += ["", "[[conditions]]", *_toml_lines(table)]
    for name in kind.tables:
        out += ["", f"[{name}]", *_toml_lines(plain(asdict(getattr(spec, name))))]
    out += ["", "[probes]", *_toml_lines(plain(asdict(spec.probes)))]
    analysis = analysis_table(spec.analysis, kind.study_metrics(spec))
    margins, targets = analysis.pop("margin"), analysis.pop("target_mde")
    out += ["", "[analysis]", *_toml_lines(analysis), "", "[analysis.margin]", *_toml_lines(margins)]
    out += ["", "[analysis.target_mde]", *_toml_lines(targets)]
    return "\n".join(out) + "\n"
