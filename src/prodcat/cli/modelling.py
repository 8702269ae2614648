"""What the model options build (train, evaluate --cv), and the summaries of a cross-validation."""

from __future__ import annotations

from prodcat.cli.common import echo
from prodcat.cli.options import DEFAULT_IMAGE_ENCODER
from prodcat.errors import ConfigError


def build_classifier(*, head, C, class_weight, calibration, max_description_chars, threshold, seed,
                     target_precision=0.95, text_model="auto", image_encoder="none",
                     image_head="logistic", fusion="auto", unlabelled=None, catalog=None,
                     text_encoder="none", fit_cache=False, ocr="none", members="auto"):
    from prodcat.model import Classifier
    from prodcat.model.fitcache import default_fit_cache_dir

    text = _text_model(text_model, seed, members, head=head, C=C, class_weight=class_weight,
                       calibration=calibration, max_description_chars=max_description_chars,
                       text_encoder=text_encoder)
    if members != "auto" and catalog is not None:
        _note_large_dense(text.members, len(catalog))
    image = _image_model(image_encoder, image_head, seed, catalog)
    memory = str(default_fit_cache_dir()) if fit_cache else None
    return Classifier(text=text, image=image, fusion=fusion, threshold=threshold,
                      target_precision=target_precision, memory=memory, random_state=seed,
                      ocr=None if ocr in (None, "none") else ocr)


def _text_model(choice: str, seed: int, members: str = "auto", **single):
    """The text model ``--text-model`` asks for: None (the Classifier's default ensemble), an
    ensemble of the ``--members`` named, or one TextClassifier built from the single-model
    options."""
    from prodcat.cli.options import MODEL_DEFAULTS, SINGLE_TEXT_OPTIONS
    from prodcat.text import TextClassifier

    changed = [k for k in SINGLE_TEXT_OPTIONS if single[k] != MODEL_DEFAULTS[k]]
    flags = ", ".join("--" + k.replace("_", "-") for k in changed)
    if choice == "ensemble" and changed:
        raise ConfigError(f"{flags} configure one text model: add --text-model single, or drop them "
                          "to train the ensemble")
    if members != "auto":
        if choice == "single" or changed:
            raise ConfigError("--members chooses the ensemble's members: drop "
                              f"{flags or '--text-model single'} to train the ensemble")
        from prodcat.text.ensemble import TextEnsemble

        return TextEnsemble(members=member_names(members), random_state=seed)
    if choice == "ensemble" or (choice == "auto" and not changed):
        return None
    return TextClassifier(head=single["head"], C=single["C"],
                          class_weight="balanced" if single["class_weight"] else None,
                          calibration=single["calibration"],
                          max_description_chars=single["max_description_chars"],
                          random_state=seed, dense=_text_encoder(single["text_encoder"]))


def member_names(given: str) -> tuple[str, ...]:
    """``--members``: a named set or comma-separated member names, each registered and with its
    sentence encoder installed (checked now, not after minutes of fitting the others)."""
    from prodcat.text.ensemble import MEMBER_ENCODERS, MEMBER_SETS, MEMBERS

    names = MEMBER_SETS.get(given) or tuple(dict.fromkeys(n.strip() for n in given.split(",") if n.strip()))
    unknown = [n for n in names if n not in MEMBERS]
    if unknown or not names:
        raise ConfigError(f"unknown ensemble member(s) {', '.join(unknown) or repr(given)}; choose from "
                          f"{', '.join(MEMBERS.names())} or a set: {', '.join(MEMBER_SETS)}")
    for name in names:
        if name in MEMBER_ENCODERS:
            _text_encoder(MEMBER_ENCODERS[name])
    return names


def _note_large_dense(names: tuple[str, ...], n_rows: int) -> None:
    from prodcat.text.ensemble import MAX_DENSE_ROWS, too_many_to_encode

    dense = too_many_to_encode(names, n_rows, MAX_DENSE_ROWS)
    if dense:
        echo(f"note: {n_rows:,} listings > {MAX_DENSE_ROWS:,}: the default ensemble would leave "
             f"{', '.join(dense)} out (encoding every listing dominates training); --members fits "
             "them anyway")


def _text_encoder(name: str) -> str | None:
    """The sentence encoder asked for, checked to be installed before any work; None for none."""
    if name in (None, "none"):
        return None
    from prodcat.text.encoders import TextEncoderError, create_text_encoder

    try:
        create_text_encoder(name).pin_version()
    except TextEncoderError as exc:
        raise ConfigError(f"text encoder {name} is unavailable: {exc}") from None
    return name


def _image_model(encoder: str, head: str, seed: int, catalog):
    """The image model asked for, or None; ``auto`` quietly falls back to text only."""
    if encoder == "none":
        return None
    has_photos = catalog is not None and catalog.frame["image"].notna().any()
    if encoder == "auto" and not has_photos:
        return None
    from prodcat.image import ImageClassifier, ImageError, create_encoder

    name = DEFAULT_IMAGE_ENCODER if encoder == "auto" else encoder
    try:
        create_encoder(name).ensure_export()
        import onnxruntime  # noqa: F401  (the encoder runs on it)
    except (ImageError, ImportError) as exc:
        if encoder != "auto":
            raise ConfigError(f"image encoder {name} is unavailable: {exc}") from None
        echo(f"note: image modality unavailable ({exc}); training on text only")
        return None
    return ImageClassifier(encoder=name, head=head, random_state=seed)


def fit_params(model, unlabelled: str | None) -> dict:
    """``fit`` keyword arguments: the unlabelled listings, when given and useful to ``model``.

    Nothing suggests them: on the Rakuten sample (255 labelled photos, nested CV, three shuffles)
    2,000 unlabelled photos taught through the text model's confident answers raised the photo
    model's own weighted F1 from 0.289 to 0.330, but the fused answer gained less over the text
    alone (+0.86 points against +1.93, lower on every shuffle): a photo model that learns the
    text model's answers adds less of what the text does not already know."""
    if unlabelled is None:
        return {}
    if model.image is None:
        echo("note: --unlabelled only teaches the image model, and there is none; ignoring it")
        return {}
    from prodcat.data import read_catalog

    catalog = read_catalog(unlabelled)
    echo(f"read {catalog.source} ({catalog.format}) as unlabelled: {catalog.report.summary()}")
    return {"unlabelled": catalog.X}


def cv_folds(cv: str, catalog) -> int:
    if str(cv).lower() == "auto":
        # Cross-validation costs k more fits: worth it by default only while training is quick.
        largest = max(catalog.class_counts().values())
        return min(5, largest) if len(catalog) <= 20_000 and largest >= 2 else 0
    try:
        folds = int(cv)
    except ValueError:
        raise ConfigError(f"--cv must be a number of folds or auto, got {cv!r}") from None
    if folds == 1 or folds < 0:
        raise ConfigError("--cv must be 0 (none) or at least 2")
    return folds


def cv_modalities(res, taxonomy) -> dict:
    """``{"modalities": {"text"|"image"|"fused": headline scores}}`` of out-of-fold predictions
    with a photo model (the bundle's manifest keeps the headline, not the per-class detail)."""
    if not res.modalities:
        return {}
    from prodcat.evaluation.modalities import modality_metrics

    m = res.modalities
    if not (m["text"].sum(axis=1) > 0).all():  # a fold fitted without its image model: not filled
        return {}
    mod = modality_metrics(res.y, res.proba, m["text"], m.get("image"), m["has_image"], list(res.classes),
                           taxonomy, ocr=m.get("ocr"), has_ocr=m.get("has_ocr"))
    keys = ("n", "weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "ece", "log_loss")
    return {"modalities": {name: {k: mod[name][k] for k in keys} for name in ("text", "image", "ocr", "fused")
                           if name in mod}}


def fold_scores(res) -> list[dict]:
    from sklearn.metrics import accuracy_score, f1_score

    scores = []
    for f in range(int(res.folds.max()) + 1):
        m = res.folds == f
        pred = res.classes[res.proba[m].argmax(axis=1)]
        scores.append({"fold": f, "n": int(m.sum()),
                       "weighted_f1": float(f1_score(res.y[m], pred, average="weighted", zero_division=0)),
                       "macro_f1": float(f1_score(res.y[m], pred, average="macro", zero_division=0)),
                       "accuracy": float(accuracy_score(res.y[m], pred))})
    return scores
