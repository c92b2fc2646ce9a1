"""Language-model studies: packs equal the per-run reference, the CLI end to end, text corpora, errors."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from smoothflip.cli import app
from smoothflip.engine import resolve_study
from smoothflip.engine.language import train_lm_pack, train_lm_reference
from smoothflip.study.spec import SpecError, loads_study
from smoothflip.study.store import Store

LM = """
name = "lm"
kind = "lm"
seeds = 1
[data]
source = "language"
[data.options]
vocab_size = 64
num_train = 96
num_validation = 24
num_test = 24
length = 12
[model]
name = "{model}"
context = 3
[train]
epochs = 2
batch_size = 16
[[arms]]
name = "ce"
loss = "ce"
[[arms]]
name = "ls"
loss = "smoothed_ce"
eps = 0.2
[[arms]]
name = "nls"
loss = "smoothed_ce"
eps = -0.1
warmup_epochs = 1
[[arms]]
name = "unigram"
loss = "smoothed_ce"
eps = 0.2
prior = "train"
[[arms]]
name = "cp"
loss = "confidence_penalty"
beta = 0.5
"""


def lm_study(model: str = "mlp", extra: str = ""):
    return loads_study(textwrap.dedent(LM.format(model=model)) + textwrap.dedent(extra))


@pytest.mark.parametrize("model", ["mlp", "gru", "transformer"])
def test_lm_pack_matches_the_reference(model):
    corpus, runs = resolve_study(lm_study(model))
    pack = train_lm_pack(runs, corpus)
    for result, run in zip(pack, runs, strict=True):
        ref = train_lm_reference(run, corpus)
        assert result.run_id == ref.run_id
        for key, values in result.curves.items():
            np.testing.assert_allclose(values, ref.curves[key], rtol=2e-5, atol=2e-6, err_msg=key)
        for which in ("selected", "last"):
            for key, value in result.metrics[which].items():
                other = ref.metrics[which][key]
                assert (math.isnan(value) and math.isnan(other)) or value == pytest.approx(
                    other, rel=2e-5, abs=2e-6
                ), (
                    which,
                    key,
                )
        ours, theirs = result.extras["next_token_examples"], ref.extras["next_token_examples"]
        assert [e["context"] for e in ours] == [e["context"] for e in theirs]
        for a, b in zip(ours, theirs, strict=True):
            assert a["true"] == b["true"]
            np.testing.assert_allclose([p for _, p in a["model"]], [p for _, p in b["model"]], atol=1e-4)


def test_lm_results_score_against_the_true_distribution():
    corpus, runs = resolve_study(lm_study())
    (result,) = train_lm_pack(runs[:1], corpus)
    selected = result.metrics["selected"]
    assert selected["test_kl"] > 0
    assert selected["true_entropy"] == pytest.approx(
        float(np.mean(corpus.true_distributions("test").entropy())), rel=0.05
    )
    assert selected["test_perplexity"] == pytest.approx(math.exp(selected["test_nll"]))
    assert selected["temperature"] > 0
    examples = {e["context"]: e for e in result.extras["next_token_examples"]}
    assert examples["hello how are"]["true"][0][0] == "you"
    probs = [p for _, p in examples["hello how are"]["model"]]
    assert probs == sorted(probs, reverse=True)
    assert len(result.curves["test_kl"]) == 2


def test_lm_study_through_the_cli_with_verdict_and_report(tmp_path):
    path = tmp_path / "lm.toml"
    path.write_text(textwrap.dedent(LM.format(model="mlp")).replace("seeds = 1", "seeds = 3"))
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    with Store.open(out, create=False) as store:
        assert store.count() == 5 * 3
    verdict = runner.invoke(app, ["verdict", str(out)])
    assert verdict.exit_code == 0, verdict.output
    text = " ".join(verdict.stdout.split())
    assert "KL to the true distribution" in text
    assert "NLL per token" in text
    md = (out / "report" / "report.md").read_text()
    assert "## Language model" in md
    assert "next token after *hello how are*" in md


def test_text_corpus_study(tmp_path):
    words = "the cat sat on the mat . the dog sat on the log . a cat and a dog . "
    (tmp_path / "corpus.txt").write_text(words * 60)
    study = textwrap.dedent(
        """
        name = "text"
        kind = "lm"
        seeds = 1
        [data]
        source = "corpus.txt"
        validation_fraction = 0.1
        test_fraction = 0.1
        [data.options]
        tokens = "word"
        length = 8
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
        eps = 0.1
        """
    )
    (tmp_path / "text.toml").write_text(study)
    result = CliRunner().invoke(
        app, ["run", str(tmp_path / "text.toml"), "--out", str(tmp_path / "out"), "-q"]
    )
    assert result.exit_code == 0, result.output
    with Store.open(tmp_path / "out", create=False) as store:
        (first, _) = store.results()
    assert math.isnan(first.metrics["selected"]["test_kl"])  # no known truth for user text
    assert 1.0 < first.metrics["selected"]["test_perplexity"] < 20.0


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            ('loss = "confidence_penalty"\nbeta = 0.5', 'loss = "gce"'),
            r'arms\[4\]\.loss = "gce": must be one of',
        ),
        (("beta = 0.5", "beta = 0.5\ndisturb_alpha = 0.1"), "disturb_alpha / flip_rate are not available"),
        (("beta = 0.5", 'beta = 0.5\ndefense = "knn"'), 'defense is not available for kind = "lm"'),
        (('name = "mlp"', 'name = "resnet"'), r'model\.name = "resnet": must be one of'),
        (("context = 3", "context = 0"), r"model\.context = 0: must be >= 1"),
        (("context = 3", "context = 3\nwidth = 9"), r"model\.width: unknown option"),
    ],
)
def test_lm_spec_errors(edit, match):
    text = textwrap.dedent(LM.format(model="mlp"))
    assert edit[0] in text
    with pytest.raises(SpecError, match=match):
        loads_study(text.replace(edit[0], edit[1], 1))


def test_lm_conditions_and_bad_options_are_refused(tmp_path):
    with pytest.raises(SpecError, match="remove \\[\\[conditions\\]\\]"):
        lm_study(extra='[[conditions]]\nnoise = "symmetric"\nrates = [0.2]\n')
    bad = textwrap.dedent(LM.format(model="mlp")).replace("vocab_size = 64", "vocab_sz = 64")
    with pytest.raises(ValueError, match=r"data\.options: unknown key 'vocab_sz'"):
        resolve_study(loads_study(bad))
    missing = textwrap.dedent(LM.format(model="mlp")).replace('source = "language"', 'source = "nothere.txt"')
    missing = missing[: missing.index("[data.options]")] + missing[missing.index("[model]") :]
    with pytest.raises(FileNotFoundError, match=r"nothere\.txt"):
        resolve_study(loads_study(missing, base_dir=tmp_path))
