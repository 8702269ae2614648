"""The ``prodcat`` command, run in-process through ``main(argv)``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import RAKUTEN_CLASSES, UNSEEN_CLASS, write_table
from prodcat.cli import main
from prodcat.model import read_manifest
from prodcat.model.bundle import CLASSIFIER_PART, MANIFEST


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *fragments: str) -> str:
    """Exit code 2, exactly one ``error:`` line, no traceback; returns the error line."""
    assert code == 2, err
    assert "Traceback" not in err
    assert "internal error" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    assert err.rstrip().splitlines()[-1] == lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# train, evaluate, predict, info


def test_train_with_cv(rakuten_dir, tmp_path, capsys):
    out = tmp_path / "model"
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", out, "--cv", "3")
    assert code == 0, err
    assert (out / MANIFEST).is_file() and (out / CLASSIFIER_PART).is_file()
    assert "3-fold CV" in err
    m = read_manifest(out)
    cv = m["metrics"]["cv"]
    assert cv["folds"] == 3
    for key in ("n", "weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "ece", "coverage"):
        assert key in cv
    assert cv["n"] == 60
    assert cv["weighted_f1"] > 0.8
    t = m["training"]
    assert t["format"] == "rakuten"
    assert t["n_listings"] == 60 and t["n_classes"] == 4
    assert len(t["fingerprint"]) == 64
    assert t["read_report"]["rows_without_text"] == 1
    assert m["classes"] == sorted(RAKUTEN_CLASSES)

    code, out_text, err = run(capsys, "info", "--model", out)
    assert code == 0, err
    assert "classes   4" in out_text
    assert "3-fold" in out_text


def test_train_without_cv_and_with_options(table_csv, tmp_path, capsys):
    out = tmp_path / "m"
    code, _, err = run(capsys, "train", "--data", table_csv, "--out", out, "--cv", "0",
                       "--title-col", "name", "--description-col", "body", "--label-col", "cat",
                       "--id-col", "sku", "--image-col", "pic", "--head", "logistic",
                       "--threshold", "0.5")
    assert code == 0, err
    m = read_manifest(out)
    assert m["metrics"] == {}
    assert m["threshold"] == 0.5
    assert m["classes"] == ["bikes", "lamps", "tea"]


def test_evaluate_with_model(trained_bundle, rakuten_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code, _, err = run(capsys, "evaluate", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", out)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    for key in ("n", "weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "per_class",
                "coverage", "ece"):
        assert key in metrics
    assert metrics["n"] == 60
    assert metrics["accuracy"] >= 0.9  # the training data itself
    assert set(metrics["per_class"]) == set(RAKUTEN_CLASSES)
    assert metrics["per_class"]["2583"]["name"] == "Piscine et spa"
    assert metrics["unseen_labels"]["count"] == 0
    assert metrics["model"]["training_fingerprint"] == read_manifest(trained_bundle)["training"][
        "fingerprint"]
    for name in ("report.md", "report.html", "confusion_matrix.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "weighted F1" in err


def test_evaluate_cv(rakuten_dir, tmp_path, capsys):
    out = tmp_path / "cv"
    code, _, err = run(capsys, "evaluate", "--cv", "3", "--data", rakuten_dir, "--out", out)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 60
    assert metrics["cv"]["folds"] == 3
    assert len(metrics["cv"]["fold_scores"]) == 3
    assert sum(f["n"] for f in metrics["cv"]["fold_scores"]) == 60
    assert (out / "report.html").is_file()


def test_evaluate_unseen_label(trained_bundle, make_rakuten, tmp_path, capsys):
    data = make_rakuten("with_unseen", per_class=3, unseen_rows=4)
    out = tmp_path / "report"
    code, _, err = run(capsys, "evaluate", "--model", trained_bundle, "--data", data, "--out", out)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 16
    assert metrics["unseen_labels"]["count"] == 4
    assert metrics["unseen_labels"]["labels"] == {UNSEEN_CLASS[0]: 4}
    assert metrics["per_class"][UNSEEN_CLASS[0]]["in_model"] is False
    assert metrics["accuracy"] <= 12 / 16
    assert any(line.startswith("warning:") and "never saw" in line for line in err.splitlines())


def test_predict_title_json(trained_bundle, capsys):
    code, out, err = run(capsys, "predict", "--model", trained_bundle, "--title",
                         "Pompe filtre piscine hors-sol", "--description", "skimmer et chlore",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["top_k"]) == 3
    assert result["top_k"][0]["code"] == "2583"
    assert result["top_k"][0]["name"] == "Piscine et spa"
    assert set(result["top_k"][0]) == {"code", "name", "parent", "probability"}
    assert isinstance(result["needs_review"], bool)
    assert result["needs_review"] == (result["top_k"][0]["probability"] < result["threshold"])


def test_predict_title_text_and_image(trained_bundle, tmp_path, capsys):
    from conftest import draw_image

    image = tmp_path / "photo.jpg"
    draw_image(image, (1, 2, 3))
    code, out, err = run(capsys, "predict", "--model", trained_bundle, "--title",
                         "Carte pokémon holo rare", "--image", image, "--top-k", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("1.") and "1160" in lines[0]
    assert lines[1].startswith("2.")
    assert lines[2].strip().startswith("text alone:")  # what each modality said on its own
    assert lines[-1] in ("needs review",) or lines[-1].startswith("confident")


def test_predict_data_to_csv(trained_bundle, rakuten_dir, tmp_path, capsys):
    out = tmp_path / "sub" / "preds.csv"
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", out)
    assert code == 0, err
    preds = pd.read_csv(out, dtype={"id": str, "code_1": str, "code_2": str, "code_3": str})
    expected = ["id"]
    for r in (1, 2, 3):
        expected += [f"code_{r}", f"name_{r}", f"probability_{r}"]
    assert list(preds.columns) == [*expected, "needs_review"]
    assert len(preds) == 60
    assert "7" not in set(preds["id"])  # the listing without text is skipped
    assert set(preds["code_1"]) <= set(RAKUTEN_CLASSES)
    assert (preds["probability_1"] >= preds["probability_2"]).all()
    assert "wrote 60 predictions" in err


def test_predict_data_to_parquet(trained_bundle, rakuten_dir, tmp_path, capsys):
    out = tmp_path / "preds.parquet"
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", out, "--top-k", "1")
    assert code == 0, err
    preds = pd.read_parquet(out)
    assert list(preds.columns) == ["id", "code_1", "name_1", "probability_1", "needs_review"]


# ---------------------------------------------------------------------------------------------
# user errors: exit code 2, one line, no traceback


@pytest.fixture
def corrupt_bundle(trained_bundle, tmp_path):
    dst = tmp_path / "corrupt"
    shutil.copytree(trained_bundle, dst)
    part = dst / CLASSIFIER_PART
    data = bytearray(part.read_bytes())
    data[-10] ^= 0x01
    part.write_bytes(bytes(data))
    return dst


def test_error_missing_data_folder(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", tmp_path / "nope", "--out", tmp_path / "m")
    assert_user_error(code, err, "not found", "nope")
    assert not (tmp_path / "m").exists()


def test_error_missing_column(table_csv, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", table_csv, "--format", "table",
                       "--title-col", "nope", "--out", tmp_path / "m")
    assert_user_error(code, err, "'nope'")


def test_error_non_utf8_csv(tmp_path, capsys):
    path = write_table(tmp_path / "latin", encoding="cp1252")
    argv = ["train", "--data", path, "--out", tmp_path / "m", "--cv", "0", "--title-col", "name",
            "--label-col", "cat"]
    code, _, err = run(capsys, *argv)
    assert_user_error(code, err, "--encoding")
    code, _, err = run(capsys, *argv, "--encoding", "cp1252")
    assert code == 0, err


def test_error_corrupt_bundle(corrupt_bundle, capsys):
    code, _, err = run(capsys, "predict", "--model", corrupt_bundle, "--title", "stylo")
    assert_user_error(code, err, "sha256")


def test_error_corrupt_manifest(trained_bundle, tmp_path, capsys):
    dst = tmp_path / "b"
    shutil.copytree(trained_bundle, dst)
    (dst / MANIFEST).write_text("{not json", encoding="utf-8")
    code, _, err = run(capsys, "info", "--model", dst)
    assert_user_error(code, err, "corrupt")


def test_error_missing_bundle(tmp_path, capsys):
    code, _, err = run(capsys, "predict", "--model", tmp_path / "nope", "--title", "stylo")
    assert_user_error(code, err, "not found")


def test_error_predict_needs_title_or_data(trained_bundle, capsys):
    code, _, err = run(capsys, "predict", "--model", trained_bundle)
    assert_user_error(code, err, "--title", "--data")


def test_error_predict_data_without_out(trained_bundle, rakuten_dir, capsys):
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir)
    assert_user_error(code, err, "--out")


def test_error_empty_title_and_description(trained_bundle, capsys):
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--title", "  ",
                       "--description", "")
    assert_user_error(code, err, "title or a description")


def test_error_missing_image(trained_bundle, tmp_path, capsys):
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--title", "stylo",
                       "--image", tmp_path / "nope.jpg")
    assert_user_error(code, err, "image not found")


def test_error_evaluate_needs_model_or_cv(rakuten_dir, trained_bundle, tmp_path, capsys):
    code, _, err = run(capsys, "evaluate", "--data", rakuten_dir, "--out", tmp_path / "r")
    assert_user_error(code, err, "--model", "--cv")
    code, _, err = run(capsys, "evaluate", "--data", rakuten_dir, "--out", tmp_path / "r",
                       "--model", trained_bundle, "--cv", "3")
    assert_user_error(code, err, "--model", "--cv")
    assert not (tmp_path / "r").exists()


def test_error_bad_cv_value(rakuten_dir, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m", "--cv", "1")
    assert_user_error(code, err, "--cv")
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m",
                       "--cv", "many")
    assert_user_error(code, err, "--cv")


def test_error_train_on_unlabelled_data(tmp_path, capsys):
    path = tmp_path / "t.csv"
    pd.DataFrame({"title": ["un vélo", "une lampe"]}).to_csv(path, index=False)
    code, _, err = run(capsys, "train", "--data", path, "--out", tmp_path / "m")
    assert_user_error(code, err, "no labelled listings")


def test_error_out_is_an_existing_file_for_train(rakuten_dir, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a bundle")
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", target, "--cv", "0")
    assert_user_error(code, err, "taken")
    assert target.read_text() == "not a bundle"


def test_error_out_is_a_folder_for_predict(trained_bundle, rakuten_dir, tmp_path, capsys):
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", tmp_path)
    assert_user_error(code, err)


def test_error_out_is_a_file_for_evaluate(trained_bundle, rakuten_dir, tmp_path, capsys):
    target = tmp_path / "report.txt"
    target.write_text("x")
    code, _, err = run(capsys, "evaluate", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", target)
    assert_user_error(code, err, "report.txt")


def test_error_unknown_option_is_exit_2(capsys):
    code, _, err = run(capsys, "predict", "--no-such-option")
    assert code == 2
    assert "Traceback" not in err
    assert "no-such-option" in err


# ---------------------------------------------------------------------------------------------
# the installed console script


def test_console_script_help():
    script = Path(sys.executable).with_name("prodcat")
    if not script.exists():
        found = shutil.which("prodcat")
        if found is None:
            pytest.skip("the prodcat console script is not installed")
        script = Path(found)
    res = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for command in ("train", "evaluate", "predict", "info", "demo"):
        assert command in res.stdout


class _PhotoBlindModel:
    """A text+image model whose image side could not use the photo (as with an unreadable one)."""

    threshold_ = 0.5

    def predict_modalities(self, listing):
        p = np.array([[0.7, 0.3]])
        return {"fused": p, "text": p, "image": np.array([[0.5, 0.5]]), "has_image": np.array([False])}

    def describe(self, proba, k):
        return [[{"code": c, "name": c, "parent": None, "probability": float(v)}
                 for c, v in zip("ab", row, strict=True)][:k] for row in proba]


def test_predict_says_why_an_unreadable_photo_fell_back_to_text(tmp_path, capsys):
    from prodcat.cli.predict import _predict_one

    bad = tmp_path / "photo.jpg"
    bad.write_text("<html>not a photo</html>")
    _predict_one(_PhotoBlindModel(), "Lampe de chevet", "", str(bad), 2, False)
    out, err = capsys.readouterr()
    assert "note: the photo could not be read" in err and "not an image file" in err
    assert "the answer is from the text alone" in err and "image alone: no usable photo" in out
    _predict_one(_PhotoBlindModel(), "Lampe de chevet", "", str(bad), 2, True)
    out, _ = capsys.readouterr()
    assert "not an image file" in json.loads(out)["image_error"]


def test_predict_title_of_invisible_characters_is_blank(trained_bundle, capsys):
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--title", "\u200b\u200b\ufeff")
    assert code == 2 and "needs a title or a description" in err


def test_train_without_the_label_column_names_it(tmp_path, capsys):
    table = tmp_path / "t.csv"
    pd.DataFrame({"title": ["lampe", "tapis", "pompe"], "category_name": ["a", "b", "c"]}).to_csv(table, index=False)
    code, _, err = run(capsys, "train", "--data", table, "--out", tmp_path / "m", "--cv", "0")
    assert code == 2
    assert "no label column 'label' (the table has: title, category_name); name it with --label-col" in err


def test_unlabelled_listings_are_not_suggested_and_need_an_image_model(capsys):
    from types import SimpleNamespace

    from prodcat.cli.modelling import fit_params

    # Pseudo-labelled photos lowered the fused gain on the Rakuten sample: no tip suggests them.
    assert fit_params(SimpleNamespace(image=object()), None) == {}
    assert fit_params(SimpleNamespace(image=None), "listings.csv") == {}
    err = capsys.readouterr().err
    assert "tip" not in err and "--unlabelled only teaches the image model" in err
