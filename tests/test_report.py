"""The study report: files, figures, escaping, missing data, and a real headless browser."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import struct
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smoothflip.report import md_escape, write_report
from smoothflip.report.data import (
    load_study_data,
    mean_curve,
    mean_sd,
    mean_sd_text,
    pooled_reliability,
    t_interval,
)
from smoothflip.report.figures import FIGURE_NAMES, plain
from smoothflip.study.conditions import study_conditions
from smoothflip.study.spec import dumps_study, loads_study
from smoothflip.study.store import RunResult, Store

XSS = "<script>alert(1)</script>\"'&"
CHROMIUM = Path("/usr/bin/chromium")

# --------------------------------------------------------------------------- synthetic studies


def _toml_str(value: str) -> str:
    return json.dumps(value)


def _study_text(
    *,
    name: str,
    description: str,
    arms: list[tuple[str, str, dict[str, Any]]],
    rates: list[float],
    seeds: int,
) -> str:
    lines = [f"name = {_toml_str(name)}", f"description = {_toml_str(description)}", f"seeds = {seeds}"]
    lines += [
        "",
        "[data]",
        'source = "digits"',
        "",
        "[model]",
        'name = "logistic"',
        "",
        "[train]",
        "epochs = 6",
    ]
    for arm, loss, params in arms:
        lines += ["", "[[arms]]", f"name = {_toml_str(arm)}", f"loss = {_toml_str(loss)}"]
        lines += [f"{k} = {v!r}" for k, v in params.items()]
    lines += ["", "[[conditions]]", 'noise = "symmetric"', f"rates = {list(rates)!r}"]
    return "\n".join(lines) + "\n"


def _reliability(rng: np.random.Generator, shift: float) -> dict[str, list[float]]:
    edges = np.linspace(0.0, 1.0, 16)
    centers = (edges[:-1] + edges[1:]) / 2
    count = rng.integers(0, 60, size=15).astype(float)
    count[:2] = 0.0  # empty bins (confidence below 1/K never happens)
    confidence = np.where(count > 0, centers + rng.uniform(-0.02, 0.02, 15), np.nan)
    accuracy = np.where(count > 0, np.clip(confidence + shift + rng.normal(0, 0.03, 15), 0, 1), np.nan)
    return {
        "edges": edges.tolist(),
        "confidence": confidence.tolist(),
        "accuracy": accuracy.tolist(),
        "count": count.tolist(),
    }


def make_study(
    directory: Path,
    *,
    name: str = "synthetic study",
    description: str = "Synthetic runs for the report tests.",
    arms: list[tuple[str, str, dict[str, Any]]] | None = None,
    rates: tuple[float, ...] = (0.0, 0.2, 0.4),
    seeds: int = 3,
    epochs: int = 6,
    probes: bool = True,
    store_runs: bool = True,
) -> Path:
    """Write a study directory with synthetic runs (no training): study.toml + a store."""
    if arms is None:
        arms = [
            ("ce", "ce", {}),
            ("ls-0.1", "smoothed_ce", {"eps": 0.1}),
            ("disturb-0.1", "ce", {"disturb_alpha": 0.1}),
            ("gce-0.7", "gce", {"q": 0.7}),
        ]
    text = _study_text(name=name, description=description, arms=arms, rates=list(rates), seeds=seeds)
    spec = loads_study(text)
    rng = np.random.default_rng(0)
    with Store.open(directory) as store:
        store.claim(
            name=spec.name, identity="synthetic", study_json=spec.to_json(), study_toml=dumps_study(spec)
        )
        if not store_runs:
            return directory
        results = []
        for a, arm in enumerate(spec.arms):
            smoothing = arm.loss == "smoothed_ce" or arm.disturb_alpha > 0
            for condition in study_conditions(spec):
                for seed in spec.seeds:
                    results.append(
                        _run(
                            rng, arm.name, a, smoothing, condition, seed, epochs, probes=probes and seed == 0
                        )
                    )
        store.write_pack(results)
    return directory


def _run(
    rng: np.random.Generator,
    arm: str,
    index: int,
    smoothing: bool,
    condition: Any,
    seed: int,
    epochs: int,
    *,
    probes: bool,
) -> RunResult:
    rate = condition.rate
    acc = 0.93 - 0.45 * rate + 0.01 * index * rate + rng.normal(0, 0.01)
    ece = (0.06 if smoothing else 0.03) + 0.1 * rate + abs(rng.normal(0, 0.005))
    selected = {
        "test_acc": acc,
        "test_nll": 0.3 + 1.5 * rate + rng.normal(0, 0.02),
        "test_ece": ece,
        "test_ece_ts": ece / 2,
        "test_brier": 0.1 + 0.3 * rate,
        "test_mce": 2 * ece,
        "temperature": 1.2,
        "epoch": float(epochs),
        "val_acc": acc,
        "val_nll": 0.4,
    }
    ep = np.arange(1, epochs + 1, dtype=float)
    memorize = (0.05 if smoothing else 0.1) * ep * (rate > 0)
    curves = {
        "epoch": ep.tolist(),
        "train_loss": (1.0 / ep).tolist(),
        "train_acc": (0.5 + 0.05 * ep).tolist(),
        "train_acc_unflipped": (0.5 + 0.06 * ep).tolist(),
        "train_acc_flipped": (memorize if rate > 0 else np.full(epochs, np.nan)).tolist(),
        "train_acc_flipped_true": (0.5 - memorize).tolist(),
        "val_acc": np.full(epochs, acc).tolist(),
        "val_nll": np.full(epochs, 0.4).tolist(),
        "val_ece": np.full(epochs, ece).tolist(),
        "test_acc": np.full(epochs, acc).tolist(),
        "test_nll": np.full(epochs, 0.4).tolist(),
        "test_ece": np.full(epochs, ece).tolist(),
        "mi": ((2.5 - (1.5 if smoothing else 0.5) * ep / epochs).tolist() if probes else [math.nan] * epochs),
    }
    extras: dict[str, Any] = {"reliability": _reliability(rng, -0.05 if not smoothing else 0.06)}
    if probes:
        centers = rng.normal(0, 3, size=(3, 8))
        labels = np.repeat([0, 1, 2], 20)
        spread = 0.4 if smoothing else 1.0
        features = centers[[0, 1, 2]][np.repeat([0, 1, 2], 20)] + rng.normal(0, spread, size=(60, 8))
        extras["representation"] = {
            "classes": [0, 1, 2],
            "labels": labels.tolist(),
            "features": features.tolist(),
            "head_weight": np.vstack([centers, rng.normal(0, 1, size=(7, 8))]).tolist(),
            "head_bias": np.zeros(10).tolist(),
            "epoch": epochs,
        }
        extras["mi"] = {"classes": [0, 1], "examples": 40, "augmentations": 8}
    return RunResult(
        run_id=f"{arm}|{condition.label}|{seed}",
        arm=arm,
        condition=condition.label,
        noise=condition.noise,
        rate=condition.rate,
        seed=seed,
        config={"arm": {"name": arm}, "seed": seed},
        metrics={"selected": selected, "last": dict(selected), "diverged": index == 3 and seed == 1},
        curves=curves,
        extras=extras,
        timings={"seconds": 1.0},
        versions={"smoothflip": "0.1.0", "torch": "2.13.0"},
        condition_id=condition.condition_id,
    )


# --------------------------------------------------------------------------- helpers


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (fails on anything that is not a PNG)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def check_report(index: Path) -> tuple[str, str]:
    """The checks every report must pass; returns the HTML and Markdown texts."""
    report = index.parent
    html = index.read_text(encoding="utf-8")
    md = (report / "report.md").read_text(encoding="utf-8")
    # Self-contained: no network resources, every image inline.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "http://" not in html
    assert "https://" not in html
    assert "<script" not in html.lower()
    images = re.findall(r"<img\b[^>]*>", html)
    for tag in images:
        assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', tag), tag[:80]
    # Markdown links point at files that exist.
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    for link in links:
        assert not link.startswith(("http:", "https:", "/")), link
        assert (report / link).is_file(), link
    pngs = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert len(images) == len(links) == len(pngs)
    for png in pngs:
        width, height = png_size(report / "figures" / png)
        assert 600 <= width <= 2400, (png, width)
        assert 150 <= height <= 3000, (png, height)
        data = (report / "figures" / png).read_bytes()
        assert b"Software" not in data
        assert b"matplotlib" not in data.lower()
    return html, md


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = make_study(tmp_path_factory.mktemp("full") / "study")
    return write_report(directory)


# --------------------------------------------------------------------------- tests


def test_full_report_has_every_part(full_report: Path) -> None:
    assert full_report.name == "index.html"
    assert full_report.parent.name == "report"
    html, md = check_report(full_report)
    drawn = {p.stem for p in (full_report.parent / "figures").glob("*.png")}
    assert drawn == set(FIGURE_NAMES)
    # Content, in order: title, headline, verdicts, figures, summary, provenance.
    marks = ["<h1>synthetic study</h1>", 'id="headline"', 'id="verdicts"', 'id="figures"', 'id="summary"']
    positions = [html.index(m) for m in marks]
    assert positions == sorted(positions)
    assert "ECE % after TS" in html  # the summary's column, which the footer explains
    assert "TS = temperature scaling fitted" in html
    assert "TS = temperature scaling fitted" in md
    for arm in ("ls-0.1", "disturb-0.1", "gce-0.7"):
        assert f'<li><span class="arm">{arm}</span>' in html
        assert f"- **{md_escape(arm)}**\n  - With correct labels: accuracy " in md
    assert html.count("<li>At symmetric 20% noise: accuracy") == 3
    # Verdict cells carry their CSS class; every verdict word shown is a known one.
    cells = re.findall(r'<td class="v (v-\w+)">', html)
    # conditions x arms x metrics in the verdict table, then the primary table's conditions x arms
    assert len(cells) == 3 * 3 * 5 + 3 * 3
    assert set(cells) <= {"v-helps", "v-hurts", "v-equiv", "v-neutral", "v-none"}
    assert "v-hurts" in cells  # ls / disturb raise the ECE in every synthetic seed
    assert "36 of 36 stored, 3 diverged" in html
    assert "torch 2.13.0" in html
    assert "smoothflip 0.1.0" in md
    assert "log 2" in html
    assert "log 40" in html
    assert "95% Student-t" in html
    # how the verdicts were read, and the built-in findings (the synthetic runs store no E-AURC)
    assert "Primary metric: accuracy" in html
    assert "Design: fixed" in md
    assert "Findings from the literature" in html
    assert "<b>not measured</b>: Label smoothing hurts selective classification" in html


def test_report_is_deterministic(full_report: Path, tmp_path: Path) -> None:
    again = write_report(full_report.parent.parent, out=tmp_path / "again")
    assert again.read_bytes() == full_report.read_bytes()
    for png in (full_report.parent / "figures").glob("*.png"):
        assert (tmp_path / "again" / "figures" / png.name).read_bytes() == png.read_bytes()
    assert not list(tmp_path.glob("again/**/.*.tmp"))  # atomic writes leave no temporaries


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    arms = [
        ("ce", "ce", {}),
        (f"ls {XSS}", "smoothed_ce", {"eps": 0.1}),
        (r"cp $\frac{$ | [x](javascript:alert(1))", "confidence_penalty", {"beta": 0.5}),
    ]
    directory = make_study(
        tmp_path / "xss", name=f"study {XSS}", description=f"about {XSS}\n# not a heading", arms=arms
    )
    index = write_report(directory)  # mathtext would choke on the "$\frac{$" arm without escaping
    html, md = check_report(index)
    assert "<script>alert" not in html
    assert "<script" not in html
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;"
    assert f"<h1>study {escaped}</h1>" in html
    assert f"<title>study {escaped} · smoothflip report</title>" in html
    assert f"about {escaped}" in html
    assert f'<span class="arm">ls {escaped}</span>' in html
    assert "Content-Security-Policy" in html
    assert "default-src 'none'" in html
    # Markdown: no raw HTML, pipes cannot split table cells, no live link, no heading injected.
    assert "<script" not in md
    assert "# study &lt;script&gt;alert(1)&lt;/script&gt;\"'&amp;" in md
    assert r"\| \[x\](javascript:alert(1))" in md
    assert "\n# not a heading" not in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "cp " in line]
    pipes = [len(re.findall(r"(?<!\\)\|", row)) for row in rows]
    # summary and verdict tables have 8 columns (9 unescaped pipes), the primary table 8 or, with its
    # "seeds needed" column, 9; the representation table and the cost table ("What an answer would cost") 7
    assert pipes.count(9) + pipes.count(10) == 3 * 3, rows  # summary + verdict + primary rows of "cp"
    assert set(pipes) <= {8, 9, 10}, rows


def test_markdown_escaping() -> None:
    assert md_escape("a|b") == r"a\|b"
    assert md_escape("<img src=x onerror=alert(1)>") == "&lt;img src=x onerror=alert(1)&gt;"
    assert md_escape("A & B") == "A &amp; B"
    assert md_escape("[click](http://x)") == r"\[click\](http://x)"
    assert md_escape("*bold* _it_ `code` ~del~") == r"\*bold\* \_it\_ \`code\` \~del\~"
    assert md_escape("# title", line_start=True) == r"\# title"
    assert md_escape("- item", line_start=True) == r"\- item"
    assert md_escape("1. first", line_start=True) == r"1\. first"
    assert md_escape("1. first") == "1. first"  # inside a line it is plain text
    assert md_escape("two\nlines\n# x") == "two lines # x"
    assert md_escape(r"back\slash") == r"back\\slash"


def test_matplotlib_text_is_plain() -> None:
    assert plain("$x$") == r"\$x\$"
    assert plain("_hidden") == " _hidden"  # matplotlib would drop legend labels starting with "_"
    assert plain("a" * 100).endswith("…")
    assert len(plain("a" * 100)) == 36
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    fig.suptitle(plain(r"$\frac{$"))
    fig.canvas.draw()  # would raise a mathtext ValueError unescaped


def test_clean_only_study_without_probes(tmp_path: Path) -> None:
    directory = make_study(tmp_path / "clean", rates=(0.0,), probes=False)
    out = tmp_path / "out"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "memorization.png").write_bytes(b"stale")  # from an earlier report
    (out / "figures" / "mine.png").write_bytes(b"not ours")
    index = write_report(directory, out=out)
    drawn = {p.stem for p in (out / "figures").glob("*.png")}
    assert drawn == {"reliability", "verdicts", "mine"}  # the stale figure is gone, the user's file kept
    (out / "figures" / "mine.png").unlink()
    html, md = check_report(index)
    for name in (
        "accuracy_vs_noise",
        "calibration_vs_noise",
        "memorization",
        "projection",
        "mutual_information",
    ):
        block = html[html.index(f'id="fig-{name}"') :]
        block = block[: block.index("</figure>")]
        assert '<p class="note">Not drawn:' in block
        assert "<img" not in block
    assert "only the clean label condition" in html
    assert "_Not drawn: The study has only the clean label condition" in md
    assert md.count("](figures/") == 2
    assert html.count("<img") == 2


def test_study_without_runs_or_comparisons(tmp_path: Path) -> None:
    empty = make_study(tmp_path / "empty", store_runs=False)
    html = write_report(empty).read_text()
    assert "No runs are stored yet" in html
    assert "<img" not in html
    alone = make_study(tmp_path / "alone", arms=[("ce", "ce", {})])
    html = write_report(alone).read_text()
    assert "nothing to compare" in html
    check_report(write_report(alone))
    block = html[html.index('id="fig-verdicts"') :]
    assert block.index("Not drawn:") < block.index("</figure>")
    assert 'alt="Accuracy vs noise rate"' in html


def test_missing_study_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "nothing")


def test_aggregation_helpers() -> None:
    def run(rel: dict[str, Any], curve: list[float]) -> RunResult:
        return RunResult(
            "r",
            "a",
            "clean",
            "none",
            0.0,
            0,
            {},
            {},
            {"epoch": [1.0, 2.0], "mi": curve},
            {"reliability": rel},
        )

    edges = [0.0, 0.5, 1.0]
    a = run(
        {"edges": edges, "confidence": [0.3, 0.8], "accuracy": [0.2, 0.9], "count": [10, 30]}, [1.0, math.nan]
    )
    b = run(
        {"edges": edges, "confidence": [math.nan, 0.6], "accuracy": [math.nan, 0.5], "count": [0, 10]},
        [3.0, 2.0],
    )
    pooled = pooled_reliability([a, b])
    assert pooled is not None
    np.testing.assert_allclose(pooled.count, [10, 40])
    np.testing.assert_allclose(pooled.confidence, [0.3, (0.8 * 30 + 0.6 * 10) / 40])
    np.testing.assert_allclose(pooled.accuracy, [0.2, (0.9 * 30 + 0.5 * 10) / 40])
    assert pooled.ece == pytest.approx((10 * 0.1 + 40 * abs(0.8 - 0.75)) / 50)
    epochs, mean = mean_curve([a, b], "mi")
    np.testing.assert_allclose(epochs, [1, 2])
    np.testing.assert_allclose(mean, [2.0, 2.0])
    assert mean_curve([a], "missing") is None
    m, _lo, hi = t_interval(np.array([1.0, 2.0, 3.0]))
    assert m == 2.0
    assert hi - m == pytest.approx(4.302653 * 1.0 / math.sqrt(3), rel=1e-5)
    assert t_interval(np.array([5.0])) == (5.0, 5.0, 5.0)


def test_smoothing_arms_are_picked(tmp_path: Path) -> None:
    data = load_study_data(make_study(tmp_path / "s", rates=(0.0,), probes=False))
    assert data.smoothing_arms == ("ls-0.1", "disturb-0.1")
    other = load_study_data(
        make_study(tmp_path / "t", arms=[("ce", "ce", {}), ("g", "gce", {"q": 0.7})], rates=(0.0,))
    )
    assert other.smoothing_arms == ("g",)  # no smoothing arm: every other arm


def test_a_figure_of_metrics_no_run_stores_is_skipped_not_drawn_empty(tmp_path: Path) -> None:
    """A certified study's runs store no ECE or NLL: no empty calibration axes, a note instead."""
    from smoothflip.report.figures import FigureSkipped, accuracy_vs_noise, calibration_vs_noise

    data = load_study_data(make_study(tmp_path / "s", probes=False, seeds=2))
    for run in data.results:
        for block in ("selected", "last"):
            del run.metrics[block]["test_ece"], run.metrics[block]["test_nll"]
    with pytest.raises(FigureSkipped, match="No run stores test_ece or test_nll"):
        calibration_vs_noise(data)
    figure, _caption = accuracy_vs_noise(data)  # what the runs do store is still drawn
    assert figure.axes


def test_real_tiny_study_end_to_end(tmp_path: Path) -> None:
    from smoothflip.engine import run_study

    text = _study_text(
        name="tiny real",
        description="digits, logistic regression, 2 epochs",
        arms=[("ce", "ce", {}), ("ls-0.2", "smoothed_ce", {"eps": 0.2})],
        rates=[0.0, 0.3],
        seeds=2,
    )
    text = text.replace("epochs = 6", "epochs = 2").replace(
        'name = "logistic"', 'name = "mlp"\nhidden = [16]'
    )
    directory = run_study(loads_study(text), tmp_path / "real", device="cpu")
    index = write_report(directory)
    html, _md = check_report(index)
    for name in ("accuracy_vs_noise", "calibration_vs_noise", "reliability", "memorization", "verdicts"):
        assert (index.parent / "figures" / f"{name}.png").is_file(), name
    assert "no verdict" in html  # two seeds are too few for a verdict
    assert "8 of 8 stored" in html
    # Whatever probes the engine recorded are drawn (it probes the first seed by default).
    results = load_study_data(directory).results
    if any(isinstance(r.extras.get("representation"), dict) for r in results):
        assert (index.parent / "figures" / "projection.png").is_file()
    if any(np.isfinite(r.curves.get("mi", [math.nan])).any() for r in results):
        assert (index.parent / "figures" / "mutual_information.png").is_file()


def test_attacked_study_report_has_accuracy_by_budget_and_detection(tmp_path: Path) -> None:
    from smoothflip.engine import run_study

    text = _study_text(
        name="attacked", description="digits under a random attack", arms=[("ce", "ce", {})], rates=[0.0],
        seeds=2,
    )  # fmt: skip
    text = text.replace("epochs = 6", "epochs = 2")
    text = text.replace('noise = "symmetric"\nrates = [0.0]', 'attack = "random"\nbudgets = [0.1, 0.3]')
    text += '\n[[arms]]\nname = "ce+knn"\nloss = "ce"\ndefense = "knn"\n'
    directory = run_study(loads_study(text), tmp_path / "attacked", device="cpu")
    index = write_report(directory)
    html, md = check_report(index)
    assert "Under attack" in html
    assert "| technique | random attack 10% | random attack 30% |" in md
    data = load_study_data(directory)
    for arm in ("ce", "ce+knn"):
        accs = [[100 * r.metrics["selected"]["test_acc"] for r in data.runs(arm, c)] for c in data.conditions]
        cells = [f"{np.mean(a):.1f} ± {np.std(a, ddof=1):.1f}" for a in accs]
        assert f"| {md_escape(arm)} | {' | '.join(cells)} |" in md
    assert re.search(r"\| random attack 30% \| ce\+knn \| knn \| 2 \| 0\.\d{3} \|", md)


# --------------------------------------------------------------------------- real browser


def test_report_in_headless_chromium(full_report: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("SMOOTHFLIP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} is missing and SMOOTHFLIP_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright

    artifacts = Path(os.environ.get("SMOOTHFLIP_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.on(
                "console",
                lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(full_report.resolve().as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img",
                """els => els.map(e => { const r = e.getBoundingClientRect();
                       return {w: e.naturalWidth, h: e.naturalHeight, bw: r.width, bh: r.height,
                               done: e.complete}; })""",
            )
            assert len(images) == len(FIGURE_NAMES)
            for image in images:
                assert image["done"], image
                assert min(image["w"], image["h"]) > 0, image  # decoded
                assert min(image["bw"], image["bh"]) > 0, image  # laid out with a visible box
            # Figures fit the column: nothing overflows the page horizontally.
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0
            page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        finally:
            browser.close()
    finally:
        playwright.stop()
    assert not errors, errors
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert png_size(artifacts / "report.png")[0] == 1000


def test_distillation_study_report(tmp_path: Path) -> None:
    from smoothflip.engine import run_study

    text = textwrap.dedent(
        """
        name = "distill report"
        kind = "distillation"
        seeds = 2
        [data]
        source = "digits"
        [model]
        name = "logistic"
        [train]
        epochs = 2
        [distillation]
        teacher_eps = [0.0, 0.3]
        temperatures = [2.0]
        student_eps = [0.3]
        [[conditions]]
        noise = "symmetric"
        rates = [0.0]
        """
    )
    directory = run_study(loads_study(text), tmp_path / "distill", device="cpu")
    index = write_report(directory)
    html, md = check_report(index)
    assert (index.parent / "figures" / "distillation.png").is_file()
    assert "Teachers and their students" in html
    # Students are compared with their hard-label counterpart, and teachers with the eps-0 teacher.
    assert re.search(r"student-T2-from-ls-0\.3 vs student-T2-from-ls-0|student-T2-from-ls-0\.3", md)
    assert "teacher-ls-0.3" in md


def test_user_data_file_and_class_names_are_escaped(tmp_path: Path) -> None:
    from smoothflip.engine import run_study

    rng = np.random.default_rng(0)
    y = np.arange(60) % 2
    names = np.array(["<b>cat</b>", "dog & <i>co</i>"])[y]
    frame = pd.DataFrame({"a": rng.normal(size=60) + 2 * y, "b": rng.normal(size=60), "label": names})
    source = tmp_path / "<script>x.csv"
    frame.to_csv(source, index=False)
    text = _study_text(
        name="files", description="user file", arms=[("ce", "ce", {})], rates=[0.0, 0.2], seeds=1
    )
    text = text.replace('source = "digits"', f'source = {_toml_str(source.name)}\nlabel_column = "label"')
    text = text.replace("epochs = 6", "epochs = 1")
    directory = run_study(loads_study(text, base_dir=tmp_path), tmp_path / "out", device="cpu")
    html, md = check_report(write_report(directory))
    assert "<script" not in html
    assert "<b>cat</b>" not in html
    assert "<i>co</i>" not in html
    assert "&lt;script&gt;x.csv" in html
    assert "<script" not in md
    assert "<b>cat</b>" not in md


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-10, 10, allow_nan=False), max_size=8),
    st.sampled_from([1.0, 100.0]),
    st.integers(0, 4),
)
def test_every_mean_sd_cell_is_the_mean_and_sample_sd_of_the_finite_values(values, scale, digits):
    """The one helper behind the report's summary, attack, language-model and certified tables (and the
    terminal summary), against the standard library's mean and sample standard deviation."""
    text = mean_sd(np.array([*values, math.nan, math.inf]), scale=scale, digits=digits)
    if not values:
        assert text == "—"
        return
    parts = text.split(" ± ")
    assert len(parts) == (1 if len(values) == 1 else 2)
    expected = [statistics.fmean(values), *([statistics.stdev(values)] if len(values) > 1 else [])]
    number = r"-?\d+" + (rf"\.\d{{{digits}}}" if digits else "")
    for part, value in zip(parts, expected, strict=True):
        assert re.fullmatch(number, part), text
        assert abs(float(part) - value * scale) <= 0.5 * 10**-digits + 1e-9 * max(1.0, abs(value) * scale)
    assert mean_sd_text(float(np.mean(values)), math.nan, scale=scale, digits=digits) == parts[0]
