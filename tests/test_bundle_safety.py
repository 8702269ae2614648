"""A bundle is data, never code: the safe state format, forged bundles and the manifest's checks
(signatures, pickled bundles of format 1 and the fit cache: ``test_bundle_trust.py``)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict
from pathlib import Path

import joblib
import numpy as np
import pytest
import scipy.sparse as sp

from prodcat.cli import main
from prodcat.errors import BundleError
from prodcat.model import Classifier, load_bundle, save_bundle
from prodcat.model.bundle import (
    ARRAYS_PART,
    CLASSIFIER_PART,
    MANIFEST,
    PICKLE_PART,
    BundleVersionWarning,
)
from prodcat.model.safe_state import UnsafeStateError, dump_state, load_state

POOL = {"title": "Piscine hors-sol avec pompe et filtre", "description": ""}


def round_trip(value):
    tree, arrays = dump_state(value)
    # Through real JSON and a real .npz, as a bundle stores them.
    tree = json.loads(json.dumps(tree))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return load_state(tree, arrays)[0]


# ---------------------------------------------------------------------------------------------
# the state format


def test_values_round_trip_with_their_types():
    shared = np.arange(5.0)
    value = {
        "tuple": (1, "a", None), "set": {1, 2}, "frozen": frozenset({"x"}), "bytes": b"\x00\xff",
        "complex": 1 + 2j, "nan": float("nan"), "big": 2 ** 80, "path": pathlib.PurePosixPath("/a/b"),
        "int_keys": {1: "one", (2, 3): "pair", np.int64(4): "np"}, "ordered": OrderedDict(b=1, a=2),
        "np_scalars": [np.float32(0.1), np.int64(-3), np.bool_(True), np.str_("é"), np.float16(2.5),
                       np.complex128(1j), np.longdouble(1) / 3],
        "dtypes": [np.dtype("float32"), np.dtype([("a", "<i4"), ("b", "<U3")])],
        "types": [np.float64, np.float32, int, str],
        "arrays": [shared, shared, np.array(["ab", "c"]), np.zeros((2, 0)), np.array([("x", 1)], dtype=object)],
        "sparse": [sp.csr_matrix(np.eye(3)), sp.csc_array(np.eye(2)), sp.coo_matrix(np.eye(2))],
        "random": [np.random.RandomState(3), np.random.default_rng(4)],
        "vocabulary": {f"w{i}": i for i in range(100)},
    }
    out = round_trip(value)
    assert out["tuple"] == (1, "a", None) and type(out["tuple"]) is tuple
    assert out["set"] == {1, 2} and type(out["frozen"]) is frozenset and out["bytes"] == b"\x00\xff"
    assert out["complex"] == 1 + 2j and np.isnan(out["nan"]) and out["big"] == 2 ** 80
    assert out["path"] == pathlib.PurePosixPath("/a/b")
    assert out["int_keys"] == {1: "one", (2, 3): "pair", 4: "np"}
    assert type(next(k for k in out["int_keys"] if k == 4)) is np.int64
    assert type(out["ordered"]) is OrderedDict and list(out["ordered"]) == ["b", "a"]
    for before, after in zip(value["np_scalars"], out["np_scalars"], strict=True):
        assert type(after) is type(before) and after == before
    assert out["dtypes"] == value["dtypes"] and out["types"] == value["types"]
    a, b, strings, empty, objects = out["arrays"]
    assert a is b and np.array_equal(a, shared) and strings.dtype == np.dtype("<U2")
    assert empty.shape == (2, 0) and objects.dtype == object and objects[0].tolist() == ["x", 1]
    for before, after in zip(value["sparse"], out["sparse"], strict=True):
        assert type(after) is type(before) and (after != before).nnz == 0
    assert out["random"][0].randint(1000) == np.random.RandomState(3).randint(1000)
    assert out["random"][1].integers(1000) == np.random.default_rng(4).integers(1000)
    assert out["vocabulary"] == value["vocabulary"]


def test_shared_and_cyclic_objects_keep_their_identity(trained):
    model, _ = trained
    loop = [1]
    loop.append(loop)
    out = round_trip({"model": model, "again": model, "loop": loop})
    assert out["model"] is out["again"] and out["loop"][1] is out["loop"]


@pytest.mark.parametrize("bad, where", [
    (lambda x: x, "model['f']"),
    (print, "model['f']"),
    (os, "model['f']"),
    (subprocess.Popen, "model['f']"),
])
def test_code_is_refused_at_save_time_with_its_path(bad, where):
    with pytest.raises(UnsafeStateError, match=re.escape(f"cannot save {where}")):
        dump_state({"f": bad})


def test_a_model_holding_a_function_or_a_file_is_refused_by_name(trained, tmp_path):
    model, _ = trained
    import copy

    broken = copy.deepcopy(model)
    broken.text_.hook_ = lambda: None
    with pytest.raises(UnsafeStateError, match=r"model\.text_\.hook_"):
        save_bundle(broken, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    with open(tmp_path / "f", "w") as fh:
        broken.text_.hook_ = fh
        with pytest.raises(UnsafeStateError, match=r"model\.text_\.hook_.*TextIOWrapper"):
            dump_state(broken)


# ---------------------------------------------------------------------------------------------
# round trips of fitted models


def test_bundle_round_trip_is_exact_and_holds_no_pickle(trained, trained_bundle):
    model, catalog = trained
    loaded, manifest = load_bundle(trained_bundle)
    np.testing.assert_array_equal(loaded.predict_proba(catalog.X), model.predict_proba(catalog.X))
    assert manifest["format_version"] == 2 and not (trained_bundle / PICKLE_PART).exists()
    with np.load(trained_bundle / ARRAYS_PART, allow_pickle=False) as npz:
        assert all(npz[k].dtype != object for k in npz.files)
    tree = json.loads(gzip.decompress((trained_bundle / CLASSIFIER_PART).read_bytes()))
    assert tree["root"]["cls"] == "prodcat.model.classifier.Classifier"


ZOO = {
    "svm-sigmoid": dict(head="linear-svm", calibration="sigmoid"),
    "svm-isotonic": dict(head="linear-svm", calibration="isotonic"),
    "logistic-temperature": dict(head="logistic", calibration="temperature"),
    "nb-none": dict(head="complement-nb", calibration="none"),
    "sgd-auto": dict(head="sgd", calibration="auto"),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_text_heads_and_calibrations_round_trip(trained, name, tmp_path):
    from prodcat.text import TextClassifier

    _, catalog = trained
    model = Classifier(text=TextClassifier(**ZOO[name])).fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
    loaded, _ = load_bundle(save_bundle(model, tmp_path / name))
    np.testing.assert_array_equal(loaded.predict_proba(catalog.X), model.predict_proba(catalog.X))


@pytest.fixture(scope="module")
def image_catalog(rakuten_session_dir):
    pytest.importorskip("onnxruntime")
    from prodcat.data import read_catalog
    from prodcat.image import ImageError, create_encoder

    try:
        create_encoder("efficientnet-lite0").ensure_export()
    except ImageError as exc:
        pytest.skip(f"image encoder unavailable: {exc}")
    return read_catalog(rakuten_session_dir).labelled()


@pytest.mark.slow
@pytest.mark.parametrize("head, fusion", [("logistic", "late"), ("mlp", "stack"), ("logistic", "early")])
def test_models_with_photos_round_trip(image_catalog, head, fusion, tmp_path, monkeypatch):
    from prodcat.image import ImageClassifier
    from prodcat.text import TextClassifier

    catalog = image_catalog
    model = Classifier(text=TextClassifier(), image=ImageClassifier(head=head), fusion=fusion,
                       min_images=10).fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
    assert model.image_ is not None
    path = save_bundle(model, tmp_path / "b")
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(tmp_path / "empty-cache"))  # the bundle's export runs
    loaded, manifest = load_bundle(path)
    assert manifest["modalities"] == ["text", "image"]
    assert Path(loaded.image_.encoder_.onnx_path).parent == (path / "encoders").resolve()
    for k, v in model.predict_modalities(catalog.X).items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(loaded.predict_modalities(catalog.X)[k], v)


# ---------------------------------------------------------------------------------------------
# loading unpickles nothing

AUDIT = textwrap.dedent("""
    import json, sys
    from prodcat.model import load_bundle

    seen, strict = [], [False]

    def hook(event, args):
        if event.startswith("pickle.") or (strict[0] and event in ("marshal.loads", "exec")):
            seen.append(f"{event} {str(args)[:80]}")

    sys.addaudithook(hook)
    model, _ = load_bundle(sys.argv[1])   # the first load may import modules: no pickle still
    strict[0] = True                      # a second load runs no code object at all
    model, _ = load_bundle(sys.argv[1])
    print(json.dumps(seen))
""")


def test_loading_a_bundle_unpickles_nothing(trained_bundle):
    out = subprocess.run([sys.executable, "-c", AUDIT, str(trained_bundle)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def make_pickled_bundle(model, path: Path) -> Path:
    """A bundle as prodcat wrote them before the safe format."""
    from prodcat.model.bundle import library_versions

    path.mkdir(parents=True)
    joblib.dump(model, path / PICKLE_PART, compress=3)
    data = (path / PICKLE_PART).read_bytes()
    manifest = {"format": "prodcat-bundle", "format_version": 1, "versions": library_versions(),
                "classes": [str(c) for c in model.classes_], "training": {"source": "data/rakuten"},
                "parts": {"classifier": {"file": PICKLE_PART, "sha256": hashlib.sha256(data).hexdigest(),
                                         "bytes": len(data)}}}
    (path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return path


def test_the_audit_hook_sees_a_pickle(trained, tmp_path):
    """The test above would notice: loading a pickled (format 1) bundle fires pickle.find_class."""
    legacy = make_pickled_bundle(trained[0], tmp_path / "old")
    script = AUDIT.replace("load_bundle(sys.argv[1])", "load_bundle(sys.argv[1], allow_pickle=True)")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", script, str(legacy)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert any(e.startswith("pickle.find_class") for e in json.loads(out.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------------------------------------
# forged bundles: hashes updated to match, still refused or inert


@pytest.fixture
def bundle_copy(trained_bundle, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(trained_bundle, dst)
    return dst


def rehash(path: Path) -> None:
    """What an attacker who can write the folder does after changing a part."""
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    for part in manifest["parts"].values():
        data = (path / part["file"]).read_bytes()
        part["sha256"], part["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")


def edit_json(file: Path, change, *, compressed: bool = False) -> None:
    data = file.read_bytes()
    value = json.loads(gzip.decompress(data) if compressed else data)
    change(value)
    data = json.dumps(value).encode()
    file.write_bytes(gzip.compress(data) if compressed else data)


def forge_tree(path: Path, change, arrays: bytes | None = None) -> None:
    if arrays is not None:
        (path / ARRAYS_PART).write_bytes(arrays)
    arrays_sha256 = hashlib.sha256((path / ARRAYS_PART).read_bytes()).hexdigest()
    edit_json(path / CLASSIFIER_PART, lambda tree: (tree.update(arrays_sha256=arrays_sha256), change(tree)),
              compressed=True)
    rehash(path)


def first_node(node, test):
    if isinstance(node, dict):
        if test(node):
            return node
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = first_node(child, test)
        if found is not None:
            return found
    return None


class Canary:
    """Unpickling it would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen", "sklearn.utils.Bunch",
                                  "prodcat.cli.__main__.Anything", "prodcat.serving.service.ModelService",
                                  "prodcat.model.bundle.shutil", "prodcat.text.model.np"])
def test_a_class_outside_the_allowlist_is_refused(bundle_copy, name):
    def swap(tree):
        first_node(tree, lambda n: n.get("~") == "obj" and "TextClassifier" in n["cls"])["cls"] = name

    forge_tree(bundle_copy, swap)
    with pytest.raises(BundleError, match="refusing|may not|not a class|does not have"):
        load_bundle(bundle_copy)
    assert "prodcat.cli.__main__" not in sys.modules


def test_a_type_outside_the_allowlist_is_refused(bundle_copy):
    def swap(tree):
        first_node(tree, lambda n: n.get("~") == "type")["v"] = "builtins.eval"

    forge_tree(bundle_copy, swap)
    with pytest.raises(BundleError, match="builtins.eval"):
        load_bundle(bundle_copy)


def test_a_pickled_array_is_refused_unread(bundle_copy, tmp_path):
    canary = tmp_path / "ran"
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO((bundle_copy / ARRAYS_PART).read_bytes())) as zf, \
            zipfile.ZipFile(buffer, "w") as out:
        for name in zf.namelist():
            out.writestr(name, zf.read(name))
        with out.open("evil.npy", "w") as fh:
            np.lib.format.write_array(fh, np.array([Canary(canary)], dtype=object), allow_pickle=True)
    forge_tree(bundle_copy, lambda tree: tree["root"]["state"]["v"].update(
        evil_={"~": "array", "k": "evil"}), arrays=buffer.getvalue())
    with pytest.raises(BundleError, match="not plain arrays"):
        load_bundle(bundle_copy)
    assert not canary.exists()


def test_tagged_nodes_inside_plain_data_stay_data(bundle_copy):
    node = {"~": "obj", "cls": "subprocess.Popen", "state": {"~": "dict", "v": {}}}
    forge_tree(bundle_copy, lambda tree: tree["root"]["state"]["v"].update(
        dropped_classes_={"~": "pdict", "v": {"x": node}}))
    model, _ = load_bundle(bundle_copy)
    assert model.dropped_classes_ == {"x": node}


def test_a_changed_part_with_its_old_hash_is_refused(bundle_copy):
    tree = bundle_copy / CLASSIFIER_PART
    tree.write_bytes(gzip.compress(gzip.decompress(tree.read_bytes()).replace(b"Piscine", b"Pascine")))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_copy)


def test_arrays_from_another_bundle_are_refused(bundle_copy, trained, tmp_path):
    from prodcat.text import TextClassifier

    _, catalog = trained
    other = save_bundle(Classifier(text=TextClassifier(C=0.1)).fit(catalog.X, catalog.y), tmp_path / "o")
    shutil.copyfile(other / ARRAYS_PART, bundle_copy / ARRAYS_PART)
    rehash(bundle_copy)
    with pytest.raises(BundleError, match="not the ones"):
        load_bundle(bundle_copy)


def test_an_encoder_pointed_at_another_module_is_refused(bundle_copy):
    def swap(tree):
        spec = first_node(tree, lambda n: n.get("cls", "").endswith("TextEncoderSpec"))
        if spec is None:
            pytest.skip("the default model has no sentence encoder")
        spec["state"]["v"]["module"] = "antigravity"

    forge_tree(bundle_copy, swap)
    with pytest.raises(BundleError, match="encoder differs"):
        load_bundle(bundle_copy)


def test_a_vectorizer_told_to_open_files_is_refused(bundle_copy):
    def swap(tree):
        first_node(tree, lambda n: n.get("cls", "").endswith("TfidfVectorizer"))["state"]["v"]["input"] = "filename"

    forge_tree(bundle_copy, swap)
    with pytest.raises(BundleError, match="vectorizer reads 'filename'"):
        load_bundle(bundle_copy)


def test_a_root_that_is_not_a_classifier_is_refused(bundle_copy):
    forge_tree(bundle_copy, lambda tree: tree.update(root={"~": "pdict", "v": {}}))
    with pytest.raises(BundleError, match="Classifier"):
        load_bundle(bundle_copy)


# ---------------------------------------------------------------------------------------------
# the manifest


def edit_manifest(path: Path, change) -> None:
    edit_json(path / MANIFEST, change)


@pytest.mark.parametrize("file", ["../outside.json.gz", "/etc/passwd", "a/../../x", "", "..\\x", "./x"])
def test_part_paths_stay_inside_the_bundle(bundle_copy, file):
    edit_manifest(bundle_copy, lambda m: m["parts"]["classifier"].update(file=file))
    with pytest.raises(BundleError, match="inside the bundle|outside the bundle"):
        load_bundle(bundle_copy)


def test_a_symlink_out_of_the_bundle_is_refused(bundle_copy, tmp_path):
    outside = tmp_path / "outside.gz"
    shutil.move(bundle_copy / CLASSIFIER_PART, outside)
    (bundle_copy / CLASSIFIER_PART).symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("change", [
    lambda m: m.update(parts=[]),
    lambda m: m.update(parts={"classifier": "classifier.json.gz"}),
    lambda m: m["parts"]["classifier"].update(sha256=12),
    lambda m: m["parts"]["classifier"].update(sha256="../" * 21 + "a"),
    lambda m: m["parts"]["classifier"].update(file=["x"]),
    lambda m: m.update(classes="1160"),
    lambda m: m.update(classes=[1160]),
    lambda m: m.update(versions=["1.0"]),
    lambda m: m.update(format_version="2"),
    lambda m: m.update(format_version=True),
    lambda m: m.update(training=[]),
    lambda m: m.update(threshold="high"),
    lambda m: m.pop("parts"),
    lambda m: m["parts"].pop("arrays"),
])
def test_a_malformed_manifest_is_a_clean_error(bundle_copy, change, capsys):
    edit_manifest(bundle_copy, change)
    with pytest.raises(BundleError):
        load_bundle(bundle_copy)
    assert main(["predict", "--model", str(bundle_copy), "--title", "piscine"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["info", "--model", str(bundle_copy)]) == 2


def test_another_bundle_format_is_refused(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m.update(format_version=3))
    with pytest.raises(BundleError, match="format version 3"):
        load_bundle(bundle_copy)


def test_another_prodcat_minor_version_is_one_warning(bundle_copy):
    edit_manifest(bundle_copy, lambda m: m["versions"].update(prodcat="0.99.0", scipy="0.1.0"))
    with pytest.warns(BundleVersionWarning) as caught:
        load_bundle(bundle_copy)
    assert len(caught) == 1 and "prodcat 0.99.0" in str(caught[0].message)
