"""The demo catalogue: Rakuten layout, deterministic, noisy but learnable."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from prodcat.data import read_catalog
from prodcat.demo import DEMO_EXAMPLE, demo_catalog_path, write_demo_catalog
from prodcat.demo.catalog import _MARKER

N = 480


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # Tiny logistic regressions: BLAS threads only cost time, a lot on a busy machine.
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return write_demo_catalog(tmp_path_factory.mktemp("demo") / "catalogue", n_listings=N, seed=0)


def _x(path: Path) -> pd.DataFrame:
    return pd.read_csv(path / "X_train_update.csv", index_col=0, keep_default_na=False)


def _y(path: Path) -> np.ndarray:
    return pd.read_csv(path / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"].to_numpy()


def _image_path(path: Path, imageid, productid) -> Path:
    return path / "images" / "image_train" / f"image_{imageid}_product_{productid}.jpg"


def _digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_layout_is_rakuten(demo):
    head_x = (demo / "X_train_update.csv").read_text(encoding="utf-8").splitlines()[0]
    head_y = (demo / "Y_train_CVw08PX.csv").read_text(encoding="utf-8").splitlines()[0]
    head_c = (demo / "categories.csv").read_text(encoding="utf-8").splitlines()[0]
    assert head_x == ",designation,description,productid,imageid"
    assert head_y == ",prdtypecode"
    assert head_c == "prdtypecode,name,parent"
    x = _x(demo)
    assert list(x.index) == list(range(N))
    assert x["productid"].dtype.kind == "i" and x["imageid"].dtype.kind == "i"
    assert x["productid"].is_unique and x["imageid"].is_unique
    images = list((demo / "images" / "image_train").glob("*.jpg"))
    assert all(re.fullmatch(r"image_\d+_product_\d+\.jpg", p.name) for p in images)


def test_counts_and_noise(demo):
    x, y = _x(demo), _y(demo)
    assert len(x) == len(y) == N
    categories = pd.read_csv(demo / "categories.csv")
    counts = pd.Series(y).value_counts()
    assert len(counts) >= 8
    assert set(counts.index) == set(categories["prdtypecode"])
    assert 1.5 <= counts.max() / counts.min() <= 5

    descriptions = x["description"]
    assert 0.25 <= (descriptions == "").mean() <= 0.45
    html = descriptions.str.contains(r"<br|<b>|<p>|&eacute;|&amp;", regex=True)
    assert 0.05 <= html.mean() <= 0.3
    assert descriptions.str.contains("&amp;eacute;", regex=False).any()  # double-escaped
    assert descriptions.str.contains("&eacute;", regex=False).any()

    text = x["designation"] + " " + descriptions
    french = text.str.contains(r"[éèêàçô]|&eacute;|&agrave;", regex=True)
    english = text.str.contains(r"\b(?:with|the|for|new|condition|used|sale)\b", regex=True,
                                case=False)
    assert french.mean() > 0.3 and english.mean() > 0.1
    assert x["designation"].str.contains("[éèàç]", regex=True).any()
    upper = x["designation"].map(lambda t: t.isupper() and len(t) > 8)
    assert 0 < upper.sum() < 0.1 * N

    with_image = [_image_path(demo, i, p).is_file() for i, p in zip(x["imageid"], x["productid"],
                                                                   strict=True)]
    assert 0.8 <= np.mean(with_image) <= 0.95


def test_images_open(demo):
    images = sorted((demo / "images" / "image_train").glob("*.jpg"))
    assert images
    for path in images[:40]:
        with Image.open(path) as img:
            assert img.format == "JPEG"
            assert img.size == (128, 128)
            img.convert("RGB").load()


def test_deterministic(demo, tmp_path):
    again = write_demo_catalog(tmp_path / "again", n_listings=N, seed=0)
    first, second = _digest(demo), _digest(again)
    assert first == second
    small = [write_demo_catalog(tmp_path / f"seed{s}", n_listings=40, seed=s) for s in (0, 1)]
    assert _digest(small[0])["X_train_update.csv"] != _digest(small[1])["X_train_update.csv"]


def test_options(tmp_path):
    out = write_demo_catalog(tmp_path / "small", n_listings=60, seed=3, image_size=48)
    assert len(_x(out)) == 60
    with Image.open(next((out / "images" / "image_train").glob("*.jpg"))) as img:
        assert img.size == (48, 48)
    # Rewriting a smaller catalogue into the same folder leaves no stale images behind.
    write_demo_catalog(out, n_listings=20, seed=3, image_size=48)
    assert len(list((out / "images" / "image_train").glob("*.jpg"))) <= 20
    with pytest.raises(ValueError):
        write_demo_catalog(tmp_path / "tiny", n_listings=3)


def test_read_catalog(demo):
    catalog = read_catalog(demo)
    assert catalog.format == "rakuten"
    assert len(catalog) == N
    assert catalog.report.images_missing > 0
    assert catalog.report.images_expected == N
    assert catalog.frame["image"].notna().sum() == N - catalog.report.images_missing
    assert set(catalog.y) == {str(c) for c in pd.read_csv(demo / "categories.csv")["prdtypecode"]}
    assert catalog.taxonomy.name("10") == "Livres"
    assert catalog.taxonomy.parent("10") == "Culture"


def test_text_is_learnable_but_not_trivial(demo):
    x, y = _x(demo), _y(demo)
    texts = (x["designation"] + " " + x["description"]).tolist()
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    accuracy = cross_val_score(model, texts, y, cv=StratifiedKFold(3, shuffle=True, random_state=0))
    assert 0.75 <= accuracy.mean() <= 0.99, accuracy
    model.fit(texts, y)
    example = DEMO_EXAMPLE["title"] + " " + DEMO_EXAMPLE["description"]
    assert model.predict([example])[0] == 10


def test_images_carry_signal(demo):
    x, y = _x(demo), _y(demo)
    features, labels = [], []
    for imageid, productid, label in zip(x["imageid"], x["productid"], y, strict=True):
        path = _image_path(demo, imageid, productid)
        if path.is_file():
            with Image.open(path) as img:
                a = np.asarray(img.convert("RGB").resize((32, 32)), dtype=float) / 255
            quarters = [a[:16, :16], a[:16, 16:], a[16:, :16], a[16:, 16:]]
            features.append(np.concatenate([q.mean(axis=(0, 1)) for q in quarters]))
            labels.append(label)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = cross_val_score(model, np.array(features), np.array(labels),
                               cv=StratifiedKFold(3, shuffle=True, random_state=0)).mean()
    majority = pd.Series(labels).value_counts(normalize=True).max()
    assert accuracy > 2 * majority, (accuracy, majority)


def test_demo_catalog_path_caches(tmp_path, monkeypatch):
    import prodcat.demo.catalog as module

    real = module.write_demo_catalog
    monkeypatch.setattr(module, "write_demo_catalog", lambda out: real(out, n_listings=40))
    root = tmp_path / "cache"
    path = demo_catalog_path(root)
    assert path == root / "demo-v1"
    assert (path / _MARKER).is_file()
    assert read_catalog(path).format == "rakuten"
    assert not [p for p in root.iterdir() if p.name != "demo-v1"]  # no temporary folder left
    stamp = (path / "X_train_update.csv").stat().st_mtime_ns
    assert demo_catalog_path(root) == path
    assert (path / "X_train_update.csv").stat().st_mtime_ns == stamp

    # An interrupted copy (no marker) is rebuilt.
    (path / _MARKER).unlink()
    (path / "X_train_update.csv").write_text("broken", encoding="utf-8")
    assert demo_catalog_path(root) == path
    assert (path / _MARKER).is_file()
    assert len(_x(path)) == 40

    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(tmp_path / "env-cache"))
    assert demo_catalog_path() == tmp_path / "env-cache" / "demo-v1"
