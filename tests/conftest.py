"""Shared fixtures: small synthetic data sets written into tmp_path, and one trained bundle.

Everything here is invented for the tests (no rows of the real data sets are used). Each class
has its own vocabulary so that a model learns the categories from a few listings.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageDraw

# code -> (name, parent, words typical of the class, colour of its photos)
RAKUTEN_CLASSES = {
    "1160": ("Cartes à collectionner", "Jeux et jouets",
             ["carte", "pokémon", "holo", "rare", "booster", "dresseur", "magic", "deck",
              "édition", "foil"], (200, 40, 40)),
    "1300": ("Modélisme", "Jeux et jouets",
             ["drone", "hélicoptère", "radiocommandé", "maquette", "hélice", "quadricoptère",
              "servo", "brushless", "voiture", "rc"], (40, 160, 40)),
    "2522": ("Papeterie", "Fournitures de bureau",
             ["cahier", "stylo", "carnet", "agenda", "feutre", "classeur", "trousse", "papier",
              "surligneur", "bloc-notes"], (40, 40, 200)),
    "2583": ("Piscine et spa", "Maison et jardin",
             ["piscine", "pompe", "filtre", "bâche", "spa", "chlore", "skimmer", "hors-sol",
              "liner", "épuisette"], (20, 180, 200)),
}
#: A class a trained model never sees (for "unseen label" evaluations).
UNSEEN_CLASS = ("9999", "Animalerie", "Maison et jardin",
                ["croquettes", "chaton", "litière", "aquarium", "laisse", "gamelle", "perchoir",
                 "griffoir"], (120, 90, 30))
FILLER = ["lot de", "neuf", "qualité", "pour enfant", "grand modèle", "livraison rapide",
          "promo", "idéal cadeau"]


def draw_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (24, 24),
               fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(img).rectangle([4, 4, size[0] - 5, size[1] - 5], fill=colour)
    img.save(path, format=fmt)


def _title(rng: random.Random, words: list[str]) -> str:
    picked = rng.sample(words, 3)
    return f"{picked[0].capitalize()} {picked[1]} {picked[2]} - {rng.choice(FILLER)}"


def _description(rng: random.Random, words: list[str], i: int) -> str:
    kind = i % 3
    if kind == 0:
        return ""
    picked = rng.sample(words, 4)
    if kind == 1:
        return (f"<p>Tr&egrave;s bel article&nbsp;: <b>{picked[0]}</b> et {picked[1]}.</p>"
                f"<br />Id&eacute;al avec {picked[2]} &amp; {picked[3]}.")
    return f"Vendu avec {picked[0]}, {picked[1]} et {picked[2]}. État neuf, {picked[3]}."


def write_rakuten(root: Path, *, per_class: int = 15, unseen_rows: int = 0, encoding: str = "utf-8",
                  with_categories: bool = True, seed: int = 0) -> Path:
    """A folder laid out like the Rakuten challenge download.

    ``per_class`` listings for each of :data:`RAKUTEN_CLASSES`, plus ``unseen_rows`` of
    :data:`UNSEEN_CLASS`, plus one listing with neither title nor description. Photos exist for
    rows whose index ends in 0–6 (about 70 %).
    """
    rng = random.Random(seed)
    classes = {code: (words, colour) for code, (_, _, words, colour) in RAKUTEN_CLASSES.items()}
    plan = [code for _ in range(per_class) for code in classes]
    if unseen_rows:
        classes[UNSEEN_CLASS[0]] = (UNSEEN_CLASS[3], UNSEEN_CLASS[4])
        plan += [UNSEEN_CLASS[0]] * unseen_rows
    empty_at = min(7, len(plan))
    plan.insert(empty_at, "2522")  # the listing without any text

    rows, labels = [], []
    image_dir = root / "images" / "image_train"
    image_dir.mkdir(parents=True, exist_ok=True)
    for i, code in enumerate(plan):
        words, colour = classes[code]
        productid, imageid = 100_000 + 37 * i, 900_000 + 53 * i
        if i == empty_at:
            title, desc = "", ""
        else:
            title, desc = _title(rng, words), _description(rng, words, i)
        rows.append({"designation": title, "description": desc, "productid": productid,
                     "imageid": imageid})
        labels.append(int(code))
        if i % 10 < 7:
            draw_image(image_dir / f"image_{imageid}_product_{productid}.jpg", colour)
    pd.DataFrame(rows).to_csv(root / "X_train_update.csv", encoding=encoding)
    pd.DataFrame({"prdtypecode": labels}).to_csv(root / "Y_train_CVw08PX.csv", encoding=encoding)
    if with_categories:
        cats = [{"prdtypecode": int(code), "name": name, "parent": parent}
                for code, (name, parent, _, _) in RAKUTEN_CLASSES.items()]
        pd.DataFrame(cats).to_csv(root / "categories.csv", index=False, encoding=encoding)
    return root


# top-level category -> {second level -> words}
FLIPKART_TREE = {
    "Watches": {"Wrist Watches": ["analog", "chronograph", "strap", "dial", "quartz"],
                "Clocks": ["wall clock", "alarm", "pendulum", "table clock", "digital"]},
    "Footwear": {"Men's Footwear": ["sneakers", "loafers", "sports shoes", "leather", "sole"],
                 "Women's Footwear": ["heels", "sandals", "ballerinas", "wedges", "flats"]},
    "Kitchen & Dining": {"Cookware": ["pressure cooker", "kadai", "non-stick", "tawa", "pan"],
                         "Tableware": ["dinner set", "mug", "plate", "bowl", "cutlery"]},
}
#: Flipkart rows whose photo is not in Images/ (and the row without an image name).
FLIPKART_MISSING_IMAGES = (3, 11)
FLIPKART_NO_IMAGE_NAME = 20


def write_flipkart(root: Path, *, per_leaf: int = 4, seed: int = 1) -> Path:
    """A Flipkart-like CSV with an Images/ folder; returns the CSV path.

    ``per_leaf`` rows for each second-level category, plus one row whose path has only a top
    level (``Pens & Stationery``).
    """
    rng = random.Random(seed)
    rows = []
    i = 0
    for top, leaves in FLIPKART_TREE.items():
        for leaf, words in leaves.items():
            for _ in range(per_leaf):
                brand = rng.choice(["Acme", "Zenith", "Orbit", "Nova"])
                picked = rng.sample(words, 2)
                name = f"{brand} {picked[0].title()} {picked[1]}"
                rows.append({"top": top, "leaf": leaf, "name": name,
                             "desc": f"Key features of {name}: {', '.join(words)}. Buy online."})
                i += 1
    rows.append({"top": "Pens & Stationery", "leaf": None, "name": "Nova Gel Pen Pack",
                 "desc": "Smooth writing gel pens."})

    records = []
    image_dir = root / "Images"
    image_dir.mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(rows):
        uid = hashlib.md5(f"listing-{i}".encode()).hexdigest()
        path = f"{r['top']} >> {r['leaf']} >> {r['name']}" if r["leaf"] else r["top"]
        image = "" if i == FLIPKART_NO_IMAGE_NAME else f"{uid}.jpg"
        records.append({"uniq_id": uid, "product_name": r["name"],
                        "product_category_tree": json.dumps([path]),
                        "retail_price": 100 + i, "image": image, "description": r["desc"],
                        "brand": r["name"].split()[0]})
        if image and i not in FLIPKART_MISSING_IMAGES:
            draw_image(image_dir / image, (10 * i % 255, 80, 120))
    csv = root / "flipkart_train.csv"
    pd.DataFrame(records).to_csv(csv, index=False)
    return csv


TABLE_CLASSES = {
    "bikes": ["vélo", "selle", "guidon", "dérailleur", "pédale", "chaîne"],
    "tea": ["thé vert", "infusion", "théière", "sencha", "matcha", "rooibos"],
    "lamps": ["lampe", "abat-jour", "ampoule", "applique", "lampadaire", "led"],
}
#: Table rows whose picture file is absent, and the one with no picture name.
TABLE_MISSING_PIC = 4
TABLE_NO_PIC = 9


def table_frame(per_class: int = 6, seed: int = 2) -> pd.DataFrame:
    """Listings with custom column names: name, body, cat, sku, pic."""
    rng = random.Random(seed)
    rows = []
    for i in range(per_class * len(TABLE_CLASSES)):
        cat = list(TABLE_CLASSES)[i % len(TABLE_CLASSES)]
        words = TABLE_CLASSES[cat]
        picked = rng.sample(words, 3)
        rows.append({"sku": f"SKU-{i:03d}", "name": f"{picked[0].capitalize()} {picked[1]}",
                     "body": f"Très joli {picked[2]}." if i % 2 else "",
                     "cat": cat, "pic": "" if i == TABLE_NO_PIC else f"pics/{i:03d}.png"})
    return pd.DataFrame(rows)


def write_table(root: Path, *, encoding: str = "utf-8") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    frame = table_frame()
    for i, pic in enumerate(frame["pic"]):
        if pic and i != TABLE_MISSING_PIC:
            draw_image(root / pic, (90, 90, 90), fmt="PNG")
    path = root / "listings.csv"
    frame.to_csv(path, index=False, encoding=encoding)
    return path


@pytest.fixture(scope="session")
def tracking_store_dir(tmp_path_factory) -> Path:
    """The MLflow store that tests' train and evaluate runs are recorded in by default."""
    return tmp_path_factory.mktemp("mlruns")


@pytest.fixture(autouse=True)
def _tracking_store_in_tmp(monkeypatch, tracking_store_dir):
    """Experiment tracking (prodcat.tracking) writes into a temporary store, never into the
    repository, the working folder or a developer's own MLflow server."""
    monkeypatch.setenv("PRODCAT_TRACKING_DIR", str(tracking_store_dir))
    for name in ("MLFLOW_TRACKING_URI", "PRODCAT_EXPERIMENT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def rakuten_dir(tmp_path) -> Path:
    return write_rakuten(tmp_path / "rakuten")


@pytest.fixture
def flipkart_csv(tmp_path) -> Path:
    return write_flipkart(tmp_path / "flipkart")


@pytest.fixture
def table_csv(tmp_path) -> Path:
    return write_table(tmp_path / "table")


@pytest.fixture
def make_rakuten(tmp_path):
    """Factory: ``make_rakuten("name", unseen_rows=5, encoding="cp1252")``."""

    def make(name: str = "rakuten_custom", **kwargs) -> Path:
        return write_rakuten(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def rakuten_session_dir(tmp_path_factory) -> Path:
    return write_rakuten(tmp_path_factory.mktemp("rakuten_session"))


@pytest.fixture(scope="session")
def trained(rakuten_session_dir):
    """``(classifier, catalog)``: the default Classifier fitted on the Rakuten fixture."""
    from prodcat.data import read_catalog
    from prodcat.model import Classifier

    catalog = read_catalog(rakuten_session_dir).labelled()
    model = Classifier().fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
    return model, catalog


@pytest.fixture(scope="session")
def trained_bundle(trained, tmp_path_factory) -> Path:
    """A bundle folder of :func:`trained` (treat as read-only: copy it before changing it)."""
    model, catalog = trained
    training = {"source": catalog.source, "format": catalog.format,
                "fingerprint": catalog.fingerprint(), "n_listings": len(catalog)}
    return model.save(tmp_path_factory.mktemp("bundles") / "model", training=training)


#: The real data sets (third-party: read in place, never copied into the repository).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_catalog(name: str):
    """A real data set from ``../shared/data``, or a polite skip when it is absent."""
    from prodcat.data import read_catalog

    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    return read_catalog(path)
