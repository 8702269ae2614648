"""Remembered fits: training again on the same data loads every model, and never a stale one."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from prodcat.model.fitcache import fit_memory, source_fingerprint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_catalog(tmp_path_factory):
    from prodcat.data import read_catalog
    from prodcat.demo import write_demo_catalog

    path = write_demo_catalog(tmp_path_factory.mktemp("demo") / "cat", n_listings=200, seed=5)
    return read_catalog(path)


@pytest.fixture()
def fit_counts(monkeypatch):
    """How many times each kind of model was really fitted (not loaded)."""
    pytest.importorskip("onnxruntime")
    from prodcat.fusion.early import EarlyFusion
    from prodcat.fusion.fusers import LateFusion, StackedFusion
    from prodcat.image import ImageClassifier, ImageError, create_encoder
    from prodcat.text import TextClassifier

    try:
        create_encoder("efficientnet-lite0").ensure_export()
    except ImageError as exc:
        pytest.skip(f"image encoder unavailable: {exc}")
    counts: Counter = Counter()
    for name, cls, method in [("text", TextClassifier, "fit"), ("image", ImageClassifier, "_fit_embeddings"),
                              ("early", EarlyFusion, "fit"), ("late", LateFusion, "fit"),
                              ("stack", StackedFusion, "fit")]:
        original = getattr(cls, method)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, method, counting)
    return counts


def _fused(memory, fusion="auto", C=None):
    from prodcat.image import ImageClassifier
    from prodcat.model import Classifier
    from prodcat.text import TextClassifier

    return Classifier(text=TextClassifier(C=C), image=ImageClassifier(), fusion=fusion, memory=memory)


@pytest.mark.parametrize("fusion", ["auto", "early"])
def test_second_fit_loads_every_model_and_predicts_the_same(demo_catalog, fit_counts, tmp_path, fusion):
    X, y = demo_catalog.X, demo_catalog.y
    first = _fused(tmp_path / "fits", fusion).fit(X, y, taxonomy=demo_catalog.taxonomy)
    # Each base model is fitted once; only the image head is fitted per fusion fold (3), the
    # text model's out-of-fold answers come from its own calibration.
    chosen = first.fusion_["method"]
    assert fit_counts["text"] == 1
    assert fit_counts["image"] == 3 + 1
    assert fit_counts["early"] == 3 + (chosen == "early")
    if fusion == "auto":
        assert fit_counts["late"] == 5 + (chosen == "late")  # 5 folds judge it, then one fit
    fit_counts.clear()
    second = _fused(tmp_path / "fits", fusion).fit(X, y, taxonomy=demo_catalog.taxonomy)
    assert sum(fit_counts.values()) == 0, fit_counts
    assert second.fusion_ == first.fusion_
    np.testing.assert_array_equal(second.predict_proba(X), first.predict_proba(X))
    if fusion == "early":
        # The early-fusion head holds no model: it reads features the classifier's own text and
        # image models build (stored once), the same way at fit and predict time.
        from prodcat.fusion.early import EarlyFusion

        assert isinstance(second.fuser_, EarlyFusion) and not hasattr(second, "early_")
        assert not {"text_model_", "image_model_"} & set(vars(second.fuser_))


def test_changed_parameters_or_listings_are_fitted_again(demo_catalog, fit_counts, tmp_path):
    X, y = demo_catalog.X, demo_catalog.y
    _fused(tmp_path, "late").fit(X, y)
    fit_counts.clear()
    _fused(tmp_path, "late", C=0.3).fit(X, y)
    assert fit_counts["text"] == 1  # a new text parameter: the text model is new
    fit_counts.clear()
    edited = X.copy()
    edited.loc[0, "title"] = edited.loc[0, "title"] + " modifié"
    _fused(tmp_path, "late").fit(edited, y)
    # The final image head saw the same photos and labels: loaded; its fold heads sit in one
    # step with the text model, so they are fitted again.
    assert fit_counts["text"] == 1 and fit_counts["image"] == 3 and fit_counts["late"] == 6


def test_without_memory_nothing_is_remembered(demo_catalog, fit_counts, tmp_path):
    for _ in range(2):
        _fused(None, "late").fit(demo_catalog.X, demo_catalog.y)
    assert fit_counts["text"] == 2  # once per fit: nothing is fitted twice without a cache
    assert fit_memory(None).location is None
    assert len(source_fingerprint()) == 16


def test_the_cache_stays_under_its_size_limit(trained, tmp_path, monkeypatch):
    from prodcat.model import Classifier

    _, catalog = trained
    Classifier(memory=tmp_path).fit(catalog.X, catalog.y)
    full = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    monkeypatch.setenv("PRODCAT_FIT_CACHE_LIMIT", "1K")
    Classifier(memory=tmp_path, threshold=0.5).fit(catalog.X.iloc[:-1], catalog.y[:-1])
    trimmed = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert full > 10_000 and trimmed < full


def test_a_result_the_safe_format_cannot_hold_is_handed_on_but_not_remembered(tmp_path, monkeypatch):
    """The first run hands on the stored copy of what it remembers; what cannot be stored (a
    function) is handed on as fitted, with a warning, and computed again next time."""
    from joblib._store_backends import CacheWarning

    from prodcat.model.fitcache import remembered

    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(tmp_path / "cache"))
    memory = fit_memory(str(tmp_path / "fits"))
    calls = []

    def fit_numbers(n, code=None):
        calls.append(n)
        return {"weights": np.arange(n, dtype=np.float32), "n": n}

    def fit_function(n):
        calls.append(-n)
        return lambda x: x + n

    first = remembered(memory, fit_numbers)(3)
    again = remembered(memory, fit_numbers)(3)
    assert calls == [3] and first is not again
    np.testing.assert_array_equal(first["weights"], again["weights"])
    with pytest.warns(CacheWarning, match="could not remember"):
        f = remembered(memory, fit_function)(2)
    assert f(1) == 3
    with pytest.warns(CacheWarning):
        remembered(memory, fit_function)(2)
    assert calls == [3, -2, -2]
