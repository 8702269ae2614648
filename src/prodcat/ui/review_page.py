"""The review page: people decide the listings the model was unsure of.

It talks to the review store (:class:`~prodcat.review.ReviewStore`) in process, the one
``prodcat ui --review-db URL`` names: the page claims the next item for the reviewer (a lease, so
nobody else gets it), shows the listing, its photo, the model's top-3, the words and the heat map
behind the answer and whether text and photo agreed, and records the decision through the store,
which refuses a second decision on an item. Keyboard: ``Y`` confirms the top-1, ``1``–``3`` pick
one of the top-3, ``A`` accepts a proposed label, ``S`` skips (not while typing in a field).
"""

from __future__ import annotations

import streamlit as st

from prodcat.errors import ProdcatError
from prodcat.review import ReviewError, ReviewStore
from prodcat.serving.errors import ServingError
from prodcat.serving.service import ModelService
from prodcat.ui import core, reviewing
from prodcat.ui.widgets import show_explanation, show_ranking

#: Session keys of the page.
ITEM, SKIPPED, FLASH, EXPLAINED = "review_item", "review_skipped", "review_flash", "review_explained"
SEARCH, PICK, COMMENT = "review_search", "review_pick", "review_comment"
#: Keyboard shortcuts (Streamlit reserves C and R).
CONFIRM_KEY, SKIP_KEY, GIVEN_KEY, TOP_KEYS = "Y", "S", "A", ("1", "2", "3")


@st.cache_resource(show_spinner="Opening the review store ...")
def get_store(url: str) -> ReviewStore:
    from prodcat.review import open_store

    return open_store(url)


def _reviewer() -> str:
    return str(st.session_state.get("reviewer") or "").strip()


def _names(service: ModelService) -> dict[str, dict]:
    return {c["code"]: c for c in service.categories}


def _after(item: dict | None, message: tuple[str, str]) -> None:
    st.session_state[ITEM] = item
    st.session_state[FLASH] = message
    st.session_state[COMMENT] = ""
    st.session_state[SEARCH] = ""


def _decide(store: ReviewStore, service: ModelService, label: str, order: str) -> None:
    """Button callback: decide the held item, then claim the next one."""
    item = st.session_state.get(ITEM)
    if not item:
        return
    name = _names(service).get(label, {}).get("name", label)
    try:
        _, nxt, _ = reviewing.decide_and_next(store, item, label, _reviewer(),
                                              comment=st.session_state.get(COMMENT) or None, order=order,
                                              exclude=st.session_state.get(SKIPPED, []))
    except ReviewError as exc:
        # Decided by someone else meanwhile, or held by them since our lease ran out.
        nxt = reviewing.claim(store, _reviewer(), order=order, exclude=st.session_state.get(SKIPPED, []))
        _after(nxt, ("error", f"Not recorded: {exc}."))
        return
    _after(nxt, ("success", f"#{item['id']} filed under **{name}** ({label})."))


def _skip(store: ReviewStore, order: str) -> None:
    item = st.session_state.get(ITEM)
    if not item:
        return
    skipped = [*st.session_state.get(SKIPPED, []), item["id"]]
    st.session_state[SKIPPED] = skipped
    # The next one is claimed before the skipped one goes back, so it cannot come straight back.
    nxt = reviewing.claim(store, _reviewer(), order=order, exclude=skipped)
    store.release(item["id"], item["claim"]["token"])
    _after(nxt, ("info", f"#{item['id']} skipped: it goes back to the queue for someone else."))


def _unskip() -> None:
    st.session_state[SKIPPED] = []


def current_item(store: ReviewStore, reviewer: str, order: str) -> dict | None:
    """The item this session holds, or the next one claimed for ``reviewer``."""
    item = st.session_state.get(ITEM)
    if item and item["claim"]["reviewer"] != reviewer:  # another name typed: hand it back
        store.release(item["id"], item["claim"]["token"])
        item = None
    if item is None:
        item = reviewing.claim(store, reviewer, order=order, exclude=st.session_state.get(SKIPPED, []))
        st.session_state[ITEM] = item
    return item


def explained(service: ModelService, item: dict, photo: bytes | None) -> tuple[dict | None, str | None]:
    """The current model's answer and explanation for the item (once per item and session)."""
    cached = st.session_state.get(EXPLAINED)
    if cached and cached[0] == item["id"]:
        return cached[1], cached[2]
    result, note = None, None
    try:
        with st.spinner("Explaining the answer ..."):
            try:
                result = core.classify(service, item["title"], item["description"], photo, explain=True)
            except ServingError as exc:
                if photo is None:
                    raise
                note = f"The stored photo could not be read ({exc.message}); the text alone was explained."
                result = core.classify(service, item["title"], item["description"], None, explain=True)
    except (ServingError, ProdcatError) as exc:
        note = f"No explanation: {getattr(exc, 'message', None) or exc}"
    st.session_state[EXPLAINED] = (item["id"], result, note)
    return result, note


def show_stats(store: ReviewStore) -> None:
    heads = reviewing.headline(store.stats())
    for col, (label, value, help_) in zip(st.columns(len(heads)), heads, strict=True):
        col.metric(label, value, help=help_)


def show_item(service: ModelService, store: ReviewStore, item: dict, order: str) -> None:
    title, description = item["title"] or "", item["description"] or ""
    photo = reviewing.photo_bytes(store, item)
    text_col, photo_col = st.columns([3, 2])
    with text_col:
        st.subheader(f"#{item['id']}: {title or '(no title)'}")
        why = reviewing.REASONS.get(item["reason"], item["reason"])
        listing = f"listing {item['listing_id']}, " if item.get("listing_id") else ""
        st.caption(f"{listing}queued because {why}; {item['created_at'][:16].replace('T', ' ')} UTC")
        if description.strip():
            st.text(description[:600] + (" …" if len(description) > 600 else ""))
    with photo_col:
        if photo is not None:
            st.image(photo, width=200)
        else:
            st.caption("No photo.")

    names = _names(service)
    result, note = explained(service, item, photo)
    queued = item.get("top_k")
    # A correction or an audit suspect comes without the model's answer: the current model's.
    top = [{**t, "name": names.get(str(t["code"]), t).get("name", t.get("name", t["code"]))}
           for t in (queued or (result or {}).get("top_k") or [])][:3]
    st.markdown("**The model's top 3**")
    show_ranking(top, empty="The model gave no answer for this item.")
    if not queued and top:
        st.caption(f"Queued without a model answer: this is {service.model_id}'s.")
    elif item.get("model_id") and item["model_id"] != service.model_id:
        st.caption(f"Queued by {item['model_id']}; the explanation below is {service.model_id}'s.")
    st.markdown(reviewing.agreement(result))

    st.markdown("**Decide**")
    given = item.get("given_label")
    if given:
        kind = "Proposed" if item["reason"] == "feedback" else "Given"
        st.info(f"{kind} label: **{names.get(given, {'name': given})['name']}** ({given})")
        if given in names:
            st.button(f"Accept the {kind.lower()} label", key="review_given", shortcut=GIVEN_KEY,
                      on_click=_decide, args=(store, service, given, order))
    if top:
        st.button(f"Confirm: {top[0]['name']}", key="review_confirm", type="primary", shortcut=CONFIRM_KEY,
                  on_click=_decide, args=(store, service, str(top[0]["code"]), order))
        for col, rank, key, t in zip(st.columns(3), range(1, 4), TOP_KEYS, top, strict=False):
            col.button(f"{rank}. {t['name']}", key=f"review_top_{rank}", shortcut=key, width="stretch",
                       on_click=_decide, args=(store, service, str(t["code"]), order))
    query = st.text_input("Search a category (name or parent)", key=SEARCH,
                          placeholder="e.g. piscine, jeux, papeterie")
    found = reviewing.search_categories(service.categories, query)
    if found:
        options = [c["code"] for c in found]
        labels = {c["code"]: reviewing.category_label(c) for c in found}
        pick_col, go_col = st.columns([3, 1], vertical_alignment="bottom")
        # No default: "File here" must never file under a category nobody chose.
        picked = pick_col.selectbox(f"Category ({len(found)} found)", options, key=PICK, index=None,
                                    placeholder="Choose a category", format_func=lambda code: labels.get(code, code))
        go_col.button("File here", key="review_file", disabled=picked is None, width="stretch",
                      on_click=_decide, args=(store, service, str(picked), order))
    else:
        st.caption(f"No category matches {query!r}.")
    st.text_input("Comment (optional)", key=COMMENT, max_chars=5_000)
    st.button("Skip", key="review_skip", shortcut=SKIP_KEY, on_click=_skip, args=(store, order))
    st.caption(f"Keys: {CONFIRM_KEY} confirms, 1–3 pick from the top 3, {SKIP_KEY} skips"
               + (f", {GIVEN_KEY} accepts the {kind.lower()} label." if given in names else "."))

    if note:
        st.caption(note)
    if result is not None:
        show_explanation(result.get("explanation"), title, description)


def review_page(service: ModelService, store: ReviewStore | None, order: str = "uncertain") -> None:
    st.title("Review")
    if store is None:
        st.info("No review store: start the app with `prodcat ui --model MODEL_DIR "
                "--review-db sqlite:///reviews.db` (the database `prodcat serve --review-db` fills).")
        return
    reviewer = st.text_input("Reviewer (your name)", key="reviewer", max_chars=200).strip()
    flash = st.session_state.pop(FLASH, None)
    if flash:
        {"success": st.success, "error": st.error}.get(flash[0], st.info)(flash[1])
    if not reviewer:
        show_stats(store)
        st.info("Type your name to start: each decision is signed with it.")
        return
    item = current_item(store, reviewer, order)
    show_stats(store)
    if item is None:
        if st.session_state.get(SKIPPED):
            st.info("Only the items you skipped are left.")
            st.button("Show the skipped items again", key="review_unskip", on_click=_unskip)
        else:
            st.success("The queue is empty: nothing waits for a decision.")
            st.button("Check again", key="review_refresh")
        return
    show_item(service, store, item, order)
