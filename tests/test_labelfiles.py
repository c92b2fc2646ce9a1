"""Tests for smoothflip.labelfiles: attack / clean round trips for CSV, Parquet and NPZ, and refusals."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from smoothflip import labelfiles
from smoothflip.defenses import score_detection
from smoothflip.labelfiles import AttackFileResult, CleanFileResult, attack_file, clean_file

NAMES = np.array(["ant", "bee", "cat"])


def _blobs(n: int = 150) -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n_samples=n, centers=[[0, 0, 0], [7, 0, 0], [0, 7, 0]], random_state=0)


def _table(n: int = 150) -> pd.DataFrame:
    x, y = _blobs(n)
    table = pd.DataFrame(x, columns=["f1", "f2", "f3"])
    table.insert(1, "species", NAMES[y])  # the label column need not be last
    return table


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------------


def test_csv_round_trip_with_string_labels(tmp_path: Path) -> None:
    src, attacked, cleaned = tmp_path / "in.csv", tmp_path / "attacked.csv", tmp_path / "cleaned.csv"
    table = _table()
    table.to_csv(src, index=False)
    result = attack_file(src, attacked, strategy="random", budget=0.2, label_column="species", seed=1)
    assert isinstance(result, AttackFileResult)
    assert (result.n_examples, result.n_flipped, result.rate) == (150, 30, 0.2)
    assert result.classes.tolist() == ["ant", "bee", "cat"]
    assert "30 of 150 labels flipped (20.00%)" in result.summary()

    out = pd.read_csv(attacked)
    assert list(out.columns) == ["f1", "species", "f2", "f3", "species_original", "flipped"]
    pd.testing.assert_frame_equal(out[["f1", "f2", "f3"]], table[["f1", "f2", "f3"]])
    assert (out["species_original"] == table["species"]).all()
    assert out["flipped"].dtype == bool
    np.testing.assert_array_equal(out["flipped"], out["species"] != out["species_original"])
    np.testing.assert_array_equal(out["flipped"], result.noisy.flipped)
    assert set(out["species"]) <= set(NAMES)
    np.testing.assert_array_equal(out["species"], NAMES[result.noisy.labels])

    cleaning = clean_file(attacked, cleaned, defense="knn", label_column="species", k=10)
    assert isinstance(cleaning, CleanFileResult)
    final = pd.read_csv(cleaned)
    assert list(final.columns) == [
        "f1",
        "species",
        "f2",
        "f3",
        "species_original",
        "flipped",
        "species_noisy",
        "flagged",
    ]
    assert (final["species_original"] == table["species"]).all()  # passed through: the truth
    assert (final["species_noisy"] == out["species"]).all()  # what clean_file was given
    np.testing.assert_array_equal(final["flagged"], final["species"] != final["species_noisy"])
    assert "kept" not in final.columns  # knn relabels, it drops nothing
    detection = cleaning.detection
    assert detection is not None
    expected = score_detection(final["flagged"].to_numpy(), final["flipped"].to_numpy())
    assert (detection.precision, detection.recall) == (expected.precision, expected.recall)
    assert detection.precision > 0.9
    assert detection.recall > 0.9
    assert (final["species"] == table["species"]).mean() > 0.97
    assert "against the 30 flipped labels: precision" in cleaning.summary()
    assert _files(tmp_path) == ["attacked.csv", "cleaned.csv", "in.csv"]  # no temporary files left


def test_parquet_round_trip_and_table_conversion(tmp_path: Path) -> None:
    x, y = _blobs()
    table = pd.DataFrame({"a": x[:, 0], "b": x[:, 1].astype(np.float32), "c": np.arange(150), "label": y + 1})
    src = tmp_path / "in.parquet"
    table.to_parquet(src, index=False)
    result = attack_file(src, tmp_path / "out.parquet", strategy="margin", budget=12, label_column="label")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["label"].dtype == np.int64
    assert out["b"].dtype == np.float32
    assert out["c"].dtype == np.int64
    assert out["flipped"].dtype == bool
    assert int(out["flipped"].sum()) == 12
    np.testing.assert_array_equal(out["label_original"], y + 1)
    np.testing.assert_array_equal(out["label"], result.classes[result.noisy.labels])
    assert set(out["label"]) <= {1, 2, 3}
    # tables convert: parquet in, csv out
    clean_file(
        tmp_path / "out.parquet",
        tmp_path / "clean.csv",
        defense="small_loss",
        label_column="label",
        keep_fraction=0.9,
    )
    cleaned = pd.read_csv(tmp_path / "clean.csv")
    assert int((~cleaned["kept"]).sum()) == 15
    np.testing.assert_array_equal(cleaned["flagged"], ~cleaned["kept"])
    np.testing.assert_array_equal(cleaned["label"], out["label"])  # filtering leaves labels alone


def test_npz_round_trip(tmp_path: Path) -> None:
    x, y = _blobs(120)
    x_test, y_test = x[:10] + 0.1, y[:10].astype(np.int32)
    src = tmp_path / "data.npz"
    np.savez(src, x=x.astype(np.float32), y=y.astype(np.int32), x_test=x_test, y_test=y_test)
    result = attack_file(src, tmp_path / "attacked.npz", strategy="targeted", budget=10, source=0, target=1)
    with np.load(tmp_path / "attacked.npz", allow_pickle=False) as out:
        assert sorted(out.files) == ["flipped", "x", "x_test", "y", "y_original", "y_test"]
        assert out["y"].dtype == np.int32
        np.testing.assert_array_equal(out["x"], x.astype(np.float32))
        np.testing.assert_array_equal(out["y_original"], y)
        np.testing.assert_array_equal(out["flipped"], result.noisy.flipped)
        np.testing.assert_array_equal(out["x_test"], x_test)
        np.testing.assert_array_equal(out["y_test"], y_test)
        assert (out["y"][out["flipped"]] == 1).all()
    cleaning = clean_file(
        tmp_path / "attacked.npz", tmp_path / "clean.npz", defense="confident_learning", cv=3
    )
    with np.load(tmp_path / "clean.npz", allow_pickle=False) as out:
        assert sorted(out.files) == [
            "flagged",
            "flipped",
            "kept",
            "x",
            "x_test",
            "y",
            "y_noisy",
            "y_original",
            "y_test",
        ]
        np.testing.assert_array_equal(out["flagged"], ~out["kept"])
        np.testing.assert_array_equal(out["kept"], cleaning.result.keep)
        np.testing.assert_array_equal(out["y_original"], y)
    assert cleaning.detection is not None
    assert cleaning.detection.n_flipped == 10


def test_npz_string_labels_and_plain_clean(tmp_path: Path) -> None:
    x, y = _blobs(90)
    np.savez(tmp_path / "d.npz", x=x, y=NAMES[y])
    clean = clean_file(tmp_path / "d.npz", tmp_path / "c.npz", defense="knn", k=5)
    assert clean.detection is None  # no flip mask to score against
    assert "against" not in clean.summary()
    with np.load(tmp_path / "c.npz", allow_pickle=False) as out:
        assert out["y"].dtype.kind == "U"
        np.testing.assert_array_equal(out["y_original"], NAMES[y])  # no earlier step: input labels
        assert "y_noisy" not in out.files


def test_custom_flip_mask_column(tmp_path: Path) -> None:
    table = _table(90)
    truth = np.zeros(90, dtype=bool)
    truth[:9] = True
    table.loc[truth, "species"] = np.where(table.loc[truth, "species"] == "ant", "bee", "ant")
    table["was_flipped"] = truth
    table.to_csv(tmp_path / "t.csv", index=False)
    result = clean_file(
        tmp_path / "t.csv",
        tmp_path / "o.csv",
        defense="knn",
        label_column="species",
        flip_mask_column="was_flipped",
    )
    assert result.detection is not None
    assert result.detection.n_flipped == 9
    assert result.detection.recall == 1.0
    with pytest.raises(ValueError, match="flip_mask_column: 'nope' is not a column"):
        clean_file(
            tmp_path / "t.csv",
            tmp_path / "o.csv",
            defense="knn",
            label_column="species",
            flip_mask_column="nope",
        )


def test_sep_option(tmp_path: Path) -> None:
    _table(60).to_csv(tmp_path / "t.csv", index=False, sep=";")
    attack_file(
        tmp_path / "t.csv", tmp_path / "o.csv", strategy="random", budget=3, label_column="species", sep=";"
    )
    assert int(pd.read_csv(tmp_path / "o.csv", sep=";")["flipped"].sum()) == 3


# --------------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------------


def test_refuses_object_array_npz(tmp_path: Path) -> None:
    x, y = _blobs(30)
    np.savez(tmp_path / "obj.npz", x=x, y=np.array([f"c{v}" for v in y], dtype=object))
    with pytest.raises(ValueError, match="holds an object array 'y'; smoothflip never unpickles"):
        attack_file(tmp_path / "obj.npz", tmp_path / "o.npz", strategy="random", budget=2)


def test_refuses_overwriting_the_input(tmp_path: Path) -> None:
    _table(30).to_csv(tmp_path / "t.csv", index=False)
    before = (tmp_path / "t.csv").read_bytes()
    with pytest.raises(ValueError, match="is the input file; refusing to overwrite it"):
        attack_file(
            tmp_path / "t.csv", tmp_path / "t.csv", strategy="random", budget=2, label_column="species"
        )
    (tmp_path / "sub").mkdir()
    roundabout = tmp_path / "sub" / ".." / "t.csv"
    with pytest.raises(ValueError, match="refusing to overwrite it"):
        clean_file(tmp_path / "t.csv", roundabout, defense="knn", label_column="species", k=3)
    os.link(tmp_path / "t.csv", tmp_path / "hard.csv")
    with pytest.raises(ValueError, match="refusing to overwrite it"):
        attack_file(
            tmp_path / "t.csv", tmp_path / "hard.csv", strategy="random", budget=2, label_column="species"
        )
    assert (tmp_path / "t.csv").read_bytes() == before


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _blobs(30)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    (tmp_path / "o.npz").write_bytes(b"old")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(labelfiles.np, "savez", broken)
    with pytest.raises(ValueError, match=r"out: cannot write '.*o\.npz': No space left on device"):
        attack_file(tmp_path / "d.npz", tmp_path / "o.npz", strategy="random", budget=2)
    assert (tmp_path / "o.npz").read_bytes() == b"old"
    assert _files(tmp_path) == ["d.npz", "o.npz"]


def test_refuses_reattacking_and_recleaning(tmp_path: Path) -> None:
    _table(60).to_csv(tmp_path / "t.csv", index=False)
    attack_file(tmp_path / "t.csv", tmp_path / "a.csv", strategy="random", budget=3, label_column="species")
    with pytest.raises(
        ValueError, match="already holds 'species_original', 'flipped', which attack_file writes"
    ):
        attack_file(
            tmp_path / "a.csv", tmp_path / "b.csv", strategy="random", budget=3, label_column="species"
        )
    clean_file(tmp_path / "a.csv", tmp_path / "c.csv", defense="knn", label_column="species", k=3)
    with pytest.raises(ValueError, match="which clean_file writes; it looks cleaned already"):
        clean_file(tmp_path / "c.csv", tmp_path / "d.csv", defense="knn", label_column="species", k=3)


@pytest.mark.parametrize(
    ("src_name", "out_name", "kwargs", "error", "message"),
    [
        ("t.csv", "o.txt", {"label_column": "species"}, ValueError, r"out: unknown file type '\.txt'"),
        (
            "t.csv",
            "o.npz",
            {"label_column": "species"},
            ValueError,
            "out: '.*o.npz' is a .npz file but the input",
        ),
        ("d.npz", "o.csv", {}, ValueError, "is a .csv file but the input"),
        ("missing.csv", "o.csv", {"label_column": "species"}, FileNotFoundError, "path: file not found"),
        ("t.csv", "nofolder/o.csv", {"label_column": "species"}, FileNotFoundError, "out: folder not found"),
        ("t.csv", "o.csv", {}, ValueError, "label_column is required for .csv files; columns of"),
        ("t.csv", "o.csv", {"label_column": "kind"}, ValueError, "label_column: 'kind' is not a column"),
        ("d.npz", "o.npz", {"label_column": "y"}, ValueError, "label_column: '.*d.npz' is an .npz file"),
        (
            "t.csv",
            "o.csv",
            {"label_column": "f1"},
            ValueError,
            "column 'species' of '.*t.csv' is not numeric",
        ),
    ],
)
def test_bad_paths_and_columns(
    tmp_path: Path, src_name: str, out_name: str, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    _table(30).to_csv(tmp_path / "t.csv", index=False)
    x, y = _blobs(30)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(error, match=message):
        attack_file(tmp_path / src_name, tmp_path / out_name, strategy="random", budget=2, **kwargs)


def test_attack_and_defense_errors_pass_through(tmp_path: Path) -> None:
    x, y = _blobs(30)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(ValueError, match="alfa attacks binary classifiers; y has 3 classes"):
        attack_file(tmp_path / "d.npz", tmp_path / "o.npz", strategy="alfa", budget=2)
    with pytest.raises(ValueError, match="budget=31 flips exceeds the 30 examples"):
        attack_file(tmp_path / "d.npz", tmp_path / "o.npz", strategy="random", budget=31)
    with pytest.raises(ValueError, match="defense must be one of"):
        clean_file(tmp_path / "d.npz", tmp_path / "o.npz", defense="roni")
    np.savez(tmp_path / "one.npz", x=x, y=np.zeros(30, dtype=int))
    with pytest.raises(ValueError, match="every label is the same class, 0; at least 2 different"):
        attack_file(tmp_path / "one.npz", tmp_path / "o.npz", strategy="random", budget=2)
    np.savez(tmp_path / "nan.npz", x=np.where(np.eye(30, 2) > 0, np.nan, x[:, :2]), y=y)
    with pytest.raises(ValueError, match="non-finite feature value"):
        attack_file(tmp_path / "nan.npz", tmp_path / "o.npz", strategy="random", budget=2)
    assert not (tmp_path / "o.npz").exists()


def test_targeted_source_and_target_are_label_values_of_the_file(tmp_path: Path) -> None:
    x, y = _blobs(150)
    frame = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "label": y + 1})  # labels 1, 2, 3: not positions
    src = tmp_path / "oneb.csv"
    frame.to_csv(src, index=False)
    result = attack_file(
        src, tmp_path / "out.csv", strategy="targeted", budget=5, label_column="label", source=1, target=2
    )
    out = pd.read_csv(tmp_path / "out.csv")
    flipped = out[out["flipped"]]
    assert result.n_flipped == 5
    assert set(flipped["label_original"]) == {1}
    assert set(flipped["label"]) == {2}
    words = frame.assign(label=np.array(["cat", "dog", "emu"])[y])
    words.to_csv(tmp_path / "words.csv", index=False)
    attack_file(
        tmp_path / "words.csv", tmp_path / "w.csv", strategy="targeted", budget=4, label_column="label",
        source="emu", target="cat",
    )  # fmt: skip
    out = pd.read_csv(tmp_path / "w.csv")
    assert set(out.loc[out["flipped"], "label_original"]) == {"emu"}
    assert set(out.loc[out["flipped"], "label"]) == {"cat"}
    with pytest.raises(ValueError, match=r"source='owl' is not a label of .*'cat', 'dog', 'emu'"):
        attack_file(
            tmp_path / "words.csv", tmp_path / "w2.csv", strategy="targeted", budget=4,
            label_column="label", source="owl", target="cat",
        )  # fmt: skip
