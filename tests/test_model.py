"""The Classifier, its heads, and model bundles."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from conftest import RAKUTEN_CLASSES
from prodcat.data import read_catalog
from prodcat.errors import BundleError, DataError
from prodcat.model import Classifier, load_bundle, read_manifest, save_bundle, top_k_indices
from prodcat.model.bundle import (
    ARRAYS_PART,
    CLASSIFIER_PART,
    FORMAT_VERSION,
    MANIFEST,
    BundleVersionWarning,
    sha256_file,
)
from prodcat.text import HEADS, TextClassifier

POOL = {"title": "Pompe filtre pour piscine hors-sol", "description": "Avec skimmer et chlore"}
PEN = {"title": "Stylo feutre et cahier", "description": ""}


def small_text_model(**kw):
    """A faster text model for tests that fit several times."""
    return TextClassifier(char_ngrams=None, calibration_cv=2, **kw)


# ---------------------------------------------------------------------------------------------
# Classifier


def test_predict_proba_rows_sum_to_one_and_follow_classes(trained):
    model, catalog = trained
    assert list(model.classes_) == sorted(RAKUTEN_CLASSES)
    assert all(isinstance(c, str) for c in model.classes_)
    proba = model.predict_proba(catalog.X)
    assert proba.shape == (len(catalog), len(model.classes_))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (proba >= 0).all()
    # column j is the probability of classes_[j]: the model learnt the per-class vocabulary
    pred = model.classes_[proba.argmax(axis=1)]
    assert (pred == catalog.y.to_numpy()).mean() >= 0.9
    np.testing.assert_array_equal(model.predict(catalog.X), pred)
    pool = model.predict_proba(POOL)[0]
    assert model.classes_[pool.argmax()] == "2583"
    assert model.n_train_ == len(catalog)
    assert model.dropped_classes_ == {}


def test_predict_top_k(trained):
    model, _ = trained
    top = model.predict_top_k([POOL, PEN], k=3)
    assert len(top) == 2
    for row in top:
        assert len(row) == 3
        assert all(set(p) == {"code", "name", "parent", "probability"} for p in row)
        probs = [p["probability"] for p in row]
        assert probs == sorted(probs, reverse=True)
        assert len({p["code"] for p in row}) == 3
        assert all(isinstance(p["probability"], float) for p in row)
    assert top[0][0] == {"code": "2583", "name": "Piscine et spa", "parent": "Maison et jardin",
                         "probability": top[0][0]["probability"]}
    assert top[1][0]["code"] == "2522"
    # k is capped at the number of classes
    assert len(model.predict_top_k(POOL, k=10)[0]) == len(model.classes_)
    json.dumps(top)  # plain Python types


def test_top_k_indices_order_and_ties():
    proba = np.array([[0.1, 0.5, 0.4], [0.3, 0.3, 0.4]])
    np.testing.assert_array_equal(top_k_indices(proba, 2), [[1, 2], [2, 0]])
    assert top_k_indices(proba, 5).shape == (2, 3)


def test_predict_frame(trained):
    model, catalog = trained
    X = catalog.X.iloc[:10]
    frame = model.predict_frame(X, k=3, ids=catalog.frame["id"].iloc[:10])
    expected = ["id"]
    for r in (1, 2, 3):
        expected += [f"code_{r}", f"name_{r}", f"probability_{r}"]
    assert list(frame.columns) == [*expected, "needs_review"]
    assert list(frame["id"]) == list(catalog.frame["id"].iloc[:10])
    assert (frame["probability_1"] >= frame["probability_2"]).all()
    assert (frame["probability_2"] >= frame["probability_3"]).all()
    assert (frame["needs_review"] == (frame["probability_1"] < model.threshold_)).all()
    assert frame["needs_review"].dtype == bool
    assert set(frame["name_1"]) <= {v[0] for v in RAKUTEN_CLASSES.values()}
    top = model.predict_top_k(X, k=1)
    assert list(frame["code_1"]) == [t[0]["code"] for t in top]
    # without ids, rows are numbered
    assert list(model.predict_frame(X.iloc[:3], k=1)["id"]) == [0, 1, 2]


def test_needs_review_follows_threshold(trained):
    model, catalog = trained
    old = model.threshold_
    try:
        model.threshold_ = 1.01
        assert model.predict_frame(catalog.X.iloc[:5])["needs_review"].all()
        model.threshold_ = 0.0
        assert not model.predict_frame(catalog.X.iloc[:5])["needs_review"].any()
    finally:
        model.threshold_ = old


def test_accepts_dict_list_and_title_only_frame(trained):
    model, _ = trained
    one = model.predict_proba(POOL)
    assert one.shape == (1, len(model.classes_))
    many = model.predict_proba([POOL, PEN, {"title": "Carte pokémon holo rare"}])
    assert many.shape == (3, len(model.classes_))
    np.testing.assert_allclose(many[0], one[0])
    titles = model.predict_proba(pd.DataFrame({"title": [POOL["title"], PEN["title"]]}))
    assert titles.shape == (2, len(model.classes_))
    np.testing.assert_allclose(
        titles[0], model.predict_proba({"title": POOL["title"], "description": None})[0])
    assert model.predict([{"title": "Carte pokémon holo rare"}])[0] == "1160"


def test_rare_class_is_dropped_with_warning(rakuten_dir):
    catalog = read_catalog(rakuten_dir).labelled()
    X = pd.concat([catalog.X, pd.DataFrame([{"title": "Croquettes pour chaton", "description": "",
                                             "image": None}])], ignore_index=True)
    y = [*catalog.y, "9999"]
    with pytest.warns(UserWarning, match="left out 1 class"):
        model = Classifier(text=small_text_model()).fit(X, y)
    assert model.dropped_classes_ == {"9999": 1}
    assert "9999" not in model.classes_
    assert len(model.classes_) == 4
    assert model.n_train_ == len(catalog)


@pytest.mark.parametrize("missing", [None, float("nan")], ids=["None", "NaN"])
def test_unlabelled_rows_are_ignored_in_fit(rakuten_dir, missing):
    catalog = read_catalog(rakuten_dir).labelled()
    y = catalog.y.to_numpy(dtype=object).copy()
    y[:4] = missing
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = Classifier(text=small_text_model()).fit(catalog.X, y)
    assert "nan" not in model.classes_
    assert "None" not in model.classes_
    assert model.n_train_ == len(catalog) - 4


def test_fit_needs_two_classes(rakuten_dir):
    catalog = read_catalog(rakuten_dir).labelled()
    with pytest.raises(DataError, match="two categories"):
        Classifier().fit(catalog.X, ["1160"] * len(catalog))


def test_clone_and_get_params():
    model = Classifier(text=TextClassifier(head="logistic", C=2.0), threshold=0.6, min_class_count=2)
    params = model.get_params(deep=True)
    assert params["threshold"] == 0.6
    assert params["min_class_count"] == 2
    assert params["text__head"] == "logistic"
    assert params["text__C"] == 2.0
    copy = clone(model)
    assert copy is not model
    assert copy.get_params()["text__head"] == "logistic"
    copy.set_params(text__head="sgd", threshold=0.9)
    assert copy.text.head == "sgd" and copy.threshold == 0.9
    assert model.text.head == "logistic"  # the original is untouched
    assert clone(Classifier()).get_params()["text"] is None


def test_fit_does_not_change_the_given_text_model(rakuten_dir):
    catalog = read_catalog(rakuten_dir).labelled()
    text = small_text_model()
    model = Classifier(text=text).fit(catalog.X, catalog.y)
    assert not hasattr(text, "head_")
    assert hasattr(model.text_, "head_")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("head", sorted(HEADS))
def test_each_head_trains_and_gives_probabilities(head, rakuten_dir):
    catalog = read_catalog(rakuten_dir).labelled()
    model = Classifier(text=TextClassifier(head=head, calibration_cv=2)).fit(catalog.X, catalog.y)
    proba = model.predict_proba(catalog.X)
    assert proba.shape == (len(catalog), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (model.predict(catalog.X) == catalog.y.to_numpy()).mean() >= 0.8


# ---------------------------------------------------------------------------------------------
# Bundles


@pytest.fixture
def bundle_copy(trained_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(trained_bundle, dst)
    return dst


def test_round_trip_identical_probabilities(trained, trained_bundle):
    model, catalog = trained
    loaded, manifest = load_bundle(trained_bundle)
    np.testing.assert_array_equal(loaded.predict_proba(catalog.X), model.predict_proba(catalog.X))
    assert list(loaded.classes_) == list(model.classes_)
    assert loaded.taxonomy_.name("2583") == "Piscine et spa"
    again = Classifier.load(trained_bundle)
    np.testing.assert_array_equal(again.predict_proba(POOL), model.predict_proba(POOL))


def test_manifest_contents(trained, trained_bundle):
    model, catalog = trained
    m = read_manifest(trained_bundle)
    assert m["format"] == "prodcat-bundle"
    assert m["format_version"] == FORMAT_VERSION
    for lib in ("prodcat", "python", "sklearn", "numpy", "scipy", "pandas", "joblib"):
        assert m["versions"][lib]
    assert m["classes"] == sorted(RAKUTEN_CLASSES)
    tax = {r["code"]: r for r in m["taxonomy"]}
    assert tax["1160"] == {"code": "1160", "name": "Cartes à collectionner", "parent": "Jeux et jouets"}
    assert m["training"]["fingerprint"] == catalog.fingerprint()
    assert len(m["training"]["fingerprint"]) == 64
    part = m["parts"]["classifier"]
    assert part["file"] == CLASSIFIER_PART
    assert part["sha256"] == sha256_file(trained_bundle / CLASSIFIER_PART)
    assert part["bytes"] == (trained_bundle / CLASSIFIER_PART).stat().st_size
    assert m["threshold"] == model.threshold_
    assert m["parameters"]["class"] == "Classifier"
    # the manifest is plain UTF-8 JSON that keeps accents readable
    assert "Cartes à collectionner" in (trained_bundle / MANIFEST).read_text(encoding="utf-8")


def test_fingerprint_changes_with_data(trained):
    _, catalog = trained
    changed = catalog.subset(np.arange(len(catalog) - 1))
    assert changed.fingerprint() != catalog.fingerprint()
    assert catalog.subset(np.arange(len(catalog))).fingerprint() == catalog.fingerprint()


def test_changed_part_is_refused(bundle_copy):
    part = bundle_copy / CLASSIFIER_PART
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_copy)


def test_missing_part_is_refused(bundle_copy):
    (bundle_copy / CLASSIFIER_PART).unlink()
    with pytest.raises(BundleError, match="incomplete"):
        load_bundle(bundle_copy)


def edit_manifest(path, change):
    m = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    change(m)
    (path / MANIFEST).write_text(json.dumps(m), encoding="utf-8")


def test_wrong_format_version_is_refused(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError, match="format version"):
        load_bundle(bundle_copy)


def test_wrong_format_is_refused(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.update(format="something-else"))
    with pytest.raises(BundleError, match="not a prodcat manifest"):
        load_bundle(bundle_copy)


def test_other_sklearn_minor_version_is_one_warning(bundle_copy):
    def older(m):
        m["versions"]["sklearn"] = "0.24.2"
        m["versions"]["numpy"] = "1.0.0"

    edit_manifest(bundle_copy, older)
    with pytest.warns(BundleVersionWarning, match="sklearn 0.24.2.*numpy 1.0.0") as caught:
        model, _ = load_bundle(bundle_copy)
    assert len(caught) == 1
    assert model.predict_proba(POOL).shape == (1, 4)


def test_other_prodcat_major_version_is_refused(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m["versions"].update(prodcat="99.0.0"))
    with pytest.raises(BundleError, match="major version"):
        load_bundle(bundle_copy)


def test_other_patch_version_is_accepted(bundle_copy):
    def patched(m):
        major, minor = m["versions"]["sklearn"].split(".")[:2]
        m["versions"]["sklearn"] = f"{major}.{minor}.99"

    edit_manifest(bundle_copy, patched)
    model, _ = load_bundle(bundle_copy)
    assert model.predict_proba(POOL).shape == (1, 4)


def test_missing_bundle_is_refused(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="manifest.json"):
        load_bundle(tmp_path / "empty")


def test_corrupt_manifest_is_refused(bundle_copy):
    (bundle_copy / MANIFEST).write_text('{"format": "prodcat-bundle", ', encoding="utf-8")
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(bundle_copy)
    (bundle_copy / MANIFEST).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BundleError):
        load_bundle(bundle_copy)
    (bundle_copy / MANIFEST).write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(BundleError):
        load_bundle(bundle_copy)


def test_save_refuses_non_bundle_folder(trained, tmp_path):
    model, _ = trained
    target = tmp_path / "precious"
    target.mkdir()
    (target / "thesis.txt").write_text("do not delete")
    with pytest.raises(BundleError, match="not a prodcat bundle"):
        save_bundle(model, target)
    assert (target / "thesis.txt").read_text() == "do not delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no temp folder left


def test_save_over_bundle_and_into_empty_folder(trained, bundle_copy, tmp_path):
    model, _ = trained
    save_bundle(model, bundle_copy, notes=["second save"])
    assert read_manifest(bundle_copy)["notes"] == ["second save"]
    empty = tmp_path / "empty"
    empty.mkdir()
    model.save(empty)
    assert load_bundle(empty)[1]["classes"] == sorted(RAKUTEN_CLASSES)
    assert sorted(p.name for p in empty.iterdir()) == sorted([ARRAYS_PART, CLASSIFIER_PART, MANIFEST])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_classifier_docstring_example_runs():
    import doctest

    from prodcat.model import classifier

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    (test,) = [t for t in finder.find(classifier.Classifier, "Classifier") if t.examples]
    result = runner.run(test)
    assert result.failed == 0 and result.attempted >= 4


def test_classifier_checks_its_parameters_first():
    from prodcat.errors import ConfigError

    X = pd.DataFrame({"title": ["a", "b", "c", "d"], "description": [""] * 4})
    with pytest.raises(ConfigError, match="'threshold' parameter of Classifier"):
        Classifier(threshold=5).fit(X, ["x", "y", "x", "y"])
    with pytest.raises(ValueError, match="fusion"):
        Classifier(fusion="magic").fit(X, ["x", "y", "x", "y"])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        Classifier().fit(X, ["x", "y", "x"])


def test_loading_a_model_leaves_the_plotting_library_out():
    """A fresh process that serves or batch-predicts imports what loading a model needs, not
    Matplotlib (a fifth of the cold load): only writing a report draws."""
    import subprocess
    import sys

    code = "import sys, prodcat.model, prodcat.evaluation; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
