"""prodcat explore: summary values on a hand-made catalogue, robustness, the HTML, the CLI."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from prodcat.cli import main
from prodcat.data import read_catalog
from prodcat.explore import build_exploration, summary_dict, write_exploration_report
from prodcat.explore.images import content_keys, inspect_image, white_border_share
from prodcat.explore.stopwords import STOP_WORDS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _bordered(size: int = 200, inner: int = 100, colour=(200, 30, 30)) -> Image.Image:
    """A white square with a centred coloured square: white-border share 1 - (inner/size)²."""
    arr = np.full((size, size, 3), 255, np.uint8)
    a = (size - inner) // 2
    arr[a:a + inner, a:a + inner] = colour
    return Image.fromarray(arr)


@pytest.fixture()
def catalogue(tmp_path: Path) -> Path:
    """A small catalogue with every trouble the explorer must see (see the comments per row)."""
    root = tmp_path / "shop"
    root.mkdir()
    _bordered().save(root / "border.jpg", quality=95)
    shutil.copy(root / "border.jpg", root / "border_copy.jpg")  # same bytes, other name
    _bordered(colour=(30, 30, 200)).convert("CMYK").save(root / "cmyk.jpg", quality=95)
    rgba = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    rgba.paste((0, 160, 0, 255), (30, 20, 90, 60))
    rgba.save(root / "toy.png")
    (root / "broken.jpg").write_text("this is not an image")
    good = (root / "border.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(good[: len(good) // 3])
    rows = [
        # id, title, description, image, label
        ("1", "Poupée en tissu pour enfant",
         "Une jolie poupée <b>douce</b> pour les enfants &amp; les bébés", "border.jpg", "A"),
        # same title and description once cleaned: a repost (same label)
        ("2", "POUPÉE en tissu  pour enfant", "Une jolie poupée douce pour les enfants & les bébés",
         "cmyk.jpg", "A"),
        ("3", "Wooden toy train for kids", "A wooden train set for children with tracks", "toy.png", "A"),
        # the same product filed under another category, with the same image file
        ("4", "Wooden toy train for kids", "A wooden train set for children with tracks", "toy.png", "B"),
        ("5", "Puzzle 1000 pièces paysage de montagne", "", "", "A"),
        ("6", "Jeu de société familial", "   ", "broken.jpg", "A"),
        ("7", "Peluche ours brun", "<p></p>", "gone.jpg", "A"),  # image named but absent
        ("8", "Roman policier français", "Un roman passionnant et sombre d'un auteur célèbre",
         "border_copy.jpg", "B"),
        ("9", "The great novel in English", "A thrilling story about the sea, the wind and the sailors",
         "", "B"),
        ("10", "Filtre pour piscine", "Filtre à sable pour piscine hors sol", "", "C"),
        ("11", "Bâche de piscine", "", "", "C"),
        ("12", "Échelle de piscine", "Échelle en acier inoxydable pour piscine", "truncated.jpg", "C"),
        ("13", "Article sans catégorie", "", "", ""),  # unlabelled
        ("14", "", "", "", "A"),  # no text at all: dropped by the reader
    ]
    frame = pd.DataFrame(rows, columns=["id", "title", "description", "image", "label"])
    frame.to_csv(root / "listings.csv", index=False)
    pd.DataFrame({"code": ["A", "B", "C"], "name": ["Jouets", "Livres", "Piscine"],
                  "parent": ["Loisirs", "Loisirs", "Maison"]}).to_csv(root / "categories.csv", index=False)
    return root / "listings.csv"


@pytest.fixture()
def exploration(catalogue: Path) -> dict:
    return build_exploration(read_catalog(catalogue), image_sample=50, seed=0, progress=False)


def test_size_classes_and_imbalance(exploration):
    e = exploration
    assert e["read_report"]["rows_without_text"] == 1
    assert e["size"] == {"listings": 13, "labelled": 12, "unlabelled": 1, "classes": 3,
                         "with_image": 7, "with_description": 8}
    assert [c["code"] for c in e["classes"]] == ["A", "B", "C"]
    assert e["classes"][0] == {"code": "A", "name": "Jouets", "parent": "Loisirs", "count": 6,
                               "share": 0.5}
    dist = e["class_distribution"]
    assert dist["counts"] == {"A": 6, "B": 3, "C": 3}
    assert dist["largest"]["code"] == "A" and dist["smallest"]["code"] == "C"  # ties: by code
    assert dist["imbalance_ratio"] == 2.0
    assert e["parents"]["rows"] == {"Loisirs": 9, "Maison": 3}
    assert e["parents"]["classes"] == {"Loisirs": ["A", "B"], "Maison": ["C"]}


def test_missing_descriptions_lengths_and_html(exploration):
    md = exploration["missing_descriptions"]
    # "", "   ", "<p></p>" (empty once HTML is removed), "" (C) and the unlabelled row
    assert md["count"] == 5
    assert md["share"] == pytest.approx(5 / 13)
    assert md["per_class"] == {"A": {"count": 3, "share": 0.5}, "B": {"count": 0, "share": 0.0},
                               "C": {"count": 1, "share": pytest.approx(1 / 3)}}
    tl = exploration["text_lengths"]
    assert tl["per_class"]["C"]["title"]["max"] == len("filtre pour piscine")
    assert tl["description"]["n"] == 8  # 13 listings, 5 without a description
    assert exploration["html"]["listings_with_html"] == 2  # <b>…&amp; and <p></p>; a bare & is not


def test_duplicates_and_label_conflicts(exploration):
    d = exploration["duplicates"]
    for kind in ("titles", "descriptions", "listings"):
        assert (d[kind]["rows"], d[kind]["groups"], d[kind]["extra_copies"]) == (4, 2, 2), kind
    # toy.png named twice, border.jpg and border_copy.jpg have the same bytes
    assert (d["images"]["rows"], d["images"]["groups"]) == (4, 2)
    assert d["titles"]["examples"][0]["ids"] == ["1", "2"]
    assert d["titles"]["examples"][0]["labels"] == {"A": 2}
    c = exploration["label_conflicts"]
    assert (c["by_listing"]["groups"], c["by_listing"]["rows"]) == (1, 2)
    assert c["by_listing"]["examples"][0]["labels"] == {"A": 1, "B": 1}
    assert c["by_listing"]["examples"][0]["ids"] == ["3", "4"]
    assert (c["by_title"]["groups"], c["by_title"]["rows"]) == (1, 2)
    assert (c["by_image"]["groups"], c["by_image"]["rows"]) == (2, 4)


def test_images_are_counted_never_fatal(exploration):
    im = exploration["images"]
    assert im["available"] is True
    assert im["listings_with_image"] == 7 and im["missing_files"] == 1
    assert (im["sampled"], im["decoded"], im["corrupt"], im["too_large"]) == (7, 5, 2, 0)
    assert im["cmyk"] == 1 and im["with_alpha"] == 2
    assert im["modes"] == {"RGB": 2, "RGBA": 2, "CMYK": 1}
    assert {e["file"] for e in im["errors"]} == {"broken.jpg", "truncated.jpg"}
    # border_copy.jpg: a 100 px square in 200 px of white; toy.png: a 60×40 rectangle in 120×80
    # of transparency, laid on white. Both 0.75, measured at reduced scale.
    b = im["per_class"]["B"]
    assert b["decoded"] == 2 and b["white_border_mean"] == pytest.approx(0.75, abs=0.03)
    red, green, blue = b["mean_rgb"]
    # inside the borders: the red square (200, 30, 30) and the green toy (0, 160, 0)
    assert red == pytest.approx(100, abs=10) and green == pytest.approx(95, abs=10) and blue < 30
    assert exploration["_raw"]["thumbnails"]["A"]


def test_words_similarity_and_languages(exploration):
    w = exploration["words"]
    assert w["available"] and w["vocabulary_size"] > 20
    for words in w["per_class"].values():
        assert not {word for word, _ in words} & STOP_WORDS
    top_a = dict(w["per_class"]["A"])
    assert top_a["poupée"] == 2 and top_a["tissu"] == 2 and "pour" not in top_a
    sim = exploration["similarity"]
    assert sim["available"] and len(sim["closest_pairs"]) == 3
    assert sim["closest_pairs"][0]["a"] in "ABC"
    pytest.importorskip("py3langid")
    lang = exploration["languages"]
    assert lang["available"] and lang["main"] == "fr"
    assert lang["overall"]["fr"] >= 7 and lang["overall"]["en"] >= 2
    assert lang["per_class"]["B"].get("en", 0) >= 1


def test_summary_is_deterministic(catalogue):
    def run() -> dict:
        e = summary_dict(build_exploration(read_catalog(catalogue), image_sample=3, seed=7,
                                           progress=False))
        e.pop("timings_s")
        return json.loads(json.dumps(e))

    assert run() == run()


def test_report_is_self_contained(exploration, tmp_path):
    paths = write_exploration_report(exploration, tmp_path / "out")
    summary = json.loads(paths["summary_json"].read_text(encoding="utf-8"))
    assert "_raw" not in summary and summary["class_distribution"]["imbalance_ratio"] == 2.0
    page = paths["report_html"].read_text(encoding="utf-8")
    links = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I)
    assert links and all(link.startswith("data:") for link in links)
    assert "<script" not in page.lower() and "url(" not in page
    assert "could not be drawn" not in page
    for name in ("class_distribution", "dendrogram", "image_sizes", "text_lengths", "zipf"):
        assert f"figure_{name}" in paths and paths[f"figure_{name}"].stat().st_size > 1000
    assert "Poupée en tissu" in page or "poupée en tissu" in page  # examples are shown


def test_without_optional_dependencies(catalogue, tmp_path, monkeypatch):
    # None in sys.modules makes "import x" raise ImportError, as when x is not installed.
    monkeypatch.setitem(sys.modules, "py3langid", None)
    monkeypatch.setitem(sys.modules, "wordcloud", None)
    e = build_exploration(read_catalog(catalogue), progress=False)
    assert e["languages"] == {"available": False, "reason": e["languages"]["reason"]}
    assert "prodcat[explore]" in e["languages"]["reason"]
    assert set(e["skipped"]) == {"languages", "word_clouds"}
    paths = write_exploration_report(e, tmp_path / "out")
    assert "figure_word_clouds" not in paths and "figure_languages" not in paths
    page = paths["report_html"].read_text(encoding="utf-8")
    assert "language detection needs py3langid" in page


def test_unlabelled_and_imageless_catalogue(tmp_path):
    path = tmp_path / "plain.csv"
    pd.DataFrame({"title": ["lampe de chevet", "lampe de chevet", "table basse", "12345"],
                  "description": ["", "", "", ""]}).to_csv(path, index=False)
    e = build_exploration(read_catalog(path), progress=False)
    assert e["size"]["classes"] == 0 and e["class_distribution"]["imbalance_ratio"] is None
    assert e["duplicates"]["titles"]["rows"] == 2
    assert e["label_conflicts"]["by_listing"]["groups"] == 0
    assert e["images"]["available"] is False and e["similarity"]["available"] is False
    assert e["missing_descriptions"]["share"] == 1.0
    paths = write_exploration_report(e, tmp_path / "out")
    assert "could not be drawn" not in paths["report_html"].read_text(encoding="utf-8")


def test_inspect_image_statuses(tmp_path):
    _bordered(300, 150).save(tmp_path / "b.png")
    Image.new("L", (700, 700), 0).save(tmp_path / "big.png")
    Image.new("I;16", (40, 30), 300).save(tmp_path / "deep.png")
    Image.new("P", (40, 30)).save(tmp_path / "pal.gif")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert inspect_image(tmp_path / "b.png").white_border == pytest.approx(0.75, abs=0.03)
    assert inspect_image(tmp_path / "big.png", max_pixels=100_000).status == "too_large"
    assert inspect_image(tmp_path / "big.png").white_border == 0.0
    assert inspect_image(tmp_path / "deep.png").status == "ok"
    assert inspect_image(tmp_path / "pal.gif").status == "ok"
    assert inspect_image(tmp_path / "empty.jpg").status == "corrupt"
    assert inspect_image(tmp_path / "nope.jpg").status == "missing"


def test_white_border_share_exact():
    arr = np.asarray(_bordered(100, 50))
    assert white_border_share(arr) == pytest.approx(0.75)
    assert white_border_share(np.full((10, 10, 3), 255, np.uint8)) == 1.0
    assert white_border_share(np.zeros((10, 10, 3), np.uint8)) == 0.0
    side = np.full((10, 20, 3), 255, np.uint8)
    side[:, 5:] = 0  # a white band on the left only
    assert white_border_share(side) == pytest.approx(0.25)


def test_content_keys(tmp_path):
    (tmp_path / "a").write_bytes(b"same")
    (tmp_path / "b").write_bytes(b"same")
    (tmp_path / "c").write_bytes(b"diff")  # same size, other bytes
    (tmp_path / "d").write_bytes(b"longer")
    paths = [str(tmp_path / n) for n in ("a", "b", "c", "d", "d")] + [None, str(tmp_path / "x")]
    keys = content_keys(paths)
    assert keys[0] == keys[1] != keys[2]
    assert keys[3] == keys[4] and keys[3] != keys[0]
    assert keys[5] is None and keys[6] is None


def test_cli_explore(catalogue, tmp_path):
    out = tmp_path / "report"
    assert main(["explore", "--data", str(catalogue), "--out", str(out), "--image-sample", "4",
                 "--seed", "3"]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["parameters"]["image_sample"] == 4 and summary["images"]["sampled"] == 4
    assert (out / "report.html").is_file()


def test_cli_explore_bad_input(tmp_path):
    assert main(["explore", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["explore", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "file")]) == 2


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.parametrize("name", ["rakuten", "flipkart", "rakuten_unlabelled"])
def test_real_data(name, tmp_path):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    catalog = read_catalog(path)
    t0 = time.perf_counter()
    e = build_exploration(catalog, progress=False)
    paths = write_exploration_report(e, tmp_path / name)
    seconds = time.perf_counter() - t0
    assert seconds < 60, seconds
    page = paths["report_html"].read_text(encoding="utf-8")
    assert "could not be drawn" not in page
    im = e["images"]
    assert im["decoded"] + im["corrupt"] + im["too_large"] + im["vanished"] == im["sampled"]
    assert im["missing_files"] == catalog.report.images_missing
    if name == "rakuten":
        assert e["size"]["listings"] == 2457 and e["size"]["classes"] == 27
        assert im["decoded"] == 338
        assert 0.25 < e["missing_descriptions"]["share"] < 0.45  # "about a third"
        assert e["html"]["share"] > 0.1
        assert e["class_distribution"]["imbalance_ratio"] > 5
    elif name == "flipkart":
        assert e["size"]["listings"] == 700 and e["size"]["classes"] == 7
        assert im["missing_files"] == 3 and im["decoded"] + im["corrupt"] == 697
    else:
        assert e["size"]["classes"] == 0 and e["size"]["listings"] == 1999
        assert im["sampled"] == 1999 and e["missing_descriptions"]["share"] == 1.0
    if e["languages"]["available"]:
        assert e["languages"]["distinct"] >= 2
