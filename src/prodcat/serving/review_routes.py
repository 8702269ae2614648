"""The review queue's endpoints (present when the server runs with ``--review-db``).

* answers below the model's threshold, or where text and photo disagree, are queued by
  :func:`queue_answers`, which :func:`prodcat.serving.routes.classify` calls;
* ``POST /v1/feedback`` stores a correction (201 once committed); ``GET /v1/review/next`` claims
  the next item; ``POST /v1/review/{item}`` decides it (409 when already decided);
  ``GET /v1/review/stats``.

Store calls are blocking database transactions: they run on the threadpool.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal, NamedTuple

from fastapi import Query as QueryParam
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from prodcat.review import ORDERS, NewItem, ReviewError, ReviewStore
from prodcat.serving.config import ServingSettings
from prodcat.serving.errors import ServingError
from prodcat.serving.images import check_image
from prodcat.serving.parsing import parse_json, parse_listing
from prodcat.serving.state import AppState, state_of

Label = Annotated[str, Field(min_length=1, max_length=100, description="a category code of the model")]
Reviewer = Annotated[str, Field(min_length=1, max_length=200, description="who decides")]


class DecisionRequest(BaseModel):
    model_config = ConfigDict(title="DecisionRequest")

    label: Label
    reviewer: Reviewer
    comment: Annotated[str | None, Field(max_length=5_000)] = None
    claim: Annotated[str | None, Field(max_length=64, description="the claim token from /v1/review/next")] = None


class FeedbackModels(NamedTuple):
    json_model: type[BaseModel]
    form_model: type[BaseModel]


@lru_cache(maxsize=8)
def feedback_models(settings: ServingSettings) -> FeedbackModels:
    """``/v1/predict``'s request models (same limits, photo the same way) plus a ``label``."""
    from prodcat.serving.schemas import request_models

    base = request_models(settings)

    class FeedbackRequest(base.predict):
        model_config = ConfigDict(title="FeedbackRequest")
        label: Label

    class FeedbackForm(base.form):
        model_config = ConfigDict(title="FeedbackForm")
        id: Annotated[str | None, Field(max_length=200)] = None
        label: Label

    return FeedbackModels(json_model=FeedbackRequest, form_model=FeedbackForm)


def review_store(state: AppState) -> ReviewStore:
    if state.review is None:
        raise ServingError(503, "review_disabled", "this server runs without a review store (--review-db)")
    return state.review


def _served(exc: ReviewError) -> ServingError:
    return ServingError(exc.status, exc.code, str(exc))


def answer_reason(result: dict) -> str | None:
    """Why an answer needs a person, or None: unsure first, then text and photo disagreeing."""
    if result.get("needs_review"):
        return "low_confidence"
    modal = result.get("modalities") or {}
    text, image = modal.get("text"), modal.get("image")
    if text and image and text[0]["code"] != image[0]["code"]:
        return "modalities_disagree"
    return None


async def queue_answers(state: AppState, items: list[tuple[BaseModel, bytes | None]], results: list[dict]) -> None:
    """Queue the answers that need a person (committed before the response is sent)."""
    if state.review is None:
        return
    svc, _ = state.ready_service()
    new = [NewItem(reason, title=m.title, description=m.description or "", listing_id=getattr(m, "id", None),
                   photo=data, model_id=svc.model_id, top_k=r["top_k"], source="api")
           for (m, data), r in zip(items, results, strict=True) if (reason := answer_reason(r))]
    if new:
        await run_in_threadpool(state.review.add, new)


def check_label(state: AppState, label: str) -> None:
    svc, _ = state.ready_service()
    if label not in svc.classes:
        raise ServingError(422, "unknown_label", f"label {label!r} is not one of the model's "
                                                 f"{len(svc.classes)} category codes (GET /v1/categories)")


# ---------------------------------------------------------------------------------------------
# the work


async def store_feedback(state: AppState, m: BaseModel, photo: bytes | None) -> dict:
    store = review_store(state)
    check_label(state, m.label)
    if photo is not None:
        # Checked like a photo to classify: a correction must not store what /v1/predict refuses.
        s = state.settings
        await run_in_threadpool(check_image, photo, max_bytes=s.max_image_bytes,
                                max_pixels=s.max_image_pixels, name="image")
    svc, _ = state.ready_service()
    item = NewItem("feedback", title=m.title, description=m.description or "", listing_id=m.id,
                   photo=photo, model_id=svc.model_id, given_label=m.label, source="feedback")
    (item_id,) = await run_in_threadpool(store.add, [item])
    return {"item_id": item_id, "listing_id": m.id, "label": m.label, "status": "stored"}


async def next_item(state: AppState, reviewer: str, order: str | None, lease_seconds: float) -> dict:
    store = review_store(state)
    try:
        item = await run_in_threadpool(store.claim_next, reviewer, order=order or state.settings.review_order,
                                       lease_seconds=lease_seconds)
    except ReviewError as exc:
        raise _served(exc) from None
    return {"item": item}


async def decide_item(state: AppState, item_id: int, d: DecisionRequest) -> dict:
    store = review_store(state)
    check_label(state, d.label)
    try:
        return await run_in_threadpool(store.decide, item_id, d.label, d.reviewer, comment=d.comment,
                                       claim=d.claim)
    except ReviewError as exc:
        raise _served(exc) from None


# ---------------------------------------------------------------------------------------------
# the endpoints


async def feedback(request: Request) -> JSONResponse:
    """A correction for a listing (`{"id", "title", "description", "label"}`, photo optional as
    in `/v1/predict`): 201 once it is stored; 422 when `label` is not one of the model's codes."""
    state = state_of(request)
    models = feedback_models(state.settings)
    m, data = await parse_listing(request, models.json_model, models.form_model, state.settings)
    return JSONResponse(await store_feedback(state, m, data), status_code=201)


async def review_next(
        request: Request,
        reviewer: Annotated[str, QueryParam(min_length=1, max_length=200)],
        order: Annotated[Literal[ORDERS] | None, QueryParam(  # type: ignore[valid-type]
            description="`uncertain`: smallest margin between the two best answers first; `oldest`")] = None,
        lease_seconds: Annotated[float, QueryParam(gt=0, le=86_400)] = 600) -> dict:
    """Claim the next item for `reviewer` (nobody else gets it until it is decided or the lease
    runs out); `{"item": null}` when the queue is empty."""
    return await next_item(state_of(request), reviewer, order, lease_seconds)


async def review_decide(request: Request, item: int) -> dict:
    """Decide an item (`DecisionRequest`); 409 when it was decided already or someone else holds
    it, 404 for an unknown item, 422 for an unknown label."""
    state = state_of(request)
    d = await parse_json(request, DecisionRequest, state.settings)
    return await decide_item(state, item, d)


async def review_stats(request: Request) -> dict:
    """Queue size by reason, items claimed, decided (today), and how often reviewers agreed
    with the model's answer."""
    store = review_store(state_of(request))
    return await run_in_threadpool(store.stats)
