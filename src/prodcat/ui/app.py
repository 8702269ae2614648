"""The prodcat web app (Streamlit): a seller page, a review page, a model page and a data page.

Run with ``prodcat ui --model MODEL_DIR``. The script reads its settings from the environment
(``PRODCAT_UI_MODEL``, ``PRODCAT_UI_REPORT``, ``PRODCAT_UI_REVIEW_DB``, ...) because Streamlit owns the command line. It loads
the bundle in-process through the same :class:`~prodcat.serving.service.ModelService` as the
API, once per server process (``st.cache_resource``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

from prodcat.errors import ProdcatError
from prodcat.explain import advice
from prodcat.serving.errors import ServingError
from prodcat.serving.images import ALLOWED_FORMATS
from prodcat.serving.service import ModelService
from prodcat.ui import core
from prodcat.ui.launch import (
    DATA_REPORT_ENV,
    IMAGE_BYTES_ENV,
    MODEL_ENV,
    REPORT_ENV,
    REVIEW_DB_ENV,
    REVIEW_ORDER_ENV,
)
from prodcat.ui.review_page import get_store, review_page
from prodcat.ui.widgets import pct, show_advice, show_explanation, show_photo_words, show_ranking

MAX_TITLE = 1_000
MAX_DESCRIPTION = 20_000


@st.cache_resource(show_spinner="Loading the model ...")
def get_service(model_dir: str) -> ModelService:
    return ModelService.load(model_dir)


@st.cache_resource(show_spinner=False)
def get_advisor(model_dir: str, _service: ModelService):
    """The seller advice's word weights (:mod:`prodcat.explain.advice`), once per bundle."""
    from prodcat.explain.advice import WordAdvisor

    return WordAdvisor.from_model(_service.model)


#: Refusals that concern the photo alone: the listing is then classified from its text.
PHOTO_ERRORS = {"empty_image", "image_too_large", "unsupported_image", "corrupt_image"}


def _reason(message: str) -> str:
    # "The photo: not an image file (...)" → "not an image file (...)"
    return message.split(": ", 1)[1] if message.startswith("The photo: ") else message


def seller_page(service: ModelService, max_image_bytes: int, model_dir: str) -> None:
    st.title("Which category is my listing?")
    st.write("Type the title, add a description and a photo if you have them, and get the three "
             "most likely categories.")
    with st.form("listing"):
        title = st.text_input("Title (required)", key="title", max_chars=MAX_TITLE,
                              placeholder="e.g. Roman policier - édition de poche")
        description = st.text_area("Description", key="description", max_chars=MAX_DESCRIPTION)
        # Any file: a browser-side type filter drops a TIFF without a word, and the seller then
        # reads "no photo given"; the server-side check says what is wrong with it instead.
        photo = st.file_uploader(f"Photo ({', '.join(sorted(ALLOWED_FORMATS))})", key="photo")
        submitted = st.form_submit_button("Find categories", type="primary")
    if submitted:
        image = photo.getvalue() if photo is not None else None
        photo_error = None
        try:
            with st.spinner("Classifying ..."):
                try:
                    result = core.classify(service, title, description, image,
                                           max_image_bytes=max_image_bytes, explain=True)
                except ServingError as exc:
                    if image is None or exc.code not in PHOTO_ERRORS:
                        raise
                    # The listing is still classified, from its text; the seller learns why the
                    # photo was left out.
                    photo_error, image = exc.message, None
                    result = core.classify(service, title, description, None,
                                           max_image_bytes=max_image_bytes, explain=True)
            st.session_state["result"] = result
            st.session_state["advice"] = (advice.seller_advice(get_advisor(model_dir, service), title,
                                                               description or "", result["top_k"])
                                          if result["needs_review"] else [])
            st.session_state["result_text"] = (title, description or "")
            st.session_state["result_image"] = image
            st.session_state["photo_error"] = photo_error
            st.session_state.pop("error", None)
        except ServingError as exc:
            st.session_state["error"] = exc.message
            st.session_state.pop("result", None)
    if "error" in st.session_state:
        st.error(st.session_state["error"])
        return
    result = st.session_state.get("result")
    if not result:
        return

    st.subheader("Top 3 categories")
    best = result["top_k"][0]
    if result["needs_review"]:
        st.warning(f"**Needs review**: the best guess ({pct(best['probability'])}) is below the "
                   f"{pct(result['threshold'])} confidence needed to file it automatically.",
                   icon=":material/warning:")
    else:
        st.success(f"Confident: **{best['name']}** can be filed automatically "
                   f"(≥ {pct(result['threshold'])}).", icon=":material/check_circle:")
    show_ranking(result["top_k"], empty="no answer")
    if best.get("parent"):
        st.caption(f"Best guess sits under **{best['parent']}**.")
    show_advice(st.session_state.get("advice") or [])

    st.subheader("What each part said")
    text_col, image_col = st.columns(2)
    with text_col:
        st.markdown("**Text** (title and description)")
        show_ranking(result["modalities"].get("text"), empty="no text answer")
    with image_col:
        st.markdown("**Photo**")
        if st.session_state.get("result_image"):
            st.image(st.session_state["result_image"], width=160)
        if st.session_state.get("photo_error"):
            st.caption(f"This photo could not be read ({_reason(st.session_state['photo_error'])}); "
                       "the text decided alone.")
        elif "image" not in result["modalities"] and "ocr_text" in result:
            st.caption("This model reads the words on the photo (below), not the picture itself.")
        elif "image" not in result["modalities"]:
            st.caption("This model reads text only: the photo was checked but not used.")
        elif st.session_state.get("result_image"):
            show_ranking(result["modalities"].get("image"),
                         empty="The image model could not use this photo; the text decided.")
        else:
            st.caption("No photo given: add one to let the image model have its say.")
    if "ocr_text" in result and not st.session_state.get("photo_error"):  # it reads the photo's words
        show_photo_words(result, st.session_state.get("result_image"))
    show_explanation(result.get("explanation"), *st.session_state.get("result_text", ("", "")))


def model_page(service: ModelService, report_dir: Path | None) -> None:
    summary = service.summary()
    st.title("Model")
    training = summary.get("training") or {}
    trained = ""
    if training.get("n_listings"):
        source = f" ({training['format']})" if training.get("format") else ""
        trained = f", trained on {training['n_listings']:,} listings{source}"
    st.write(f"**{summary['model_id']}**, created {summary.get('created_at') or '?'}: "
             f"{summary['n_classes']} categories{trained}; modalities: {', '.join(summary['modalities'])}; "
             f"automation threshold {pct(summary['threshold'])}.")
    metrics = core.load_report(report_dir)
    if metrics is None:
        cv = (summary.get("metrics") or {}).get("cv")
        if report_dir is not None:
            st.info(f"No evaluation report in {report_dir} (metrics.json is missing).")
        else:
            st.info("No evaluation report: write one with `prodcat evaluate --model MODEL_DIR "
                    "--data DATA --out MODEL_DIR/report`, or pass `--report DIR`.")
        if cv:
            st.subheader(f"Cross-validation at training ({cv.get('folds')} folds)")
            cols = st.columns(max(1, len(core.headline(cv))))
            for col, (label, value) in zip(cols, core.headline(cv), strict=False):
                col.metric(label, f"{value:.3f}")
            cov = core.coverage_frame(cv)
            if len(cov):
                st.markdown("**Accuracy against coverage**")
                st.dataframe(cov.style.format({"threshold": "{:.2f}", "coverage": "{:.1%}",
                                               "accuracy": "{:.1%}"}, na_rep="–"), hide_index=True)
        else:
            st.caption("The bundle records no cross-validated metrics.")
        return

    st.subheader("Evaluation report")
    st.caption(f"from {report_dir}; {metrics.get('n', '?')} listings")
    heads = core.headline(metrics)
    for col, (label, value) in zip(st.columns(max(1, len(heads))), heads, strict=False):
        col.metric(label, f"{value:.3f}")

    st.markdown("**Accuracy against coverage** (automating predictions at or above a threshold)")
    cov = core.coverage_frame(metrics)
    curve = core.coverage_curve(metrics)
    if len(curve):
        st.pyplot(core.coverage_figure(curve, cov), width="content")
    if len(cov):
        st.dataframe(cov.style.format({"threshold": "{:.2f}", "coverage": "{:.1%}", "accuracy": "{:.1%}"},
                                      na_rep="–"), hide_index=True)
    reliability = report_dir / core.RELIABILITY_PNG if report_dir else None
    if reliability is not None and reliability.is_file():
        st.image(str(reliability), caption="Reliability (confidence against accuracy)", width=420)

    st.markdown("**Per-class F1** (worst first)")
    per_class = core.per_class_frame(metrics)
    st.dataframe(per_class, hide_index=True,
                 column_config={"f1": st.column_config.ProgressColumn("F1", min_value=0.0, max_value=1.0,
                                                                       format="%.3f")})
    confusion = report_dir / core.CONFUSION_PNG if report_dir else None
    if confusion is not None and confusion.is_file():
        st.markdown("**Confusion matrix**")
        st.image(str(confusion))
    html = report_dir / "report.html" if report_dir else None
    if html is not None and html.is_file():
        st.download_button("Download the full report (HTML)", html.read_bytes(),
                           file_name="report.html", mime="text/html")


def data_page(explore_dir: Path | None) -> None:
    """The data exploration of ``prodcat explore``: headline numbers and the full report."""
    st.title("Data")
    summary_path = explore_dir / "summary.json" if explore_dir else None
    if summary_path is None or not summary_path.is_file():
        st.info("No data exploration to show. Make one with `prodcat explore --data PATH --out DIR` "
                "and start the app with `prodcat ui --model MODEL_DIR --data-report DIR`.")
        return
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        st.error(f"{summary_path} is not valid JSON: {exc}")
        return
    size, dist = summary.get("size", {}), summary.get("class_distribution", {})
    missing = summary.get("missing_descriptions", {})
    conflicts = summary.get("label_conflicts", {}).get("by_listing", {})
    cols = st.columns(4)
    cols[0].metric("Listings", f"{size.get('listings', 0):,}")
    cols[1].metric("Classes", size.get("classes", 0))
    ratio = dist.get("imbalance_ratio")
    cols[2].metric("Imbalance", f"1:{ratio:.1f}" if ratio else "–")
    cols[3].metric("No description", f"{missing.get('share', 0):.0%}")
    if conflicts.get("groups"):
        st.warning(f"{conflicts['groups']} products are filed under two or more categories.")
    html = explore_dir / "report.html"
    if html.is_file():
        # The report is self-contained (figures embedded), so it renders as it is.
        components.html(html.read_text(encoding="utf-8"), height=900, scrolling=True)
        st.download_button("Download the exploration report (HTML)", html.read_bytes(),
                           file_name="exploration.html", mime="text/html")


def main() -> None:
    st.set_page_config(page_title="prodcat", page_icon=":material/sell:", layout="centered")
    model_dir = os.environ.get(MODEL_ENV)
    if not model_dir:
        st.error(f"No model: start the app with `prodcat ui --model MODEL_DIR` (or set {MODEL_ENV}).")
        st.stop()
    try:
        service = get_service(model_dir)
    except ProdcatError as exc:
        st.error(f"Cannot load the model: {exc}")
        st.stop()
    report_dir = core.default_report_dir(model_dir, os.environ.get(REPORT_ENV) or None)
    max_image_bytes = int(os.environ.get(IMAGE_BYTES_ENV) or 8 * 1024 * 1024)
    page = st.sidebar.radio("Page", ["Seller", "Review", "Model", "Data"], key="page")
    st.sidebar.caption(f"model {service.model_id}")
    if page == "Review":
        review_db = os.environ.get(REVIEW_DB_ENV) or None
        review_page(service, get_store(review_db) if review_db else None,
                    os.environ.get(REVIEW_ORDER_ENV) or "uncertain")
    elif page == "Model":
        model_page(service, report_dir)
    elif page == "Data":
        data_dir = os.environ.get(DATA_REPORT_ENV)
        data_page(Path(data_dir) if data_dir else None)
    else:
        seller_page(service, max_image_bytes, model_dir)


main()
