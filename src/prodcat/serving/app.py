"""The REST API: FastAPI over one :class:`~prodcat.serving.service.ModelService`.

* ``POST /v1/predict`` takes JSON (photo base64-encoded, or none) or a multipart form (photo as
  a file part); ``POST /v1/predict/batch`` takes a bounded list of JSON listings.
* ``GET /v1/categories``, ``GET /v1/model``, ``GET|HEAD /healthz``, ``GET|HEAD /readyz``,
  ``GET /metrics`` and the OpenAPI schema at ``/openapi.json`` (Swagger UI at ``/docs``, its
  assets served from the ``fastapi-offline`` package, so the docs work without internet).

The model is loaded once, before the first request; predictions run on an inference thread
through a micro-batcher, photos are checked on the threadpool, so the event loop only parses and
routes. Every refused input comes back as ``{"error": {"code", "message"}}`` with its status.

This module wires things together: the endpoints are in :mod:`prodcat.serving.routes`, the
request parsing in :mod:`prodcat.serving.parsing`, what lives between requests in
:mod:`prodcat.serving.state`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

import prodcat
from prodcat.serving import routes
from prodcat.serving.config import ServingSettings
from prodcat.serving.errors import ServingError, error_response
from prodcat.serving.metrics import MetricsMiddleware
from prodcat.serving.parsing import validation_error
from prodcat.serving.schemas import (
    BatchResponse,
    CategoriesResponse,
    ExplainResponse,
    Health,
    ModelResponse,
    PredictResponse,
    error_responses,
    form_schema,
)
from prodcat.serving.service import ModelService
from prodcat.serving.state import AppState, state_of

log = logging.getLogger("prodcat.serving")

# The listing endpoints read their bodies themselves (JSON or a form): OpenAPI is told the shapes.
_PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}},
    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/PredictForm"}},
}}}
_BATCH_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}}}}
_EXPLAIN_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/ExplainRequest"}},
    "multipart/form-data": {"schema": {"$ref": "#/components/schemas/ExplainForm"}},
}}}
_METRICS_RESPONSES = {200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
                            "description": "Prometheus text format"}}


# ---------------------------------------------------------------------------------------------
# middleware


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413: from Content-Length before anything is read,
    and while streaming for chunked uploads that do not declare a length. A body not complete
    ``timeout`` seconds after the app starts reading it is refused with 408 (a slow client
    would otherwise hold its connection and the part of the body already sent)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

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
        deadline: float | None = None
        complete = False

        async def limited_receive():
            nonlocal seen, deadline, complete
            if complete or self.timeout is None:
                message = await receive()
            else:
                loop = asyncio.get_running_loop()
                deadline = deadline if deadline is not None else loop.time() + self.timeout
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise ServingError(408, "request_timeout",
                                       f"the request body did not arrive within {self.timeout:g} s") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if seen > self.max_bytes:
                    raise ServingError(413, "payload_too_large",
                                       f"the request body is more than {self.max_bytes:,} bytes")
            return message

        await self.app(scope, limited_receive, send)


# ---------------------------------------------------------------------------------------------
# errors: every one as {"error": {"code", "message"}}, counted by code


async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
    state_of(request).metrics.errors.labels(exc.code).inc()
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    state = state_of(request)
    err = validation_error(ValidationError.from_exception_data("request", list(exc.errors())), state.settings) \
        if exc.errors() else ServingError(422, "invalid_request", "invalid request")
    state.metrics.errors.labels(err.code).inc()
    return error_response(err.status, err.code, err.message)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = str(exc.detail) if exc.detail else "error"
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    err = error_response(exc.status_code, None, message, getattr(exc, "headers", None))
    state_of(request).metrics.errors.labels(str(exc.status_code)).inc()
    return err


async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
    # The client's choice, not the server's fault: no traceback, no internal_error.
    log.info("client disconnected before sending the whole request: %s %s",
             request.method, request.url.path)
    state_of(request).metrics.errors.labels("client_disconnected").inc()
    return Response(status_code=400)  # nobody reads it: the connection is gone


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    state_of(request).metrics.errors.labels("internal_error").inc()
    return error_response(500, "internal_error", "internal error; it has been logged")


# ---------------------------------------------------------------------------------------------
# the app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: AppState = app.state.prodcat
    await state.start()
    try:
        yield
    finally:
        # uvicorn has stopped accepting and waited for open requests by now.
        await state.stop()


def create_app(settings: ServingSettings, service: ModelService | None = None) -> FastAPI:
    """The API for ``settings``. Give ``service`` to share an already loaded model (tests, the
    single-worker server, which loads it before binding the port so errors show at once)."""
    s = settings
    state = AppState(settings=s, service=service)
    app = FastAPI(
        title="prodcat API",
        version=prodcat.__version__,
        description="Classify a marketplace listing (title, description, photo) into product "
                    "categories. Errors are `{\"error\": {\"code\", \"message\"}}`.",
        lifespan=_lifespan,
        # Served below: the schema and Swagger UI may need the key, and the UI's assets come
        # from a package rather than a CDN. ReDoc is left out (it would need a CDN).
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.prodcat = state
    app.state.metrics = state.metrics

    app.add_exception_handler(ServingError, _serving_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    app.add_exception_handler(Exception, _unexpected)

    v1 = {"dependencies": [Depends(routes.require_key)] if s.auth_enabled else []}
    v1_errors = (401,) if s.auth_enabled else ()
    listing_errors = error_responses(*v1_errors, 413, 415, 422, 503)
    app.add_api_route("/v1/predict", routes.predict, methods=["POST"], response_model=PredictResponse,
                      tags=["predict"], openapi_extra=_PREDICT_BODY, responses=listing_errors,
                      summary="Top-k categories of one listing", **v1)
    app.add_api_route("/v1/predict/batch", routes.predict_batch, methods=["POST"],
                      response_model=BatchResponse, tags=["predict"], openapi_extra=_BATCH_BODY,
                      responses=listing_errors, summary=f"Top-k categories of up to {s.max_batch} listings",
                      **v1)
    app.add_api_route("/v1/explain", routes.explain, methods=["POST"], response_model=ExplainResponse,
                      tags=["predict"], openapi_extra=_EXPLAIN_BODY, responses=listing_errors,
                      summary="Why the model gives one listing its categories", **v1)
    app.add_api_route("/v1/categories", routes.categories, methods=["GET"],
                      response_model=CategoriesResponse, tags=["model"],
                      responses=error_responses(*v1_errors, 503), **v1)
    app.add_api_route("/v1/model", routes.model_info, methods=["GET"], response_model=ModelResponse,
                      tags=["model"], responses=error_responses(*v1_errors, 503), **v1)
    if s.review_db:
        _review_routes(app, v1, v1_errors)
    app.add_api_route("/healthz", routes.healthz, methods=["GET"], response_model=Health, tags=["ops"])
    app.add_api_route("/readyz", routes.readyz, methods=["GET"], response_model=Health, tags=["ops"],
                      responses=error_responses(503))
    # HEAD too, as routes of their own (one OpenAPI operation per route): load balancers and
    # uptime probes often check with HEAD.
    for path, endpoint in (("/healthz", routes.healthz), ("/readyz", routes.readyz)):
        app.add_api_route(path, endpoint, methods=["HEAD"], response_model=Health, include_in_schema=False)
    ops = v1 if s.protect_ops else {}
    ops_errors = v1_errors if s.protect_ops else ()
    app.add_api_route("/metrics", routes.prometheus_metrics, methods=["GET"], tags=["ops"],
                      response_class=Response, responses={**_METRICS_RESPONSES, **error_responses(*ops_errors)},
                      **ops)

    app.openapi = lambda: _openapi(app, state)  # type: ignore[method-assign]

    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    app.add_api_route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False, **ops)
    _add_docs(app, ops)
    app.add_middleware(BodyLimitMiddleware, max_bytes=s.max_body_bytes, timeout=s.body_timeout)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app


def _review_routes(app: FastAPI, v1: dict, v1_errors: tuple[int, ...]) -> None:
    from prodcat.serving import review_routes as rr

    app.add_api_route("/v1/feedback", rr.feedback, methods=["POST"], status_code=201, tags=["review"],
                      responses=error_responses(*v1_errors, 413, 415, 422, 503),
                      summary="Record a correction for a listing", **v1)
    app.add_api_route("/v1/review/next", rr.review_next, methods=["GET"], tags=["review"],
                      responses=error_responses(*v1_errors, 503), summary="Claim the next item to review", **v1)
    app.add_api_route("/v1/review/stats", rr.review_stats, methods=["GET"], tags=["review"],
                      responses=error_responses(*v1_errors, 503), summary="Review queue figures", **v1)
    app.add_api_route("/v1/review/{item}", rr.review_decide, methods=["POST"], tags=["review"],
                      responses=error_responses(*v1_errors, 404, 409, 422, 503),
                      summary="Decide a review item", **v1)


#: Where Swagger UI's own files are served from.
DOCS_ASSETS = "/docs/assets"


def _docs_assets() -> str | None:
    """The folder of Swagger UI's JavaScript and CSS shipped in ``fastapi-offline`` (the
    ``serve`` extra), or None when it is not installed."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static"
    return str(folder) if (folder / "swagger-ui-bundle.js").is_file() else None


def _add_docs(app: FastAPI, ops: dict[str, Any]) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = _docs_assets()
    if assets is None:
        log.warning("/docs is off: Swagger UI's files come from the fastapi-offline package "
                    "(pip install 'prodcat[serve]')")
        return
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title=f"{app.title} - docs",
                                   swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png")

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False, **ops)


def _openapi(app: FastAPI, state: AppState) -> dict[str, Any]:
    """FastAPI's schema plus the request bodies the listing endpoints parse by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    models, s = state.models, state.settings
    for model in (models.predict, models.batch, models.explain):
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        comps.update(js.pop("$defs", {}))
        comps[js.get("title", model.__name__)] = js
    comps["PredictForm"] = form_schema(models.form, s.max_image_bytes)
    comps["ExplainForm"] = form_schema(models.explain_form, s.max_image_bytes)
    app.openapi_schema = schema
    return schema


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (``--workers`` > 1): settings from the environment."""
    return create_app(ServingSettings.from_env())
