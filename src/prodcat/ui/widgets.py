"""Streamlit pieces the web app's pages share: rankings, the explanation, the seller advice."""

from __future__ import annotations

import streamlit as st

from prodcat.ui import core


def pct(p: float) -> str:
    return f"{100 * p:.1f} %"


def show_ranking(rows: list[dict] | None, *, empty: str) -> None:
    if not rows:
        st.caption(empty)
        return
    for rank, row in enumerate(rows, 1):
        label = f"{rank}. {row['name']} ({row['code']}) — {pct(row['probability'])}"
        st.progress(min(max(float(row["probability"]), 0.0), 1.0), text=label)


def show_explanation(explanation: dict | None, title: str, description: str) -> None:
    """Why: the listing's words marked for and against the best category, the photo's heat map."""
    if not explanation:
        return
    st.subheader("Why this category")
    if "error" in explanation:
        st.caption(f"No explanation for this answer: {explanation['error']}")
        return
    best = explanation["answer"][0]
    text = explanation.get("text")
    words_col, photo_col = st.columns([3, 2])
    with words_col:
        if text:
            weights = text["classes"][0]["token_weights"]
            st.markdown(f"Words for **{best['name']}** in green, against in red:")
            st.markdown(core.highlight_html(title, text["tokens"], weights, "title"),
                        unsafe_allow_html=True)
            if description.strip():
                st.markdown(core.highlight_html(description[:1000], text["tokens"], weights, "description"),
                            unsafe_allow_html=True)
            top = [w for w in text["classes"][0]["top_words"] if w["weight"] > 0][:6]
            if top:
                st.caption("Strongest words: " + ", ".join(
                    f"{w['word']}{' [photo]' if w.get('source') == 'photo' else ''} ({w['weight']:+.1f})"
                    for w in top))
        else:
            st.caption("No text to explain.")
    with photo_col:
        png = explanation.get("heatmap_png")
        if png:
            st.image(png, width=220, caption=f"Photo regions behind this answer "
                                              f"({explanation['image']['method']})")
    mods = explanation.get("modalities") or {}
    if mods.get("agree") is not None:
        first = next((c for c in mods.get("classes", []) if c["code"] == best["code"]), None)
        moved = f" The photo moved it by {100 * first['photo_moved']:+.0f} points." if first else ""
        st.caption(("Text and photo agree." if mods["agree"] else
                    f"Text and photo disagree; decided by the {mods['decided_by']}.") + moved)
    for note in explanation.get("notes", []):
        st.caption(note)


def show_advice(advice: list[dict]) -> None:
    """The seller advice of an unsure answer (:func:`prodcat.explain.advice.seller_advice`)."""
    if not advice:
        return
    st.subheader("Make the category clear")
    st.markdown("The model hesitates between these categories. Words that speak for each one, "
                "and that your listing does not use yet:")
    st.markdown("\n".join(f"- **{c['name']}** ({pct(c['probability'])}): "
                          + ", ".join(f"*{w['word']}*" for w in c["words"]) for c in advice))
    st.caption("Add to the title the ones that are true of your product, then classify it again.")


def show_photo_words(result: dict, photo: bytes | None) -> None:
    """For a model that reads the photo's words: the photo with each word read boxed (coloured by
    its weight for the answer), the words, and what they alone say."""
    st.markdown("**Words read on the photo**")
    ocr = (result.get("explanation") or {}).get("ocr")
    if not photo:
        st.caption("No photo given: words printed on one (a cover, a brand) would be read too.")
        return
    if not result.get("ocr_text"):
        st.caption("No words were read on this photo.")
        return
    boxed_col, words_col = st.columns([2, 3])
    with boxed_col:
        if ocr and ocr.get("words"):
            st.image(core.boxed_photo(photo, ocr), width=260,
                     caption="Words read, boxed: green for the answer, red against")
    with words_col:
        if ocr and ocr.get("words"):
            st.markdown(core.photo_words_html(ocr), unsafe_allow_html=True)
        else:  # no explanation: the words without their boxes
            st.markdown(" ".join(result["ocr_text"].split()))
        st.caption("What these words alone say:")
        show_ranking(result["modalities"].get("ocr"), empty="nothing the model knows")
