"""The REST API: FastAPI over one :class:`~prodcat.serving.service.ModelService`.

* ``POST /v1/predict`` takes JSON (photo base64-encoded, or none) or a multipart form (photo as
  a file part); ``POST /v1/predict/batch`` takes a bounded list of JSON listings.
* ``GET /v1/categories``, ``GET /v1/model``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``
  and the OpenAPI schema at ``/openapi.json`` (UI at ``/docs``).

The model is loaded once, before the first request; predictions run on an inference thread
through a micro-batcher, photos are checked on the threadpool, so the event loop only parses and
routes. Every refused input comes back as ``{"error": {"code", "message"}}`` with its status.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

import prodcat
from prodcat.errors import ProdcatError
from prodcat.serving.batching import MicroBatcher
from prodcat.serving.config import ServingSettings, digest_key
from prodcat.serving.errors import ServingError, error_response
from prodcat.serving.images import ImageStore, check_image
from prodcat.serving.metrics import MetricsMiddleware, ServingMetrics
from prodcat.serving.schemas import (
    BatchResponse,
    CategoriesResponse,
    ExplainResponse,
    Health,
    ModelResponse,
    PredictResponse,
    error_responses,
    form_schema,
    request_models,
)
from prodcat.serving.service import ModelService, Query

log = logging.getLogger("prodcat.serving")

#: JSON bodies above this are parsed on the threadpool rather than on the event loop.
_PARSE_INLINE_BYTES = 64 * 1024


# Module level: FastAPI resolves these (string) annotations in the module's namespace.
_API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False,
                               description="an API key (or send it as `Authorization: Bearer KEY`)")
_BEARER = HTTPBearer(auto_error=False)
ApiKey = Annotated[str | None, Security(_API_KEY_HEADER)]
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]


@dataclass
class _State:
    settings: ServingSettings
    service: ModelService | None = None
    batcher: MicroBatcher | None = None
    store: ImageStore | None = None
    ready: bool = False


# ---------------------------------------------------------------------------------------------
# input checks


def _validation_error(exc: ValidationError, s: ServingSettings, prefix: str = "") -> ServingError:
    """The first problem pydantic found, as one of the API's error codes."""
    err = exc.errors(include_url=False)[0]
    loc = [str(p) for p in err.get("loc", ())]
    field = loc[-1] if loc else ""
    kind = err.get("type", "")
    where = prefix + ".".join(loc) if loc else prefix.rstrip(".") or "body"
    if kind == "json_invalid":
        return ServingError(422, "invalid_json", f"the body is not valid JSON: {err.get('msg')}")
    if field == "title" and (kind in {"missing", "string_too_short", "string_pattern_mismatch"}
                             or (kind == "string_type" and err.get("input") is None)):
        return ServingError(422, "title_required", f"{where}: a title is required (not empty or blank)")
    if kind == "string_too_long":
        limit = {"title": s.max_title_chars, "description": s.max_description_chars}.get(field)
        return ServingError(422, "text_too_long",
                            f"{where} is too long (at most {limit or err.get('ctx', {}).get('max_length')} characters)")
    return ServingError(422, "invalid_request", f"{where}: {err.get('msg')}")


def _decode_base64(text: str, where: str, s: ServingSettings) -> bytes:
    if text.startswith("data:"):  # a data URL from a browser: keep the payload
        text = text.split(",", 1)[-1]
    if len(text) > (s.max_image_bytes + 2) // 3 * 4 + 8:
        raise ServingError(413, "image_too_large",
                           f"{where}: more than the {s.max_image_bytes:,} bytes accepted")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ServingError(422, "invalid_image_encoding", f"{where}: not valid base64") from None


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


# ---------------------------------------------------------------------------------------------
# middleware


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413: from Content-Length before anything is read,
    and while streaming for chunked uploads that do not declare a length."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await error_response(400, "bad_request", "invalid Content-Length")(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await error_response(413, "payload_too_large",
                                         f"the request body is {declared:,} bytes; at most "
                                         f"{self.max_bytes:,} are accepted")(scope, receive, send)
                    return
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise ServingError(413, "payload_too_large",
                                       f"the request body is more than {self.max_bytes:,} bytes")
            return message

        await self.app(scope, limited_receive, send)


# ---------------------------------------------------------------------------------------------
# the app


def create_app(settings: ServingSettings, service: ModelService | None = None) -> FastAPI:
    """The API for ``settings``. Give ``service`` to share an already loaded model (tests, the
    single-worker server, which loads it before binding the port so errors show at once)."""
    s = settings
    models = request_models(s)
    metrics = ServingMetrics()
    state = _State(settings=s, service=service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.service is None:
            state.service = await run_in_threadpool(ModelService.load, s.model_dir)
        svc = state.service
        state.store = ImageStore()
        state.batcher = MicroBatcher(svc.predict_each, max_batch=s.inference_batch,
                                     on_batch=metrics.observe_batch)
        await state.batcher.start()
        metrics.model_info.labels(svc.model_id, str(len(svc.classes))).set(1)
        metrics.ready.set(1)
        state.ready = True
        log.info("model %s ready (%d categories)", svc.model_id, len(svc.classes))
        try:
            yield
        finally:
            # uvicorn has stopped accepting and waited for open requests by now.
            state.ready = False
            metrics.ready.set(0)
            await state.batcher.stop()
            state.store.close()
            log.info("model %s unloaded", svc.model_id)

    app = FastAPI(
        title="prodcat API",
        version=prodcat.__version__,
        description="Classify a marketplace listing (title, description, photo) into product "
                    "categories. Errors are `{\"error\": {\"code\", \"message\"}}`.",
        lifespan=lifespan,
    )
    app.state.prodcat = state
    app.state.metrics = metrics

    # -- errors -------------------------------------------------------------------------------

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
        metrics.errors.labels(exc.code).inc()
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = _validation_error(ValidationError.from_exception_data("request", list(exc.errors())), s) \
            if exc.errors() else ServingError(422, "invalid_request", "invalid request")
        metrics.errors.labels(err.code).inc()
        return error_response(err.status, err.code, err.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        err = error_response(exc.status_code, None, message, getattr(exc, "headers", None))
        metrics.errors.labels(str(exc.status_code)).inc()
        return err

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        metrics.errors.labels("internal_error").inc()
        return error_response(500, "internal_error", "internal error; it has been logged")

    # -- auth ---------------------------------------------------------------------------------

    async def require_key(key: ApiKey, creds: BearerCredentials) -> None:
        given = key or (creds.credentials if creds else None)
        if given:
            digest = digest_key(given)
            # Compare against every key, without stopping early: timing says nothing.
            ok = False
            for d in s.api_key_digests:
                ok |= hmac.compare_digest(digest, d)
            if ok:
                return
        raise ServingError(401, "unauthorized",
                           "a valid API key is required (header X-API-Key or Authorization: Bearer)",
                           headers={"WWW-Authenticate": 'Bearer realm="prodcat"'})

    v1_deps = [Depends(require_key)] if s.auth_enabled else []
    v1_errors = (401,) if s.auth_enabled else ()

    # -- helpers ------------------------------------------------------------------------------

    def ready_service() -> tuple[ModelService, MicroBatcher]:
        if not state.ready or state.service is None or state.batcher is None:
            raise ServingError(503, "not_ready", "the model is not loaded (starting or shutting down)")
        return state.service, state.batcher

    def store_image(data: bytes, name: str) -> Path:
        checked = check_image(data, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels, name=name)
        assert state.store is not None
        return state.store.write(checked)

    async def run_queries(items: list[tuple[BaseModel, bytes | None]], names: list[str]) -> list[dict]:
        """Check the photos, classify every listing (they share model calls), clean up."""
        _, batcher = ready_service()
        paths: list[Path | None] = []
        try:
            for (_, data), name in zip(items, names, strict=True):
                paths.append(await run_in_threadpool(store_image, data, name) if data is not None else None)
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
            metrics.predictions.labels(r["decision"]).inc()
        return list(results)

    async def parse_json(request: Request, model: type[BaseModel]) -> Any:
        body = await request.body()
        if not body:
            raise ServingError(422, "invalid_request", "the body is empty; send a JSON object")
        try:
            if len(body) > _PARSE_INLINE_BYTES:
                return await run_in_threadpool(model.model_validate_json, body)
            return model.model_validate_json(body)
        except ValidationError as exc:
            raise _validation_error(exc, s) from None

    async def parse_form(request: Request, form_model: type[BaseModel]) -> tuple[BaseModel, bytes | None]:
        try:
            # Text parts are bounded too (UTF-8 takes at most 4 bytes a character).
            form = await request.form(max_files=1, max_fields=16,
                                      max_part_size=4 * max(s.max_title_chars, s.max_description_chars) + 64)
        except StarletteHTTPException as exc:
            detail = str(exc.detail)
            if "maximum size" in detail.lower():
                raise ServingError(422, "text_too_long", f"a form field is too long ({detail})") from None
            # 422 like a JSON syntax error: the body cannot be read as the form it claims to be.
            raise ServingError(422, "invalid_multipart", f"cannot read the form: {detail}") from None
        try:
            fields = {k: v for k, v in form.items() if k != "image" and isinstance(v, str)}
            try:
                m = form_model.model_validate(fields)
            except ValidationError as exc:
                raise _validation_error(exc, s) from None
            upload = form.get("image")
            data: bytes | None = None
            if isinstance(upload, UploadFile):
                data = await upload.read(s.max_image_bytes + 1)
                if len(data) > s.max_image_bytes:
                    raise ServingError(413, "image_too_large",
                                       f"image: more than the {s.max_image_bytes:,} bytes accepted")
                if not data and not upload.filename:
                    data = None  # a browser's empty file input: no photo
            elif isinstance(upload, str) and upload:
                raise ServingError(422, "invalid_request", "image: send the photo as a file part")
            return m, data
        finally:
            await form.close()

    async def parse_listing(request: Request, json_model: type[BaseModel],
                            form_model: type[BaseModel]) -> tuple[BaseModel, bytes | None]:
        """One listing from a JSON body (photo base64-encoded) or a multipart form (photo as the
        file part ``image``): the validated fields and the photo's bytes, if any."""
        media = _media_type(request)
        if media in ("multipart/form-data", "application/x-www-form-urlencoded"):
            return await parse_form(request, form_model)
        if media == "application/json" or media.endswith("+json"):
            m = await parse_json(request, json_model)
            return m, _decode_base64(m.image, "image", s) if m.image else None
        raise ServingError(415, "unsupported_media_type",
                           "send application/json or multipart/form-data (a URL-encoded form "
                           "without a photo is accepted too)")

    # -- endpoints ----------------------------------------------------------------------------

    predict_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/PredictForm"}},
    }}}

    @app.post("/v1/predict", response_model=PredictResponse, tags=["predict"],
              dependencies=v1_deps, openapi_extra=predict_body,
              responses=error_responses(*v1_errors, 413, 415, 422, 503),
              summary="Top-k categories of one listing")
    async def predict(request: Request) -> dict:
        """A JSON body (`PredictRequest`, photo base64-encoded) or a multipart form (`title`,
        `description`, `top_k`, and the photo as the file part `image`)."""
        t0 = time.perf_counter()
        m, data = await parse_listing(request, models.predict, models.form)
        result = (await run_queries([(m, data)], ["image"]))[0]
        svc, _ = ready_service()
        return {**result, "model_id": svc.model_id,
                "latency_ms": round((time.perf_counter() - t0) * 1000, 3)}

    batch_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}}}}

    @app.post("/v1/predict/batch", response_model=BatchResponse, tags=["predict"],
              dependencies=v1_deps, openapi_extra=batch_body,
              responses=error_responses(*v1_errors, 413, 415, 422, 503),
              summary=f"Top-k categories of up to {s.max_batch} listings")
    async def predict_batch(request: Request) -> dict:
        """`{"items": [PredictRequest, ...]}`; results come back in the same order, each with
        the `id` it was sent with."""
        t0 = time.perf_counter()
        media = _media_type(request)
        if not (media == "application/json" or media.endswith("+json")):
            raise ServingError(415, "unsupported_media_type", "send application/json")
        body = await request.body()
        try:
            raw = json.loads(body) if len(body) <= _PARSE_INLINE_BYTES else \
                await run_in_threadpool(json.loads, body)
        except (ValueError, RecursionError) as exc:
            raise ServingError(422, "invalid_json", f"the body is not valid JSON: {exc}") from None
        # Counted before the items are validated: an oversized batch is refused outright.
        if isinstance(raw, dict) and isinstance(raw.get("items"), list) and len(raw["items"]) > s.max_batch:
            raise ServingError(413, "batch_too_large",
                               f"{len(raw['items'])} items; at most {s.max_batch} per batch")
        try:
            batch = models.batch.model_validate(raw)
        except ValidationError as exc:
            raise _validation_error(exc, s) from None
        items = [(m, _decode_base64(m.image, f"items.{i}.image", s) if m.image else None)
                 for i, m in enumerate(batch.items)]
        results = await run_queries(items, [f"items.{i}.image" for i in range(len(items))])
        svc, _ = ready_service()
        return {"results": results, "model_id": svc.model_id,
                "latency_ms": round((time.perf_counter() - t0) * 1000, 3)}

    explain_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ExplainRequest"}},
        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/ExplainForm"}},
    }}}
    explain_slots = asyncio.Semaphore(s.explain_concurrency)

    @app.post("/v1/explain", response_model=ExplainResponse, tags=["predict"],
              dependencies=v1_deps, openapi_extra=explain_body,
              responses=error_responses(*v1_errors, 413, 415, 422, 503),
              summary="Why the model gives one listing its categories")
    async def explain(request: Request) -> dict:
        """The answer with its reasons: each word's signed weight for the top-k categories, a
        heat map of the photo regions behind the top one (`heatmap_png`), and how far text and
        photo each moved the probabilities. Same inputs as `/v1/predict`, plus the options of
        `ExplainRequest`."""
        t0 = time.perf_counter()
        m, data = await parse_listing(request, models.explain, models.explain_form)
        svc, _ = ready_service()
        path = await run_in_threadpool(store_image, data, "image") if data is not None else None
        try:
            query = Query(title=m.title, description=m.description or "",
                          image=str(path) if path is not None else None, top_k=m.top_k)
            async with explain_slots:
                result = await run_in_threadpool(
                    svc.explain, query, text_method=m.text_method, image_method=m.image_method,
                    lime_samples=m.lime_samples, heatmap=m.heatmap)
        except ProdcatError as exc:  # e.g. LIME not installed, a head LIME alone can explain
            raise ServingError(422, "cannot_explain", str(exc)) from None
        finally:
            ImageStore.discard([path])
        png = result.pop("heatmap_png")
        return {**result, "heatmap_png": base64.b64encode(png).decode("ascii") if png else None,
                "model_id": svc.model_id, "latency_ms": round((time.perf_counter() - t0) * 1000, 3)}

    @app.get("/v1/categories", response_model=CategoriesResponse, tags=["model"],
             dependencies=v1_deps, responses=error_responses(*v1_errors, 503))
    async def categories() -> dict:
        """The categories the model can answer, in the model's order."""
        svc, _ = ready_service()
        return {"count": len(svc.categories), "categories": svc.categories}

    @app.get("/v1/model", response_model=ModelResponse, tags=["model"], dependencies=v1_deps,
             responses=error_responses(*v1_errors, 503))
    async def model_info() -> dict:
        """Manifest summary: versions, training data, cross-validated metrics, limits."""
        svc, _ = ready_service()
        limits = {k: getattr(s, k) for k in ("max_title_chars", "max_description_chars",
                                             "max_image_bytes", "max_image_pixels", "max_body_bytes",
                                             "max_batch", "max_top_k")}
        return {**svc.summary(), "limits": limits}

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Health, tags=["ops"], responses=error_responses(503))
    async def readyz() -> dict:
        """Readiness: the model is loaded and predictions are served."""
        svc, _ = ready_service()
        return {"status": "ready", "model_id": svc.model_id}

    @app.get("/metrics", tags=["ops"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                              "description": "Prometheus text format"}})
    async def prometheus_metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- OpenAPI: the hand-parsed request bodies need their schemas in the components ---------

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description,
                             routes=app.routes)
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (models.predict, models.batch, models.explain):
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            comps.update(js.pop("$defs", {}))
            comps[js.get("title", model.__name__)] = js
        comps["PredictForm"] = form_schema(models.form, s.max_image_bytes)
        comps["ExplainForm"] = form_schema(models.explain_form, s.max_image_bytes)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.add_middleware(BodyLimitMiddleware, max_bytes=s.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (``--workers`` > 1): settings from the environment."""
    return create_app(ServingSettings.from_env())
