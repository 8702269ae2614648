"""``prodcat explain``: why the model files one listing where it does."""

from __future__ import annotations

from pathlib import Path

import click

from prodcat.cli.options import bundle_trust_options
from prodcat.errors import DataError
from prodcat.explain.image import METHODS as IMAGE_METHODS

#: prodcat.explain.text accepts these (it keeps no list of its own to read them from).
TEXT_METHODS = ("auto", "linear", "lime")


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="bundle to use")
@click.option("--title", default="", help="listing title")
@click.option("--description", default="", help="listing description")
@click.option("--image", default=None, type=click.Path(), help="listing photo")
@click.option("--out", required=True, type=click.Path(),
              help="folder for explanation.json and heatmap.png")
@click.option("--top-k", type=click.IntRange(1, 20), default=3, show_default=True,
              help="classes whose word weights are explained")
@click.option("--text-method", type=click.Choice(TEXT_METHODS), default="auto", show_default=True,
              help="linear: exact word contributions of a linear head; lime: LIME, any head")
@click.option("--image-method", type=click.Choice(IMAGE_METHODS), default="auto",
              show_default=True, help="gradcam needs PyTorch (extra image-export); occlusion runs on ONNX")
@click.option("--lime-samples", type=click.IntRange(10, 100_000), default=500, show_default=True,
              help="perturbed copies LIME classifies (its time grows with them)")
@click.option("--words", type=click.IntRange(1, 100), default=8, show_default=True,
              help="words listed per class")
@bundle_trust_options
def explain(model_dir, title, description, image, out, top_k, text_method, image_method, lime_samples, words):
    """Explain why the model files one listing where it does: word weights, photo heat map,
    and what text and photo each contributed."""
    from prodcat.explain import explain_listing
    from prodcat.model import load_bundle

    if not title.strip() and not description.strip() and image is None:
        raise DataError("the listing needs a title, a description or a photo")
    if image is not None and not Path(image).is_file():
        raise DataError(f"image not found: {image}")
    model, _ = load_bundle(model_dir)
    explanation = explain_listing(model, {"title": title, "description": description, "image": image},
                                  top_k, text_method=text_method, image_method=image_method,
                                  lime_samples=lime_samples)
    path = explanation.save(out, n_words=words)
    for rank, a in enumerate(explanation.answer, 1):
        label = a["name"] if a["name"] == a["code"] else f"{a['name']} ({a['code']})"
        click.echo(f"{rank}. {label[:50]:<50} {a['probability']:6.1%}")
        if explanation.text is not None:
            pro = explanation.text.top_words_by_source(rank - 1, words, sign=1)
            con = explanation.text.top_words_by_source(rank - 1, max(1, words // 2), sign=-1)
            click.echo("   for:     " + (", ".join(map(_weighed, pro)) or "-"))
            click.echo("   against: " + (", ".join(map(_weighed, con)) or "-"))
    if explanation.text is not None:
        click.echo(f"word weights: {explanation.text.unit} ({explanation.text.method})")
    if explanation.ocr is not None and explanation.ocr["words"]:
        click.echo("words read on the photo: " + " ".join(w["text"] for w in explanation.ocr["words"])
                   + " (marked [photo] above)")
    m = explanation.modalities
    if m.get("agree") is not None:
        click.echo(f"text says {m['text_top']}, photo says {m['image_top']}: "
                   f"{'they agree' if m['agree'] else 'they disagree'} (decided by {m['decided_by']})")
    if explanation.image is not None:
        click.echo(f"heat map ({explanation.image.method}, class {explanation.image.target}): "
                   f"{explanation.heatmap_path}")
    for note in explanation.notes:
        click.echo(f"note: {note}")
    click.echo(f"explanation: {path} ({explanation.seconds:.2f} s)")


def _weighed(item: tuple[str, float, str]) -> str:
    word, weight, source = item
    return f"{word}{' [photo]' if source == 'photo' else ''} {weight:+.2f}"
