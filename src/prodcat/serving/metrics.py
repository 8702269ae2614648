"""Prometheus metrics, kept in a registry of the app's own (several apps may live in one test
process), and a pure-ASGI middleware that times every request by its route template."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Confidence (top probability) buckets: deciles, finer near 1 where most filed answers fall.
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("prodcat_http_requests_total", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("prodcat_http_request_duration_seconds",
                                 "Time from request to response, by route", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("prodcat_http_requests_in_flight", "Requests being served", registry=r)
        self.predictions = Counter("prodcat_predictions_total", "Listings classified, by decision",
                                   ["decision"], registry=r)
        self.errors = Counter("prodcat_errors_total", "Refused or failed requests, by error code",
                              ["code"], registry=r)
        self.images = Counter("prodcat_images_total", "Photos received with a prediction request",
                              registry=r)
        self.batch_size = Histogram("prodcat_inference_batch_size", "Listings per model call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.inference = Histogram("prodcat_inference_duration_seconds", "Time of one model call",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.model_info = Gauge("prodcat_model_info", "The loaded model (value 1)",
                                ["model_id", "n_classes"], registry=r)
        # What the model answers (``prodcat monitor --metrics`` reads these for drift): the
        # category series are bounded by the model's classes, never by the input.
        self.categories = Counter("prodcat_predicted_category_total",
                                  "Listings classified, by predicted category (top-1 code)",
                                  ["category"], registry=r)
        self.confidence = Histogram("prodcat_prediction_confidence",
                                    "Top-1 probability of each classified listing",
                                    buckets=CONFIDENCE_BUCKETS, registry=r)
        self.review_share = Gauge("prodcat_needs_review_ratio",
                                  "Share of the listings classified since start that need review",
                                  registry=r)
        self._answered = 0
        self._unsure = 0
        self.ready = Gauge("prodcat_ready", "1 when the model is loaded and requests are served",
                           registry=r)

    def observe_answer(self, result: dict) -> None:
        """One answer: its decision, predicted category, confidence, and the review share."""
        self.predictions.labels(result["decision"]).inc()
        top = (result.get("top_k") or [None])[0]
        if top is not None:
            self.categories.labels(str(top["code"])).inc()
            self.confidence.observe(float(top["probability"]))
        self._answered += 1
        self._unsure += bool(result.get("needs_review"))
        self.review_share.set(self._unsure / self._answered)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)


class MetricsMiddleware:
    """Counts and times each HTTP request under its route template (``/v1/predict``), never the
    raw path, so a client probing random URLs cannot grow the metric series without bound."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope.get("method", ""), name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - t0)
