"""What one API app holds between requests: its settings, metrics, request models, and — from
start-up to shutdown — the loaded model, its micro-batcher and the folder of uploaded photos.

Every endpoint is a function of this state (:mod:`prodcat.serving.routes`), so it can be called
without an HTTP request.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from prodcat.serving.batching import MicroBatcher
from prodcat.serving.config import ServingSettings
from prodcat.serving.errors import ServingError
from prodcat.serving.images import DecodeGate, ImageStore
from prodcat.serving.metrics import ServingMetrics
from prodcat.serving.schemas import RequestModels, request_models
from prodcat.serving.service import ModelService

if TYPE_CHECKING:
    from prodcat.review import ReviewStore

log = logging.getLogger("prodcat.serving")


@dataclass
class AppState:
    settings: ServingSettings
    service: ModelService | None = None
    metrics: ServingMetrics = field(default_factory=ServingMetrics)
    batcher: MicroBatcher | None = None
    store: ImageStore | None = None
    ready: bool = False
    #: The review queue (``--review-db``), opened at start-up.
    review: ReviewStore | None = None
    #: The request models, with the limits of ``settings``.
    models: RequestModels = field(init=False)
    #: Explanations running at once: each keeps the cores busy for up to a few seconds.
    explain_slots: asyncio.Semaphore = field(init=False)
    #: Photo decodes running and waiting (see :class:`~prodcat.serving.images.DecodeGate`).
    decodes: DecodeGate = field(init=False)

    def __post_init__(self) -> None:
        self.models = request_models(self.settings)
        self.explain_slots = asyncio.Semaphore(self.settings.explain_concurrency)
        self.decodes = DecodeGate(self.settings.decode_concurrency, self.settings.decode_queue)

    async def start(self) -> None:
        """Load the model (unless given), start the micro-batcher; then requests are served."""
        if self.service is None:
            self.service = await run_in_threadpool(ModelService.load, self.settings.model_dir)
        svc = self.service
        if self.settings.review_db and self.review is None:
            from prodcat.review import ReviewStore

            self.review = await run_in_threadpool(ReviewStore.open, self.settings.review_db)
        self.store = ImageStore()
        self.batcher = MicroBatcher(svc.predict_each, max_batch=self.settings.inference_batch,
                                    on_batch=self.metrics.observe_batch)
        await self.batcher.start()
        self.metrics.model_info.labels(svc.model_id, str(len(svc.classes))).set(1)
        self.metrics.ready.set(1)
        self.ready = True
        log.info("model %s ready (%d categories)", svc.model_id, len(svc.classes))

    async def stop(self) -> None:
        """Stop answering: finish the queued model calls, remove the uploaded photos' folder."""
        self.ready = False
        self.metrics.ready.set(0)
        if self.batcher is not None:
            await self.batcher.stop()
        if self.store is not None:
            self.store.close()
        if self.review is not None:
            self.review.close()
        if self.service is not None:
            log.info("model %s unloaded", self.service.model_id)

    def ready_service(self) -> tuple[ModelService, MicroBatcher]:
        if not self.ready or self.service is None or self.batcher is None:
            raise ServingError(503, "not_ready", "the model is not loaded (starting or shutting down)")
        return self.service, self.batcher


def state_of(request: Request) -> AppState:
    return request.app.state.prodcat
