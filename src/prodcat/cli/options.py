"""Options shared by several commands, and their defaults.

Each group of options is one list of ``click.option`` decorators; its defaults dict is read off
those options, so adding an option is one line in its list (plus the code that uses it). Model
defaults come from the estimators' own ``get_params()`` and choices from the registries, so the
command line cannot drift from what the library does.
"""

from __future__ import annotations

import os

import click

from prodcat.cli.common import echo
from prodcat.data.readers import list_formats
from prodcat.heads import CALIBRATIONS
from prodcat.image import ImageClassifier, list_encoders
from prodcat.image.heads import list_image_heads
from prodcat.model import Classifier
from prodcat.model.classifier import FUSIONS
from prodcat.ocr import list_engines as list_ocr_engines
from prodcat.text import TextClassifier
from prodcat.text.encoders import list_text_encoders
from prodcat.text.ensemble import MEMBER_SETS, MEMBERS
from prodcat.text.heads import list_heads

_TEXT = TextClassifier().get_params(deep=False)
_IMAGE = ImageClassifier().get_params(deep=False)
_MODEL = Classifier().get_params(deep=False)

#: The photo encoder ``--image-encoder auto`` and ``prodcat embed`` use.
DEFAULT_IMAGE_ENCODER = _IMAGE["encoder"]


def _apply(options: list, fn):
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _defaults(options: list) -> dict:
    """``{parameter name: default}`` of ``options``, read off click's own parameter objects."""
    def probe():
        pass

    _apply(options, probe)
    return {p.name: p.default for p in probe.__click_params__}


def _or(names: list[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


DATA_OPTIONS = [
    click.option("--format", "fmt", default="auto", show_default=True, help=_or(list_formats())),
    click.option("--split", default=None, help="Rakuten split to read (train or test)"),
    click.option("--level", type=int, default=None, help="Flipkart category depth (0 = top level)"),
    click.option("--title-col", default=None, help="table: title column [title]"),
    click.option("--description-col", default=None, help="table: description column [description]"),
    click.option("--image-col", default=None, help="table: image path column [image]"),
    click.option("--label-col", default=None, help="table: label column [label]"),
    click.option("--id-col", default=None, help="table: id column [id]"),
    click.option("--image-root", default=None, type=click.Path(), help="folder image paths are relative to"),
    click.option("--categories", default=None, type=click.Path(), help="categories.csv (code,name,parent)"),
    click.option("--encoding", default="utf-8", show_default=True, help="text encoding of CSV files"),
]

class ThresholdType(click.ParamType):
    """``auto`` or a probability."""

    name = "auto|P"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, float):
            return value
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is neither 'auto' nor a number", param, ctx)


#: The text model: ``auto`` is the ensemble unless a single model's option below is given.
TEXT_MODELS = ("auto", "ensemble", "single")
#: Options that configure one TextClassifier: giving one means ``--text-model single``.
SINGLE_TEXT_OPTIONS = ("head", "C", "class_weight", "calibration", "max_description_chars",
                       "text_encoder")

_member_sets = "; ".join(f"{name}: {','.join(members)}" for name, members in MEMBER_SETS.items())

MODEL_OPTIONS = [
    click.option("--text-model", default="auto", show_default=True, type=click.Choice(TEXT_MODELS),
                 help="ensemble: calibrated text models blended by out-of-fold log loss (the "
                      "default); single: one TextClassifier tuned by the options below (auto: "
                      "single when one of them is given)"),
    click.option("--members", default="auto", show_default=True,
                 help="the ensemble's candidate members: registered names, comma-separated ("
                      f"{', '.join(MEMBERS.names())}), or a named set ({_member_sets}); auto: the "
                      "default members whose sentence encoder is installed"),
    click.option("--head", default=_TEXT["head"], show_default=True, type=click.Choice(list_heads()),
                 help="text classifier head"),
    click.option("--C", "C", type=float, default=_TEXT["C"], help="regularisation strength of the head"),
    click.option("--class-weight/--no-class-weight", default=_TEXT["class_weight"] == "balanced",
                 show_default=True, help="weight classes inversely to their frequency"),
    click.option("--calibration", default=_TEXT["calibration"], show_default=True,
                 type=click.Choice(CALIBRATIONS)),
    click.option("--max-description-chars", type=int, default=_TEXT["max_description_chars"],
                 show_default=True, help="description characters read per listing"),
    click.option("--threshold", type=ThresholdType(), default=_MODEL["threshold"], show_default=True,
                 help="confidence needed to file a listing without review; auto: the lowest that "
                      "keeps out-of-fold answers --target-precision correct"),
    click.option("--target-precision", type=float, default=_MODEL["target_precision"],
                 show_default=True,
                 help="precision the automatically filed listings must keep (--threshold auto)"),
    click.option("--seed", type=int, default=_MODEL["random_state"], show_default=True),
    click.option("--image-encoder", default="auto", show_default=True,
                 help=f"auto ({DEFAULT_IMAGE_ENCODER} when the data has photos and the encoder is "
                      f"installed), none, or an encoder name: {_or(list_encoders())}"),
    click.option("--image-head", default=_IMAGE["head"], show_default=True,
                 help=f"image classifier head: {_or(list_image_heads())}"),
    click.option("--unlabelled", default=None, type=click.Path(),
                 help="unlabelled listings with photos (any format): their photos teach the image "
                      "model under confident text pseudo-labels"),
    click.option("--fusion", default=_MODEL["fusion"], show_default=True, type=click.Choice(FUSIONS),
                 help="how text and image are combined; auto picks by cross-validation"),
    click.option("--ocr", default="none", show_default=True,
                 type=click.Choice(["auto", "none", *list_ocr_engines()]),
                 help="read the words on the photos and give them to the text model with the "
                      "listing (extra ocr); auto: the default engine when installed, kept only when "
                      "they lower the out-of-fold log loss and help the listings with a photo on most "
                      "inner folds, by more than the folds' spread"),
    click.option("--text-encoder", default=_TEXT["dense"] or "none", show_default=True,
                 type=click.Choice(["none", *list_text_encoders()]),
                 help="sentence embedding appended to the TF-IDF features (extra text-dense)"),
    click.option("--fit-cache/--no-fit-cache", default=True, show_default=True,
                 help="remember fitted models in the prodcat cache folder, so training again on "
                      "the same data with the same options loads them instead of fitting"),
]

TRACKING_OPTIONS = [
    click.option("--track/--no-track", "track", default=None,
                 help="record the run in MLflow [default: on when the 'track' extra is installed, "
                      "unless PRODCAT_TRACKING=0]"),
    click.option("--tracking-uri", default=None,
                 help="MLflow tracking URI, or a folder for a local SQLite store [MLFLOW_TRACKING_URI, "
                      "else ./mlruns-prodcat or $PRODCAT_TRACKING_DIR]"),
    click.option("--experiment", default=None, envvar="PRODCAT_EXPERIMENT",
                 help="MLflow experiment name [prodcat]"),
]

def _export_to_environment(name: str):
    """An option callback that sets the environment variable ``name`` for the command's run and
    restores it after: the bundle is then loaded with the same rule everywhere the command loads
    it, its server's worker processes and Dask workers included."""
    def callback(ctx: click.Context, param: click.Parameter, value):
        if value in (None, False):
            return value
        before = os.environ.get(name)
        os.environ[name] = "1" if value is True else str(value)

        def restore():
            if before is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = before

        ctx.call_on_close(restore)
        return value

    return callback


def _key_file(ctx: click.Context, param: click.Parameter, value):
    """A key file that cannot be read is said now, not after a training run of minutes."""
    if value is not None:
        from prodcat.model.signing import read_key

        read_key(value)
    return _export_to_environment("PRODCAT_SIGNING_KEY")(ctx, param, value)


_SIGN_KEY_OPTION = click.option(
    "--sign-key", type=click.Path(dir_okay=False), envvar="PRODCAT_SIGNING_KEY", expose_value=False,
    callback=_key_file,
    help="file with a secret key: train signs the bundle's manifest with it (HMAC-SHA256), "
         "--require-signature checks it [PRODCAT_SIGNING_KEY]")
#: Options of the commands that write a bundle.
SIGNING_OPTIONS = [_SIGN_KEY_OPTION]
#: Options of the commands that load a bundle: which bundles they trust.
BUNDLE_TRUST_OPTIONS = [
    click.option("--require-signature", is_flag=True, default=False, envvar="PRODCAT_REQUIRE_SIGNATURE",
                 expose_value=False, callback=_export_to_environment("PRODCAT_REQUIRE_SIGNATURE"),
                 help="refuse a bundle whose manifest is not signed with --sign-key's key "
                      "[PRODCAT_REQUIRE_SIGNATURE=1]"),
    _SIGN_KEY_OPTION,
    click.option("--allow-pickle", is_flag=True, default=False, envvar="PRODCAT_ALLOW_PICKLE",
                 expose_value=False, callback=_export_to_environment("PRODCAT_ALLOW_PICKLE"),
                 help="also load a bundle of the old pickle format (classifier.joblib, which can run "
                      "code when loaded): only for bundles you made yourself [PRODCAT_ALLOW_PICKLE=1]"),
]

DATA_DEFAULTS = _defaults(DATA_OPTIONS)
MODEL_DEFAULTS = _defaults(MODEL_OPTIONS)
TRACKING_DEFAULTS = _defaults(TRACKING_OPTIONS)


def data_options(fn):
    """Options every command that reads a data set understands."""
    return _apply(DATA_OPTIONS, fn)


def model_options(fn):
    """Options that choose and tune the model (train and evaluate --cv)."""
    return _apply(MODEL_OPTIONS, fn)


def tracking_options(fn):
    """Options of the commands whose runs are recorded in MLflow (train, evaluate)."""
    return _apply(TRACKING_OPTIONS, fn)


def signing_options(fn):
    """``--sign-key``: sign the bundle the command writes."""
    return _apply(SIGNING_OPTIONS, fn)


def bundle_trust_options(fn):
    """``--require-signature``, ``--sign-key``, ``--allow-pickle``: which bundles a command loads."""
    return _apply(BUNDLE_TRUST_OPTIONS, fn)


def fitting_options(fn):
    """Data, model and tracking options: the commands that fit a model (train, evaluate --cv)."""
    return data_options(model_options(tracking_options(fn)))


def split_fitting_kwargs(kwargs: dict) -> tuple[dict, dict, dict]:
    """``(data, model, tracking)`` keyword arguments of a command with :func:`fitting_options`."""
    return split_data_kwargs(kwargs), split_model_kwargs(kwargs), split_tracking_kwargs(kwargs)


def split_data_kwargs(kwargs: dict) -> dict:
    return {k: kwargs.pop(k) for k in DATA_DEFAULTS}


def split_model_kwargs(kwargs: dict) -> dict:
    return {k: kwargs.pop(k) for k in MODEL_DEFAULTS}


def split_tracking_kwargs(kwargs: dict) -> dict:
    return {k: kwargs.pop(k, None) for k in TRACKING_DEFAULTS}


def source_options(data_kw: dict) -> dict:
    """Data options as :func:`prodcat.batch.open_source` takes them."""
    return {("format" if k == "fmt" else k): v for k, v in data_kw.items()}


def start_tracking(options: dict, kind: str, catalog, model, *, data_kw: dict, cv: int | None = None,
                   unlabelled: str | None = None, tags: dict | None = None):
    """An MLflow run (prodcat.tracking) that ends with the command: FINISHED once the command calls
    ``run.finish()``, FAILED if it raises first. Never raises: a store problem is one warning."""
    from prodcat.tracking import Tracker

    tracker = Tracker(options["tracking_uri"], options["experiment"], options["track"],
                      warn=lambda msg: echo(f"warning: {msg}"), note=echo)
    params = {f"data.{'format' if k == 'fmt' else k}": v for k, v in data_kw.items()
              if v is not None and v != DATA_DEFAULTS.get(k)}
    params.update({"cv.folds": cv} if cv is not None else {})
    params.update({"unlabelled": unlabelled} if unlabelled is not None else {})
    run = tracker.start_run(kind, data=catalog, model=model, params=params, tags=tags, finish_required=True)
    return click.get_current_context().with_resource(run)
