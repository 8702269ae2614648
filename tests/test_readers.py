"""Readers: Rakuten folder, Flipkart CSV, any table; auto detection and user errors."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import (
    FLIPKART_TREE,
    RAKUTEN_CLASSES,
    TABLE_CLASSES,
    table_frame,
)
from prodcat.data import COLUMNS, detect_format, list_formats, read_catalog
from prodcat.errors import ConfigError, DataError

TABLE_COLUMNS = {"title_col": "name", "description_col": "body", "label_col": "cat",
                 "id_col": "sku", "image_col": "pic"}


def assert_schema(catalog):
    assert tuple(catalog.frame.columns) == COLUMNS
    labels = catalog.frame["label"].dropna()
    assert all(isinstance(v, str) for v in labels)
    assert all(isinstance(v, str) for v in catalog.frame["id"])
    assert all(isinstance(v, str) for v in catalog.frame["title"])
    assert all(isinstance(v, str) for v in catalog.frame["description"])
    for image in catalog.frame["image"]:
        assert image is None or isinstance(image, str)


# ---------------------------------------------------------------------------------------------
# Rakuten


def test_rakuten_counts_schema_and_labels(rakuten_dir):
    catalog = read_catalog(rakuten_dir, format="rakuten")
    assert_schema(catalog)
    assert catalog.format == "rakuten"
    rep = catalog.report
    assert rep.rows_read == 61
    assert rep.rows_kept == len(catalog) == 60
    assert rep.rows_without_text == 1
    assert rep.rows_without_label == 0
    assert catalog.class_counts() == {code: 15 for code in RAKUTEN_CLASSES}
    # The first column of X and Y is the row index: ids come from it, labels join on it.
    assert "7" not in set(catalog.frame["id"])  # the row without text
    assert catalog.frame["id"].iloc[0] == "0"
    assert catalog.frame["label"].iloc[0] == "1160"


def test_rakuten_taxonomy_names_and_parents(rakuten_dir):
    tax = read_catalog(rakuten_dir).taxonomy
    for code, (name, parent, _, _) in RAKUTEN_CLASSES.items():
        assert tax.name(code) == name
        assert tax.parent(code) == parent
    assert tax.name(2522) == "Papeterie"  # codes are looked up as strings


def test_rakuten_without_categories_names_codes(make_rakuten):
    tax = read_catalog(make_rakuten(with_categories=False)).taxonomy
    assert set(tax.categories) == set(RAKUTEN_CLASSES)
    assert tax.name("1300") == "1300"
    assert tax.parent("1300") is None


def test_rakuten_missing_images_are_counted_not_fatal(rakuten_dir):
    catalog = read_catalog(rakuten_dir)
    on_disk = {p.name for p in (rakuten_dir / "images" / "image_train").iterdir()}
    rep = catalog.report
    assert rep.images_expected == 61
    assert rep.images_missing == 61 - len(on_disk)
    assert any("missing" in note for note in rep.notes)
    images = catalog.frame["image"]
    found = [p for p in images if p is not None]
    # one image belongs to the skipped row without text
    assert len(found) in (len(on_disk), len(on_disk) - 1)
    assert all(p.endswith(".jpg") and p.split("/")[-1] in on_disk for p in found)
    assert images.isna().sum() == len(catalog) - len(found)


def test_rakuten_text_is_kept_raw(rakuten_dir):
    frame = read_catalog(rakuten_dir).frame
    # Readers keep the text as sellers wrote it; cleaning is the model's job.
    assert frame["description"].str.contains("<p>").any()
    assert (frame["description"] == "").any()


def test_rakuten_missing_column_names_it(rakuten_dir):
    x = pd.read_csv(rakuten_dir / "X_train_update.csv", index_col=0)
    x.drop(columns=["designation"]).to_csv(rakuten_dir / "X_train_update.csv")
    with pytest.raises(DataError, match="designation"):
        read_catalog(rakuten_dir)


def test_rakuten_rejects_options_of_other_formats(rakuten_dir):
    with pytest.raises(ConfigError, match="does not take"):
        read_catalog(rakuten_dir, format="rakuten", level=1)


def test_rakuten_unknown_split(rakuten_dir):
    with pytest.raises(DataError, match="X_test_update.csv"):
        read_catalog(rakuten_dir, split="test")


# ---------------------------------------------------------------------------------------------
# Flipkart


def test_flipkart_level0(flipkart_csv):
    catalog = read_catalog(flipkart_csv, format="flipkart")
    assert_schema(catalog)
    assert len(catalog) == catalog.report.rows_read == 25
    counts = catalog.class_counts()
    assert counts == {"Footwear": 8, "Kitchen & Dining": 8, "Pens & Stationery": 1, "Watches": 8}
    tax = catalog.taxonomy
    assert tax.name("Watches") == "Watches"
    assert tax.parent("Watches") is None
    # ids are the uniq_id column
    assert all(len(i) == 32 for i in catalog.frame["id"])


def test_flipkart_level1(flipkart_csv):
    catalog = read_catalog(flipkart_csv, format="flipkart", level=1)
    expected = {f"{top} >> {leaf}" for top, leaves in FLIPKART_TREE.items() for leaf in leaves}
    assert set(catalog.class_counts()) == expected
    # the listing whose path has only a top level is kept but has no label at this depth
    assert catalog.report.rows_without_label == 1
    assert catalog.frame["label"].isna().sum() == 1
    assert len(catalog.labelled()) == 24
    tax = catalog.taxonomy
    assert tax.name("Watches >> Wrist Watches") == "Wrist Watches"
    assert tax.parent("Watches >> Wrist Watches") == "Watches"
    assert tax.parent("Footwear >> Women's Footwear") == "Footwear"


def test_flipkart_negative_level_is_config_error(flipkart_csv):
    with pytest.raises(ConfigError):
        read_catalog(flipkart_csv, format="flipkart", level=-1)


def test_flipkart_missing_images_counted(flipkart_csv):
    rep = read_catalog(flipkart_csv).report
    # one row has no image name at all: not expected, not missing
    assert rep.images_expected == 24
    assert rep.images_missing == 2


def test_flipkart_folder_path(flipkart_csv):
    catalog = read_catalog(flipkart_csv.parent)
    assert catalog.format == "flipkart"
    assert len(catalog) == 25


def test_flipkart_missing_column_names_it(flipkart_csv):
    raw = pd.read_csv(flipkart_csv, dtype=str)
    raw.drop(columns=["product_name"]).to_csv(flipkart_csv, index=False)
    with pytest.raises(DataError, match="product_name"):
        read_catalog(flipkart_csv, format="flipkart")


# ---------------------------------------------------------------------------------------------
# Table


def test_table_custom_columns(table_csv):
    catalog = read_catalog(table_csv, format="table", **TABLE_COLUMNS)
    assert_schema(catalog)
    assert len(catalog) == 18
    assert catalog.class_counts() == {c: 6 for c in TABLE_CLASSES}
    assert catalog.frame["id"].iloc[0] == "SKU-000"
    assert catalog.frame["title"].iloc[0] == table_frame()["name"].iloc[0]
    rep = catalog.report
    assert rep.images_expected == 17
    assert rep.images_missing == 1
    found = catalog.frame["image"].dropna()
    assert len(found) == 16
    assert all(p.startswith(str(table_csv.parent)) for p in found)


def test_table_parquet_with_numeric_labels(tmp_path):
    frame = table_frame()
    frame["cat"] = frame["cat"].map({"bikes": 10, "tea": 20, "lamps": 30})
    path = tmp_path / "listings.parquet"
    frame.to_parquet(path, index=False)
    catalog = read_catalog(path, **TABLE_COLUMNS)
    assert catalog.format == "table"
    assert_schema(catalog)
    assert catalog.class_counts() == {"10": 6, "20": 6, "30": 6}
    # pictures were not written: every one is missing, none is fatal
    assert catalog.report.images_missing == catalog.report.images_expected == 17


def test_table_default_columns_and_optional_ones(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"title": ["un vélo", "une lampe"]}).to_csv(path, index=False)
    catalog = read_catalog(path)
    assert len(catalog) == 2
    assert catalog.frame["label"].isna().all()
    assert not catalog.is_labelled
    assert list(catalog.frame["id"]) == ["0", "1"]


def test_table_missing_column_names_it(table_csv):
    with pytest.raises(DataError, match="'nope'"):
        read_catalog(table_csv, title_col="nope")
    with pytest.raises(DataError, match="'title'"):
        read_catalog(table_csv)  # default title column does not exist
    # a column named explicitly must exist even when its role is optional
    with pytest.raises(DataError, match="'bodyx'"):
        read_catalog(table_csv, title_col="name", description_col="bodyx")


def test_table_categories_file(table_csv):
    pd.DataFrame({"code": ["tea", "bikes"], "name": ["Thé", "Vélos"],
                  "parent": ["Épicerie", ""]}).to_csv(table_csv.parent / "categories.csv", index=False)
    tax = read_catalog(table_csv, **TABLE_COLUMNS).taxonomy
    assert tax.name("tea") == "Thé"
    assert tax.parent("tea") == "Épicerie"
    assert tax.parent("bikes") is None
    assert tax.name("lamps") == "lamps"  # not in the file: named by its code


# ---------------------------------------------------------------------------------------------
# Detection and errors


def test_auto_detection(rakuten_dir, flipkart_csv, table_csv):
    assert detect_format(rakuten_dir) == "rakuten"
    assert detect_format(flipkart_csv) == "flipkart"
    assert detect_format(table_csv) == "table"
    assert read_catalog(rakuten_dir, format="auto").format == "rakuten"
    assert read_catalog(flipkart_csv).format == "flipkart"
    assert read_catalog(table_csv, **TABLE_COLUMNS).format == "table"
    assert list_formats()[0] == "auto"
    assert {"rakuten", "flipkart", "table"} <= set(list_formats())


def test_auto_detection_fails_clearly(tmp_path):
    (tmp_path / "notes.md").write_text("nothing here")
    with pytest.raises(DataError, match="--format"):
        read_catalog(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_catalog(tmp_path / "nope")
    with pytest.raises(DataError, match="not found"):
        read_catalog(tmp_path / "nope.csv", format="table")


def test_unknown_format(table_csv):
    with pytest.raises(ConfigError, match="unknown data format"):
        read_catalog(table_csv, format="excel")


def test_header_only_is_data_error(tmp_path, rakuten_dir):
    path = tmp_path / "empty.csv"
    path.write_text("title,description,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="no usable listings"):
        read_catalog(path)
    (rakuten_dir / "X_train_update.csv").write_text(",designation,description,productid,imageid\n")
    (rakuten_dir / "Y_train_CVw08PX.csv").write_text(",prdtypecode\n")
    with pytest.raises(DataError):
        read_catalog(rakuten_dir)


def test_zero_byte_file_is_data_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError):
        read_catalog(path, format="table")


def test_only_rows_without_text_is_data_error(tmp_path):
    path = tmp_path / "blank.csv"
    pd.DataFrame({"title": ["", "  "], "description": ["", ""], "label": ["a", "b"]}).to_csv(
        path, index=False)
    with pytest.raises(DataError, match="none has a title or a description"):
        read_catalog(path)


def test_cp1252_csv(tmp_path):
    path = tmp_path / "latin.csv"
    pd.DataFrame({"title": ["Théière en fonte", "Vélo électrique", "Lampe à poser"],
                  "label": ["tea", "bikes", "lamps"]}).to_csv(path, index=False, encoding="cp1252")
    with pytest.raises(DataError, match="--encoding") as info:
        read_catalog(path)
    assert "utf-8" in str(info.value)
    catalog = read_catalog(path, encoding="cp1252")
    assert list(catalog.frame["title"]) == ["Théière en fonte", "Vélo électrique", "Lampe à poser"]


def test_cp1252_rakuten(make_rakuten):
    folder = make_rakuten("latin", encoding="cp1252")
    with pytest.raises(DataError, match="--encoding"):
        read_catalog(folder)
    catalog = read_catalog(folder, encoding="cp1252")
    assert len(catalog) == 60
    assert catalog.taxonomy.name("2583") == "Piscine et spa"
    assert catalog.taxonomy.name("1300") == "Modélisme"


def test_unknown_encoding_is_data_error(table_csv):
    with pytest.raises(DataError, match="unknown text encoding"):
        read_catalog(table_csv, title_col="name", encoding="no-such-codec")
