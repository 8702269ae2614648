"""The API's endpoints.

Each endpoint has two halves: a function of the :class:`~prodcat.serving.state.AppState` and
already-read input that does the work (``predict_listing``, ``predict_listings``,
``explain_listing``, ``categories_of``, ``model_summary``, ``readiness``; callable without HTTP),
and the endpoint FastAPI calls, which reads the request and adds the timing.
:func:`prodcat.serving.app.create_app` wires the endpoints to their routes.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from pathlib import Path
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from prodcat.errors import ProdcatError
from prodcat.serving.config import ServingSettings, digest_key
from prodcat.serving.errors import ServingError
from prodcat.serving.images import ImageStore, decode_upload, probe_upload
from prodcat.serving.parsing import listing_photos, parse_batch, parse_listing
from prodcat.serving.service import Query
from prodcat.serving.state import AppState, state_of

# Module level: FastAPI resolves these (string) annotations in the module's namespace.
_API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="an API key (or send it as `Authorization: Bearer KEY`)")
_BEARER = HTTPBearer(auto_error=False)
ApiKey = Annotated[str | None, Security(_API_KEY_HEADER)]
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]

Listing = tuple[BaseModel, bytes | None]


# ---------------------------------------------------------------------------------------------
# the work, as functions of the app state


def check_api_key(settings: ServingSettings, given: str | None) -> None:
    """Raise 401 unless ``given`` is one of the accepted keys."""
    if given:
        digest = digest_key(given)
        # Compare against every key, without stopping early: timing says nothing.
        ok = False
        for d in settings.api_key_digests:
            ok |= hmac.compare_digest(digest, d)
        if ok:
            return
    raise ServingError(401, "unauthorized",
                       "a valid API key is required (header X-API-Key or Authorization: Bearer)",
                       headers={"WWW-Authenticate": 'Bearer realm="prodcat"'})


def _probe_all(state: AppState, photos: list[tuple[bytes, str]], size: int) -> int:
    """Check every photo's header against the per-photo limits; their decode samples in all."""
    s = state.settings
    return sum(probe_upload(data, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels,
                            max_samples=s.max_decode_samples, target_size=size, name=name).samples
               for data, name in photos)


def _decode_and_store(state: AppState, data: bytes, name: str, size: int) -> Path:
    s = state.settings
    checked = decode_upload(data, max_pixels=s.max_image_pixels, max_samples=s.max_decode_samples,
                            target_size=size, name=name)
    assert state.store is not None
    return state.store.write(checked)


async def store_photos(state: AppState, photos: list[tuple[bytes | None, str]],
                       paths: list[Path | None]) -> None:
    """Check the photos and write each, decoded once at the encoder's size, where the model
    reads it; ``paths`` gets one entry per photo (None where none was given), so the caller can
    discard what was written even when a later photo is refused.

    Every header is checked before any photo is decoded, so a refused request costs no decode;
    each decode then waits for a slot of the app's :class:`~prodcat.serving.images.DecodeGate`
    (503 with Retry-After when too many are waiting).
    """
    svc, _ = state.ready_service()
    s, size = state.settings, svc.decode_size
    given = [(data, name) for data, name in photos if data is not None]
    if given:
        samples = await run_in_threadpool(_probe_all, state, given, size)
        total = sum(len(data) for data, _ in given)
        if total > s.max_batch_image_bytes:
            raise ServingError(413, "photos_too_large",
                               f"the request's {len(given)} photos are {total:,} bytes together; at most "
                               f"{s.max_batch_image_bytes:,} per request (max_batch_image_bytes)")
        if samples > s.max_batch_decode_samples:
            raise ServingError(413, "photos_too_large",
                               f"decoding the request's {len(given)} photos takes {samples:,} samples "
                               f"(pixels × bands) together; at most {s.max_batch_decode_samples:,} per "
                               "request (max_batch_decode_samples)")
    for data, name in photos:
        if data is None:
            paths.append(None)
            continue
        async with state.decodes.slot():
            paths.append(await run_in_threadpool(_decode_and_store, state, data, name, size))


async def classify(state: AppState, items: list[Listing], names: list[str]) -> list[dict]:
    """Check the photos, classify every listing (they share model calls), clean up."""
    _, batcher = state.ready_service()
    metrics = state.metrics
    paths: list[Path | None] = []
    try:
        await store_photos(state, [(data, name) for (_, data), name in zip(items, names, strict=True)], paths)
        queries = [Query(title=m.title, description=m.description or "",
                         image=str(p) if p is not None else None, top_k=m.top_k)
                   for (m, _), p in zip(items, paths, strict=True)]
        if any(p is not None for p in paths):
            metrics.images.inc(sum(p is not None for p in paths))
        results = await asyncio.gather(*(batcher.submit(q) for q in queries))
    finally:
        ImageStore.discard(paths)
    for (m, _), r in zip(items, results, strict=True):
        r["id"] = getattr(m, "id", None)
        metrics.observe_answer(r)
    if state.review is not None:  # imported here: the review extra is needed only with --review-db
        from prodcat.serving.review_routes import queue_answers

        await queue_answers(state, items, list(results))
    return list(results)


async def predict_listing(state: AppState, listing: BaseModel, photo: bytes | None) -> dict:
    """The ``/v1/predict`` answer (without its latency)."""
    result = (await classify(state, [(listing, photo)], ["image"]))[0]
    svc, _ = state.ready_service()
    return {**result, "model_id": svc.model_id}


async def predict_listings(state: AppState, items: list[Listing]) -> dict:
    """The ``/v1/predict/batch`` answer (without its latency): results in the order of ``items``."""
    results = await classify(state, items, [f"items.{i}.image" for i in range(len(items))])
    svc, _ = state.ready_service()
    return {"results": results, "model_id": svc.model_id}


async def explain_listing(state: AppState, listing: BaseModel, photo: bytes | None) -> dict:
    """The ``/v1/explain`` answer (without its latency); the heat map as base64 PNG."""
    svc, _ = state.ready_service()
    paths: list[Path | None] = []
    m = listing
    try:
        await store_photos(state, [(photo, "image")], paths)
        path = paths[0]
        query = Query(title=m.title, description=m.description or "",
                      image=str(path) if path is not None else None, top_k=m.top_k)
        async with state.explain_slots:
            result = await run_in_threadpool(
                svc.explain, query, text_method=m.text_method, image_method=m.image_method,
                lime_samples=m.lime_samples, heatmap=m.heatmap)
    except ProdcatError as exc:  # e.g. LIME not installed, a head LIME alone can explain
        raise ServingError(422, "cannot_explain", str(exc)) from None
    finally:
        ImageStore.discard(paths)
    png = result.pop("heatmap_png")
    return {**result, "heatmap_png": base64.b64encode(png).decode("ascii") if png else None,
            "model_id": svc.model_id}


def categories_of(state: AppState) -> dict:
    svc, _ = state.ready_service()
    return {"count": len(svc.categories), "categories": svc.categories}


def model_summary(state: AppState) -> dict:
    svc, _ = state.ready_service()
    s = state.settings
    limits = {k: getattr(s, k) for k in ("max_title_chars", "max_description_chars", "max_image_bytes",
                                         "max_image_pixels", "max_decode_samples", "max_body_bytes",
                                         "max_batch", "max_batch_image_bytes", "max_batch_decode_samples",
                                         "max_top_k")}
    return {**svc.summary(), "limits": limits}


def readiness(state: AppState) -> dict:
    svc, _ = state.ready_service()
    return {"status": "ready", "model_id": svc.model_id}


# ---------------------------------------------------------------------------------------------
# the endpoints: read the request, call the work (docstrings are the OpenAPI descriptions)


def _timed(result: dict, t0: float) -> dict:
    return {**result, "latency_ms": round((time.perf_counter() - t0) * 1000, 3)}


async def require_key(request: Request, key: ApiKey, creds: BearerCredentials) -> None:
    check_api_key(state_of(request).settings, key or (creds.credentials if creds else None))


async def predict(request: Request) -> dict:
    """A JSON body (`PredictRequest`, photo base64-encoded) or a multipart form (`title`,
    `description`, `top_k`, and the photo as the file part `image`)."""
    t0 = time.perf_counter()
    state = state_of(request)
    m, data = await parse_listing(request, state.models.predict, state.models.form, state.settings)
    return _timed(await predict_listing(state, m, data), t0)


async def predict_batch(request: Request) -> dict:
    """`{"items": [PredictRequest, ...]}`; results come back in the same order, each with
    the `id` it was sent with."""
    t0 = time.perf_counter()
    state = state_of(request)
    batch = await parse_batch(request, state.models.batch, state.settings)
    return _timed(await predict_listings(state, listing_photos(batch, state.settings)), t0)


async def explain(request: Request) -> dict:
    """The answer with its reasons: each word's signed weight for the top-k categories, a
    heat map of the photo regions behind the top one (`heatmap_png`), and how far text and
    photo each moved the probabilities. Same inputs as `/v1/predict`, plus the options of
    `ExplainRequest`."""
    t0 = time.perf_counter()
    state = state_of(request)
    m, data = await parse_listing(request, state.models.explain, state.models.explain_form, state.settings)
    return _timed(await explain_listing(state, m, data), t0)


async def categories(request: Request) -> dict:
    """The categories the model can answer, in the model's order."""
    return categories_of(state_of(request))


async def model_info(request: Request) -> dict:
    """Manifest summary: versions, training data, cross-validated metrics, limits."""
    return model_summary(state_of(request))


async def healthz() -> dict:
    """Liveness: the process answers."""
    return {"status": "ok"}


async def readyz(request: Request) -> dict:
    """Readiness: the model is loaded and predictions are served."""
    return readiness(state_of(request))


async def prometheus_metrics(request: Request) -> Response:
    """Prometheus metrics."""
    return Response(generate_latest(state_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)

