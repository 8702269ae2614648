"""Whom a bundle is trusted from: signed bundles and keys, pickled bundles of format 1 (refused
unless asked for), and the fit cache's signed safe-state entries."""

from __future__ import annotations

import json
import os
import stat

import joblib
import numpy as np
import pytest

from prodcat.cli import main
from prodcat.errors import BundleError, ConfigError
from prodcat.model import Classifier, load_bundle, read_manifest, save_bundle
from prodcat.model.bundle import SIGNATURE, BundleVersionWarning
from test_bundle_safety import POOL, Canary, edit_manifest, make_pickled_bundle

# ---------------------------------------------------------------------------------------------
# signatures


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "signing.key"
    path.write_text("0123456789abcdef" * 4 + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def signed(trained, tmp_path, key_file):
    return save_bundle(trained[0], tmp_path / "signed", sign_key=key_file)


def test_a_signed_bundle_loads_with_its_key_only(signed, key_file, tmp_path):
    assert (signed / SIGNATURE).is_file()
    model, _ = load_bundle(signed, require_signature=True, sign_key=key_file)
    assert model.predict_proba(POOL).shape == (1, 4)
    other = tmp_path / "other.key"
    other.write_text("f" * 64)
    with pytest.raises(BundleError, match="another key"):
        load_bundle(signed, require_signature=True, sign_key=other)
    with pytest.raises(BundleError, match="no key"):
        load_bundle(signed, require_signature=True)
    load_bundle(signed)  # a signature is only checked when one is required


def test_a_signed_manifest_changed_afterwards_is_refused(signed, key_file):
    edit_manifest(signed, lambda m: m.update(threshold=0.1))
    with pytest.raises(BundleError, match="changed after it was signed"):
        load_bundle(signed, require_signature=True, sign_key=key_file)
    (signed / SIGNATURE).write_text("{not json")
    with pytest.raises(BundleError, match="malformed signature"):
        load_bundle(signed, require_signature=True, sign_key=key_file)


def test_an_unsigned_bundle_is_refused_when_a_signature_is_required(trained_bundle, key_file, monkeypatch):
    with pytest.raises(BundleError, match="not signed"):
        read_manifest(trained_bundle, require_signature=True, sign_key=key_file)
    monkeypatch.setenv("PRODCAT_REQUIRE_SIGNATURE", "1")
    monkeypatch.setenv("PRODCAT_SIGNING_KEY", str(key_file))
    with pytest.raises(BundleError, match="not signed"):
        load_bundle(trained_bundle)


def test_a_short_or_missing_key_is_refused(trained, tmp_path):
    short = tmp_path / "short.key"
    short.write_text("secret")
    with pytest.raises(ConfigError, match="too short"):
        save_bundle(trained[0], tmp_path / "b", sign_key=short)
    with pytest.raises(ConfigError, match="not found"):
        save_bundle(trained[0], tmp_path / "b", sign_key=tmp_path / "nope")


@pytest.mark.slow
def test_cli_train_signs_and_predict_requires_the_signature(rakuten_dir, trained_bundle, key_file, tmp_path,
                                                            capsys, monkeypatch):
    out = tmp_path / "model"
    assert main(["train", "--data", str(rakuten_dir), "--out", str(out), "--cv", "0", "--no-track",
                 "--text-model", "single", "--image-encoder", "none", "--sign-key", str(key_file)]) == 0
    assert (out / SIGNATURE).is_file() and "PRODCAT_SIGNING_KEY" not in os.environ
    capsys.readouterr()
    args = ["predict", "--model", str(out), "--title", "piscine pompe", "--json", "--require-signature"]
    assert main([*args, "--sign-key", str(key_file)]) == 0
    assert json.loads(capsys.readouterr().out)["top_k"][0]["code"] == "2583"
    assert main(args) == 2
    assert "no key" in capsys.readouterr().err
    assert main(["predict", "--model", str(trained_bundle), "--title", "x", "--require-signature",
                 "--sign-key", str(key_file)]) == 2
    assert "not signed" in capsys.readouterr().err
    monkeypatch.setenv("PRODCAT_REQUIRE_SIGNATURE", "1")
    monkeypatch.setenv("PRODCAT_SIGNING_KEY", str(key_file))
    assert main(["info", "--model", str(out)]) == 0
    assert main(["info", "--model", str(trained_bundle)]) == 2
    assert main(["train", "--data", str(rakuten_dir), "--out", str(tmp_path / "m2"), "--sign-key",
                 str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# bundles of format 1 (a pickle)


def test_a_pickled_bundle_says_how_to_retrain(trained, tmp_path, capsys):
    path = make_pickled_bundle(trained[0], tmp_path / "old")
    with pytest.raises(BundleError, match=r"prodcat train --data data/rakuten --out .*old.*--allow-pickle"):
        load_bundle(path)
    assert main(["predict", "--model", str(path), "--title", "piscine"]) == 2
    assert "retrain it" in capsys.readouterr().err


def test_allow_pickle_loads_it_with_a_warning(trained, tmp_path, capsys):
    path = make_pickled_bundle(trained[0], tmp_path / "old")
    with pytest.warns(BundleVersionWarning, match="pickled bundle"):
        model, _ = load_bundle(path, allow_pickle=True)
    np.testing.assert_array_equal(model.predict_proba(POOL), trained[0].predict_proba(POOL))
    assert main(["predict", "--model", str(path), "--title", "piscine", "--allow-pickle"]) == 0
    assert "warning: loading" in capsys.readouterr().err
    assert "PRODCAT_ALLOW_PICKLE" not in os.environ  # the flag lasts one command


# ---------------------------------------------------------------------------------------------
# the fit cache


@pytest.fixture
def fit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fit_cache_folders_and_key_are_private(fit_cache, trained):
    from prodcat.model.fitcache import default_fit_cache_dir, fit_cache_key_path

    _, catalog = trained
    Classifier(memory=str(default_fit_cache_dir())).fit(catalog.X, catalog.y)
    assert stat.S_IMODE(fit_cache_key_path().stat().st_mode) == 0o600
    folders = [fit_cache, *[p for p in fit_cache.rglob("*") if p.is_dir()]]
    assert len(folders) > 3 and all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in folders)
    assert list(fit_cache.rglob("output.hmac"))


def test_fit_cache_entries_are_safe_state_and_forged_ones_are_never_read(fit_cache, trained, tmp_path):
    """Entries are the bundles' data format, not pickles; an entry changed by someone else, or a
    pickle where an entry should be (an older prodcat's, or a planted one), is a miss."""
    from prodcat.model.fitcache import OUTPUT_ARRAYS, OUTPUT_TREE
    from prodcat.text import TextClassifier

    _, catalog = trained
    memory = fit_cache / "fits"

    def fit():
        return Classifier(text=TextClassifier(), memory=str(memory)).fit(catalog.X, catalog.y)

    first = fit()
    assert not list(memory.rglob("*.pkl"))
    entries = sorted(p.parent for p in memory.rglob(OUTPUT_TREE))
    assert entries
    canary = tmp_path / "ran"
    for i, entry in enumerate(entries):
        if i % 2:  # changed arrays: the signature no longer matches
            (entry / OUTPUT_ARRAYS).write_bytes((entry / OUTPUT_ARRAYS).read_bytes() + b"\0")
        else:  # a planted pickle instead of the entry
            for name in (OUTPUT_TREE, OUTPUT_ARRAYS):
                (entry / name).unlink()
            joblib.dump(Canary(canary), entry / "output.pkl")
    with pytest.warns(UserWarning, match="not signed with your key|is a pickle"):
        second = fit()
    assert not canary.exists()
    np.testing.assert_array_equal(second.predict_proba(catalog.X), first.predict_proba(catalog.X))
    # Refitted entries are written again: a third run loads them, without a warning.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = fit()
    np.testing.assert_array_equal(third.predict_proba(catalog.X), first.predict_proba(catalog.X))


def test_a_fit_cache_key_others_can_read_turns_the_cache_off(fit_cache, trained):
    from prodcat.model.fitcache import fit_cache_key_path, fit_memory

    fit_memory(str(fit_cache / "fits"))
    fit_cache_key_path().chmod(0o644)
    with pytest.warns(UserWarning, match="fit cache off.*others may read"):
        memory = fit_memory(str(fit_cache / "fits"))
    assert memory.location is None
